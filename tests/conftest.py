"""Shared test configuration: ``gpu`` tests are skipped where no usable GPU is present; the
emulated device (tests/cudaemu) is built once per session for the GPU engine's tests."""

import pytest


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from gpukmeans._device import gpu_status

    usable, reason = gpu_status()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def emulated_device():
    """The CUDA emulator (tests/cudaemu), plain build: ``kernels/*.cu`` compiled by g++ and
    run on the CPU. Built once per machine and cached; skipped where it cannot be built."""
    from cudaemu import build, device

    reason = build.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return device.device("plain")
