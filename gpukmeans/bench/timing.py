"""Timing one call, and summarising samples."""

import contextlib
import time
import warnings

import numpy as np


def summarize(samples):
    """``{"min", "median", "max", "n", "samples"}`` of a list of numbers (None if empty)."""
    samples = [float(s) for s in samples]
    if not samples:
        return None
    return {
        "min": min(samples),
        "median": float(np.median(samples)),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


def timed(fn, sync=None):
    """``(seconds, result)`` of one call, synchronised when ``sync`` is given."""
    start = time.perf_counter()
    result = fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start, result


@contextlib.contextmanager
def collect_warnings(notes):
    """Silence warnings during a timed call, keeping each distinct message in ``notes``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        message = f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
        if message not in notes:
            notes.append(message)
