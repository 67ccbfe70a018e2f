"""What a fit shows as it goes: scikit-learn's verbose lines, and progress bars when asked.

The estimator, k-means++ and the single-run driver report to an object made by
:func:`make_reporter`; none of them prints itself, and none knows which engine runs.

- ``KMeans(verbose=0)`` outside :func:`progress_bars`: one shared :class:`Reporter` whose
  methods do nothing and which needs no inertia, so that a quiet fit pays an empty method
  call per center chosen and per run, and not the extra pass over the data that a
  per-iteration inertia costs.
- ``verbose>=1``: scikit-learn's lines, on stdout, where and as scikit-learn prints them
  (iterations numbered from 0). They are printed, not logged, as scikit-learn's are: what
  reads scikit-learn's verbose output reads ours, and a logging configuration (one that
  enables DEBUG everywhere, say) never slows a fit by turning the inertia pass on. A log
  file gets them with ``contextlib.redirect_stdout``.
- inside :func:`progress_bars`: tqdm bars on stderr, one over k-means++'s centers and one
  over each run's iterations; plain lines on stderr where tqdm (an optional extra) is
  missing. The ``gpukmeans`` command asks for them when stderr is a terminal.
"""

import contextlib
import contextvars
import os
import sys

__all__ = ["NULL_REPORTER", "Reporter", "make_reporter", "progress_bars"]

# A context variable, not a global: a ``with progress_bars()`` in one thread (or asyncio
# task) draws no bars over another's fits.
_bars_wanted = contextvars.ContextVar("gpukmeans_progress_bars", default=False)


@contextlib.contextmanager
def progress_bars(enabled=True):
    """Draw progress bars on stderr for the fits made inside the ``with`` block.

    One bar counts the centers k-means++ has chosen, out of ``n_clusters``; one per run
    counts its iterations, with the inertia, and ends at 100% when the run stops. They
    need tqdm (the ``cli`` extra); without it each iteration is a plain line on stderr.
    Independent of ``KMeans(verbose=...)``, which prints scikit-learn's lines on stdout.

    Parameters
    ----------
    enabled : bool, default=True
        False draws none, so that a caller can decide at run time
        (``with progress_bars(sys.stderr.isatty()):``).

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import KMeans, progress_bars
    >>> X = np.random.default_rng(0).normal(size=(1000, 2))
    >>> with progress_bars():  # doctest: +SKIP
    ...     km = KMeans(n_clusters=3, device="cpu").fit(X)
    """
    token = _bars_wanted.set(bool(enabled))
    try:
        yield
    finally:
        _bars_wanted.reset(token)


def make_reporter(verbose, n_init, max_iter, inertia_scale=1.0, bars=None):
    """Return the reporter a fit calls as it goes.

    Parameters
    ----------
    verbose : int or bool
        0 or False: no lines. 1 or more: scikit-learn's lines on stdout.
    n_init : int
        Number of runs the fit will make (``start_run`` receives 0 to ``n_init - 1``).
    max_iter : int
        Most iterations one run can take.
    inertia_scale : float, default=1.0
        Factor of every inertia reported: the power of two by which the fit divided
        ``sample_weight`` (see ``gpukmeans._validation.check_sample_weight``).
    bars : bool, default=None
        Whether to draw progress bars; None: as the enclosing :func:`progress_bars` says.

    Returns
    -------
    reporter : Reporter
        :data:`NULL_REPORTER` when there is nothing to show.
    """
    if bars is None:
        bars = _bars_wanted.get()
    reporters = []
    if verbose:
        reporters.append(_SklearnLines(inertia_scale))
    if bars:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            reporters.append(_RunLines(n_init, max_iter, inertia_scale))
        else:
            reporters.append(_Bars(tqdm, n_init, inertia_scale))
    if not reporters:
        return NULL_REPORTER
    return reporters[0] if len(reporters) == 1 else _Both(*reporters)


