"""The contestants: one class per library and device, behind one interface, and the registry.

Nothing heavier than NumPy is imported at module import; each contestant imports its
library when asked whether it is available.
"""

import contextlib
import dataclasses
import importlib
import logging

import numpy as np

from .environment import free_cupy
from .scoring import BLOCK_ELEMENTS, to_host


class NotSupported(Exception):
    """The contestant has no such operation (e.g. faiss has no convergence test)."""


@dataclasses.dataclass
class FitResult:
    centers: np.ndarray
    n_iter: int | None = None
    inertia_reported: float | None = None


class Contestant:
    """One library on one device. Subclasses fill in what their library can do.

    ``fit_fixed`` runs exactly ``n_iter`` iterations from ``init``; ``fit_converge`` runs
    to scikit-learn's convergence test; ``fit_defaults`` is the library's own estimator
    with default parameters (its own initialisation); ``kmeans_plusplus`` is the
    library's k-means++ seeding. Each returns host (NumPy) centres.
    """

    key = ""
    library = ""
    device = "cpu"
    untested = False
    needs_warmup = False
    """The first call pays for compilation: never use it as a sample."""
    host_input = False
    """A GPU contestant that takes host data and copies it inside the timed call."""
    final_labels = False
    """Whether a fit ends by labelling the data by its final centres (scikit-learn's final
    E-step, so that ``labels_ == predict(X)``): a fit of n iterations then makes n + 1
    E-steps. One that does not makes one E-step fewer, and its rows say so
    (:data:`NO_FINAL_LABELS`); the marginal column compares the same work."""

    def availability(self):
        """None when usable here, else the reason it is not."""
        return None

    def setup(self, threads):
        """Set the library's thread count."""

    def to_device(self, X):
        return X

    def release(self):
        """Free device memory between workloads."""

    def sync(self):
        pass

    def memory_bytes(self, n_samples, n_features, n_clusters):
        """Rough peak memory of one fit beyond the data, to skip what cannot fit."""
        return 0

    def fit_fixed(self, X, init, n_iter):
        raise NotSupported

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        raise NotSupported

    def fit_defaults(self, X, n_clusters, seed):
        raise NotSupported

    def kmeans_plusplus(self, X, n_clusters, seed):
        raise NotSupported

    def describe(self):
        return {"key": self.key, "library": self.library, "device": self.device,
                "untested": self.untested, "final_labels": self.final_labels}


NO_FINAL_LABELS = ("no final E-step: labels by the final centres not computed "
                   "(one E-step fewer)")
"""The note on the fit rows of a contestant without :attr:`Contestant.final_labels`."""


def _import_reason(module):
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} is not importable ({type(exc).__name__}: {exc})"
    return None


def set_numba_threads(threads):
    """Set gpukmeans' Numba thread count, after its CPU engine has chosen Numba's
    threading layer (a layer starts on first use, so importing the engine comes first)."""
    import numba

    from .. import _cpu, _cpu_runtime  # noqa: F401 (importing the engine chooses the layer)

    _cpu_runtime.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


class _SklearnLike(Contestant):
    """A scikit-learn-compatible estimator class: sklearn, sklearnex, gpukmeans. Each
    labels the data by its final centres (sklearnex too: its ``labels_`` are the final
    centres' nearest, checked on blobs)."""

    algorithm = "lloyd"
    final_labels = True
    extra = {}

    def estimator_class(self):
        raise NotImplementedError

    def _fit(self, X, **params):
        km = self.estimator_class()(algorithm=self.algorithm, **self.extra, **params).fit(X)
        return FitResult(to_host(km.cluster_centers_), int(km.n_iter_), float(km.inertia_))

    def fit_fixed(self, X, init, n_iter):
        k = init.shape[0]
        return self._fit(X, n_clusters=k, init=self.to_device(init), n_init=1,
                         max_iter=n_iter, tol=0.0)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        k = init.shape[0]
        return self._fit(X, n_clusters=k, init=self.to_device(init), n_init=1,
                         max_iter=max_iter, tol=tol)

    def fit_defaults(self, X, n_clusters, seed):
        return self._fit(X, n_clusters=n_clusters, random_state=seed)


