"""What a fit shows: scikit-learn's verbose lines, progress bars only when asked, and bars
that tell the truth (k-means++ its own, a finished run at 100%)."""

import contextlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest

from command_checks import run as run_command
from conftest import fit_device
from gpukmeans import KMeans, progress_bars
from gpukmeans._device import get_engine
from gpukmeans._lloyd import kmeans_single_lloyd
from gpukmeans._progress import NULL_REPORTER, make_reporter


def _drive(reporter, n_init=2, n_iter=4, n_clusters=3):
    """Call a reporter as the estimator, k-means++ and the driver do."""
    for run in range(n_init):
        reporter.start_run(run)
        reporter.start_init("k-means++", n_clusters)
        for n_chosen in range(1, n_clusters + 1):
            reporter.init_step(n_chosen)
        reporter.init_complete()
        for n in range(1, n_iter + 1):
            reporter.iteration(n, 100.0 / n + run)
        reporter.converged(n_iter)
        reporter.end_run(n_iter, 25.0 + run)
    reporter.close()


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


@pytest.fixture
def bars(monkeypatch):
    """Every tqdm bar a reporter opens, as it was when closed (``desc``, ``n``, ``total``),
    with the totals it showed while counting (``totals``) and the bars still open when it
    opened (``others_open``); drawn on stderr as usual."""
    tqdm = pytest.importorskip("tqdm")
    import tqdm.auto

    opened = []

    class RecordedBar(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            self.totals = []
            self.others_open = [bar.desc for bar in opened if not bar.disable]  # closed: disable
            super().__init__(*args, **kwargs)
            opened.append(self)

        def update(self, n=1):
            self.totals.append(self.total)
            return super().update(n)

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordedBar)
    return opened


@pytest.fixture(params=[
    "cpu",
    pytest.param("emulated", id="gpu-emulated"),
    pytest.param("cuda", id="gpu-cuda", marks=pytest.mark.gpu),
])
def device(request):
    """Each engine: reporting is the driver's and k-means++'s, whatever runs the passes."""
    return fit_device(request, request.param)


def _blobs(n_samples=600, n_features=3, n_clusters=4, seed=0):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples, n_features, centers=n_clusters, cluster_std=2.5,
                      random_state=seed)
    return X


# --- the reporters --------------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [0, False])
def test_quiet_reporter_prints_nothing(verbose, capsys):
    reporter = make_reporter(verbose, n_init=2, max_iter=10)
    _drive(reporter)
    assert capsys.readouterr() == ("", "")
    assert reporter is NULL_REPORTER and not reporter.needs_inertia


def test_bars_compute_no_inertia_per_iteration():
    """Bars cost no pass over the data per iteration (an inertia each time doubled a fit
    on MNIST): they show each run's inertia when it ends, which the run computes anyway."""
    calls = []
    X = _blobs()
    engine = get_engine("cpu", *X.shape, 4)
    counting = engine._replace(inertia=lambda *args: calls.append(1) or engine.inertia(*args))
    args = (X, counting.row_norms(X), np.ones(len(X)), X[:4].copy(), counting)
    from tqdm import tqdm

    from gpukmeans import _progress

    for reporter in (_progress._Bars(tqdm, 1, 1.0), _progress._RunLines(1, 50, 1.0)):
        with engine.runtime(), contextlib.redirect_stderr(io.StringIO()):
            kmeans_single_lloyd(*args, max_iter=50, reporter=reporter)
        assert calls == []


def test_quiet_fit_computes_no_inertia_per_iteration():
    """verbose=0 costs no pass over the data: the driver asks the null reporter nothing."""
    calls = []
    X = _blobs()
    engine = get_engine("cpu", *X.shape, 4)
    counting = engine._replace(inertia=lambda *args: calls.append(1) or engine.inertia(*args))
    args = (X, counting.row_norms(X), np.ones(len(X)), X[:4].copy(), counting)
    with engine.runtime():
        *_, n_iter = kmeans_single_lloyd(*args, max_iter=50, reporter=NULL_REPORTER)
        assert calls == []
        with contextlib.redirect_stdout(io.StringIO()):
            kmeans_single_lloyd(*args, max_iter=50, reporter=make_reporter(1, 1, 50))
    assert len(calls) == n_iter


