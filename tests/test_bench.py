"""Smoke tests of the benchmark harness (gpukmeans/bench/, benchmarks/*.py) on tiny sizes.

They check that the harness runs, writes valid reports and puts an inertia and an agreement
next to every time. They never assert on a timing. Thread counts are left at their defaults:
the harness sets them process-wide (Numba, torch, faiss), and other tests share the process.
"""

import gzip
import importlib.util
import json
import pathlib
import struct

import numpy as np
import pytest

from gpukmeans import bench
from gpukmeans.bench import plots
from gpukmeans.bench.contestants import NO_FINAL_LABELS, select_contestants
from gpukmeans.bench.reports import SCHEMA
from gpukmeans.bench.runner import Settings, run_suite
from gpukmeans.bench.workloads import Workload, find_mnist, load_mnist_images, profile_workloads
from gpukmeans.datasets import load_mnist

REPO = pathlib.Path(__file__).resolve().parents[1]

# A few contestants that are always importable (base dependencies), to keep this fast.
BASE = "sklearn-lloyd,gpukmeans-cpu,numpy-naive"


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    """A tiny stand-in for MNIST in the real IDX format: 600 + 200 digits of 28 x 28."""
    directory = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        digits = rng.integers(0, 4, n)
        blobs = digits[:, None, None] * 60 + rng.integers(0, 40, (n, 28, 28))
        _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", blobs)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", digits)
    return directory


def test_mnist_is_read_by_gpukmeans_datasets(fake_mnist):
    X = load_mnist_images(fake_mnist, 700)
    assert X.shape == (700, 784) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    expected, _ = load_mnist(fake_mnist, n_samples=700, download=False)
    np.testing.assert_array_equal(X, expected / np.float32(255))


def test_find_mnist_never_guesses(tmp_path):
    assert find_mnist(tmp_path) is None


def test_find_mnist_looks_where_the_loader_looks(fake_mnist, tmp_path):
    assert find_mnist(fake_mnist) == fake_mnist
    (tmp_path / "mnist").symlink_to(fake_mnist, target_is_directory=True)
    assert find_mnist(tmp_path) == tmp_path  # load_mnist(tmp_path) reads tmp_path/mnist
    X = load_mnist_images(tmp_path, 10)
    assert X.shape == (10, 784)


def _check_report(result, out, name):
    on_disk = json.loads((out / f"{name}.json").read_text())
    assert on_disk["schema"] == SCHEMA
    for field in ("date", "cpu", "threads", "versions", "commit"):
        assert field in on_disk["environment"]
    assert on_disk["floors"]["bandwidth_gbps"]["median"] > 0
    assert on_disk["floors"]["sgemm_gflops"]["median"] > 0
    markdown = (out / f"{name}.md").read_text()
    assert markdown.startswith("# gpukmeans benchmark")
    assert "| contestant | per iter ms |" in markdown
    return on_disk


def test_quick_harness_tiny(tmp_path, fake_mnist):
    out = tmp_path / "out"
    code = bench.main(["--profile", "tiny", "--contestants", BASE, "--repeats", "1",
                       "--mnist", str(fake_mnist), "--out", str(out), "--no-plots", "--quiet"])
    assert code == 0
    report = _check_report(None, out, "harness-tiny")
    fits = [r for r in report["results"] if r["benchmark"] == "time_fit"]
    assert {r["contestant"] for r in fits} == set(BASE.split(","))
    assert {r["workload"] for r in fits} == {w.name for w in profile_workloads("tiny")}
    for r in fits:
        assert r["status"] == "ok", r
        assert r["time_s"]["min"] <= r["time_s"]["median"] <= r["time_s"]["max"]
        assert r["per_iter_s"]["median"] > 0 and r["ratio_to_floor"] > 0
        assert np.isfinite(r["inertia"]) and r["inertia"] > 0
        assert r["reference"] == "sklearn-lloyd"
        assert 0 <= r["label_agreement"] <= 1 and np.isfinite(r["inertia_rel_diff"])
        if r["contestant"] != "numpy-naive":  # the naive Lloyd keeps empty clusters' centres
            # Same initial centres and fixed work: gpukmeans lands where scikit-learn does.
            assert abs(r["inertia_rel_diff"]) < 1e-4
    # One iteration from the same centres, and the marginal cost of the others from it.
    ones = {(r["workload"], r["contestant"]): r for r in report["results"]
            if r["benchmark"] == "time_fit_one"}
    for r in fits:
        one = ones[(r["workload"], r["contestant"])]
        assert one["status"] == "ok" and one["n_iter"] == 1, one
        n_iter = next(w.n_iter for w in profile_workloads("tiny") if w.name == r["workload"])
        if r["n_iter"] == n_iter > 1:
            expected = (r["time_s"]["median"] - one["time_s"]["median"]) / (n_iter - 1)
            assert r["marginal_per_iter_s"] == pytest.approx(expected)
        else:  # stopped on strict convergence: no final labels to subtract, no marginal
            assert "marginal_per_iter_s" not in r
    assert "| marginal ms |" in (out / "harness-tiny.md").read_text()
    kinds = {(r["contestant"], r["benchmark"]) for r in report["results"] if r["status"] == "ok"}
    assert ("gpukmeans-cpu", "time_init") in kinds and ("sklearn-lloyd", "time_init") in kinds
    assert ("gpukmeans-cpu", "time_fit_converge") in kinds
    defaults = [r for r in report["results"] if r["benchmark"] == "time_fit_defaults"]
    assert {r["seed"] for r in defaults} == {0, 1}
    assert all("inertia" in r for r in defaults if r["status"] == "ok")
    # numpy-naive has no k-means++: reported as not supported, not as an error.
    naive_init = [r for r in report["results"]
                  if r["contestant"] == "numpy-naive" and r["benchmark"] == "time_init"]
    assert naive_init and naive_init[0]["status"] == "skipped"


