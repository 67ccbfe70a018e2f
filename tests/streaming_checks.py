"""A check shared by the streamed fits' tests."""


def fit_streamed(estimator, X, monkeypatch, module, step="lloyd_iter", **fit_params):
    """``estimator.fit(X, **fit_params)``, failing unless it ran ``module``'s ``step``
    (by default ``lloyd_iter``, the streamed step of :mod:`gpukmeans._streaming` or
    :mod:`gpukmeans._gpu_streaming`; ``"StreamedBoundsRun.step"`` for the bounds run)."""
    passes = []
    owner = module
    *path, name = step.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **kw: passes.append(1) or real(*a, **kw))
    estimator.fit(X, **fit_params)
    assert passes, "the fit did not stream"
    return estimator