def test_bar_reporter(capsys):
    pytest.importorskip("tqdm")
    _drive(make_reporter(0, n_init=2, max_iter=10, bars=True))
    out, err = capsys.readouterr()
    assert out == ""
    assert "k-means++ (run 1/2)" in err and "k-means run 1/2" in err and "k-means run 2/2" in err
    assert "inertia=25" in err and "best=25" in err and "strict convergence" in err


def test_line_reporter_without_tqdm(no_tqdm, capsys):
    _drive(make_reporter(0, n_init=2, max_iter=10, bars=True), n_iter=3)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0] == "k-means run 1/2, k-means++: choosing 3 centers"
    assert lines[1] == "k-means run 1/2, iteration 1/10"  # the inertia would cost a pass
    assert lines[4] == "k-means run 1/2 ended after 3 iterations (strict convergence), inertia 25"
    assert len(lines) == 2 * (1 + 3 + 1)


def test_reported_inertia_is_the_fits_with_scaled_weights(no_tqdm, capsys):
    """The fit divides sample_weight by a power of two: what it reports is scaled back."""
    X = np.random.default_rng(0).standard_normal((200, 3))
    sample_weight = np.full(200, 3e5)
    with progress_bars():
        model = KMeans(3, n_init=2, random_state=0, device="cpu").fit(X, sample_weight=sample_weight)
    err = capsys.readouterr().err
    final = [line for line in err.splitlines() if "ended after" in line]
    assert len(final) == 2
    reported = min(float(line.rsplit("inertia ", 1)[1]) for line in final)
    assert reported == pytest.approx(model.inertia_, rel=1e-5)


# --- 1. k-means++ has its own bar -----------------------------------------------------------


def test_kmeanspp_has_its_own_labelled_bar(bars, capsys, device):
    X = _blobs()
    with progress_bars():
        model = KMeans(5, n_init=2, random_state=0, device=device).fit(X)
    assert [bar.desc for bar in bars] == [
        "k-means++ (run 1/2)", "k-means run 1/2", "k-means++ (run 2/2)", "k-means run 2/2"]
    for init_bar in bars[::2]:
        assert init_bar.n == init_bar.total == 5 and init_bar.totals == [5] * 5
    assert all(bar.others_open == [] for bar in bars)  # one bar at a time, each closed
    assert "k-means++ (run 1/2): 100%" in capsys.readouterr().err
    assert model.device_ == device


def test_no_kmeanspp_bar_for_other_inits(bars):
    X = _blobs()
    with progress_bars():
        KMeans(4, init="random", n_init=1, random_state=0, device="cpu").fit(X)
        KMeans(4, init=X[:4], device="cpu").fit(X)
    assert [bar.desc for bar in bars] == ["k-means run 1/1", "k-means run 1/1"]


# --- 2. a finished run's bar reads 100% -----------------------------------------------------


def test_converged_run_bar_ends_at_100_percent(bars, capsys, device):
    X = _blobs()
    with progress_bars():
        model = KMeans(4, init=X[:4], max_iter=300, device=device).fit(X)
    (bar,) = bars
    assert 1 < model.n_iter_ < 300
    # No total while counting (none is known: it is not max_iter), the iterations run at the end.
    assert bar.n == bar.total == model.n_iter_
    assert bar.totals[:-1] == [None] * (len(bar.totals) - 1)
    final_render = capsys.readouterr().err.split("\r")[-1]
    assert "100%" in final_render and f"{model.n_iter_}/{model.n_iter_}" in final_render


def test_run_reaching_max_iter_ends_at_100_percent(bars):
    X = _blobs()
    with progress_bars():
        model = KMeans(4, init=X[:4], max_iter=2, tol=0, device="cpu").fit(X)
    (bar,) = bars
    assert model.n_iter_ == 2 and bar.n == bar.total == 2
    assert bar.postfix.endswith("stop=max_iter reached")