class Reporter:
    """The calls a fit makes as it goes; here each does nothing (``verbose=0``, no bars).

    The estimator calls ``start_run(run_index)`` before each run's initialisation,
    ``init_complete()`` after it, and ``close()`` after the last run, or when the fit
    fails. k-means++ calls ``start_init(name, n_clusters)``, then ``init_step(n_chosen)``
    as centers are chosen. The driver calls ``iteration(n_iter, inertia)`` after each
    E-step, with the inertia only where ``needs_inertia`` (it costs a pass over the data;
    else None);
    ``converged(n_iter, center_shift, tol)`` when a run stops before ``max_iter``
    (``center_shift`` None: strict convergence, no label changed); and ``end_run(n_iter,
    inertia)`` with the run's final inertia. ``n_iter`` counts from 1; inertias are as
    the fit computed them, before ``inertia_scale``.
    """

    __slots__ = ()
    needs_inertia = False

    def start_run(self, run_index):
        pass

    def start_init(self, name, n_clusters):
        pass

    def init_step(self, n_chosen):
        pass

    def init_complete(self):
        pass

    def iteration(self, n_iter, inertia):
        pass

    def converged(self, n_iter, center_shift=None, tol=None):
        pass

    def end_run(self, n_iter, inertia):
        pass

    def close(self):
        pass


NULL_REPORTER = Reporter()


class _SklearnLines(Reporter):
    """scikit-learn's lines (``KMeans.fit``, ``_kmeans_single_lloyd``), on stdout.

    scikit-learn numbers iterations from 0 and prints nothing when a run reaches
    ``max_iter``; so do these.
    """

    __slots__ = ("inertia_scale",)
    needs_inertia = True

    def __init__(self, inertia_scale):
        self.inertia_scale = inertia_scale

    def init_complete(self):
        print("Initialization complete", flush=True)

    def iteration(self, n_iter, inertia):
        print(f"Iteration {n_iter - 1}, inertia {inertia * self.inertia_scale}.", flush=True)

    def converged(self, n_iter, center_shift=None, tol=None):
        if center_shift is None:
            print(f"Converged at iteration {n_iter - 1}: strict convergence.", flush=True)
        else:
            # scikit-learn's tolerance is the int 0 when tol=0.
            print(
                f"Converged at iteration {n_iter - 1}: center shift {center_shift} within "
                f"tolerance {tol or 0}.",
                flush=True,
            )


def _format_inertia(inertia):
    return f"{inertia:.6g}"


def _terminal_width():
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a terminal, or no file number
        return 0


def _stop_reason(center_shift):
    return "strict convergence" if center_shift is None else "center shift <= tol"


class _RunLines(Reporter):
    """Progress without tqdm: one line per iteration and one per finished run, on stderr.
    The inertia is shown when a run ends: per iteration it would cost a pass over the
    data (the fit took twice as long on MNIST)."""

    def __init__(self, n_init, max_iter, inertia_scale):
        self.n_init, self.max_iter, self.inertia_scale = n_init, max_iter, inertia_scale
        self.run_index = 0
        self.stop = "max_iter reached"

    def _print(self, message):
        # sys.stderr is looked up at each call, so redirections made after creation apply.
        print(f"k-means run {self.run_index + 1}/{self.n_init}{message}", file=sys.stderr,
              flush=True)

    def start_run(self, run_index):
        self.run_index = run_index
        self.stop = "max_iter reached"

    def start_init(self, name, n_clusters):
        self._print(f", {name}: choosing {n_clusters} centers")

    def iteration(self, n_iter, inertia):
        self._print(f", iteration {n_iter}/{self.max_iter}")

    def converged(self, n_iter, center_shift=None, tol=None):
        self.stop = _stop_reason(center_shift)

    def end_run(self, n_iter, inertia):
        self._print(
            f" ended after {n_iter} iterations ({self.stop}), "
            f"inertia {_format_inertia(inertia * self.inertia_scale)}"
        )


