"""The shape matrix: every kernel, through the real launchers and engine functions of
:class:`gpukmeans._gpu.GpuKernels` (and :class:`gpukmeans._gpu_sparse.SparseGpuKernels`
for the CSR kernels, on the same data with most entries dropped), against NumPy
references (:mod:`.refs`).

Shapes: n_samples in {1, 7, 64, 65, 300, 1000}, n_features in {1, 3, 17, 64, 784},
n_clusters in {1, 2, 5, 16, 17, 33, 64, 65, 200} (around every tile, warp and piece
size), float32 and float64, unit or random weights (some zero), and three kinds of data:
normal, small integers (exact arithmetic, many exact ties) and duplicated points and
centers. Each check compares bit for bit with the kernel's documented arithmetic and,
with a tolerance, with float64.

The test suite runs it in-process (``tests/test_cudaemu.py``); sanitizer builds need their
runtime preloaded, so they run it as a command::

    PYTHONPATH=tests:. python -m cudaemu.matrix --variant asan --max-cost 20000    # --full: every variant

Prints one line per failure and a closing "N passed, N failed"; exit status 1 on failure.
"""

import argparse
import functools
import itertools
import math
import sys
import time
import traceback

import numpy as np
import scipy.sparse

from gpukmeans import _gpu as gpu
from gpukmeans._gpu_sparse import SparseGpuKernels

from . import refs
from .device import EmulatorError, device

N_SAMPLES = (1, 7, 64, 65, 300, 1000)
N_FEATURES = (1, 3, 17, 64, 784)
N_CLUSTERS = (1, 2, 5, 16, 17, 33, 64, 65, 200)
DTYPES = (np.float32, np.float64)
WEIGHTS = ("ones", "random")
KINDS = ("normal", "int", "dup")


class Mismatch(AssertionError):
    pass


