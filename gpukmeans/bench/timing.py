"""Timing one call, alternating contestants, and summarising samples."""

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


def timed(fn, sync=None, clock=time.perf_counter):
    """``(seconds, result)`` of one call, synchronised when ``sync`` is given.

    ``clock=time.process_time`` counts the CPU time of every thread of the process
    instead of the wall time: on a machine shared with other work it measures the
    work a call does (a dispatch rule's question), not how long it waited for a core.
    """
    start = clock()
    result = fn()
    if sync is not None:
        sync()
    return clock() - start, result


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


def alternate(calls, repeats, warmup=True, log=print, unit="ms", clock=time.perf_counter):
    """Time ``calls`` (``name -> fn``) alternately in ABBA order, on ``clock`` (see
    :func:`timed`).

    With ``warmup``, one untimed-for-statistics first call each (reported as
    ``first_call_s``). Returns ``name -> {"samples", "first_call_s", "result", "notes",
    "time_s"}``; each median is logged in ``unit`` ("ms" or "s").
    """
    scale, digits = (1e3, 1) if unit == "ms" else (1.0, 3)
    names = list(calls)
    out = {name: {"samples": [], "first_call_s": None, "result": None, "notes": []} for name in names}
    if warmup:
        for name in names:
            with collect_warnings(out[name]["notes"]):
                seconds, out[name]["result"] = timed(calls[name], clock=clock)
            out[name]["first_call_s"] = seconds
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            with collect_warnings(out[name]["notes"]):
                seconds, out[name]["result"] = timed(calls[name], clock=clock)
            out[name]["samples"].append(seconds)
    for name in names:
        out[name]["time_s"] = summarize(out[name]["samples"])
        time_s = out[name]["time_s"]
        log(f"    {name:10s} median {time_s['median'] * scale:9.{digits}f} {unit} "
            f"[{time_s['min'] * scale:.{digits}f}-{time_s['max'] * scale:.{digits}f}]")
    return out
