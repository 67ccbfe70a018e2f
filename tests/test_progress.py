"""Progress reporting: make_reporter's three reporters, and KMeans(verbose=...) using them."""

import subprocess
import sys

import numpy as np
import pytest

from gpukmeans._progress import make_reporter


def _drive(reporter, n_init=2, n_iter=4):
    """Call a reporter as the driver does."""
    for run in range(n_init):
        reporter.start_run(run)
        for n in range(1, n_iter + 1):
            reporter.iteration(n, 100.0 / n + run)
        reporter.iteration(n_iter, None)  # inertia not computed this time
        reporter.end_run(n_iter, 25.0 + run, "strict convergence")
    reporter.close()


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


@pytest.mark.parametrize("verbose", [0, False])
def test_quiet_reporter_prints_nothing(verbose, capsys):
    reporter = make_reporter(verbose, n_init=2, max_iter=10)
    _drive(reporter)
    assert capsys.readouterr() == ("", "")
    assert make_reporter(0, 3, 5) is reporter  # one shared no-op object


def test_tqdm_reporter(capsys):
    pytest.importorskip("tqdm")
    _drive(make_reporter(1, n_init=2, max_iter=10))
    out, err = capsys.readouterr()
    assert out == ""
    assert "k-means run 1/2" in err and "k-means run 2/2" in err
    assert "inertia=25" in err and "best=25" in err and "strict convergence" in err


def test_line_reporter_without_tqdm(no_tqdm, capsys):
    _drive(make_reporter(2, n_init=2, max_iter=10), n_iter=3)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0] == "k-means run 1/2, iteration 1/10, inertia 100"
    assert lines[3] == "k-means run 1/2, iteration 3/10, inertia ?"
    assert lines[4] == "k-means run 1/2 ended after 3 iterations (strict convergence), inertia 25"
    assert len(lines) == 2 * (3 + 1 + 1)


def test_kmeans_verbose_reports_inertia(no_tqdm, capsys):
    from gpukmeans import KMeans

    X = np.random.default_rng(0).standard_normal((200, 3))
    KMeans(3, n_init=2, random_state=0, device="cpu", verbose=0).fit(X)
    assert capsys.readouterr() == ("", "")
    model = KMeans(3, n_init=2, random_state=0, device="cpu", verbose=1).fit(X)
    err = capsys.readouterr().err
    assert "k-means run 1/2" in err and "k-means run 2/2" in err
    final = [line for line in err.splitlines() if "ended after" in line]
    assert len(final) == 2
    reported = min(float(line.rsplit("inertia ", 1)[1]) for line in final)
    assert reported == pytest.approx(model.inertia_, rel=1e-5)


def test_library_imports_without_optional_dependencies():
    """matplotlib, tqdm, pandas and pyarrow are extras: the library must not need them."""
    code = (
        "import sys\n"
        "for name in ('matplotlib', 'tqdm', 'pandas', 'pyarrow'):\n"
        "    sys.modules[name] = None\n"
        "import numpy as np, gpukmeans, gpukmeans.datasets, gpukmeans._cli, gpukmeans._plotting\n"
        "from gpukmeans._progress import make_reporter\n"
        "reporter = make_reporter(1, 1, 5)\n"
        "reporter.start_run(0); reporter.iteration(1, 2.0); reporter.end_run(1, 2.0, 'done')\n"
        "X = np.random.default_rng(0).standard_normal((50, 2))\n"
        "gpukmeans.KMeans(2, random_state=0, device='cpu', verbose=1).fit(X)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "k-means run 1/1, iteration 1/5, inertia 2" in result.stderr