class SklearnLloyd(_SklearnLike):
    key, library = "sklearn-lloyd", "scikit-learn"

    def estimator_class(self):
        from sklearn.cluster import KMeans

        return KMeans

    def kmeans_plusplus(self, X, n_clusters, seed):
        from sklearn.cluster import kmeans_plusplus

        return kmeans_plusplus(X, n_clusters, random_state=seed)[0]


class SklearnElkan(SklearnLloyd):
    key, algorithm = "sklearn-elkan", "elkan"

    def memory_bytes(self, n_samples, n_features, n_clusters):
        return n_samples * n_clusters * 4 + n_clusters * n_clusters * 8  # lower bounds

    def kmeans_plusplus(self, X, n_clusters, seed):
        raise NotSupported  # the same function as sklearn-lloyd's


class SklearnIntelex(_SklearnLike):
    key, library = "sklearnex", "scikit-learn-intelex"

    def availability(self):
        return _import_reason("sklearnex.cluster")

    def setup(self, threads):
        import daal4py  # oneDAL's threads are TBB's, which threadpoolctl does not limit

        daal4py.daalinit(threads)

    def estimator_class(self):
        from sklearnex.cluster import KMeans

        return KMeans

    def _fit(self, X, **params):
        # sklearnex logs whether it ran its own code or fell back to scikit-learn.
        records = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger = logging.getLogger("sklearnex")
        saved = logger.level, logger.propagate, logger.handlers
        logger.handlers, logger.propagate = [handler], False  # its own handler prints
        logger.setLevel(logging.INFO)
        try:
            result = super()._fit(X, **params)
        finally:
            logger.setLevel(saved[0])
            logger.propagate, logger.handlers = saved[1], saved[2]
        self.last_log = [r for r in records if "fit" in r]
        return result


class GpukmeansCPU(_SklearnLike):
    key, library, device = "gpukmeans-cpu", "gpukmeans", "cpu"
    needs_warmup = True

    def availability(self):
        try:
            from gpukmeans import KMeans  # noqa: F401
        except Exception as exc:
            return f"gpukmeans.KMeans is not importable ({type(exc).__name__}: {exc})"
        return None

    def setup(self, threads):
        set_numba_threads(threads)

    @property
    def extra(self):
        return {"device": self.device}

    def estimator_class(self):
        from gpukmeans import KMeans

        return KMeans

    def kmeans_plusplus(self, X, n_clusters, seed):
        import gpukmeans

        if not hasattr(gpukmeans, "kmeans_plusplus"):
            raise NotSupported("gpukmeans.kmeans_plusplus does not exist yet")
        centers, _ = gpukmeans.kmeans_plusplus(X, n_clusters, random_state=seed, device=self.device)
        return to_host(centers)


class _CupyDevice:
    """Data on the GPU through CuPy, device-wide synchronisation, pools freed after."""

    def to_device(self, X):
        import cupy

        return cupy.asarray(X)

    def sync(self):
        import cupy

        cupy.cuda.Device().synchronize()

    def release(self):
        free_cupy()


class GpukmeansGPU(_CupyDevice, GpukmeansCPU):
    """gpukmeans' CUDA engine on CuPy arrays (copy timed apart). Untested: no GPU here."""

    key, device, untested = "gpukmeans-gpu", "gpu", True

    def availability(self):
        reason = super().availability()
        if reason:
            return reason
        from .._device import gpu_status

        usable, why = gpu_status()
        return None if usable else why


