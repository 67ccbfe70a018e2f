"""A check shared by the streamed fits' tests."""


def fit_streamed(estimator, X, monkeypatch, module, **fit_params):
    """``estimator.fit(X, **fit_params)``, failing unless it ran ``module.lloyd_iter``
    (the streamed step of :mod:`gpukmeans._streaming` or :mod:`gpukmeans._gpu_streaming`)."""
    passes = []
    real = module.lloyd_iter
    monkeypatch.setattr(module, "lloyd_iter", lambda *a: passes.append(1) or real(*a))
    estimator.fit(X, **fit_params)
    assert passes, "the fit did not stream"
    return estimator
