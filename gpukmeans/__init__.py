"""gpukmeans: k-means clustering on NVIDIA GPUs (CUDA kernels) and CPUs (Numba).

>>> from gpukmeans import KMeans
"""

__version__ = "0.1.0"

__all__ = [
    "KMeans", "MiniBatchKMeans", "kmeans_plusplus", "gpu_available", "progress_bars",
    "InvalidParameterError", "__version__",
]

# The public names are imported on first use (PEP 562), so that ``import gpukmeans`` and
# the command's ``--help`` do not pay for scikit-learn's import (about a second).
_LAZY = {
    "KMeans": "._estimator",
    "MiniBatchKMeans": "._minibatch",
    "kmeans_plusplus": "._estimator",
    "gpu_available": "._device",
    "progress_bars": "._progress",
    "InvalidParameterError": "._validation",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