def test_failed_fit_closes_its_bars(bars, monkeypatch):
    from gpukmeans import _estimator

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_estimator, "kmeans_single_lloyd", interrupted)
    with progress_bars(), pytest.raises(KeyboardInterrupt):
        KMeans(4, random_state=0, device="cpu").fit(_blobs())
    (init_bar, run_bar) = bars
    assert init_bar.n == 4 and run_bar.n == 0
    assert all(bar.disable for bar in bars)  # tqdm's mark of a closed bar


# --- 3. verbose prints scikit-learn's lines -------------------------------------------------

_LINE_KINDS = {
    "init": re.compile(r"Initialization complete"),
    "iteration": re.compile(r"Iteration (\d+), inertia (\S+)\."),
    "strict": re.compile(r"Converged at iteration (\d+): strict convergence\."),
    "tol": re.compile(r"Converged at iteration (\d+): center shift (\S+) within tolerance (\S+)\."),
}


def _parse(out):
    """Each line as (kind, iteration or None, numbers); a line of another form fails."""
    parsed = []
    for line in out.splitlines():
        for kind, pattern in _LINE_KINDS.items():
            match = pattern.fullmatch(line)
            if match:
                groups = match.groups()
                parsed.append((kind, int(groups[0]) if groups else None,
                               [float(value) for value in groups[1:]]))
                break
        else:
            pytest.fail(f"not one of scikit-learn's lines: {line!r}")
    return parsed


def _verbose_fit(estimator, X):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        estimator.fit(X)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("verbose", [1, 2, True])
@pytest.mark.parametrize("params", [
    dict(init="array", tol=1e-4),
    dict(init="k-means++", tol=0),
    dict(init="random", n_init=3, tol=1e-2),
], ids=["array-tol", "kmeans++-strict", "random-n_init3"])
def test_verbose_prints_scikit_learns_lines(params, verbose):
    from sklearn.cluster import KMeans as SklearnKMeans

    X = _blobs(2000, 4, 6, seed=3)
    if params["init"] == "array":
        params = {**params, "init": X[:6]}
    common = dict(n_clusters=6, random_state=0, verbose=verbose, **params)
    sklearn_out, _ = _verbose_fit(SklearnKMeans(**common), X)
    out, err = _verbose_fit(KMeans(device="cpu", **common), X)

    assert err == "" and "\x1b" not in out and "\r" not in out  # no bar, no escape codes
    expected, got = _parse(sklearn_out), _parse(out)
    assert [line[:2] for line in got] == [line[:2] for line in expected]
    for (_, _, numbers), (_, _, sklearn_numbers) in zip(got, expected):
        assert numbers == pytest.approx(sklearn_numbers, rel=1e-6)
    kinds = {line[0] for line in got}
    assert {"init", "iteration"} <= kinds and kinds & {"strict", "tol"}


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
@pytest.mark.parametrize("tol", [1e-2, 0])
def test_scikit_learns_own_verbose_test(algorithm, tol, capsys):
    from test_sklearn_suite import SUITE

    if SUITE is None:
        pytest.skip("scikit-learn's k-means tests are not installed")
    SUITE.test_kmeans_verbose(algorithm, tol, capsys)  # on gpukmeans' KMeans


def test_verbose_tolerance_zero_is_printed_as_scikit_learn_does(capsys):
    """scikit-learn's tolerance is the int 0 for tol=0, so its line says "tolerance 0."."""
    reporter = make_reporter(1, n_init=1, max_iter=10)
    reporter.converged(3, np.float32(0.0), 0.0)
    reporter.converged(3, np.float32(0.25), 1.5e-5)
    assert capsys.readouterr().out.splitlines() == [
        "Converged at iteration 2: center shift 0.0 within tolerance 0.",
        "Converged at iteration 2: center shift 0.25 within tolerance 1.5e-05.",
    ]


def test_verbose_lines_on_each_engine(device, capsys):
    X = _blobs()
    KMeans(4, init=X[:4], verbose=1, device=device).fit(X)
    out, err = capsys.readouterr()
    parsed = _parse(out)
    assert err == "" and parsed[0][0] == "init"
    assert [line[1] for line in parsed[1:-1]] == list(range(len(parsed) - 2))


