"""The gpukmeans command: demo, fit, info, bench, and its one-line errors (exit status 2)."""

import json
import pathlib
import shutil
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

from gpukmeans import _cli
from gpukmeans._device import gpu_available
from command_checks import run

SUBSET = pathlib.Path(__file__).parent / "data" / "mnist"
pytestmark = pytest.mark.usefixtures("no_user_mnist")


def error_prefix(argv):
    """The one prefix of a user error: the subcommand's name (demo when none is given)."""
    argv = [str(arg) for arg in argv]
    if not argv or argv[0].startswith("-"):
        return "gpukmeans demo: error: "
    return f"gpukmeans {argv[0]}: error: " if argv[0] in ("demo", "fit", "info", "bench") else "gpukmeans: error: "


def assert_usage_error(capsys, argv, match):
    status, out, err = run(capsys, *argv)
    assert status == 2, (out, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(error_prefix(argv)) and err.count("error:") == 1, err
    assert match in err, err
    return err


def assert_picture(path, size=None):
    """The PNG exists, has the expected (width, height), and is not blank."""
    image = pytest.importorskip("matplotlib.image").imread(path)
    height, width = image.shape[:2]
    if size is not None:
        assert (width, height) == size
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, f"{path} is nearly uniform"
    assert len(np.unique(np.round(rgb, 2), axis=0)) > 20, f"{path} has too few colours"


def nothing_left(directory):
    """No staging directory left behind in ``directory``."""
    return not list(pathlib.Path(directory).glob(".gpukmeans-*"))


@pytest.fixture
def blobs(tmp_path):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=120, centers=3, n_features=3, random_state=0)
    return X, y


# --- demo ----------------------------------------------------------------------------------


@pytest.fixture
def small_mnist(tmp_path):
    """The first 1,000 training and 200 test images of the bundled subset, as IDX gzip files."""
    import gzip
    import struct

    directory = tmp_path / "small_mnist"
    directory.mkdir()
    for prefix, n in (("train", 1000), ("t10k", 200)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{prefix}-{kind}-ubyte"
            raw = gzip.decompress((SUBSET / f"{name}.gz").read_bytes())
            n_dims = raw[3]
            shape = struct.unpack(f">{n_dims}I", raw[4 : 4 + 4 * n_dims])
            item_size = int(np.prod(shape[1:], dtype=np.int64))
            header = raw[:4] + struct.pack(f">{n_dims}I", n, *shape[1:])
            body = raw[4 + 4 * n_dims :][: n * item_size]
            (directory / f"{name}.gz").write_bytes(gzip.compress(header + body, compresslevel=1))
    return directory


def test_demo_with_mnist_writes_table_and_pictures(capsys, tmp_path, small_mnist):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "demo"
    status, out, err = run(capsys, "demo", "--device", "cpu", "--mnist", small_mnist, "--out", out_dir, "--no-progress")
    assert status == 0, err
    assert "blobs: 4 centers found on cpu" in out
    header = next(line for line in out.splitlines() if line.startswith("data"))
    assert header.split() == ["data", "samples", "features", "k", "device", "time", "(s)", "inertia", "ARI"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["blobs"], ["digits"], ["MNIST"])}
    assert rows["blobs"][1:5] == ["100", "2", "4", "cpu"] and float(rows["blobs"][-1]) > 0.95
    assert rows["digits"][2:6] == ["1797", "64", "10", "cpu"] and float(rows["digits"][-1]) > 0.4
    assert rows["MNIST"][2:6] == ["1200", "784", "20", "cpu"] and float(rows["MNIST"][-1]) > 0.2
    assert sorted(p.name for p in out_dir.iterdir() if p.name != _cli.MANIFEST) == [
        "blobs_clusters.png", "digits_centroids.png", "mnist_centroids.png",
    ]
    assert_picture(out_dir / "blobs_clusters.png", (640, 520))
    assert_picture(out_dir / "digits_centroids.png", (650, 310))  # 2 rows of 5
    assert_picture(out_dir / "mnist_centroids.png", (650, 570))  # 4 rows of 5
    assert nothing_left(tmp_path)


def test_demo_is_the_default_and_skips_missing_mnist(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "--device", "cpu", "--no-plots", "--no-progress")
    assert status == 0, err
    assert "MNIST part skipped" in err and "--mnist PATH" in err
    assert "blobs" in out and "digits 8x8" in out and "MNIST" not in out
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or list(tmp_path.iterdir()) == []


def test_demo_errors(capsys, tmp_path):
    assert_usage_error(capsys, ["demo", "--device", "tpu"], "invalid choice: 'tpu'")
    err = assert_usage_error(capsys, ["demo", "--mnist", tmp_path / "nowhere", "--device", "cpu"], "--mnist")
    assert "nowhere" in err
    assert not (tmp_path / "gpukmeans-demo").exists()
    (tmp_path / "a_file").write_text("")
    assert_usage_error(capsys, ["demo", "--device", "cpu", "--out", tmp_path / "a_file"], "not a directory")


@pytest.mark.skipif(gpu_available(), reason="a GPU is usable here")
def test_gpu_without_gpu_is_a_one_line_error(capsys):
    assert_usage_error(capsys, ["demo", "--device", "gpu"], "no GPU is usable")


def test_python_dash_m_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gpukmeans", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for subcommand in ("demo", "fit", "info", "bench"):
        assert subcommand in result.stdout