def test_records_name_the_blas_kernels_and_the_variables_that_chose_them(monkeypatch):
    """OPENBLAS_CORETYPE=Haswell on an AVX-512 machine halves every OpenBLAS GEMM (ours,
    scikit-learn's, FAISS's): a report's hardware line must say which kernels ran."""
    from threadpoolctl import threadpool_info

    from gpukmeans.bench.environment import blas_line, environment, hardware_line

    monkeypatch.setenv("OPENBLAS_CORETYPE", "SkylakeX")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = environment(1)
    assert env["threading_variables"]["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert env["threading_variables"]["OMP_NUM_THREADS"] == "3"
    line = hardware_line(env)
    assert "OPENBLAS_CORETYPE=SkylakeX" in line.split(" under ")[1].split()
    assert "OMP_NUM_THREADS" not in line  # threads are in the line already
    for pool in threadpool_info():
        if pool["user_api"] == "blas":
            assert f"{pool['version']} ({pool['architecture']} kernels)" in line

    record = {"threadpools": [
        {"user_api": "openmp", "internal_api": "openmp", "version": None},
        {"user_api": "blas", "internal_api": "openblas", "version": "0.3.30",
         "architecture": "Haswell"},
        {"user_api": "blas", "internal_api": "mkl", "version": "2025.1"},
    ], "threading_variables": {}}
    assert blas_line(record) == "OpenBLAS 0.3.30 (Haswell kernels), MKL 2025.1"
    assert blas_line({"threadpools": [], "threading_variables": {"OMP_NUM_THREADS": "1"}}) is None
    assert blas_line({}) is None


def test_bench_prints_its_results_table(tmp_path, fake_mnist, capsys):
    code = bench.main(["--profile", "tiny", "--contestants", "sklearn-lloyd,numpy-naive",
                       "--repeats", "1", "--mnist", str(fake_mnist), "--out", str(tmp_path),
                       "--no-plots"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "harness-tiny.json").read_text())
    fits = [r for r in report["results"] if r["benchmark"] == "time_fit"]
    assert {r["workload"] for r in fits} == {w.name for w in profile_workloads("tiny")}
    for r in fits:
        # Each workload's table: its title, the header, a row per contestant with its times.
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{r['workload']}: "))
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        header, *rows = lines[start + 1 : end]
        assert header.split()[:4] == ["contestant", "per", "iter", "ms"]
        (row,) = [line for line in rows if line.split()[0] == r["contestant"]]
        assert f"{r['per_iter_s']['median'] * 1e3:.1f}" in row
        assert f"{r['inertia_rel_diff']:+.1e}" in row and f"{r['label_agreement']:.4f}" in row


def test_every_cpu_contestant_reports_inertia_and_agreement(tmp_path):
    """Each importable CPU contestant runs a tiny workload; the rest say why not."""
    workloads = [Workload("blobs-tiny", "sweep_k", "blobs", 500, 4, 3, n_iter=3)]
    settings = Settings(repeats=1, measure_seconds=1.0, max_seconds=120,
                        floor_bytes=1 << 20, sgemm_size=64, plots=False)
    result = run_suite("tiny", device="cpu", settings=settings, out_dir=tmp_path,
                       name="all", workloads=workloads, log=lambda *a: None)
    available = {c["key"] for c in result["contestants"] if c["available"]}
    assert {"sklearn-lloyd", "sklearn-elkan", "gpukmeans-cpu", "numpy-naive"} <= available
    for c in result["contestants"]:
        assert c["available"] or c["reason"]
    fits = {r["contestant"]: r for r in result["results"] if r["benchmark"] == "time_fit"}
    assert set(fits) == available
    for key, r in fits.items():
        assert r["status"] == "ok", r
        assert r["inertia"] > 0 and "label_agreement" in r and "inertia_rel_diff" in r
        # faiss and the naive loops stop at their last update, without the final E-step
        # that scikit-learn's estimators make: their rows say so (issue 12).
        final_labels = key in {"sklearn-lloyd", "sklearn-elkan", "sklearnex", "gpukmeans-cpu"}
        assert (NO_FINAL_LABELS in r["notes"]) != final_labels, (key, r["notes"])
    declared = {c["key"]: c["final_labels"] for c in result["contestants"]}
    assert declared["faiss-cpu"] is False and declared["gpukmeans-cpu"] is True
    assert NO_FINAL_LABELS in (tmp_path / "all.md").read_text()
    assert json.loads((tmp_path / "all.json").read_text())["results"]


def test_every_contestant_warms_up_alternated_before_the_first_workload(tmp_path, monkeypatch):
    """The run's first workload is not measured on a process that has not fitted yet:
    each contestant makes ``warm_up_fits`` untimed fits first, in turn, and the report
    says so."""
    from gpukmeans.bench import contestants

    calls = []
    for cls in (contestants.SklearnLloyd, contestants.NumpyNaive):
        real = cls.fit_fixed
        monkeypatch.setattr(cls, "fit_fixed", lambda self, X, init, n_iter, _real=real:
                            calls.append((self.key, X.shape, n_iter)) or _real(self, X, init, n_iter))
    workloads = [Workload("blobs-tiny", "sweep_k", "blobs", 500, 4, 3, n_iter=3)]
    settings = Settings(repeats=1, measure_seconds=1.0, floor_bytes=1 << 20, sgemm_size=64,
                        plots=False, warm_up_fits=3)
    run_suite("tiny", contestants=["sklearn-lloyd", "numpy-naive"], settings=settings,
              out_dir=tmp_path, name="w", workloads=workloads, log=lambda *a: None)
    warm = [(key, shape) for key, shape, n_iter in calls if shape == (20000, 16)]
    assert warm == [("sklearn-lloyd", (20000, 16)), ("numpy-naive", (20000, 16))] * 3
    assert calls[:6] == [(key, shape, 10) for key, shape in warm]  # before any workload
    assert "3 untimed fits" in (tmp_path / "w.md").read_text()


def test_each_timed_call_is_followed_by_the_settling_pause(tmp_path, monkeypatch):
    """No contestant is timed beside the threads the previous one left spinning: every
    timed call is followed by ``settle_seconds`` of sleep, and the report says so."""
    from gpukmeans.bench import runner

    events = []
    real_timed = runner.timed
    monkeypatch.setattr(runner, "timed", lambda *a: events.append("call") or real_timed(*a))
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: events.append(seconds))
    workloads = [Workload("blobs-tiny", "sweep_k", "blobs", 500, 4, 3, n_iter=3)]
    settings = Settings(repeats=1, measure_seconds=1.0, floor_bytes=1 << 20, sgemm_size=64,
                        plots=False, warm_up_fits=0, settle_seconds=0.125)
    run_suite("tiny", contestants=["sklearn-lloyd", "numpy-naive"], settings=settings,
              out_dir=tmp_path, name="s", workloads=workloads, log=lambda *a: None)
    # (time.sleep is the time module's: other threads' sleeps of other lengths pass by.)
    ours = [event for event in events if event in ("call", 0.125)]
    assert ours.count("call") >= 4
    assert ours == ["call", 0.125] * ours.count("call")
    assert "pause of 0.125 s" in (tmp_path / "s.md").read_text()