# --- 4. bars only when asked: by the library's user, or by the command on a terminal --------


def test_library_draws_bars_only_inside_progress_bars(capsys):
    pytest.importorskip("tqdm")
    X = _blobs()
    for verbose in (0, 1):
        KMeans(4, random_state=0, verbose=verbose, device="cpu").fit(X)
        assert capsys.readouterr().err == ""
    with progress_bars():
        with progress_bars(False):
            KMeans(4, random_state=0, device="cpu").fit(X)
        assert capsys.readouterr() == ("", "")
        KMeans(4, random_state=0, device="cpu").fit(X)  # the outer block's again
    out, err = capsys.readouterr()
    assert out == "" and "k-means run 1/1" in err and "k-means++" in err
    KMeans(4, random_state=0, device="cpu").fit(X)
    assert capsys.readouterr() == ("", "")


def test_bars_and_lines_together(capsys):
    pytest.importorskip("tqdm")
    X = _blobs()
    with progress_bars():
        KMeans(4, init=X[:4], verbose=1, device="cpu").fit(X)
    out, err = capsys.readouterr()
    assert _parse(out)[0][0] == "init" and "k-means run 1/1" in err


@pytest.mark.parametrize("terminal, flag, drawn", [
    (True, None, True), (False, None, False), (False, "--progress", True),
    (True, "--no-progress", False),
])
def test_command_draws_bars_on_a_terminal(terminal, flag, drawn, capsys, monkeypatch, tmp_path):
    pytest.importorskip("tqdm")
    np.save(tmp_path / "points.npy", _blobs())
    # capsys's stderr stands for the terminal, or for a pipe or a log file.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    argv = ["fit", tmp_path / "points.npy", "-k", 4, "--device", "cpu", "--out", tmp_path / "r"]
    status, out, err = run_command(capsys, *argv, *([flag] if flag else []))
    assert status == 0, err
    assert ("k-means run 1/1" in err and "100%" in err) is drawn
    assert "Iteration" not in out  # the command's bars, not scikit-learn's lines


def test_library_imports_without_optional_dependencies():
    """matplotlib, tqdm, pandas and pyarrow are extras: the library must not need them."""
    code = (
        "import sys\n"
        "for name in ('matplotlib', 'tqdm', 'pandas', 'pyarrow'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, gpukmeans, gpukmeans.datasets, gpukmeans._cli, gpukmeans._plotting\n"
        "from gpukmeans._progress import make_reporter\n"
        "reporter = make_reporter(0, 1, 5, bars=True)\n"
        "reporter.start_run(0); reporter.iteration(1, 2.0); reporter.end_run(1, 2.0)\n"
        "X = np.random.default_rng(0).standard_normal((50, 2))\n"
        "gpukmeans.KMeans(2, random_state=0, device='cpu', verbose=1).fit(X)\n"
        "with gpukmeans.progress_bars():\n"
        "    gpukmeans.KMeans(2, random_state=0, device='cpu').fit(X)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "k-means run 1/1, iteration 1/5\n" in result.stderr
    assert "Initialization complete" in result.stdout
    assert "k-means run 1/1, k-means++: choosing 2 centers" in result.stderr


def test_a_terminal_of_no_width_still_gets_bars(monkeypatch):
    """Some pseudo-terminals report 0 x 0: tqdm's dynamic width then drew blank lines."""
    tqdm = pytest.importorskip("tqdm").tqdm
    from gpukmeans import _progress

    opened = []

    def recording_tqdm(**kwargs):
        opened.append(kwargs)
        return tqdm(**{**kwargs, "file": io.StringIO()})

    for width, dynamic in ((0, False), (120, True)):
        monkeypatch.setattr(_progress, "_terminal_width", lambda width=width: width)
        opened.clear()
        _progress._Bars(recording_tqdm, 1, 1.0).start_init("k-means++", 3)
        assert opened[0]["dynamic_ncols"] is dynamic