def make_case(n, d, k, dtype, weights, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3) + rng.normal(size=d)
        C = X[rng.integers(0, n, size=k)] + 0.1 * rng.normal(size=(k, d))
    elif kind == "int":  # small integers: all arithmetic exact, many exact ties
        X = rng.integers(-2, 3, size=(n, d)).astype(float)
        C = rng.integers(-2, 3, size=(k, d)).astype(float)
    else:  # duplicate points and duplicate centers
        base = rng.normal(size=(max(1, n // 3), d))
        X = base[rng.integers(0, len(base), size=n)]
        C = X[rng.integers(0, n, size=k)].copy()
        if k > 1:
            C[k - 1] = C[0]  # the last center equals the first: ties must go to 0
            C[k // 2] = C[0]
    X = np.ascontiguousarray(X, dtype=dtype)
    C = np.ascontiguousarray(C, dtype=dtype)
    if weights == "ones":
        w = np.ones(n, dtype)
    else:
        w = rng.uniform(0.1, 3.0, size=n).astype(dtype)
        w[rng.random(n) < 0.1] = 0  # zero weights are allowed
    return X, C, w


def bitwise(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise Mismatch(f"{name}: shape {got.shape} != {want.shape}")
    same = (got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else got == want
    if not np.all(same):
        idx = np.argwhere(~same)
        first = tuple(idx[0])
        raise Mismatch(f"{name}: {len(idx)} of {got.size} differ; first at {first}: "
                       f"got {got[first]!r}, expected {want[first]!r}")


def close(name, got, want, rtol, atol=0.0):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    if np.any(bad):
        first = tuple(np.argwhere(bad)[0])
        raise Mismatch(f"{name}: {bad.sum()} of {got.size} outside rtol={rtol}; first at {first}: "
                       f"got {got[first]!r}, expected {want[first]!r}")


CHECKS = ("fused", "gemm", "e_step", "row_norms", "pairwise", "assigned", "inertia",
          "accumulate", "lloyd", "kmeanspp", "sparse")
"""The names of :func:`run_checks`' checks, in its order (``--only`` takes them)."""


def run_checks(G, n, d, k, dtype, weights, kind, seed, only=None):
    """Every check of one case through the launchers and engine functions of ``G`` (a
    :class:`gpukmeans._gpu.GpuKernels`); returns ``{check: None or the failure}``."""
    X, C, w = make_case(n, d, k, dtype, weights, kind, seed)
    T = np.dtype(dtype)
    eps = np.finfo(T).eps
    results = {}

    def check(name, fn):
        assert name in CHECKS, name
        if only and name not in only:
            return
        try:
            fn()
            results[name] = None
        except (Mismatch, EmulatorError) as e:
            results[name] = str(e)
        except Exception:
            results[name] = "crash: " + traceback.format_exc(limit=3)

    exact_labels, _ = refs.exact_assign_labels(X, C)
    sq = refs.ref_sq_distances(X, C)

    def fused():
        labels = np.full(n, -7, np.int32)
        G.assign_labels(X, C, labels)
        bitwise("labels vs exact float-T emulation", labels, exact_labels)
        # Against float64 distances: the chosen center is within rounding of the closest.
        dmin = sq.min(1)
        xn = (X.astype(float) ** 2).sum(1)
        cn = (C.astype(float) ** 2).sum(1).max()
        tol = 8 * eps * (d + 2) * (xn + cn + 1e-300)
        chosen = sq[np.arange(n), labels]
        close("labels: distance to chosen center vs closest (float64)", chosen, dmin, 0, tol)
        if kind == "int":  # exact arithmetic: must be the lowest index of the exact minimum
            bitwise("labels vs float64 argmin (exact data)", labels, np.argmin(sq, 1).astype(np.int32))

    def gemm_labels(unit_centers):
        """The GEMM path's labels and the emulation's: ``||c||^2`` taken as exactly 1 for
        ``unit_centers`` (cosine fits)."""
        labels = np.full(n, -7, np.int32)
        G.assign_labels_gemm(X, C, labels, unit_centers)
        norms = np.ones(k) if unit_centers else refs.exact_row_squared_norms(C)
        chunk = gpu.gemm_chunk_rows(n, k, T.itemsize)
        want = np.empty(n, np.int32)
        for s in range(0, n, chunk):
            want[s:s + chunk] = refs.exact_argmin_from_dots(np.matmul(X[s:s + chunk], C.T), norms)
        return labels, want

    def gemm():
        labels, want = gemm_labels(False)
        bitwise("gemm labels vs exact emulation", labels, want)
        if kind == "int":
            bitwise("gemm labels vs float64 argmin (exact data)", labels, np.argmin(sq, 1).astype(np.int32))
        labels, want = gemm_labels(True)
        bitwise("gemm labels (unit centers) vs exact emulation", labels, want)

    def e_step():
        labels = np.full(n, -7, np.int32)
        G.e_step(X, C, labels)
        path = gpu.choose_assign_path(n, d, k, T.itemsize)
        if path == "fused":
            bitwise(f"e_step ({path}) labels", labels, exact_labels)
        else:
            assert labels.min() >= 0 and labels.max() < k, "labels out of range"
        G.e_step(X, C, labels, unit_centers=True)  # always the GEMM path
        bitwise("e_step (unit centers) labels", labels, gemm_labels(True)[1])

    def row_norms():
        got = G.row_norms(X)
        bitwise("row_norms vs exact butterfly emulation", got, refs.exact_row_squared_norms(X))
        close("row_norms vs float64", got, (X.astype(float) ** 2).sum(1), 1e-14, 1e-300)

    def pairwise():
        got = G.transform_distances(X, C)
        bitwise("pairwise_distances vs exact emulation", got, refs.exact_pairwise_distances(X, C))
        # float32 output: one rounding; float64: the reference sums in another order.
        close("pairwise_distances vs float64", got, np.sqrt(sq), 2 * eps if T.itemsize == 4 else 4 * d * eps, 0)

    def assigned():
        got = G.squared_distances_to_centers(X, C, exact_labels)
        bitwise("assigned_distances vs exact emulation", got,
                refs.exact_assigned_distances(X, C, exact_labels))

    def inertia():
        got = float(G.inertia(X, w, C, exact_labels))
        want = refs.ref_inertia(X, w, C, exact_labels)
        close("inertia vs float64", got, want, 1e-12, 1e-300)

    def accumulate():
        for label_kind in ("assigned", "random", "last", "first_and_last"):
            if label_kind == "assigned":
                labels = exact_labels
            elif label_kind == "random":
                labels = np.random.default_rng(seed + 1).integers(0, k, size=n).astype(np.int32)
            elif label_kind == "last":
                labels = np.full(n, k - 1, np.int32)
            else:
                labels = np.where(np.arange(n) % 2 == 0, 0, k - 1).astype(np.int32)
            sums, wic = G.accumulate(X, w, labels, k)
            es, ew = refs.exact_accumulate(X, w, labels, k, gpu.ACCUMULATE_PIECE_SAMPLES)
            bitwise(f"accumulate sums ({label_kind} labels) vs exact order", sums, es)
            bitwise(f"accumulate weights ({label_kind} labels) vs exact order", wic, ew)
            rs, rw = refs.ref_accumulate(X, w, labels, k)
            close(f"accumulate sums ({label_kind} labels) vs float64", sums, rs, 1e-12, 1e-9)

    def lloyd():
        labels = np.full(n, -1, np.int32)
        sums, wic = G.lloyd_iter(X, w, C, labels)
        if gpu.choose_assign_path(n, d, k, T.itemsize) == "fused":
            bitwise("lloyd_iter labels", labels, exact_labels)
        es, ew = refs.exact_accumulate(X, w, labels, k, gpu.ACCUMULATE_PIECE_SAMPLES)
        bitwise("lloyd_iter sums", sums, es)
        bitwise("lloyd_iter weights", wic, ew)

    def kmeanspp():
        rng = np.random.default_rng(seed + 2)
        for n_cand in sorted({1, 2 + int(math.log(max(k, 1))), 8, 9, 17}):
            ids = rng.integers(0, n, size=n_cand)
            closest = refs.ref_sq_distances(X, X[:1]).min(1).astype(T)
            x_sq = refs.exact_row_squared_norms(X)
            dist, pot = G.kmeanspp_candidates(X, x_sq, w, ids, closest)
            want = refs.exact_kmeanspp_distances(X, ids, closest)
            bitwise(f"kmeanspp distances ({n_cand} candidates) vs exact emulation", dist, want)
            close(f"kmeanspp potentials ({n_cand} candidates) vs float64", pot,
                  want.astype(float) @ w.astype(float), 1e-12, 1e-300)

    def sparse():
        """The CSR kernels (sparse.cu) on X with most entries dropped (empty rows too)."""
        rng = np.random.default_rng(seed + 3)
        Xs = scipy.sparse.csr_matrix(np.where(rng.random((n, d)) < 0.4, X, 0).astype(dtype))
        labels = np.full(n, -7, np.int32)
        G.e_step_sparse(Xs, C, labels)
        bitwise("e_step (csr) labels vs exact emulation", labels,
                refs.exact_assign_labels_csr(Xs, C))
        unit_labels = np.full(n, -7, np.int32)
        G.e_step_sparse(Xs, C, unit_labels, unit_centers=True)
        bitwise("e_step (csr, unit centers) labels vs exact emulation", unit_labels,
                refs.exact_assign_labels_csr(Xs, C, unit_centers=True))
        if kind == "int":
            bitwise("e_step (csr) labels vs float64 argmin (exact data)", labels,
                    np.argmin(refs.ref_sq_distances(Xs.toarray(), C), 1).astype(np.int32))
        x_sq = G.row_norms_sparse(Xs)
        bitwise("row_norms (csr) vs exact emulation", x_sq, refs.exact_row_squared_norms_csr(Xs))
        got = G.transform_sparse(Xs, C)
        close("pairwise_distances (csr) vs float64", got,
              np.sqrt(refs.ref_sq_distances(Xs.toarray(), C)), 0, 1e-5 if T.itemsize == 4 else 1e-7)
        invalid = labels.copy()
        invalid[::5] = -1
        invalid[1::7] = k
        bitwise("assigned_distances (csr) vs exact emulation",
                G.assigned_distances_sparse(Xs, C, invalid),
                refs.exact_assigned_distances_csr(Xs, C, invalid))
        close("inertia (csr) vs float64", float(G.inertia_sparse(Xs, w, C, labels)),
              refs.ref_inertia(Xs.toarray(), w, C, labels), 1e-10, 1e-12)
        for label_kind, some_labels in (("assigned", labels), ("with invalid", invalid)):
            sums, wic = G.accumulate_sparse(G.transpose(Xs), w, some_labels, k)
            bitwise(f"accumulate (csr, {label_kind} labels) sums vs exact order", sums,
                    refs.exact_accumulate_csc(Xs, w, some_labels, k))
            valid = (some_labels >= 0) & (some_labels < k)
            close(f"accumulate (csr, {label_kind} labels) weights vs float64", wic,
                  np.bincount(some_labels[valid], weights=w[valid].astype(float), minlength=k),
                  1e-12, 1e-300)
        ids = rng.integers(0, n, size=min(n, 9))
        closest = refs.ref_sq_distances(Xs.toarray(), Xs[:1].toarray())[:, 0].astype(T)
        dist, pot = G.kmeanspp_candidates_sparse(Xs, x_sq, w, ids, closest)
        want = np.minimum(refs.exact_squared_distances_csr(Xs, x_sq, Xs[ids].toarray(), x_sq[ids]),
                          closest[None, :])
        bitwise("kmeanspp distances (csr) vs exact emulation", dist, want)
        close("kmeanspp potentials (csr) vs float64", pot, want.astype(float) @ w.astype(float),
              1e-12, 1e-300)

    check("fused", fused)
    check("gemm", gemm)
    check("e_step", e_step)
    check("row_norms", row_norms)
    check("pairwise", pairwise)
    check("assigned", assigned)
    check("inertia", inertia)
    check("accumulate", accumulate)
    check("lloyd", lloyd)
    check("kmeanspp", kmeanspp)
    check("sparse", sparse)
    return results


def cases(quick=True, max_cost=0):
    """``(n, d, k, dtype, weights, kind)`` tuples. ``quick``: one variant per shape (the
    variants rotate through the shapes); else all 12 variants for the small shapes, 3 for
    the middle ones. ``max_cost``: leave out shapes with ``n * d * k`` above it."""
    out = []
    variants = list(itertools.product(DTYPES, WEIGHTS, KINDS))
    for i, (n, d, k) in enumerate(itertools.product(N_SAMPLES, N_FEATURES, N_CLUSTERS)):
        cost = n * d * max(k, 16)
        if quick:
            chosen = [variants[i % len(variants)]]
        elif cost <= 65 * 17 * 65:
            chosen = variants
        elif cost <= 300 * 64 * 65:
            chosen = [variants[(i + j * 5) % len(variants)] for j in range(3)]
        else:
            chosen = [variants[i % len(variants)]]
        out.extend((n, d, k, dt, wt, kind) for dt, wt, kind in chosen)
    if max_cost:
        out = [c for c in out if c[0] * c[1] * c[2] <= max_cost]
    return out


def run(emulated, todo, schedules=("forward",), only=None, report=functools.partial(print, flush=True)):
    """Run ``todo`` cases on ``emulated`` (a :class:`.device.Device`) under each schedule;
    return the list of failures (dicts)."""
    G = SparseGpuKernels(emulated.backend())  # the dense kernels' launchers and the CSR ones
    failures = []
    for index, (n, d, k, dt, wt, kind) in enumerate(todo):
        for schedule in schedules:
            emulated.set_schedule(schedule, seed=7)
            try:
                results = run_checks(G, n, d, k, dt, wt, kind, seed=1000 + index, only=only)
            finally:
                emulated.set_schedule("forward")
            for name, error in results.items():
                if error:
                    failures.append(dict(check=name, n=n, d=d, k=k, dtype=np.dtype(dt).name,
                                         weights=wt, kind=kind, schedule=schedule, error=error))
                    report(f"FAIL {name} n={n} d={d} k={k} {np.dtype(dt).name} w={wt} {kind} "
                           f"{schedule}: {error.splitlines()[0][:300]}")
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="plain", choices=("plain", "asan", "tsan"))
    parser.add_argument("--full", action="store_true", help="every variant of the small shapes")
    parser.add_argument("--schedules", action="store_true",
                        help="also run every case with reversed and random thread order")
    parser.add_argument("--schedule", choices=("forward", "reverse", "random"),
                        help="run every case in this thread order only")
    parser.add_argument("--max-cost", type=float, default=0, help="skip shapes with n*d*k above")
    parser.add_argument("--kernels", default="", help="a folder of .cu sources (planted bugs)")
    parser.add_argument("--only", default="", help="comma-separated checks")
    args = parser.parse_args(argv)
    emulated = device(args.variant, args.kernels or None)
    todo = cases(quick=not args.full, max_cost=args.max_cost)
    schedules = (("forward", "reverse", "random") if args.schedules
                 else (args.schedule or "forward",))
    only = set(args.only.split(",")) - {""}
    start = time.perf_counter()
    failures = run(emulated, todo, schedules, only)
    n_checks = len(todo) * len(schedules) * (len(only) or len(CHECKS))
    names = {name for name, _, _ in emulated.launches}
    print(f"{len(todo)} shapes x {len(schedules)} schedules, {len(emulated.launches)} launches "
          f"of {len(names)} instantiations, {time.perf_counter() - start:.0f} s ({args.variant})")
    print(f"{n_checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