class _Bars(Reporter):
    """tqdm bars on stderr: k-means++'s centers, then each run's iterations.

    How many iterations a run takes is known when it stops, so its bar counts up without
    a total (``max_iter`` as the total showed a converged run ending at 1%, and an ETA of
    all 300 iterations); when the run ends, the total becomes the iterations run and the
    bar, left on screen, reads 100%. The postfix shows the best inertia of the runs
    finished so far, and each run's own when it ends: an inertia at every iteration would
    cost a pass over the data each time (it doubled a fit's time on MNIST).
    """

    def __init__(self, tqdm, n_init, inertia_scale):
        self._tqdm = tqdm
        self.n_init, self.inertia_scale = n_init, inertia_scale
        self.run_index = 0
        self.stop = "max_iter reached"
        self.best_inertia = None
        self._init_bar = self._run_bar = None

    def _open(self, **kwargs):
        # A terminal that reports no width (some pseudo-terminals say 0 x 0) would get
        # bars of width 0, drawn as blank lines: those get tqdm's fixed default width.
        return self._tqdm(file=sys.stderr, dynamic_ncols=_terminal_width() > 0, leave=True,
                          **kwargs)

    def _postfix(self, inertia, **extra):
        postfix = {}
        if inertia is not None:
            postfix["inertia"] = _format_inertia(inertia * self.inertia_scale)
        if self.best_inertia is not None:
            postfix["best"] = _format_inertia(self.best_inertia)
        postfix.update(extra)
        return postfix

    def _start_iterations(self):
        self._close_init_bar()
        self._run_bar = self._open(desc=f"k-means run {self.run_index + 1}/{self.n_init}",
                                   unit="it")

    def _close_init_bar(self):
        if self._init_bar is not None:
            self._init_bar.close()
            self._init_bar = None

    def start_run(self, run_index):
        self.run_index = run_index
        self.stop = "max_iter reached"

    def start_init(self, name, n_clusters):
        self._close_init_bar()
        run = f" (run {self.run_index + 1}/{self.n_init})" if self.n_init > 1 else ""
        self._init_bar = self._open(desc=f"{name}{run}", total=n_clusters, unit=" centers")

    def init_step(self, n_chosen):
        self._init_bar.update(n_chosen - self._init_bar.n)

    def init_complete(self):
        self._start_iterations()

    def iteration(self, n_iter, inertia):
        if self._run_bar is None:  # a caller that skipped init_complete
            self._start_iterations()
        self._run_bar.set_postfix(self._postfix(inertia), refresh=False)
        self._run_bar.update(n_iter - self._run_bar.n)

    def converged(self, n_iter, center_shift=None, tol=None):
        self.stop = _stop_reason(center_shift)

    def end_run(self, n_iter, inertia):
        if self._run_bar is None:
            self._start_iterations()
        if self.best_inertia is None or inertia * self.inertia_scale < self.best_inertia:
            self.best_inertia = inertia * self.inertia_scale
        self._run_bar.set_postfix(self._postfix(inertia, stop=self.stop), refresh=False)
        self._run_bar.total = n_iter
        self._run_bar.update(n_iter - self._run_bar.n)
        self._run_bar.close()
        self._run_bar = None

    def close(self):
        # A fit that failed leaves its bars where they stopped.
        self._close_init_bar()
        if self._run_bar is not None:
            self._run_bar.close()
            self._run_bar = None


class _Both(Reporter):
    """scikit-learn's lines and the bars, for ``verbose>=1`` inside ``progress_bars()``."""

    needs_inertia = True

    def __init__(self, *reporters):
        self.reporters = reporters

    def start_run(self, run_index):
        for reporter in self.reporters:
            reporter.start_run(run_index)

    def start_init(self, name, n_clusters):
        for reporter in self.reporters:
            reporter.start_init(name, n_clusters)

    def init_step(self, n_chosen):
        for reporter in self.reporters:
            reporter.init_step(n_chosen)

    def init_complete(self):
        for reporter in self.reporters:
            reporter.init_complete()

    def iteration(self, n_iter, inertia):
        for reporter in self.reporters:
            reporter.iteration(n_iter, inertia)

    def converged(self, n_iter, center_shift=None, tol=None):
        for reporter in self.reporters:
            reporter.converged(n_iter, center_shift, tol)

    def end_run(self, n_iter, inertia):
        for reporter in self.reporters:
            reporter.end_run(n_iter, inertia)

    def close(self):
        for reporter in self.reporters:
            reporter.close()