class FaissCPU(Contestant):
    """faiss.Kmeans, subsampling switched off (``max_points_per_centroid`` raised)."""

    key, library = "faiss-cpu", "faiss"
    use_gpu = False

    def availability(self):
        return _import_reason("faiss")

    def setup(self, threads):
        import faiss

        faiss.omp_set_num_threads(threads)

    def _kmeans(self, X, init, n_iter):
        import faiss

        n_samples, n_features = X.shape
        km = faiss.Kmeans(
            n_features, init.shape[0], niter=n_iter, verbose=False, seed=0,
            max_points_per_centroid=n_samples,  # never subsample
            min_points_per_centroid=1,
            gpu=1 if self.use_gpu else False,  # True would spread over every GPU
        )
        km.train(X, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        return FitResult(np.array(km.centroids), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._kmeans(X, init, n_iter)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        raise NotSupported("faiss has no convergence test")


class FaissGPU(FaissCPU):
    """faiss.Kmeans(gpu=True) on host data (faiss copies it). Untested: no GPU here."""

    key, device, untested, use_gpu = "faiss-gpu", "gpu", True, True
    needs_warmup = host_input = True

    def availability(self):
        reason = _import_reason("faiss")
        if reason:
            return reason
        import faiss

        if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() < 1:
            return "faiss has no GPU support here (faiss-cpu build or no device)"
        return None


def _converged(shift, tol_abs, labels, labels_old, xp):
    """scikit-learn's two stopping rules: labels unchanged, or centre shift <= tol."""
    if labels_old is not None and bool((labels == labels_old).all()):
        return True
    return shift <= tol_abs


class NumpyNaive(Contestant):
    """The textbook Lloyd in NumPy: blocked ``-2 x.c + ||c||^2`` argmin, a sparse one-hot
    product for the sums; an empty cluster keeps its centre."""

    key, library = "numpy-naive", "numpy"

    @property
    def xp(self):
        return np

    def _assign(self, X, centers):
        xp = self.xp
        n_samples, n_clusters = X.shape[0], centers.shape[0]
        centers_sq = (centers * centers).sum(axis=1)
        rows = max(1, min(n_samples, BLOCK_ELEMENTS // n_clusters))
        labels = xp.empty(n_samples, dtype=xp.int64)
        for start in range(0, n_samples, rows):
            scores = centers_sq[None, :] - 2 * (X[start : start + rows] @ centers.T)
            labels[start : start + rows] = scores.argmin(axis=1)
        return labels

    def _sums(self, X, labels, n_clusters):
        import scipy.sparse as sp

        n_samples = X.shape[0]
        one_hot = sp.csr_matrix(
            (np.ones(n_samples, dtype=X.dtype), (labels, np.arange(n_samples))),
            shape=(n_clusters, n_samples),
        )
        return np.asarray(one_hot @ X)

    def _lloyd(self, X, init, max_iter, tol_abs):
        xp = self.xp
        centers = xp.asarray(init, dtype=X.dtype).copy()
        n_clusters = centers.shape[0]
        labels_old = None
        for n_iter in range(1, max_iter + 1):
            labels = self._assign(X, centers)
            sums = self._sums(X, labels, n_clusters)
            counts = xp.bincount(labels, minlength=n_clusters).astype(X.dtype)
            new = xp.where(counts[:, None] > 0, sums / xp.maximum(counts, 1)[:, None], centers)
            if tol_abs is not None:
                shift = float(((new - centers) ** 2).sum())
                if _converged(shift, tol_abs, labels, labels_old, xp):
                    centers = new
                    break
            centers = new
            labels_old = labels
        return FitResult(to_host(centers), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._lloyd(X, init, n_iter, None)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._lloyd(X, init, max_iter, tol_abs)


class CupyNaive(_CupyDevice, NumpyNaive):
    """The same textbook Lloyd on CuPy (atomic scatter-add). Untested: no GPU here."""

    key, library, device, untested = "cupy-naive", "cupy", "gpu", True
    needs_warmup = True

    def availability(self):
        reason = _import_reason("cupy")
        if reason:
            return reason
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "no CUDA device"
        except Exception as exc:
            return f"no usable CUDA device ({exc})"
        return None

    @property
    def xp(self):
        import cupy

        return cupy

    def _sums(self, X, labels, n_clusters):
        import cupy
        import cupyx

        sums = cupy.zeros((n_clusters, X.shape[1]), dtype=X.dtype)
        if hasattr(cupy.add, "at"):
            cupy.add.at(sums, labels, X)
        else:  # older CuPy
            cupyx.scatter_add(sums, labels, X)
        return sums


class TorchNaive(Contestant):
    """A straightforward PyTorch Lloyd: blocked ``cdist``/``argmin``, ``index_add_``."""

    key, library = "torch-cpu", "torch"
    torch_device = "cpu"

    def availability(self):
        return _import_reason("torch")

    def setup(self, threads):
        import torch

        torch.set_num_threads(threads)

    def to_device(self, X):
        import torch

        return torch.as_tensor(X, device=self.torch_device)

    def _lloyd(self, X, init, max_iter, tol_abs):
        import torch

        centers = torch.as_tensor(init, device=X.device, dtype=X.dtype).clone()
        n_samples, n_clusters = X.shape[0], centers.shape[0]
        rows = max(1, min(n_samples, BLOCK_ELEMENTS // n_clusters))
        labels_old = None
        for n_iter in range(1, max_iter + 1):
            labels = torch.cat(
                [torch.cdist(X[s : s + rows], centers).argmin(dim=1)
                 for s in range(0, n_samples, rows)]
            )
            sums = torch.zeros_like(centers).index_add_(0, labels, X)
            counts = torch.bincount(labels, minlength=n_clusters).to(X.dtype)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers)
            if tol_abs is not None:
                shift = float(((new - centers) ** 2).sum())
                if _converged(shift, tol_abs, labels, labels_old, torch):
                    centers = new
                    break
            centers = new
            labels_old = labels
        return FitResult(centers.cpu().numpy(), n_iter, None)

    def fit_fixed(self, X, init, n_iter):
        return self._lloyd(X, init, n_iter, None)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._lloyd(X, init, max_iter, tol_abs)


class _TorchCUDA:
    device, untested, needs_warmup = "gpu", True, True
    torch_device = "cuda"

    def availability(self):
        reason = _import_reason("torch")
        if reason:
            return reason
        import torch

        return None if torch.cuda.is_available() else "torch has no usable CUDA device"

    def sync(self):
        import torch

        torch.cuda.synchronize()

    def release(self):
        with contextlib.suppress(Exception):
            import torch

            torch.cuda.empty_cache()


class TorchCUDA(_TorchCUDA, TorchNaive):
    """The same PyTorch Lloyd on CUDA. Untested: no GPU here."""

    key = "torch-cuda"


class FastPytorchKMeans(TorchNaive):
    """fast-pytorch-kmeans' full-batch KMeans, given our initial centres."""

    key, library = "fast-pytorch-kmeans", "fast-pytorch-kmeans"

    def availability(self):
        return _import_reason("fast_pytorch_kmeans")

    def memory_bytes(self, n_samples, n_features, n_clusters):
        return 3 * n_samples * n_clusters * 4  # an n x k similarity and a k x n one-hot

    def _fit(self, X, init, max_iter, tol_abs):
        import torch
        from fast_pytorch_kmeans import KMeans

        # Its test is ``sum of squared centre shifts <= tol``: scikit-learn's absolute one.
        # A negative tol never stops: the fixed-work run.
        km = KMeans(n_clusters=init.shape[0], max_iter=max_iter, tol=tol_abs, verbose=0)
        km.fit_predict(X, centroids=torch.as_tensor(init, device=X.device, dtype=X.dtype))
        return FitResult(km.centroids.cpu().numpy(), max_iter if tol_abs < 0 else None, None)

    def fit_fixed(self, X, init, n_iter):
        return self._fit(X, init, n_iter, -1.0)

    def fit_converge(self, X, init, max_iter, tol, tol_abs):
        return self._fit(X, init, max_iter, tol_abs)


class FastPytorchKMeansCUDA(_TorchCUDA, FastPytorchKMeans):
    """fast-pytorch-kmeans on CUDA. Untested: no GPU here."""

    key = "fast-pytorch-kmeans-cuda"

    def availability(self):
        return FastPytorchKMeans.availability(self) or _TorchCUDA.availability(self)


CONTESTANTS = {
    c.key: c
    for c in (
        GpukmeansCPU, SklearnLloyd, SklearnElkan, SklearnIntelex, FaissCPU, TorchNaive,
        FastPytorchKMeans, NumpyNaive,
        GpukmeansGPU, FaissGPU, TorchCUDA, FastPytorchKMeansCUDA, CupyNaive,
    )
}
REFERENCE = "sklearn-lloyd"


def select_contestants(names=None, device="all"):
    """Instantiate the requested contestants (all by default), with availability."""
    keys = list(CONTESTANTS) if not names else names
    unknown = [k for k in keys if k not in CONTESTANTS]
    if unknown:
        raise ValueError(f"unknown contestants {unknown}; choose from {list(CONTESTANTS)}")
    chosen, report = {}, []
    for key in keys:
        c = CONTESTANTS[key]()
        if device != "all" and c.device != device:
            continue
        try:
            reason = c.availability()
        except Exception as exc:
            reason = f"availability check failed: {type(exc).__name__}: {exc}"
        report.append({**c.describe(), "available": reason is None, "reason": reason})
        if reason is None:
            chosen[key] = c
    return chosen, report
