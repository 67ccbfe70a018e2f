"""gpukmeans.datasets: MNIST from disk and over HTTP (a local server), and make_mickey."""

import gzip
import http.server
import pathlib
import shutil
import socket
import threading

import numpy as np
import pytest

from gpukmeans import datasets
from gpukmeans.datasets import ChecksumError, load_mnist, make_mickey

SUBSET = pathlib.Path(__file__).parent / "data" / "mnist"
SHARED_MNIST = pathlib.Path(__file__).parents[2] / "shared" / "data" / "mnist"
N_TRAIN, N_TEST = 5000, 1000
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's own first ten
FIRST_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
pytestmark = pytest.mark.usefixtures("no_user_mnist")


@pytest.fixture
def mirror():
    """An HTTP server on 127.0.0.1 in a thread, serving the subset's .gz files.

    Yields ``(url, files)``; change ``files`` (name -> bytes) to serve damaged files.
    """
    files = {f"/{path.name}": path.read_bytes() for path in SUBSET.glob("*.gz")}
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", files, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


def _corrupt(data):
    raw = bytearray(gzip.decompress(data))
    raw[-1] ^= 0xFF  # one pixel changed: still a valid IDX file, wrong checksum
    return gzip.compress(bytes(raw), compresslevel=1)


# --- from disk -----------------------------------------------------------------------------


def test_load_bundled_subset():
    X, y = load_mnist(SUBSET, download=False)
    assert X.shape == (N_TRAIN + N_TEST, 784)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 255
    assert y[:10].tolist() == FIRST_TRAIN_LABELS
    assert y[N_TRAIN : N_TRAIN + 10].tolist() == FIRST_TEST_LABELS
    assert set(np.unique(y).tolist()) == set(range(10))


def test_subset_n_samples_normalize_dtype():
    X_train, y_train = load_mnist(SUBSET, subset="train", download=False)
    X_test, y_test = load_mnist(SUBSET, subset="test", n_samples=10, normalize=True, dtype=np.float64)
    assert X_train.shape == (N_TRAIN, 784) and y_train[:10].tolist() == FIRST_TRAIN_LABELS
    assert X_test.shape == (10, 784) and X_test.dtype == np.float64
    assert y_test.tolist() == FIRST_TEST_LABELS
    assert 0 <= X_test.min() and X_test.max() <= 1 and X_test.max() > 0.99


def test_bad_arguments():
    with pytest.raises(ValueError, match="subset"):
        load_mnist(SUBSET, subset="validation")
    with pytest.raises(ValueError, match="n_samples"):
        load_mnist(SUBSET, n_samples=0)
    with pytest.raises(ValueError, match="n_samples"):
        load_mnist(SUBSET, n_samples=True)  # a bool is not a count
    for dtype in (np.uint8, int):
        with pytest.raises(ValueError, match="normalize=True .* floating dtype"):
            load_mnist(SUBSET, n_samples=10, dtype=dtype, normalize=True)
    for dtype in ("no such type", object, "U3", bool):
        with pytest.raises(TypeError, match="dtype"):
            load_mnist(SUBSET, n_samples=10, dtype=dtype)
    X, _ = load_mnist(SUBSET, n_samples=10, dtype=np.uint8)  # unnormalised integers: fine
    assert X.dtype == np.uint8 and X.max() == 255
    # int8 wrapped the ink (128 to 255) to negative values: refused (a helper's find),
    # as a subset's count beyond its digits is (it gave fewer rows).
    with pytest.raises(ValueError, match="dtype=int8 cannot hold the pixels' values"):
        load_mnist(SUBSET, n_samples=10, dtype=np.int8)
    with pytest.raises(ValueError, match="path should be the folder of the MNIST files, but "
                                         ".* is a file"):
        load_mnist(SUBSET / "README.md", download=False)
    X, _ = load_mnist(SUBSET, n_samples=10, dtype=np.float16)
    assert X.max() == 255
    with pytest.raises(ValueError, match=f"n_samples={N_TEST + 1}, but subset='test' holds "
                                         f"{N_TEST:,} digits"):
        load_mnist(SUBSET, subset="test", n_samples=N_TEST + 1, download=False)


