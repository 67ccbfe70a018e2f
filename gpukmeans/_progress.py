"""Progress over the iterations and ``n_init`` runs of a fit (``KMeans(verbose=...)``).

The single-run driver reports to an object made by :func:`make_reporter`; it never prints
itself. ``verbose=0`` gives a reporter whose methods do nothing, so a quiet fit pays one
empty method call per iteration. ``verbose>=1`` draws a tqdm bar on stderr when tqdm is
installed (it is optional), else writes one line per iteration to stderr.
"""

import sys

__all__ = ["make_reporter"]


def make_reporter(verbose, n_init, max_iter, inertia_scale=1.0):
    """Return the reporter a fit calls as it goes.

    Parameters
    ----------
    verbose : int or bool
        0 or False: report nothing. 1 or more: show progress on stderr.
    n_init : int
        Number of runs the fit will make (``start_run`` receives 0 to ``n_init - 1``).
    max_iter : int
        Most iterations one run can take.
    inertia_scale : float, default=1.0
        Factor of every inertia reported: the power of two by which the fit divided
        ``sample_weight`` (see ``gpukmeans._validation.check_sample_weight``).

    Returns
    -------
    reporter : object
        With ``start_run(run_index)``, ``iteration(n_iter, inertia)`` (``inertia`` a float,
        or None when the driver did not compute it), ``end_run(n_iter, inertia,
        converged_reason)`` and ``close()``.
    """
    if not verbose:
        return _NULL_REPORTER
    try:
        from tqdm.auto import tqdm
    except ImportError:
        reporter = _LineReporter(n_init, max_iter)
    else:
        reporter = _TqdmReporter(tqdm, n_init, max_iter)
    return reporter if inertia_scale == 1.0 else _ScaledReporter(reporter, inertia_scale)


class _ScaledReporter:
    """Passes everything on, with every inertia multiplied by ``scale``."""

    def __init__(self, reporter, scale):
        self.reporter, self.scale = reporter, scale

    def _scaled(self, inertia):
        return None if inertia is None else inertia * self.scale

    def start_run(self, run_index):
        self.reporter.start_run(run_index)

    def iteration(self, n_iter, inertia):
        self.reporter.iteration(n_iter, self._scaled(inertia))

    def end_run(self, n_iter, inertia, converged_reason):
        self.reporter.end_run(n_iter, self._scaled(inertia), converged_reason)

    def close(self):
        self.reporter.close()


class _NullReporter:
    """Reports nothing, as cheaply as a method call can."""

    __slots__ = ()

    def start_run(self, run_index):
        pass

    def iteration(self, n_iter, inertia):
        pass

    def end_run(self, n_iter, inertia, converged_reason):
        pass

    def close(self):
        pass


_NULL_REPORTER = _NullReporter()


def _format_inertia(inertia):
    return "?" if inertia is None else f"{inertia:.6g}"


class _LineReporter:
    """One line per iteration and one per finished run, on stderr (no tqdm needed)."""

    def __init__(self, n_init, max_iter):
        self.n_init, self.max_iter = n_init, max_iter
        self.run_index = 0

    def _print(self, message):
        # sys.stderr is looked up at each call, so redirections made after creation apply.
        print(message, file=sys.stderr, flush=True)

    def start_run(self, run_index):
        self.run_index = run_index

    def iteration(self, n_iter, inertia):
        self._print(
            f"k-means run {self.run_index + 1}/{self.n_init}, iteration {n_iter}/{self.max_iter}, "
            f"inertia {_format_inertia(inertia)}"
        )

    def end_run(self, n_iter, inertia, converged_reason):
        self._print(
            f"k-means run {self.run_index + 1}/{self.n_init} ended after {n_iter} iterations "
            f"({converged_reason}), inertia {_format_inertia(inertia)}"
        )

    def close(self):
        pass


class _TqdmReporter:
    """One tqdm bar over the iterations of the current run, reset for each of the runs.

    The bar's title counts the runs; its postfix shows the inertia of this run and the
    best one of the runs finished so far.
    """

    def __init__(self, tqdm, n_init, max_iter):
        self._tqdm = tqdm
        self.n_init, self.max_iter = n_init, max_iter
        self.best_inertia = None
        self._bar = None

    def _postfix(self, inertia, **extra):
        postfix = {"inertia": _format_inertia(inertia)}
        if self.best_inertia is not None:
            postfix["best"] = _format_inertia(self.best_inertia)
        postfix.update(extra)
        return postfix

    def start_run(self, run_index):
        description = f"k-means run {run_index + 1}/{self.n_init}"
        if self._bar is None:
            self._bar = self._tqdm(
                total=self.max_iter,
                desc=description,
                unit="it",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
        else:
            self._bar.reset(total=self.max_iter)
            self._bar.set_description(description, refresh=False)
        if self.best_inertia is None:
            self._bar.set_postfix_str("", refresh=False)
        else:
            self._bar.set_postfix(best=_format_inertia(self.best_inertia), refresh=False)

    def iteration(self, n_iter, inertia):
        if self._bar is None:  # a driver that skipped start_run
            self.start_run(0)
        self._bar.set_postfix(self._postfix(inertia), refresh=False)
        self._bar.update(n_iter - self._bar.n)

    def end_run(self, n_iter, inertia, converged_reason):
        if self._bar is None:
            self.start_run(0)
        if inertia is not None and (self.best_inertia is None or inertia < self.best_inertia):
            self.best_inertia = inertia
        self._bar.set_postfix(self._postfix(inertia, stop=converged_reason), refresh=False)
        self._bar.update(n_iter - self._bar.n)
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
