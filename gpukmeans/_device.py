"""Which device a fit runs on: the one probe for a usable GPU, and the dispatch point.

The probe is silent and cached: it imports nothing heavy at package import, and
answers the same for the life of the process.
"""

import logging

from ._backend import current_backend, current_status


logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")


def gpu_status():
    """Return ``(usable, reason)``: whether a CUDA device can run our kernels, and why not.

    ``reason`` names the missing piece (no CuPy, no driver, no device) so that
    ``device="gpu"`` can say what to fix. Under :func:`gpukmeans._backend.use_backend`
    (the test suite's emulated device), that backend's answer.
    """
    return current_status()


def gpu_available():
    """True when ``device="gpu"`` would work in this process."""
    return gpu_status()[0]


def resolve_device(device):
    """Map ``"auto" | "cpu" | "gpu"`` to ``"cpu"`` or ``"gpu"``.

    ``"gpu"`` without a usable GPU is an error that says why; ``"auto"`` falls back to
    the CPU quietly (one DEBUG line).
    """
    if device == "cpu":
        return "cpu"
    usable, reason = gpu_status()
    if device == "gpu":
        if not usable:
            raise ValueError(f"device='gpu' was requested but no GPU is usable: {reason}.")
        return "gpu"
    if not usable:
        logger.debug("device='auto' chose the CPU: %s", reason)
    return "gpu" if usable else "cpu"


def array_module(device):
    """The array module (``numpy`` or ``cupy``) of a resolved device's engine."""
    if device == "gpu":
        return current_backend().xp
    import numpy

    return numpy


def get_engine(device, n_samples, n_features, n_clusters, sparse=False, unit_centers=False):
    """Return the :class:`gpukmeans._engine.Engine` for a resolved device name and the
    call's shapes.

    On the CPU, a problem too small to repay the Numba engine's compile runs on the
    NumPy engine (:mod:`gpukmeans._cpu_small`), which never imports Numba, and so do
    a larger fit's small single passes; the shapes alone decide (see
    :func:`gpukmeans._cpu_small.cpu_engine`). ``sparse``: the engine for CSR data
    (:mod:`gpukmeans._cpu_sparse`, :mod:`gpukmeans._gpu_sparse`), as scikit-learn picks
    ``lloyd_iter_chunked_sparse``. ``unit_centers`` (``metric="cosine"``): labels order
    the centers by dot product alone, their squared norms taken as exactly 1, so that
    an exact tie in ``x.c`` goes to the lowest index (as cosine similarity orders them),
    not to the center whose norm rounded lowest.
    """
    if sparse:
        if device == "gpu":
            from ._gpu_sparse import make_engine

            return make_engine(current_backend(), unit_centers)
        from ._cpu_sparse import make_engine

        return make_engine(unit_centers)
    if device == "gpu":
        from ._gpu import make_engine

        return make_engine(current_backend(), unit_centers)
    from ._cpu_small import cpu_engine

    # Python ints: n_clusters may be a NumPy integer (np.int32(20), from an array of
    # candidate k), whose products with the sizes would overflow, or raise OverflowError.
    return cpu_engine(int(n_samples), int(n_features), int(n_clusters), unit_centers)
