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


def get_engine(device):
    """Return the :class:`gpukmeans._engine.Engine` for a resolved device name."""
    if device == "gpu":
        from ._gpu import make_engine

        return make_engine(current_backend())
    from ._cpu import make_engine

    return make_engine()
