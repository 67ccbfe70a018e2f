"""Data sets to try gpukmeans on: the real MNIST digits, and the notebook's "Mickey mouse".

:func:`load_mnist` reads the 70,000 MNIST digits from the standard IDX files, downloading
them (with checksum verification) when they are nowhere to be found; :func:`make_mickey`
draws the classic data set where k-means splits a large round cluster wrongly.

Nothing here imports more than NumPy and the standard library at import time.
"""

import contextlib
import gzip
import hashlib
import http.client
import os
import pathlib
import socket
import struct
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zlib

import numpy as np

__all__ = ["load_mnist", "make_mickey", "mnist_cache_dir", "ChecksumError"]

MNIST_FILES = {
    # name: SHA-256 of the *uncompressed* IDX file. Hashing the content rather than the
    # .gz lets any mirror compress it its own way; the MD5s of these contents are the ones
    # published with the data set.
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

_SUBSETS = {
    "train": ("train",),
    "test": ("t10k",),
    "all": ("train", "t10k"),
}

_DOWNLOAD_TIMEOUT = 30  # seconds without a byte before a mirror is given up
_DOWNLOAD_DEADLINE = 600  # seconds for one whole file from one mirror, trickling or not
_CHUNK_SIZE = 1 << 16


class ChecksumError(OSError):
    """A downloaded file does not match its published checksum (nothing was kept)."""


def mnist_cache_dir():
    """Return the user cache directory where :func:`load_mnist` keeps MNIST by default.

    ``$XDG_CACHE_HOME/gpukmeans/mnist`` (``~/.cache/gpukmeans/mnist``) on Linux,
    ``~/Library/Caches/gpukmeans/mnist`` on macOS, ``%LOCALAPPDATA%\\gpukmeans\\Cache\\mnist``
    on Windows.
    """
    if sys.platform == "win32":
        base = pathlib.Path(os.environ.get("LOCALAPPDATA", pathlib.Path.home() / "AppData" / "Local"))
        return base / "gpukmeans" / "Cache" / "mnist"
    if sys.platform == "darwin":
        return pathlib.Path.home() / "Library" / "Caches" / "gpukmeans" / "mnist"
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "gpukmeans" / "mnist"


def load_mnist(
    path=None,
    *,
    subset="all",
    n_samples=None,
    normalize=False,
    dtype=np.float32,
    download=True,
    mirrors=None,
    verbose=True,
):
    """Load the MNIST handwritten digits as a data matrix and labels.

    The files are the four standard IDX files (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``),
    gzip-compressed (``.gz``) or not. They are looked for in ``path`` if given, else in the
    directory named by the environment variable ``GPUKMEANS_DATA``, else in the user cache
    directory (:func:`mnist_cache_dir`); in each case in that directory itself or in its
    ``mnist/`` subdirectory. When they are missing there, they are downloaded into that
    directory from a public mirror, their SHA-256 checksums verified, with a progress bar.

    Parameters
    ----------
    path : str or path-like, default=None
        Directory holding the IDX files. ``None`` means ``$GPUKMEANS_DATA``, then the
        user cache directory.
    subset : {"all", "train", "test"}, default="all"
        ``"all"`` is the 70,000 digits, the 60,000 training images followed by the 10,000
        test images (the order of OpenML's ``mnist_784``).
    n_samples : int, default=None
        Keep only the first ``n_samples`` digits of the subset (the notebook uses 5,000).
    normalize : bool, default=False
        ``False`` keeps the pixel scale of the files, 0 (background) to 255 (ink);
        ``True`` divides by 255, giving values in [0, 1].
    dtype : dtype, default=np.float32
        dtype of ``X``: any numeric dtype that holds 0 to 255 (not int8), a floating one
        with ``normalize``.
    download : bool, default=True
        Download missing files. ``False`` raises :class:`FileNotFoundError` instead.
    mirrors : sequence of str, default=None
        Base URLs to download from, tried in order (the file name is appended).
        ``None`` means :data:`MNIST_MIRRORS`.
    verbose : bool, default=True
        Show a progress bar on stderr while downloading (nothing is printed otherwise).

    Returns
    -------
    X : ndarray of shape (n_samples, 784)
        One row per digit, the 28x28 image flattened row by row.
    y : ndarray of shape (n_samples,), dtype=int64
        The digit, 0 to 9.

    Raises
    ------
    FileNotFoundError
        The files are missing and could not be downloaded; the message says where to put them.
    ChecksumError
        A downloaded file does not match its checksum (a damaged gzip stream included);
        nothing of it is kept, and the other mirrors were tried first.
    ValueError
        A file found on disk is not a valid MNIST IDX file, or its gzip stream is damaged;
        or a bad ``subset`` or ``n_samples``, or ``normalize`` with a dtype that is not
        floating, or a dtype that cannot hold 0 to 255, or a ``path`` (or
        ``GPUKMEANS_DATA``) that is a file (checked before any file is read;
        ``n_samples`` beyond the subset's digits after).
    TypeError
        ``dtype`` is not a numeric NumPy dtype.
    PermissionError
        A directory or file that holds MNIST cannot be read; nothing was changed.

    A download gives up on a mirror after 30 seconds without a byte, or when one file has
    not arrived in 10 minutes (a mirror that trickles), and tries the next.

    Notes
    -----
    The MNIST database is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, and is
    distributed under the Creative Commons Attribution-Share Alike 3.0 licence.

    Examples
    --------
    >>> from gpukmeans.datasets import load_mnist
    >>> X, y = load_mnist("tests/data/mnist", n_samples=100)  # doctest: +SKIP
    >>> X.shape, X.dtype, X.max()  # doctest: +SKIP
    ((100, 784), dtype('float32'), 255.0)
    """
    if subset not in _SUBSETS:
        raise ValueError(f"subset should be one of {sorted(_SUBSETS)}, got {subset!r}.")
    if n_samples is not None and (not isinstance(n_samples, (int, np.integer))
                                  or isinstance(n_samples, bool) or n_samples < 1):
        raise ValueError(f"n_samples should be a positive integer or None, got {n_samples!r}.")
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"dtype should be a NumPy dtype, got {dtype!r}.") from error
    if dtype.kind not in "iufc":
        raise TypeError(f"dtype should be a numeric NumPy dtype, got {dtype}.")
    if not np.can_cast(np.uint8, dtype):  # int8 wrapped the ink, 128 to 255, to negatives
        raise ValueError(f"dtype={dtype} cannot hold the pixels' values, 0 to 255; use "
                         "uint8, a wider integer or a floating dtype.")
    if normalize and dtype.kind not in "fc":
        raise ValueError("normalize=True divides the pixels by 255 and needs a floating "
                         f"dtype, got dtype={dtype}.")

    directory, origin = _mnist_dir(path)
    if directory.is_file():  # its files would have been looked for, and put, "in" it
        raise ValueError(f"{origin} should be the folder of the MNIST files, but "
                         f"{directory} is a file.")
    found = _find_mnist(directory)
    needed = [f"{prefix}-{kind}" for prefix in _SUBSETS[subset] for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    missing = [name for name in needed if name not in found]
    if missing:
        if not download:
            raise FileNotFoundError(_missing_message(directory, origin, missing, "download=False"))
        found.update(_download_mnist(directory, origin, missing, mirrors, verbose))

    images, labels = [], []
    for prefix in _SUBSETS[subset]:
        image_path = found[f"{prefix}-images-idx3-ubyte"]
        label_path = found[f"{prefix}-labels-idx1-ubyte"]
        these_images = _read_idx(image_path)
        these_labels = _read_idx(label_path)
        if these_images.ndim != 3 or these_images.shape[1:] != (28, 28):
            raise ValueError(f"{image_path} holds images of shape {these_images.shape[1:]}, not 28x28.")
        if these_labels.ndim != 1 or len(these_labels) != len(these_images):
            raise ValueError(
                f"{label_path} holds {len(these_labels)} labels for the "
                f"{len(these_images)} images of {image_path}."
            )
        images.append(these_images)
        labels.append(these_labels)
    images = np.concatenate(images)[:n_samples]  # (n_samples, 28, 28) uint8
    if n_samples is not None and n_samples > len(images):
        raise ValueError(f"n_samples={n_samples}, but subset={subset!r} holds "
                         f"{len(images):,} digits.")
    labels = np.concatenate(labels)[:n_samples]

    X = images.reshape(len(images), 28 * 28).astype(dtype)  # (n_samples, 784)
    if normalize:
        X /= X.dtype.type(255)
    return X, labels.astype(np.int64)


def make_mickey(
    n_samples=1000,
    *,
    head_radius=1.0,
    ear_radius=0.45,
    shuffle=True,
    random_state=None,
):
    """Draw the "Mickey mouse" data set: one large round cluster and two small "ears".

    Points are uniform over three overlapping discs, so each cluster holds a share of the
    points proportional to its area. With ``n_clusters=3``, k-means does not find the head
    and the ears: it cuts off pieces of the head with each ear, because it favours
    clusters of similar extent.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of points.
    head_radius : float, default=1.0
        Radius of the head, centred at the origin.
    ear_radius : float, default=0.45
        Radius of each ear. The ears sit up-left and up-right of the head, overlapping it a
        little.
    shuffle : bool, default=True
        Shuffle the points; ``False`` keeps head, left ear, right ear in that order.
    random_state : int, RandomState instance or None, default=None
        Seed for the draw.

    Returns
    -------
    X : ndarray of shape (n_samples, 2), dtype=float64
    y : ndarray of shape (n_samples,), dtype=int64
        0 for the head, 1 for the left ear, 2 for the right ear.

    Examples
    --------
    >>> from gpukmeans.datasets import make_mickey
    >>> X, y = make_mickey(300, random_state=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((300, 2), [0, 1, 2])
    """
    from sklearn.utils import check_random_state

    if not isinstance(n_samples, (int, np.integer)) or n_samples < 3:
        raise ValueError(f"n_samples should be an integer >= 3, got {n_samples!r}.")
    if not (head_radius > 0 and ear_radius > 0):
        raise ValueError(
            f"head_radius and ear_radius should be > 0, got {head_radius!r} and {ear_radius!r}."
        )
    rng = check_random_state(random_state)

    # Ear centres at 45 degrees from the vertical, close enough to overlap the head.
    offset = (head_radius + 0.6 * ear_radius) / np.sqrt(2.0)
    centers = np.array([[0.0, 0.0], [-offset, offset], [offset, offset]])
    radii = np.array([head_radius, ear_radius, ear_radius])

    areas = radii**2
    counts = np.floor(n_samples * areas / areas.sum()).astype(np.int64)
    counts[1:] = np.maximum(counts[1:], 1)
    counts[0] = n_samples - counts[1:].sum()

    y = np.repeat(np.arange(3, dtype=np.int64), counts)
    # Uniform on a disc: radius ~ R * sqrt(U), angle ~ U(0, 2 pi).
    r = radii[y] * np.sqrt(rng.uniform(size=n_samples))
    theta = rng.uniform(0.0, 2.0 * np.pi, size=n_samples)
    X = centers[y] + np.column_stack([r * np.cos(theta), r * np.sin(theta)])  # (n_samples, 2)

    if shuffle:
        order = rng.permutation(n_samples)
        X, y = X[order], y[order]
    return X, y


def _mnist_dir(path):
    """Return ``(directory, origin)``: where MNIST is looked for, and why there."""
    if path is not None:
        return pathlib.Path(path).expanduser(), "path"
    env = os.environ.get("GPUKMEANS_DATA")
    if env:
        return pathlib.Path(env).expanduser(), "GPUKMEANS_DATA"
    return mnist_cache_dir(), "cache"


def _find_mnist(directory):
    """Map each MNIST file name found in ``directory`` (or its ``mnist/``) to its path."""
    found = {}
    for folder in (directory, directory / "mnist"):
        for name in MNIST_FILES:
            if name in found:
                continue
            dotted = name.replace("-idx", ".idx")  # another common spelling
            for candidate in (f"{name}.gz", name, f"{dotted}.gz", dotted):
                try:
                    is_file = (folder / candidate).is_file()
                except PermissionError:
                    raise PermissionError(
                        f"cannot look into {folder} for MNIST: permission denied. Nothing was "
                        "changed; make it readable, or point path= (--mnist) or GPUKMEANS_DATA "
                        "at another directory."
                    ) from None
                if is_file:
                    found[name] = folder / candidate
                    break
    return found


def _read_idx(path):
    """Read an IDX file, gzip-compressed or not, into a uint8 array of its shape."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except PermissionError:  # intact, perhaps: not a reason to delete it
        raise PermissionError(
            f"{path} cannot be read: permission denied. Nothing was changed; make it "
            "readable, or point path= (--mnist) or GPUKMEANS_DATA at another directory."
        ) from None
    except (OSError, EOFError, zlib.error) as exc:  # truncated, or a damaged deflate stream
        raise ValueError(f"{path} could not be read ({exc}); delete it to download it again.") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes.")
    n_dims = raw[3]
    header_size = 4 + 4 * n_dims
    if n_dims < 1 or len(raw) < header_size:
        raise ValueError(f"{path} has a damaged IDX header.")
    shape = struct.unpack(f">{n_dims}I", raw[4:header_size])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header_size != expected:
        raise ValueError(
            f"{path} holds {len(raw) - header_size} bytes of data, its header says {expected} "
            f"(shape {shape}); the file is truncated or damaged."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _missing_message(directory, origin, missing, why):
    where = {
        "path": "the directory given as path",
        "GPUKMEANS_DATA": "the directory named by GPUKMEANS_DATA",
        "cache": "the gpukmeans cache directory",
    }[origin]
    files = ", ".join(f"{name}.gz" for name in missing)
    return (
        f"MNIST is not in {where}, {directory}, and could not be downloaded ({why}). "
        f"Put {files} (gzip-compressed or not) in {directory}, or point the environment "
        f"variable GPUKMEANS_DATA at a directory that holds them, or pass that directory "
        f"(path= in Python, --mnist on the command)."
    )


def _download_mnist(directory, origin, names, mirrors, verbose):
    """Download and verify each of ``names`` into ``directory``; return their paths."""
    mirrors = MNIST_MIRRORS if mirrors is None else tuple(mirrors)
    # The folders this call makes (a new nested path makes its parents too), deepest
    # first: removed again if nothing is saved.
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileNotFoundError(
            _missing_message(directory, origin, names, f"cannot create the directory: {exc}")
        ) from None
    paths = {}
    for name in names:
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                paths[name] = _download_verified(url, directory / f"{name}.gz", MNIST_FILES[name], verbose)
                break
            except ChecksumError as exc:
                failures.append(exc)
            except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
                # refused, reset, cut short (IncompleteRead), timed out, or a trickle
                failures.append(OSError(f"{url}: {getattr(exc, 'reason', exc)}"))
        else:
            if not paths:  # nothing saved: no empty directory of ours left behind
                with contextlib.suppress(OSError):
                    for folder in created:
                        folder.rmdir()
            checksum_failures = [exc for exc in failures if isinstance(exc, ChecksumError)]
            if checksum_failures:
                raise ChecksumError(
                    "; ".join(str(exc) for exc in checksum_failures)
                ) from None
            why = "; ".join(str(exc) for exc in failures) or "no mirror given"
            raise FileNotFoundError(_missing_message(directory, origin, names, why)) from None
    return paths


def _download_verified(url, destination, sha256, verbose):
    """Download ``url`` to ``destination`` only if its content matches ``sha256``.

    The bytes go to a temporary file beside ``destination``, renamed into place once
    verified; on any failure the temporary file is removed, so nothing half-written is
    ever left under the final name.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    tmp_path = pathlib.Path(tmp_name)
    sockets, fired = [], threading.Event()
    # The deadline covers the whole exchange, headers included: a mirror that sends its
    # headers one byte at a time never lets urlopen return. At the deadline the watchdog
    # shuts the connection's socket, and whatever is reading from it fails.
    watchdog = threading.Timer(_DOWNLOAD_DEADLINE, _shut, args=(sockets, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        opener = urllib.request.build_opener(_WatchedHTTPHandler(sockets),
                                             _WatchedHTTPSHandler(sockets))
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=_DOWNLOAD_TIMEOUT) as response:
            total = response.headers.get("Content-Length")
            bar = _ByteProgress(int(total) if total else None, destination.name, verbose)
            try:
                # read1: whatever has arrived, so the progress bar moves with a slow
                # mirror (read(n) waits for all n bytes); the watchdog keeps the deadline.
                while chunk := response.read1(_CHUNK_SIZE):
                    out.write(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
        digest = _content_sha256(tmp_path)
        if digest != sha256:
            raise ChecksumError(
                f"{url} does not match its SHA-256 checksum (expected {sha256}, got {digest}); "
                f"the download was discarded."
            )
        os.replace(tmp_path, destination)
        return destination
    except (OSError, http.client.HTTPException) as exc:
        if fired.is_set():  # the watchdog broke the connection: say why
            raise TimeoutError(
                f"gave up after {_DOWNLOAD_DEADLINE} s with the file still arriving ({exc})"
            ) from None
        raise
    finally:
        watchdog.cancel()
        tmp_path.unlink(missing_ok=True)


def _shut(sockets, fired):
    fired.set()
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _watched(connection_class, sockets):
    """``connection_class`` that hands each socket it opens to ``sockets`` (the watchdog's)."""

    class Watched(connection_class):
        def connect(self):
            super().connect()
            sockets.append(self.sock)

    return Watched


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, sockets):
        super().__init__()
        self._connection = _watched(http.client.HTTPConnection, sockets)

    def http_open(self, req):
        return self.do_open(self._connection, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, sockets):
        super().__init__()
        self._connection = _watched(http.client.HTTPSConnection, sockets)

    def https_open(self, req):
        return self.do_open(self._connection, req, context=self._context)


def _content_sha256(path):
    """SHA-256 of a file's content, decompressed first when it is gzip."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        compressed = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK_SIZE):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:  # a damaged gzip stream
        return f"<unreadable: {exc}>"
    return digest.hexdigest()


class _ByteProgress:
    """A download progress bar on stderr: tqdm's when it is installed, else a few lines."""

    def __init__(self, total, name, verbose):
        self._bar = None
        self._name, self._total, self._done, self._next_report = name, total, 0, 0.25
        self._verbose = verbose
        if not verbose:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            print(f"downloading {name}...", file=sys.stderr, flush=True)
            return
        self._bar = tqdm(
            total=total, desc=f"downloading {name}", unit="B", unit_scale=True, file=sys.stderr, leave=False
        )

    def update(self, n_bytes):
        self._done += n_bytes
        if self._bar is not None:
            self._bar.update(n_bytes)
        elif self._verbose and self._total and self._done >= self._next_report * self._total:
            print(f"downloading {self._name}: {100 * self._done // self._total}%", file=sys.stderr, flush=True)
            self._next_report += 0.25

    def close(self):
        if self._bar is not None:
            self._bar.close()