def test_console_script_installed():
    script = shutil.which("gpukmeans", path=str(pathlib.Path(sys.executable).parent))
    if script is None:
        pytest.skip("gpukmeans is not installed in this environment (source checkout)")
    result = subprocess.run([script, "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "kernel cache" in result.stdout


# --- fit -----------------------------------------------------------------------------------


def check_fit_outputs(out_dir, n_samples, n_features, k, feature_names=None):
    labels = np.load(out_dir / "labels.npy")
    centers = np.load(out_dir / "centers.npy")
    assert labels.shape == (n_samples,) and set(labels.tolist()) == set(range(k))
    assert centers.shape == (k, n_features)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["n_samples"] == n_samples and summary["n_features"] == n_features
    assert summary["n_clusters"] == k and summary["device"] in ("cpu", "gpu")
    assert summary["inertia"] > 0 and sum(summary["cluster_sizes"]) == n_samples
    if feature_names is not None:
        assert summary["feature_names"] == feature_names
        assert (out_dir / "centers.csv").read_text().splitlines()[0] == ",".join(feature_names)
    np.testing.assert_array_equal(np.loadtxt(out_dir / "labels.csv", skiprows=1, dtype=int), labels)
    return summary


def test_fit_npy(capsys, tmp_path, blobs):
    X, _ = blobs
    np.save(tmp_path / "points.npy", X)
    out_dir = tmp_path / "result"
    status, out, err = run(capsys, "fit", tmp_path / "points.npy", "-k", 3, "--device", "cpu", "--out", out_dir, "--no-progress")
    assert status == 0, err
    assert "points.npy" in out and "cluster sizes: " in out and f"wrote {out_dir / 'summary.json'}" in out
    summary = check_fit_outputs(out_dir, 120, 3, 3)
    assert summary["params"]["random_state"] == 8  # the notebook's seed is the default


def test_fit_default_out_dir_and_progress(capsys, tmp_path, blobs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("points.npy", blobs[0])
    status, _, err = run(capsys, "fit", "points.npy", "-k", "3", "--device", "cpu", "--progress")
    assert status == 0
    assert "k-means run 1/1" in err and "inertia" in err
    check_fit_outputs(tmp_path / "points-kmeans", 120, 3, 3)


def test_fit_npz_with_key(capsys, tmp_path, blobs):
    X, y = blobs
    np.savez(tmp_path / "several.npz", points=X, truth=y)
    assert_usage_error(capsys, ["fit", tmp_path / "several.npz", "-k", 3], "choose one with --key")
    assert_usage_error(capsys, ["fit", tmp_path / "several.npz", "-k", 3, "--key", "nope"], "has no array 'nope'")
    # A scipy.sparse matrix saved with save_npz is said to be one (it was "holds several
    # arrays (indices, indptr, format, shape, data); choose one with --key").
    import scipy.sparse

    scipy.sparse.save_npz(tmp_path / "sparse.npz", scipy.sparse.csr_matrix(X))
    assert_usage_error(capsys, ["fit", tmp_path / "sparse.npz", "-k", 3],
                       "holds a scipy.sparse matrix")
    status, _, err = run(capsys, "fit", tmp_path / "several.npz", "-k", 3, "--key", "points", "--device", "cpu", "--out", tmp_path / "r")
    assert status == 0, err
    check_fit_outputs(tmp_path / "r", 120, 3, 3)


def test_fit_csv_with_and_without_header(capsys, tmp_path, blobs):
    X, _ = blobs
    np.savetxt(tmp_path / "header.csv", X, delimiter=",", header="a,b,c", comments="")
    np.savetxt(tmp_path / "bare.csv", X, delimiter=",")
    for name, names in (("header", ["a", "b", "c"]), ("bare", ["x0", "x1", "x2"])):
        status, _, err = run(capsys, "fit", tmp_path / f"{name}.csv", "-k", 3, "--device", "cpu", "--out", tmp_path / name)
        assert status == 0, err
        check_fit_outputs(tmp_path / name, 120, 3, 3, feature_names=names)


def test_fit_csv_without_pandas(capsys, tmp_path, blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    X, _ = blobs
    np.savetxt(tmp_path / "header.csv", X, delimiter=",", header="a,b,c", comments="")
    status, _, err = run(capsys, "fit", tmp_path / "header.csv", "-k", 3, "--device", "cpu", "--out", tmp_path / "r")
    assert status == 0, err
    check_fit_outputs(tmp_path / "r", 120, 3, 3, feature_names=["a", "b", "c"])
    (tmp_path / "text.csv").write_text("a,name\n1,x\n2,y\n")
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,nan\n")
    assert_usage_error(capsys, ["fit", tmp_path / "text.csv", "-k", 1], "column 'name' is not numeric")


def assert_clustered(out_dir, X):
    """The results are those of clustering exactly X: each centre is the mean of its rows."""
    labels = np.load(out_dir / "labels.npy")
    centers = np.load(out_dir / "centers.npy")
    assert centers.shape[1] == X.shape[1] and len(labels) == len(X)
    expected = np.array([X[labels == j].mean(axis=0) for j in range(len(centers))])
    np.testing.assert_allclose(centers, expected, rtol=1e-7, atol=1e-9)


def without_pandas(monkeypatch, pandas):
    if not pandas:
        monkeypatch.setitem(sys.modules, "pandas", None)


READERS = pytest.mark.parametrize("pandas", [True, False], ids=["pandas", "csv-module"])


@READERS
@pytest.mark.parametrize("columns", [["a", "b", "c"], None], ids=["named", "default-names"])
def test_fit_csv_leaves_out_the_index_pandas_writes(capsys, tmp_path, blobs, monkeypatch, pandas, columns):
    pd = pytest.importorskip("pandas")
    X, _ = blobs
    pd.DataFrame(X, columns=columns).to_csv(tmp_path / "frame.csv")  # the index first, unnamed
    pd.read_csv(tmp_path / "frame.csv").to_csv(tmp_path / "again.csv", index=False)  # "Unnamed: 0"
    without_pandas(monkeypatch, pandas)
    names = columns or ["0", "1", "2"]
    for data in ("frame.csv", "again.csv"):
        out_dir = tmp_path / data.split(".")[0]
        status, _, err = run(capsys, "fit", tmp_path / data, "-k", 3, "--device", "cpu", "--out", out_dir)
        assert status == 0, err
        assert err.startswith("gpukmeans fit: note: the first column") and len(err.splitlines()) == 1, err
        assert "row index" in err and "0 to 119" in err
        summary = check_fit_outputs(out_dir, 120, 3, 3, feature_names=names)
        assert summary["index_column_dropped"] is True
        assert_clustered(out_dir, X)


@READERS
def test_fit_csv_keeps_a_first_column_that_is_not_a_plain_index(capsys, tmp_path, blobs, monkeypatch, pandas):
    X, _ = blobs
    steps = np.arange(120.0)[:, None]
    shuffled = np.random.default_rng(0).permutation(120)[:, None]
    np.savetxt(tmp_path / "named.csv", np.hstack([steps, X]), delimiter=",", header="step,a,b,c", comments="")
    np.savetxt(tmp_path / "shuffled.csv", np.hstack([shuffled, X]), delimiter=",", header=",a,b,c", comments="")
    np.savetxt(tmp_path / "no_header.csv", np.hstack([steps, X]), delimiter=",")
    without_pandas(monkeypatch, pandas)
    for data, first, kept in (("named", "step", steps), ("shuffled", "", shuffled), ("no_header", "x0", steps)):
        status, _, err = run(capsys, "fit", tmp_path / f"{data}.csv", "-k", 3, "--device", "cpu",
                             "--out", tmp_path / data)
        assert status == 0 and "note" not in err, err
        summary = check_fit_outputs(tmp_path / data, 120, 4, 3)
        assert summary["feature_names"][0] == first and summary["index_column_dropped"] is False
        assert_clustered(tmp_path / data, np.hstack([kept, X]))
    # A header of numbers with its first field empty is pandas' only when an index follows.
    (tmp_path / "gap.csv").write_text(",1,2\n5,6,7\n8,9,10\n")
    assert_usage_error(capsys, ["fit", tmp_path / "gap.csv", "-k", 1], "line 1 has an empty field")


@READERS
def test_a_broken_line_after_pandas_index_header_is_the_one_named(capsys, tmp_path, monkeypatch, pandas):
    """The header's empty first field heads the index: it is not the line to blame."""
    (tmp_path / "frame.csv").write_text(",0,1\n0,1.5,2\n1,3,4,9\n2,5,6\n")
    (tmp_path / "gap.csv").write_text(",a,b\n0,1.5,\n1,3,4\n")
    without_pandas(monkeypatch, pandas)
    assert_usage_error(capsys, ["fit", tmp_path / "frame.csv", "-k", 1], "line 3 has 4 fields, not 3")
    assert_usage_error(capsys, ["fit", tmp_path / "gap.csv", "-k", 1], "line 2 has an empty field")


@READERS
def test_fit_columns_by_name_or_position(capsys, tmp_path, blobs, monkeypatch, pandas):
    X, y = blobs
    with open(tmp_path / "table.csv", "w") as fh:
        fh.write("a,b,c,kind\n")
        for row, label in zip(X, y):
            fh.write(",".join(map(str, row.tolist())) + f",blob {label}\n")  # a text column, not selected
    np.save(tmp_path / "points.npy", X)
    without_pandas(monkeypatch, pandas)
    cases = [("table.csv", "a,c", [0, 2], ["a", "c"]), ("table.csv", "2,0", [2, 0], ["c", "a"]),
             ("table.csv", " b , 0", [1, 0], ["b", "a"]), ("points.npy", "1,x2", [1, 2], ["x1", "x2"])]
    for index, (data, columns, positions, names) in enumerate(cases):
        out_dir = tmp_path / f"r{index}"
        status, _, err = run(capsys, "fit", tmp_path / data, "-k", 3, "--device", "cpu", "--out", out_dir,
                             "--columns", columns)
        assert status == 0, err
        summary = check_fit_outputs(out_dir, 120, len(names), 3, feature_names=names)
        assert summary["params"]["columns"] == columns
        assert_clustered(out_dir, X[:, positions])
    table = tmp_path / "table.csv"
    for columns, match in [("a,z", "has no column 'z' (it has 'a', 'b', 'c', 'kind')"),
                           ("a,4", "column 4 is out of range"), ("0,a", "column 'a' is selected twice"),
                           ("a,,b", "an empty item"), ("a,kind", "column 'kind' is not numeric")]:
        err = assert_usage_error(capsys, ["fit", table, "-k", 3, "--columns", columns, "--out", tmp_path / "bad"],
                                 match)
        assert "--columns" in err or "not numeric" in err
        assert not (tmp_path / "bad").exists()
    assert_usage_error(capsys, ["fit", tmp_path / "points.npy", "-k", 3, "--columns", "3"], "column 3 is out of range")


def test_fit_columns_count_after_the_index_and_skip_other_columns_gaps(capsys, tmp_path, blobs):
    pd = pytest.importorskip("pandas")
    X, _ = blobs
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["notes"] = ["" if i % 2 else "seen" for i in range(120)]  # empty fields, not selected
    frame.to_csv(tmp_path / "frame.csv")
    status, _, err = run(capsys, "fit", tmp_path / "frame.csv", "-k", 3, "--device", "cpu",
                         "--out", tmp_path / "r", "--columns", "0,c")
    assert status == 0, err
    check_fit_outputs(tmp_path / "r", 120, 2, 3, feature_names=["a", "c"])
    assert_clustered(tmp_path / "r", X[:, [0, 2]])


@READERS
@pytest.mark.parametrize("sep", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_fit_csv_delimiters_sniffed_or_given(capsys, tmp_path, blobs, monkeypatch, pandas, sep):
    X, _ = blobs
    np.savetxt(tmp_path / "table.csv", X, delimiter=sep, header=sep.join(["a", "b", "c"]), comments="")
    without_pandas(monkeypatch, pandas)
    given = {";": ";", "\t": "tab", "|": "|"}[sep]
    attempts = [["--delimiter", given]] + ([] if sep == "|" else [[], ["--delimiter", "\\t" if sep == "\t" else sep]])
    for index, extra in enumerate(attempts):
        out_dir = tmp_path / f"r{index}"
        status, _, err = run(capsys, "fit", tmp_path / "table.csv", "-k", 3, "--device", "cpu", "--out", out_dir, *extra)
        assert status == 0, (extra, err)
        check_fit_outputs(out_dir, 120, 3, 3, feature_names=["a", "b", "c"])
        assert_clustered(out_dir, X)
    if sep != ",":  # the wrong delimiter given: one column that is not numeric, said as such
        assert_usage_error(capsys, ["fit", tmp_path / "table.csv", "-k", 3, "--delimiter", ","], "is not numeric")


@READERS
def test_fit_tsv_is_tab_separated(capsys, tmp_path, blobs, monkeypatch, pandas):
    X, _ = blobs
    np.savetxt(tmp_path / "table.tsv", X, delimiter="\t", header="a\tb\tc", comments="")
    without_pandas(monkeypatch, pandas)
    status, _, err = run(capsys, "fit", tmp_path / "table.tsv", "-k", 3, "--device", "cpu",
                         "--out", tmp_path / "r")
    assert status == 0, err
    check_fit_outputs(tmp_path / "r", 120, 3, 3, feature_names=["a", "b", "c"])
    assert_clustered(tmp_path / "r", X)


def test_fit_a_directory_says_so(capsys, tmp_path):
    assert_usage_error(capsys, ["fit", tmp_path, "-k", 3], "is a directory")


def test_fit_csv_sniffing_leaves_commas_and_single_columns_alone(capsys, tmp_path, blobs):
    X, _ = blobs
    (tmp_path / "quoted.csv").write_text('name,v\n' + "".join(f'"p;{i}",{x!r}\n' for i, x in enumerate(X[:, 0].tolist())))
    np.savetxt(tmp_path / "single.csv", X[:, :1], header="v", comments="")
    for data in ("quoted", "single"):
        status, _, err = run(capsys, "fit", tmp_path / f"{data}.csv", "-k", 3, "--device", "cpu",
                             "--out", tmp_path / data, *(["--columns", "v"] if data == "quoted" else []))
        assert status == 0, err
        assert_clustered(tmp_path / data, X[:, :1])
    assert_usage_error(capsys, ["fit", tmp_path / "single.csv", "-k", 3, "--delimiter", "ab"],
                       "expected one character")


@READERS
@pytest.mark.parametrize("text", ["a,b\n", "a;b\r\n", "a\tb", '"a","b"\n\n', "a,b\n  \n"])
def test_a_header_only_csv_has_no_rows(capsys, tmp_path, monkeypatch, pandas, text):
    (tmp_path / "header.csv").write_text(text)
    without_pandas(monkeypatch, pandas)
    err = assert_usage_error(capsys, ["fit", tmp_path / "header.csv", "-k", 1, "--out", tmp_path / "r"],
                             "has a header line but no rows")
    assert "numeric" not in err and not (tmp_path / "r").exists()


def test_a_parquet_without_rows_has_no_rows(capsys, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(columns=["a", "b"]).to_parquet(tmp_path / "empty.parquet")  # object columns
    err = assert_usage_error(capsys, ["fit", tmp_path / "empty.parquet", "-k", 1], "has columns ('a', 'b') but no rows")
    assert "numeric" not in err


def test_options_of_another_format_are_errors(capsys, tmp_path, blobs):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    X, _ = blobs
    np.savetxt(tmp_path / "t.csv", X, delimiter=",")
    np.save(tmp_path / "a.npy", X)
    np.savez(tmp_path / "a.npz", X=X)
    pd.DataFrame(X, columns=["u", "v", "w"]).to_parquet(tmp_path / "t.parquet")
    for data, option, value in [("t.csv", "--key", "X"), ("a.npy", "--key", "X"), ("t.parquet", "--key", "X"),
                                ("a.npy", "--delimiter", ";"), ("a.npz", "--delimiter", ";"),
                                ("t.parquet", "--delimiter", ";")]:
        suffix = "." + data.split(".")[1]
        err = assert_usage_error(capsys, ["fit", tmp_path / data, "-k", 3, option, value, "--out", tmp_path / "r"],
                                 f"{option} applies to")
        assert f"not to {suffix}" in err
        assert not (tmp_path / "r").exists()


@pytest.fixture
def stretched_blobs():
    """The notebook's blobs with one axis multiplied by 100 (examples/scaled_axis.py)."""
    from sklearn.datasets import make_blobs

    X, y = make_blobs(centers=4, cluster_std=0.5, random_state=0)
    X[:, 0] *= 100
    return X, y


def test_fit_scale_standardises_and_reports_centres_in_the_data_units(capsys, tmp_path, stretched_blobs,
                                                                       saved_figures):
    from sklearn.cluster import KMeans as SklearnKMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = stretched_blobs
    np.savetxt(tmp_path / "blobs.csv", X, delimiter=",", header="cm,m", comments="")
    runs = {}
    for scale in (False, True):
        out_dir = tmp_path / ("scaled" if scale else "raw")
        status, _, err = run(capsys, "fit", tmp_path / "blobs.csv", "-k", 4, "--device", "cpu", "--out", out_dir,
                             *(["--scale", "--plot"] if scale else []))
        assert status == 0, err
        runs[scale] = np.load(out_dir / "labels.npy")
    assert adjusted_rand_score(y, runs[False]) < 0.9  # the x100 axis decides alone
    assert adjusted_rand_score(y, runs[True]) == 1.0
    pipeline = make_pipeline(StandardScaler(), SklearnKMeans(4, n_init=10, random_state=0)).fit(X)
    assert adjusted_rand_score(pipeline[-1].labels_, runs[True]) == 1.0

    out_dir = tmp_path / "scaled"
    summary = check_fit_outputs(out_dir, 100, 2, 4, feature_names=["cm", "m"])
    assert_clustered(out_dir, X)  # centres in cm and m: the means of the rows, as read
    mean, std = X.mean(axis=0), X.std(axis=0)
    np.testing.assert_allclose(summary["scaler"]["mean"], mean)
    np.testing.assert_allclose(summary["scaler"]["scale"], std)
    assert summary["params"]["scale"] is True
    standardised, labels = (X - mean) / std, runs[True]
    centers = (np.load(out_dir / "centers.npy") - mean) / std
    np.testing.assert_allclose(summary["inertia"], ((standardised - centers[labels]) ** 2).sum(), rtol=1e-6)
    ax = saved_figures[0].axes[0]  # two features: drawn as they are, in their units
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("cm", "m")
    np.testing.assert_array_equal(drawn_points(saved_figures[0])[0], X)


def test_fit_scale_draws_the_principal_axes_of_the_standardised_data(capsys, tmp_path, stretched_blobs,
                                                                     saved_figures):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X, _ = stretched_blobs
    X = np.hstack([X, np.random.default_rng(0).standard_normal((len(X), 1))])
    np.save(tmp_path / "blobs.npy", X)
    status, _, err = run(capsys, "fit", tmp_path / "blobs.npy", "-k", 4, "--device", "cpu", "--out", tmp_path / "r",
                         "--scale", "--plot")
    assert status == 0, err
    assert_clustered(tmp_path / "r", X)
    scaler = StandardScaler().fit(X)
    pca = PCA(n_components=2, svd_solver="full").fit(scaler.transform(X))
    points, marks = drawn_points(saved_figures[0])
    assert_equal_up_to_sign(points, pca.transform(scaler.transform(X)))
    assert_equal_up_to_sign(marks, pca.transform(scaler.transform(np.load(tmp_path / "r" / "centers.npy"))))
    assert saved_figures[0].axes[0].get_title().endswith(", standardised")


def test_fit_parquet(capsys, tmp_path, blobs):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    X, _ = blobs
    pd.DataFrame(X, columns=["u", "v", "w"]).to_parquet(tmp_path / "points.parquet")
    status, _, err = run(capsys, "fit", tmp_path / "points.parquet", "-k", 3, "--device", "cpu", "--out", tmp_path / "r")
    assert status == 0, err
    check_fit_outputs(tmp_path / "r", 120, 3, 3, feature_names=["u", "v", "w"])
    pd.DataFrame({"u": [1.0, 2.0], "label": ["a", "b"]}).to_parquet(tmp_path / "mixed.parquet")
    assert_usage_error(capsys, ["fit", tmp_path / "mixed.parquet", "-k", 1], "'label' are not numeric")
    frame = pd.DataFrame(X, columns=["u", "v", "w"]).assign(label=[f"blob {i}" for i in range(120)])
    frame.to_parquet(tmp_path / "labelled.parquet")
    status, _, err = run(capsys, "fit", tmp_path / "labelled.parquet", "-k", 3, "--device", "cpu",
                         "--out", tmp_path / "cols", "--columns", "w,0")
    assert status == 0, err
    check_fit_outputs(tmp_path / "cols", 120, 2, 3, feature_names=["w", "u"])
    assert_clustered(tmp_path / "cols", X[:, [2, 0]])
    assert_usage_error(capsys, ["fit", tmp_path / "labelled.parquet", "-k", 3, "--columns", "u,x"], "no column 'x'")


def test_fit_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    from sklearn.datasets import load_digits

    np.save(tmp_path / "digits.npy", load_digits().data[:300])
    status, _, err = run(capsys, "fit", tmp_path / "digits.npy", "-k", 10, "--device", "cpu", "--out", tmp_path / "r", "--plot")
    assert status == 0, err
    assert_picture(tmp_path / "r" / "clusters.png", (640, 520))  # 64 features: drawn on 2 principal axes
    assert_picture(tmp_path / "r" / "centroids.png", (650, 310))
    assert "centroids.png" in json.loads((tmp_path / "r" / "summary.json").read_text())["files"]


def test_fit_names_numpy_files_that_are_not_what_their_names_say(capsys, tmp_path):
    """A .npz under a .npy name, the reverse, an empty archive and a file of neither kind
    are named as such (NumPy's errors spoke of pickles, context managers or strings),
    and a quote as --delimiter is refused as a quote, not as 'not one character'. A
    helper's finds."""
    np.save(tmp_path / "real.npy", np.ones((4, 2)))
    (tmp_path / "real.npz").write_bytes((tmp_path / "real.npy").read_bytes())
    np.savez(tmp_path / "zipped.npz", X=np.ones((4, 2)))
    (tmp_path / "zipped.npz").rename(tmp_path / "zipped.npy")
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "garbage.npy").write_bytes(b"not an array at all")
    for name, message in (("real.npz", "is a NumPy .npy file under a .npz name; rename it to "
                                       "real.npy"),
                          ("zipped.npy", "is a NumPy .npz file under a .npy name"),
                          ("empty.npz", "holds no array"),
                          ("garbage.npy", "is not a NumPy .npy file")):
        assert_usage_error(capsys, ["fit", tmp_path / name, "-k", 1], message)
    assert_usage_error(capsys, ["fit", tmp_path / "real.npy", "-k", 1, "--delimiter", '"'],
                       "a quote or a line break cannot separate fields")
    # An empty --out was the current folder.
    assert_usage_error(capsys, ["fit", tmp_path / "real.npy", "-k", 1, "--out", ""],
                       "argument --out: expected a path, got an empty argument")


def test_fit_writes_names_with_commas_quotes_and_dollars(capsys, tmp_path):
    """Column names holding a comma or a quote are quoted in centers.csv, which reads
    back with its two columns (joined by commas, the header had more fields than the
    rows); a ``$`` in a file or column name is drawn as it is (matplotlib took it for
    math text and failed after the fit). A helper's finds."""
    pytest.importorskip("matplotlib")
    pd = pytest.importorskip("pandas")
    names = ["height, cm", 'say "hi"']
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(9, 1, (30, 2))]
    path = tmp_path / "sales_$k_vs_$m.csv"
    pd.DataFrame(X, columns=names).to_csv(path, index=False)
    status, _, err = run(capsys, "fit", path, "-k", 2, "--device", "cpu", "--out",
                         tmp_path / "r", "--plot")
    assert status == 0, err
    centers = pd.read_csv(tmp_path / "r" / "centers.csv")
    assert list(centers.columns) == names
    np.testing.assert_array_equal(centers.to_numpy(), np.load(tmp_path / "r" / "centers.npy"))
    assert_picture(tmp_path / "r" / "clusters.png", (640, 520))


def test_fit_plot_of_one_row_or_identical_rows(capsys, tmp_path):
    """With three features or more, one row (PCA failed: a traceback after the fit) or
    rows all alike (its variance ratios were 0 / 0) are drawn on their first two
    features."""
    pytest.importorskip("matplotlib")
    for name, X in (("one", np.array([[1.0, 2.0, 3.0]])), ("same", np.ones((5, 3)))):
        np.save(tmp_path / f"{name}.npy", X)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            status, _, err = run(capsys, "fit", tmp_path / f"{name}.npy", "-k", 1, "--device",
                                 "cpu", "--out", tmp_path / name, "--plot")
        assert status == 0, err
        assert_picture(tmp_path / name / "clusters.png", (640, 520))


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures the command saves, in order: their axes can be looked at."""
    figure = pytest.importorskip("matplotlib.figure").Figure
    saved, savefig = [], figure.savefig

    def spy(self, *args, **kwargs):
        saved.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(figure, "savefig", spy)
    return saved


def drawn_points(fig):
    """The (x, y) of the points of a clusters.png scatter, then those of its centres."""
    ax = fig.axes[0]
    return np.asarray(ax.collections[0].get_offsets()), np.asarray(ax.collections[1].get_offsets())


def assert_equal_up_to_sign(actual, expected):
    for j in range(expected.shape[1]):
        sign = np.sign(actual[:, j] @ expected[:, j]) or 1.0
        np.testing.assert_allclose(sign * actual[:, j], expected[:, j],
                                   atol=1e-6 * np.abs(expected[:, j]).max())


def test_scatter_projection_is_fitted_on_a_bounded_sample(tmp_path, monkeypatch, saved_figures):
    """MNIST-sized data: the principal axes come from at most MAX_SCATTER_POINTS rows, with
    the randomized solver (a full SVD of 20,000 x 784 rows took seconds)."""
    from sklearn.decomposition import PCA
    from gpukmeans import _plotting

    fitted, fit = [], PCA.fit

    def spy(self, X, y=None):
        fitted.append((len(X), self.svd_solver))
        return fit(self, X, y)

    monkeypatch.setattr(PCA, "fit", spy)
    monkeypatch.setattr(_plotting, "MAX_SCATTER_POINTS", 500)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 30))
    _plotting.plot_clusters(X, rng.integers(0, 4, 5000), X[:4], tmp_path / "c.png")
    assert fitted == [(500, "randomized")]
    points, marks = drawn_points(saved_figures[0])
    assert points.shape == (500, 2) and marks.shape == (4, 2)


def test_scatter_projection_matches_pca_on_small_data(capsys, tmp_path, saved_figures):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    X = load_digits().data[:400]
    np.save(tmp_path / "digits.npy", X)
    status, _, err = run(capsys, "fit", tmp_path / "digits.npy", "-k", 10, "--device", "cpu",
                         "--out", tmp_path / "r", "--plot")
    assert status == 0, err
    pca = PCA(n_components=2, svd_solver="full").fit(X)
    points, marks = drawn_points(saved_figures[0])
    assert_equal_up_to_sign(points, pca.transform(X))
    assert_equal_up_to_sign(marks, pca.transform(np.load(tmp_path / "r" / "centers.npy")))
    ax = saved_figures[0].axes[0]
    ratio = pca.explained_variance_ratio_
    assert ax.get_xlabel() == f"PC 1 ({ratio[0]:.0%} of variance)"
    assert ax.get_ylabel() == f"PC 2 ({ratio[1]:.0%} of variance)"


def test_scatter_axes_are_named_for_the_columns(capsys, tmp_path, saved_figures, blobs):
    X, _ = blobs
    np.savetxt(tmp_path / "named.csv", X[:, :2], delimiter=",", header="height,weight", comments="")
    np.save(tmp_path / "bare.npy", X[:, :2])
    for data, names in (("named.csv", ("height", "weight")), ("bare.npy", ("x0", "x1"))):
        saved_figures.clear()
        status, _, err = run(capsys, "fit", tmp_path / data, "-k", 3, "--device", "cpu",
                             "--out", tmp_path / data.split(".")[0], "--plot")
        assert status == 0, err
        ax = saved_figures[0].axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == names
        np.testing.assert_array_equal(drawn_points(saved_figures[0])[0], X[:, :2])


@pytest.mark.parametrize("shape", [(8, 8), (4, 16)])
def test_centroid_pixels_are_square(capsys, tmp_path, saved_figures, shape):
    """Whatever the matplotlib style says (image.aspect: auto stretches images to fill)."""
    matplotlib = pytest.importorskip("matplotlib")
    from sklearn.datasets import load_digits

    np.save(tmp_path / "digits.npy", load_digits().data[:300])
    with matplotlib.rc_context({"image.aspect": "auto"}):
        status, _, err = run(capsys, "fit", tmp_path / "digits.npy", "-k", 10, "--device", "cpu",
                             "--out", tmp_path / "r", "--plot", "--image-shape", "x".join(map(str, shape)))
        assert status == 0, err
        grid = saved_figures[-1]
        grid.canvas.draw()
        images = [image for ax in grid.axes for image in ax.get_images()]
        assert len(images) == 10
        for image in images:
            assert image.axes.get_aspect() == 1.0
            box = image.get_window_extent(grid.canvas.get_renderer())
            height, width = shape
            assert box.width / box.height == pytest.approx(width / height, rel=0.02)


def test_fit_bad_inputs_are_one_line_errors_writing_nothing(capsys, tmp_path):
    out_dir = tmp_path / "out"
    np.save(tmp_path / "flat.npy", np.arange(10.0))
    np.save(tmp_path / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "empty.npy", np.empty((0, 3)))
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]))
    np.save(tmp_path / "few.npy", np.ones((2, 2)))
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    (tmp_path / "data.txt").write_text("1 2\n")
    (tmp_path / "text.csv").write_text("a,name\n1,x\n2,y\n")
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,nan\n")
    (tmp_path / "not_a_dir").write_text("")
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((20, 2)))
    cases = [
        (["fit", tmp_path / "missing.npy", "-k", 2], "no such file"),
        (["fit", tmp_path / "data.txt", "-k", 2], "unsupported file type '.txt'"),
        (["fit", tmp_path / "flat.npy", "-k", 2], "2-D array (n_samples, n_features), got shape (10,)"),
        (["fit", tmp_path / "words.npy", "-k", 2], "not numbers"),
        (["fit", tmp_path / "objects.npy", "-k", 2], "cannot be read as .npy"),
        (["fit", tmp_path / "empty.npy", "-k", 2], "holds no data"),
        (["fit", tmp_path / "nan.npy", "-k", 1], "NaN or infinite values (first at row 1, column 0, counting from 0)"),
        (["fit", tmp_path / "few.npy", "-k", 3, "--device", "cpu"], "n_clusters=3"),
        (["fit", tmp_path / "broken.npy", "-k", 2], "cannot be read as .npy"),
        (["fit", tmp_path / "broken.npz", "-k", 2], "cannot be read as .npz"),
        (["fit", tmp_path / "text.csv", "-k", 1], "'name'"),
        (["fit", tmp_path / "nan.csv", "-k", 1], "NaN or infinite values (first in sample 2, column 'b')"),
        (["fit", tmp_path / "ok.npy", "-k", 0], "expected a positive integer"),
        (["fit", tmp_path / "ok.npy", "-k", 2, "--seed", -1], "--seed: expected an integer from 0"),
        (["fit", tmp_path / "ok.npy", "-k", 2, "--seed", 2**32], "--seed: expected an integer from 0"),
        (["fit", tmp_path / "ok.npy", "-k", 2, "--device", "tpu"], "invalid choice: 'tpu'"),
        (["fit", tmp_path / "ok.npy", "-k", 2, "--image-shape", "3x3"], "does not match the 2 features"),
        (["fit", tmp_path / "ok.npy"], "-k/--n-clusters"),
        (["fit", tmp_path / "ok.npy", "-k", 2, "--out", tmp_path / "not_a_dir"], "not a directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ]
    for argv, match in cases:
        if "--out" not in argv:
            argv = [*argv, "--out", out_dir]
        assert_usage_error(capsys, argv, match)
        assert not out_dir.exists(), argv
        assert nothing_left(tmp_path), argv


def test_an_out_dir_that_cannot_be_made_is_the_one_named(capsys, tmp_path, monkeypatch):
    """Where the results' folder cannot be made, the error names it, and the existing
    folder where making it failed (it had named only the latter, as if it were asked
    for)."""
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((20, 2)))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_cli.tempfile, "mkdtemp", refuse)
    out_dir = tmp_path / "new" / "out"
    assert_usage_error(capsys, ["fit", tmp_path / "ok.npy", "-k", 2, "--out", out_dir],
                       f"cannot create {out_dir}: cannot write in {tmp_path}: Permission denied")
    assert_usage_error(capsys, ["fit", tmp_path / "ok.npy", "-k", 2, "--out", tmp_path],
                       f"cannot write in {tmp_path}: Permission denied")


def test_one_error_prefix_wherever_the_error_is_found(capsys, tmp_path, monkeypatch):
    """argparse's subparser and main parser, the device, the reader, --out, the estimator:
    all say ``gpukmeans fit: error:`` for fit (``demo`` for demo), once."""
    from gpukmeans import _device

    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((20, 2)))
    (tmp_path / "a_file").write_text("")
    ok = tmp_path / "ok.npy"
    cases = [
        (["fit", ok, "-k", 0], "expected a positive integer"),  # the subparser
        (["fit", ok, "-k", 2, "--bogus"], "unrecognized arguments: --bogus"),  # the main parser
        (["fit", ok, "-k", 2, "--device", "tpu"], "invalid choice: 'tpu'"),
        (["fit", tmp_path / "missing.npy", "-k", 2], "no such file"),  # the reader
        (["fit", ok, "-k", 2, "--out", tmp_path / "a_file"], "not a directory"),  # --out
        (["fit", ok, "-k", 50, "--device", "cpu", "--out", tmp_path / "r"], "n_clusters=50"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),  # demo, the default
        (["demo", "--out", tmp_path / "a_file", "--device", "cpu"], "not a directory"),
        (["info", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),  # no subcommand: the command's own
    ]
    for argv, match in cases:
        assert_usage_error(capsys, argv, match)
    assert error_prefix(["fit"]) == "gpukmeans fit: error: "

    def no_gpu(device):
        raise ValueError("device='gpu' but no GPU is usable: none here")

    monkeypatch.setattr(_device, "resolve_device", no_gpu)
    err = assert_usage_error(capsys, ["fit", ok, "-k", 2, "--device", "gpu"], "no GPU is usable")
    assert err.startswith("gpukmeans fit: error: device='gpu'")


def test_fit_failure_after_staging_leaves_nothing(capsys, tmp_path, monkeypatch):
    """A failure while writing (here: drawing) removes everything staged so far."""
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((20, 2)))
    out_dir = tmp_path / "deep" / "out"

    def broken_writer(*args, **kwargs):
        (args[-1] / "labels.npy").write_bytes(b"half")
        raise _cli.CommandError("disk full")

    monkeypatch.setattr(_cli, "_write_fit_results", broken_writer)
    assert_usage_error(capsys, ["fit", tmp_path / "ok.npy", "-k", 2, "--device", "cpu", "--out", out_dir], "disk full")
    assert not (tmp_path / "deep").exists() and nothing_left(tmp_path)


# --- info and bench ------------------------------------------------------------------------


def test_info(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    fields = {line.split("  ")[0].strip() for line in out.splitlines() if line.strip()}
    for field in ("gpukmeans", "numpy", "numba", "cupy", "CUDA driver", "GPU", "kernel cache", "numba cache", "default device"):
        assert field in fields, out
    assert ("usable:" in out) or ("not usable:" in out)


def test_info_kernel_cache_follows_environment(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path / "kernels"))
    _, out, _ = run(capsys, "info")
    assert f"{tmp_path / 'kernels'} (CUPY_CACHE_DIR)" in out


def test_bench_passes_arguments_through(capsys, monkeypatch):
    calls = []
    fake = types.ModuleType("gpukmeans.bench")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "gpukmeans.bench", fake)
    monkeypatch.setattr(sys.modules["gpukmeans"], "bench", fake, raising=False)
    assert run(capsys, "bench", "--help", "-k", "20")[0] == 0
    assert calls == [["--help", "-k", "20"]]


def test_bench_without_the_helper(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpukmeans.bench", None)
    monkeypatch.delattr(sys.modules["gpukmeans"], "bench", raising=False)
    assert_usage_error(capsys, ["bench"], "benchmark helper (gpukmeans/bench/) is not part of this installation")
