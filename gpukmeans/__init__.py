"""gpukmeans: k-means clustering on NVIDIA GPUs (CUDA kernels) and CPUs (Numba).

>>> from gpukmeans import KMeans
"""

__version__ = "0.1.0"

from ._device import gpu_available
from ._estimator import KMeans, kmeans_plusplus
from ._progress import progress_bars

__all__ = ["KMeans", "kmeans_plusplus", "gpu_available", "progress_bars", "__version__"]