def test_gpu_contestants_are_marked_untested_and_skip_cleanly():
    _, report = select_contestants(device="gpu")
    assert {r["key"] for r in report} == {
        "gpukmeans-gpu", "faiss-gpu", "torch-cuda", "fast-pytorch-kmeans-cuda", "cupy-naive"}
    for r in report:
        assert r["untested"] and r["device"] == "gpu"
        assert r["available"] or r["reason"]


def test_budget_spent_still_writes_valid_reports(tmp_path, fake_mnist, capsys):
    code = bench.main(["--profile", "tiny", "--contestants", "sklearn-lloyd", "--max-seconds", "0",
                       "--mnist", str(fake_mnist), "--out", str(tmp_path), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out == ""  # --quiet: no table either
    report = json.loads((tmp_path / "harness-tiny.json").read_text())
    assert all(r["status"] != "ok" for r in report["results"])
    assert {s["workload"] for s in report["skipped_workloads"]} == {
        w.name for w in profile_workloads("tiny")}
    assert "budget" in (tmp_path / "harness-tiny.md").read_text()


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    workloads = [Workload(f"blobs-k{k}", "sweep_k", "blobs", 400, 4, k, n_iter=2)
                 for k in (2, 4)]
    settings = Settings(repeats=1, measure_seconds=0.5, floor_bytes=1 << 20, sgemm_size=64)
    result = run_suite("tiny", contestants=["sklearn-lloyd", "numpy-naive"],
                       settings=settings, out_dir=tmp_path, name="p",
                       workloads=workloads, log=lambda *a: None)
    assert "p-sweep_k.png" in result["files"]
    assert (tmp_path / "p-sweep_k.png").read_bytes()[:4] == b"\x89PNG"


def _fit_record(workload, group, key, seconds):
    library, device = {"gpukmeans-cpu": ("gpukmeans", "cpu"), "gpukmeans-gpu": ("gpukmeans", "gpu"),
                       "sklearn-lloyd": ("scikit-learn", "cpu"), "numpy-naive": ("numpy", "cpu")}[key]
    return {"workload": workload, "group": group, "contestant": key, "library": library,
            "device": device, "benchmark": "time_fit", "status": "ok",
            "per_iter_s": {"median": seconds}}


def test_each_contestant_keeps_its_colour_in_every_plot(tmp_path, monkeypatch):
    """A contestant missing from one plot must not shift the others' colours there."""
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    seen = {}  # plot file -> {contestant: (colour, marker)}, read from the artists drawn
    save = Figure.savefig

    def record(fig, path, *args, **kwargs):
        (ax,) = fig.axes
        drawn = {line.get_label(): (to_hex(line.get_color()), line.get_marker())
                 for line in ax.get_lines() if not line.get_label().startswith("floor")}
        drawn.update({bars.get_label(): (to_hex(bars.patches[0].get_facecolor()), None)
                      for bars in ax.containers})
        seen[pathlib.Path(path).name] = drawn
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    shape = dict(n_features=4, n_clusters=8, dataset="blobs")
    result = {
        "environment": {"cpu": {"model": "test"}, "threads": 1, "cores_available": 1},
        "workloads": [dict(shape, name="n1", group="sweep_n", n_samples=100),
                      dict(shape, name="n2", group="sweep_n", n_samples=1000),
                      dict(shape, name="k", group="sweep_k", n_samples=100, n_clusters=16),
                      dict(shape, name="m", group="mnist", n_samples=100)],
        "results": [_fit_record("n1", "sweep_n", key, 1e-3)
                    for key in ("gpukmeans-cpu", "numpy-naive", "sklearn-lloyd")]
                   + [_fit_record("n2", "sweep_n", key, 1e-2)
                      for key in ("gpukmeans-cpu", "numpy-naive", "sklearn-lloyd")]
                   # gpukmeans skipped on sweep_k: numpy-naive would become the first colour
                   + [_fit_record("k", "sweep_k", key, 1e-3) for key in ("sklearn-lloyd", "numpy-naive")]
                   + [_fit_record("m", "mnist", key, 1e-3)
                      for key in ("numpy-naive", "gpukmeans-gpu", "gpukmeans-cpu")],
    }
    written = plots.write_plots(result, tmp_path, "p")
    assert sorted(p.name for p in written) == sorted(seen) == [
        "p-per-library.png", "p-sweep_k.png", "p-sweep_n.png"]
    colours, markers = {}, {}
    for drawn in seen.values():
        for key, (colour, marker) in drawn.items():
            colours.setdefault(key, set()).add(colour)
            if marker is not None:  # bars have none
                markers.setdefault(key, set()).add(marker)
    assert set(colours) == {"gpukmeans-cpu", "gpukmeans-gpu", "numpy-naive", "sklearn-lloyd"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert all(len(m) == 1 for m in markers.values()), markers
    assert len({c.pop() for c in colours.values()}) == len(colours)  # and no two alike


def test_list_and_unknown_contestant(capsys):
    assert bench.main(["--list", "--contestants", "sklearn-lloyd,numpy-naive"]) == 0
    assert "sklearn-lloyd" in capsys.readouterr().out
    assert bench.main(["--contestants", "nope", "--quiet"]) == 2


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_cpu_mnist_quick(tmp_path, fake_mnist):
    script = _load_script("bench_cpu_mnist")
    code = script.main(["--quick", "--mnist", str(fake_mnist), "--out", str(tmp_path),
                        "--n-samples", "300", "--repeats", "1"])
    assert code == 0
    report = json.loads((tmp_path / "cpu-mnist-quick.json").read_text())
    names = [row["name"] for row in report["summary"]]
    assert names[:4] == ["k-means++ k=10", "k-means++ k=32", "iteration k=10", "iteration k=32"]
    for row in report["summary"]:
        assert row["ratio"] > 0 and row["gpukmeans_x_floor"] > 0
    for k in (10, 32):
        section = report["sections"][f"iteration k={k}"]
        assert set(section["n_iter"]) == {"sklearn", "gpukmeans"}
        assert np.isfinite(section["inertia_rel_diff"])
    assert "| measurement |" in (tmp_path / "cpu-mnist-quick.md").read_text()


def test_bench_exact_ties_runs_each_workload_on_each_engine(tmp_path, fake_mnist):
    from gpukmeans import _cpu_small

    limits = {name: getattr(_cpu_small, name) for name in ("MAX_WORK", "MAX_ELEMENTS")}
    script = _load_script("bench_exact_ties")
    code = script.main(["--quick", "--scale", "0.02", "--repeats", "1", "--mnist",
                        str(fake_mnist), "--out", str(tmp_path)])
    assert code == 0
    assert {name: getattr(_cpu_small, name) for name in limits} == limits  # restored
    rows = json.loads((tmp_path / "exact-ties-quick.json").read_text())["rows"]
    assert [(r["workload"], r["engine"]) for r in rows] == [
        (name, engine) for name in script.WORKLOADS for engine in ("numpy", "numba")]
    for row in rows:
        assert row["ratio"] > 0 and 0 <= row["labels_differing"] <= row["n_samples"]
    assert "| workload | engine |" in (tmp_path / "exact-ties-quick.md").read_text()


def test_harness_script_wraps_the_same_core(tmp_path, fake_mnist):
    harness = _load_script("harness")
    code = harness.main(["--profile", "tiny", "--contestants", "sklearn-lloyd", "--repeats", "0",
                         "--mnist", str(fake_mnist), "--out", str(tmp_path), "--no-plots",
                         "--quiet"])
    assert code == 0
    assert json.loads((tmp_path / "harness-tiny.json").read_text())["profile"] == "tiny"


def test_bad_numbers_and_out_are_refused_before_the_run(tmp_path, capsys):
    """Negative counts and budgets, no threads, and an --out that is a file are usage
    errors before any work (--repeats -1 and an --out file had failed after the whole
    run, its results lost: a helper's finds)."""
    for option, value in (("--repeats", "-1"), ("--threads", "0"), ("--max-seconds", "-5"),
                          ("--max-seconds", "nan"), ("--slow-cap", "-1")):
        with pytest.raises(SystemExit) as exit_:
            bench.main(["--profile", "tiny", option, value, "--quiet"])
        assert exit_.value.code == 2
        assert f"argument {option}: expected at least" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    for out in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        assert bench.main(["--profile", "tiny", "--out", str(out), "--quiet"]) == 2
        assert f"--out {out} " in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == ""
    for option in ("--out", "--mnist"):  # an empty --out was the current folder
        with pytest.raises(SystemExit):
            bench.main(["--profile", "tiny", option, "", "--quiet"])
        assert "expected a path, got an empty argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "1.5"])
    assert "argument --repeats: expected an integer, got '1.5'" in capsys.readouterr().err
    # A run that stops before any work makes no folder.
    assert bench.main(["--profile", "tiny", "--workloads", "nothing-*", "--out",
                       str(tmp_path / "new"), "--quiet"]) == 2
    assert not (tmp_path / "new").exists()


def test_workloads_option_runs_the_named_workloads_only(tmp_path, fake_mnist, capsys):
    code = bench.main(["--profile", "tiny", "--contestants", "numpy-naive", "--repeats", "0",
                       "--workloads", "blobs-*-k16", "--mnist", str(fake_mnist),
                       "--out", str(tmp_path), "--no-plots", "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "harness-tiny.json").read_text())
    assert {r["workload"] for r in report["results"]} == {"blobs-n2000-d8-k16"}
    assert bench.main(["--profile", "tiny", "--workloads", "nothing-*", "--quiet"]) == 2
    assert "no workload of the tiny profile matches" in capsys.readouterr().err


def test_bench_sparse_quick(tmp_path, monkeypatch):
    script = _load_script("bench_sparse")
    monkeypatch.setitem(script.QUICK, "n_samples", 400)
    monkeypatch.setitem(script.QUICK, "n_features", 300)
    monkeypatch.setitem(script.QUICK, "text_packages", ("json", "email"))  # the stdlib's
    monkeypatch.setitem(script.QUICK, "repeats", 1)
    script.main(["--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "sparse-quick.json").read_text())
    rows = report["rows"]
    assert [(r["workload"], r["measure"]) for r in rows] == [
        ("zipf-tfidf", "per iteration"), ("zipf-tfidf", "end to end"),
        ("docstrings", "per iteration"), ("docstrings", "end to end")]
    for row in rows:
        assert row["same_labels"] and row["ratio"] > 0
        assert row["n_iter"]["gpukmeans"] == row["n_iter"]["sklearn"]
    assert "| workload | k |" in (tmp_path / "sparse-quick.md").read_text()


def test_bench_gpu_sparse_runs_on_the_emulated_device(tmp_path, emulated_device):
    """The GPU sparse benchmark's code, on the emulated device with scipy.sparse standing
    in for cuSPARSE: the script gpu_check.sh runs once per device session must not fail
    there for a reason this machine can catch."""
    script = _load_script("bench_gpu_sparse")
    rows = script.main(["--emulated", "--out", str(tmp_path)])
    assert [(r["dtype"], r["k"]) for r in rows] == [("float64", 5), ("float32", 5)]
    for row in rows:
        # Both E-steps find the nearest centers; both M-steps sum the same rows.
        assert row["labels_agree"] == 1.0
        assert row["m_step_weights_equal"]
        assert row["m_step_sums_max_rel_diff"] < (1e-12 if row["dtype"] == "float64" else 1e-6)
        assert row["e_step_ms"]["ours"] > 0 and row["fit_ms_per_iter"] > 0
    (report,) = tmp_path.glob("gpu-sparse-emulated-*.md")
    assert "EMULATED" in report.read_text()


def test_gpu_loop_overhead_runs_on_the_emulated_device(emulated_device, capsys):
    """The script that asks whether the GPU loop is host-bound, on the emulated device:
    both E-step paths timed, the rule's marked, the rule restored after."""
    from gpukmeans import _gpu

    rule = _gpu.choose_assign_path
    rows = _load_script("gpu_loop_overhead").main(["--emulated"])
    assert [(row["k"], row["path"]) for row in rows] == [(3, "fused"), (3, "gemm")]
    assert sum(row["rule"] for row in rows) == 1
    assert all(row[key] > 0 for row in rows for key in ("device", "host", "e_step", "m_step"))
    assert _gpu.choose_assign_path is rule
    assert "EMULATED" in capsys.readouterr().out


def test_fit_floor_counts_the_products_and_reads_of_scikit_learns_algorithm():
    """MNIST, k=100, 163 steps (a real run's): (1,024 x 163 + 70,000) x 100 batch and
    final-label distances, and k-means++ on 3,072 samples (1 + 99 x 6 distances each),
    each 784 multiply-adds; the data read twice and each batch once."""
    script = _load_script("bench_minibatch")
    rates = {"ceiling": {"gemm_gflops": {"float32": 100.0, "float64": 50.0},
                         "bandwidth_gbps": 10.0}}
    floor = script.fit_floor(70_000, 784, 100, 4, 163, rates)
    flops = 2 * 784 * ((1024 * 163 + 70_000) * 100 + 3072 * (1 + 99 * 6))
    assert floor["gflop"] == pytest.approx(flops / 1e9)
    assert floor["flop_s"] == pytest.approx(flops / 100e9)
    read = (2 * 70_000 + 1024 * 163) * 784 * 4
    assert floor["read_s"] == pytest.approx(read / 10e9)
    assert floor["floor_s"] == max(floor["flop_s"], floor["read_s"])
    as_float64 = script.fit_floor(70_000, 784, 100, 8, 163, rates)
    assert as_float64["flop_s"] == pytest.approx(2 * floor["flop_s"])
    # Fewer samples than init_size: k-means++ runs on all of them.
    small = script.fit_floor(800, 10, 4, 4, 5, rates)
    assert small["gflop"] == pytest.approx(
        2 * 10 * ((1024 * 5 + 800) * 4 + 800 * (1 + 3 * 3)) / 1e9)
    # The batches' random rows at their gather rate, never above the copy bandwidth.
    gathered = script.fit_floor(70_000, 784, 100, 4, 163, rates, batch_gbps=2.0)
    assert gathered["read_s"] == pytest.approx(
        2 * 70_000 * 784 * 4 / 10e9 + 1024 * 163 * 784 * 4 / 2e9)
    assert gathered["read_gb"] == pytest.approx(floor["read_gb"])
    assert script.fit_floor(70_000, 784, 100, 4, 163, rates, batch_gbps=50.0)["read_s"] \
        == pytest.approx(floor["read_s"])


def test_bench_minibatch_quick_reports_each_fit_against_its_floor(tmp_path, fake_mnist,
                                                                   monkeypatch):
    script = _load_script("bench_minibatch")
    # The quick run's blobs, smaller still: this test checks the report, not the speed.
    monkeypatch.setitem(script.QUICK, "blobs", (20_000, 8))
    script.main(["--quick", "--mnist", str(fake_mnist), "--out", str(tmp_path),
                 "--threads", "2"])
    report = json.loads((tmp_path / "minibatch-quick.json").read_text())
    rates = {r["threads"]: r for r in report["machine_rates"]}
    assert set(rates) == {1, 2}  # one thread is always measured: the ceilings need it
    for threads, r in rates.items():
        for dtype in ("float32", "float64"):
            ceiling = r["ceiling"]["gemm_gflops"][dtype]
            assert ceiling >= r["gemm_gflops"][dtype]["max"]
            assert ceiling >= threads * rates[1]["gemm_gflops"][dtype]["max"] * (1 - 1e-12)
    assert {r["dataset"] for r in report["results"]} == {"MNIST", "blobs"}
    for r in report["results"]:
        assert r["threads"] == 2
        floor = r["floor"]
        assert 0 < floor["floor_s"] == max(floor["flop_s"], floor["read_s"])
        assert 0 < floor["batch_gbps"] <= rates[2]["ceiling"]["bandwidth_gbps"]
        third = r["time_s"]["sklearn"]["median"] / 3
        assert floor["goal_reachable"]["wall"] == (floor["floor_s"] <= third)
        assert floor["goal_reachable"]["cpu"] == (2 * floor["floor_s"] <= r["cpu_s"]["sklearn"] / 3)
    markdown = (tmp_path / "minibatch-quick.md").read_text()
    assert "| floor s (GFLOP, GB) | 3x reachable (wall / CPU) |" in markdown
    for r in report["results"]:
        line = (f"- {r['dataset']} {r['n_samples']:,} x {r['n_features']} {r['dtype']}, "
                f"k={r['n_clusters']}, 2 thread(s): ")
        assert line in markdown


def test_bench_minibatch_no_blobs_measures_mnist_only(tmp_path, fake_mnist):
    script = _load_script("bench_minibatch")
    script.main(["--quick", "--no-blobs", "--mnist", str(fake_mnist), "--out", str(tmp_path),
                 "--threads", "1"])
    report = json.loads((tmp_path / "minibatch-quick.json").read_text())
    assert report["results"] and {r["dataset"] for r in report["results"]} == {"MNIST"}
    assert "Blobs: not run (`--no-blobs`)." in (tmp_path / "minibatch-quick.md").read_text()


def test_every_shape_table_divides_the_marginal_iterations():
    """The README's every-shape table: besides the per-iteration times (fixed costs in),
    our marginal cost of an iteration over the best peer's, and none from runs that did
    not measure it."""
    spec = importlib.util.spec_from_file_location(
        "every_shape_table", REPO / "benchmarks" / "every_shape_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def fit(contestant, n_iter, seconds, marginal=None):
        record = {"workload": "w", "contestant": contestant, "benchmark": "time_fit",
                  "status": "ok", "n_iter": n_iter, "time_s": {"samples": [seconds]},
                  "per_iter_s": {"samples": [seconds / n_iter]}}
        if marginal is not None:
            record["marginal_per_iter_s"] = marginal
        return record

    workload = {"name": "w", "dataset": "blobs", "n_samples": 1000, "n_features": 2,
                "n_clusters": 3, "dtype": "float32"}
    # We stop after 2 iterations, faiss runs 10: per iteration it looks 2.5x faster, an
    # iteration of ours costs half of one of its.
    run = {"workloads": [workload], "results": [
        fit("gpukmeans-cpu", 2, 0.010, marginal=0.001), fit("faiss-cpu", 10, 0.020, 0.002),
        fit("sklearn-lloyd", 2, 0.030, marginal=-0.001)]}  # noise: left out
    def marginal_cell(runs):
        header, _, row = module.table(runs).splitlines()
        cells = dict(zip(header.split(" | "), row.split(" | ")))
        assert cells["ours / best peer (pooled)"] == "2.50x (faiss)"
        return cells["marginal, ours / best"]

    assert marginal_cell([run]) == "0.50x (faiss; ours 1 ms)"
    for record in run["results"]:
        record.pop("marginal_per_iter_s", None)
    assert marginal_cell([run]) == "—"


def test_every_shape_table_shows_the_default_fits_iterations():
    """The default-fit cell: the median over the seeds of the whole fits, and of the
    iterations each library's own seeding led to (ours, then the best peer's)."""
    spec = importlib.util.spec_from_file_location(
        "every_shape_table", REPO / "benchmarks" / "every_shape_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def record(contestant, benchmark, n_iter, seconds, seed=None):
        return {"workload": "w", "contestant": contestant, "benchmark": benchmark,
                "status": "ok", "n_iter": n_iter, "time_s": {"samples": [seconds]},
                "per_iter_s": {"samples": [seconds / n_iter]}, "seed": seed}

    workload = {"name": "w", "dataset": "blobs", "n_samples": 1000, "n_features": 2,
                "n_clusters": 3, "dtype": "float32"}
    results = [record("gpukmeans-cpu", "time_fit", 10, 0.01),
               record("sklearnex", "time_fit", 10, 0.02)]
    for seed, (ours, theirs) in enumerate([((2, 0.010), (2, 0.008)), ((17, 0.050), (2, 0.009)),
                                           ((2, 0.011), (9, 0.030))]):
        results += [record("gpukmeans-cpu", "time_fit_defaults", *ours, seed=seed),
                    record("sklearnex", "time_fit_defaults", *theirs, seed=seed)]
    header, _, row = module.table([{"workloads": [workload], "results": results}]).splitlines()
    cells = dict(zip(header.split(" | "), row.split(" | ")))
    # Medians: ours 0.011 s and 2 iterations, sklearnex's 0.009 s and 2.
    assert cells["default fit, ours / best"] == "1.22x (sklearnex; iterations 2 / 2)"


def _git_checkout_or_skip():
    """The repository's root; the test is skipped outside a git checkout, whose
    revisions ab_commits.py exports."""
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                      capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    return root


def test_ab_commits_times_a_git_revision_beside_the_working_tree(tmp_path, capsys):
    """benchmarks/ab_commits.py exports the base revision's package under another name,
    imports it beside ``gpukmeans`` and alternates the two on the same seeds."""
    import re
    import sys

    _git_checkout_or_skip()
    script = _load_script("ab_commits")
    script.main(["--base", "HEAD", "kmeans++", "400", "3", "5", "--repeats", "2",
                 "--cache", str(tmp_path)])
    base = sys.modules[script.BASE_PACKAGE]
    assert pathlib.Path(base.__file__).is_relative_to(tmp_path)
    out = capsys.readouterr().out
    assert re.search(r"new / base: \d+\.\d\d; the same result in \d of 3 seeds", out)


def test_ab_commits_takes_mnist_in_place_of_blobs(tmp_path, capsys):
    """``--mnist DIR``: the first n_samples images of the MNIST files in DIR (here the
    test suite's subset); a n_features other than 784 is refused, naming the option."""
    root = _git_checkout_or_skip()
    script = _load_script("ab_commits")
    mnist = str(root / "tests" / "data" / "mnist")
    script.main(["--base", "HEAD", "kmeans++", "300", "784", "4", "--repeats", "2",
                 "--cache", str(tmp_path), "--mnist", mnist])
    out = capsys.readouterr().out
    assert "kmeans++ MNIST 300 x 784 float32, k=4" in out
    assert "the same result in 3 of 3 seeds" in out
    with pytest.raises(SystemExit):
        script.main(["--base", "HEAD", "kmeans++", "300", "32", "4", "--mnist", mnist])
    assert "--mnist: MNIST has 784 features, not n_features=32" in capsys.readouterr().err