def test_uncompressed_files_in_a_mnist_subdirectory(tmp_path):
    (tmp_path / "mnist").mkdir()
    for path in SUBSET.glob("*.gz"):
        (tmp_path / "mnist" / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
    X, y = load_mnist(tmp_path, download=False)  # the data root, holding mnist/
    X_ref, y_ref = load_mnist(SUBSET, download=False)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_environment_variable_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUKMEANS_DATA", str(SUBSET))
    assert load_mnist(download=False)[0].shape == (N_TRAIN + N_TEST, 784)
    monkeypatch.delenv("GPUKMEANS_DATA")
    cache = datasets.mnist_cache_dir()
    shutil.copytree(SUBSET, cache)
    assert load_mnist(subset="test", download=False)[0].shape == (N_TEST, 784)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.undo()  # the real mnist_cache_dir
    if datasets.sys.platform in ("win32", "darwin"):
        pytest.skip("XDG_CACHE_HOME is the Linux convention")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.mnist_cache_dir() == tmp_path / "gpukmeans" / "mnist"


def test_missing_without_download_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "GPUKMEANS_DATA" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message


@pytest.mark.parametrize(
    "damage",
    [lambda raw: raw[: len(raw) // 2], lambda raw: b"not an idx file", lambda raw: raw[:6]],
    ids=["truncated", "garbage", "short-header"],
)
def test_damaged_local_file(tmp_path, damage):
    shutil.copytree(SUBSET, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, download=False)


def test_images_and_labels_disagree(tmp_path):
    shutil.copytree(SUBSET, tmp_path, dirs_exist_ok=True)
    shutil.copy(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match="5000 labels for the 1000 images"):
        load_mnist(tmp_path, download=False)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the full MNIST is not beside this checkout")
def test_full_mnist_matches_published_checksums():
    for name, sha256 in datasets.MNIST_FILES.items():
        assert datasets._content_sha256(SHARED_MNIST / f"{name}.gz") == sha256
    X, y = load_mnist(SHARED_MNIST, download=False)
    assert X.shape == (70_000, 784) and X.dtype == np.float32
    assert np.bincount(y).tolist() == [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]


# --- download ------------------------------------------------------------------------------


def test_download_verifies_and_saves(tmp_path, mirror, subset_checksums, capsys):
    url, _, requests = mirror
    target = tmp_path / "downloaded"
    X, y = load_mnist(target, mirrors=[url], verbose=True)
    X_ref, y_ref = load_mnist(SUBSET, download=False)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in SUBSET.glob("*.gz"))
    assert "train-images-idx3-ubyte" in capsys.readouterr().err  # the progress bar
    # Found on disk now: no second download.
    n_requests = len(requests)
    load_mnist(target, mirrors=[url])
    assert len(requests) == n_requests


def test_download_quiet_when_not_verbose(tmp_path, mirror, subset_checksums, capsys):
    load_mnist(tmp_path, subset="test", mirrors=[mirror[0]], verbose=False)
    assert capsys.readouterr() == ("", "")
    # Only the files the subset needs.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_into_cache_by_default(mirror, subset_checksums):
    load_mnist(mirrors=[mirror[0]], verbose=False)
    assert len(list(datasets.mnist_cache_dir().glob("*.gz"))) == 4


@pytest.mark.parametrize("damage", [_corrupt, lambda data: data[: len(data) // 2]], ids=["flipped", "truncated"])
def test_corrupted_download_is_discarded(tmp_path, mirror, subset_checksums, damage):
    url, files, _ = mirror
    files["/train-images-idx3-ubyte.gz"] = damage(files["/train-images-idx3-ubyte.gz"])
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz does not match its SHA-256"):
        load_mnist(tmp_path, mirrors=[url], verbose=False)
    # Nothing half-written: no damaged file, no temporary file.
    assert not any(name.startswith("train-images") for name in (p.name for p in tmp_path.iterdir()))
    assert not list(tmp_path.glob(".*"))


def test_next_mirror_after_a_bad_one(tmp_path, mirror, subset_checksums):
    url, _, _ = mirror
    X, _ = load_mnist(tmp_path, subset="test", mirrors=[_closed_port_url(), url + "missing/", url], verbose=False)
    assert X.shape == (N_TEST, 784)


def test_offline_error_says_where_to_put_files(tmp_path, subset_checksums):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, mirrors=[_closed_port_url()], verbose=False)
    message = str(info.value)
    assert "could not be downloaded" in message and str(tmp_path) in message
    assert "train-images-idx3-ubyte.gz" in message and "GPUKMEANS_DATA" in message
    assert list(tmp_path.iterdir()) == []


def test_offline_leaves_no_empty_directory_of_its_own(tmp_path, subset_checksums):
    """Offline, the directory the download would have filled (the user cache by default)
    is removed again when it made it, with the parents it made (they were left: a
    helper's find); one that existed stays."""
    cache = tmp_path / "cache" / "mnist"
    with pytest.raises(FileNotFoundError, match="--mnist on the command"):
        load_mnist(cache, mirrors=[_closed_port_url()], verbose=False)
    assert list(tmp_path.iterdir()) == []
    cache.mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        load_mnist(cache, mirrors=[_closed_port_url()], verbose=False)
    assert cache.is_dir()


def test_a_damaged_first_file_leaves_no_empty_directory_of_its_own(tmp_path, mirror,
                                                                   subset_checksums):
    """The same when a mirror's first file fails its checksum: nothing was saved."""
    url, files, _ = mirror
    files["/train-images-idx3-ubyte.gz"] = _corrupt(files["/train-images-idx3-ubyte.gz"])
    target = tmp_path / "fresh"
    with pytest.raises(ChecksumError):
        load_mnist(target, mirrors=[url], verbose=False)
    assert not target.exists()


# --- make_mickey ---------------------------------------------------------------------------


def test_make_mickey_shape_and_proportions():
    X, y = make_mickey(2000, random_state=0)
    assert X.shape == (2000, 2) and X.dtype == np.float64 and y.dtype == np.int64
    counts = np.bincount(y)
    assert counts[0] > 4 * counts[1] and counts[1] == counts[2]  # head big, ears equal
    head = X[y == 0]
    assert np.all(np.hypot(head[:, 0], head[:, 1]) <= 1.0 + 1e-12)
    left, right = X[y == 1].mean(axis=0), X[y == 2].mean(axis=0)
    assert left[0] < 0 < right[0] and left[1] > 0.5 and right[1] > 0.5


def test_make_mickey_deterministic_and_validated():
    X1, y1 = make_mickey(300, random_state=1)
    X2, y2 = make_mickey(300, random_state=1)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    _, y_ordered = make_mickey(300, shuffle=False, random_state=1)
    assert np.all(np.diff(y_ordered) >= 0)
    with pytest.raises(ValueError, match="n_samples"):
        make_mickey(2)
    with pytest.raises(ValueError, match="radius"):
        make_mickey(100, ear_radius=0)


def test_kmeans_splits_mickey_wrongly():
    """The point of the data set: k-means with k=3 does not recover the head and ears."""
    from sklearn.metrics import adjusted_rand_score

    from gpukmeans import KMeans

    X, y = make_mickey(1500, random_state=0)
    labels = KMeans(3, random_state=0, device="cpu").fit_predict(X)
    assert adjusted_rand_score(y, labels) < 0.9
