"""The same kernel inputs through the emulated device (tests/cudaemu) and the real GPU.

Run by ``benchmarks/gpu_check.sh`` on a device with g++. For a few shapes and both dtypes,
every engine function of :class:`gpukmeans._gpu.GpuKernels` gets identical inputs on both
backends; the report says, per output, whether the two agree bit for bit and, if not, by
how much. Labels that differ are checked against the float64 distances: a difference is
expected only at a near-tie (the GPU contracts products into FMAs and flushes subnormals,
g++ here does neither; cuBLAS and NumPy's BLAS sum the GEMM path's products in other
orders), and the report counts any that is not one.

    PYTHONPATH=.:tests python benchmarks/emulated_vs_real.py [--json FILE]
"""

import argparse
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SHAPES = [(1000, 3, 5), (2003, 64, 200), (3001, 784, 20), (1003, 17, 65)]


def _inputs(n_samples, n_features, n_clusters, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n_samples, n_features)) * 3 + rng.standard_normal(n_features))
    centers = X[rng.choice(n_samples, n_clusters, replace=False)] + 0.1 * rng.standard_normal(
        (n_clusters, n_features))
    weight = rng.uniform(0.5, 2.0, n_samples)
    labels = rng.integers(0, n_clusters, n_samples).astype(np.int32)
    candidates = rng.choice(n_samples, min(9, n_samples), replace=False).astype(np.int64)
    closest = ((X - X[0]) ** 2).sum(1)
    cast = dict(X=X, centers=centers, weight=weight, closest=closest)
    arrays = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in cast.items()}
    arrays.update(labels=labels, candidates=candidates)
    return arrays


def _outputs(gpu, a):
    """Every engine function's outputs on ``gpu``, as NumPy arrays."""
    xp = gpu.xp
    d = {k: xp.asarray(v) for k, v in a.items()}
    out = {}
    for path, launch in (("fused", gpu.assign_labels), ("gemm", gpu.assign_labels_gemm)):
        labels = xp.full(a["X"].shape[0], -1, dtype=np.int32)
        launch(d["X"], d["centers"], labels)
        out[f"labels_{path}"] = labels
    sums, weight = gpu.accumulate(d["X"], d["weight"], d["labels"], a["centers"].shape[0])
    out.update(sums=sums, weight_in_clusters=weight)
    out["inertia"] = gpu.inertia(d["X"], d["weight"], d["centers"], d["labels"]).reshape(1)
    out["assigned_distances"] = gpu.squared_distances_to_centers(d["X"], d["centers"], d["labels"])
    out["row_norms"] = gpu.row_norms(d["X"])
    out["transform"] = gpu.transform_distances(d["X"], d["centers"])
    distances, pot = gpu.kmeanspp_candidates(d["X"], out["row_norms"], d["weight"],
                                             d["candidates"], d["closest"])
    out.update(kmeanspp_distances=distances, kmeanspp_potentials=pot)
    return {k: v.get() if hasattr(v, "get") else np.asarray(v) for k, v in out.items()}


def compare(emulated, real, a):
    from label_checks import _near_tie_tolerance, sq_dist64

    rows = []
    for name in emulated:
        e, r = emulated[name], real[name]
        differ = np.flatnonzero((e != r).ravel())
        row = {"output": name, "elements": int(e.size), "differ": int(differ.size)}
        if name.startswith("labels"):
            # A near-tie: the two labels' float64 distances are within the working
            # precision's rounding of ||c||^2 - 2 x.c.
            X = a["X"][differ]
            d = sq_dist64(X, a["centers"])
            rows_ = np.arange(differ.size)
            gap = np.abs(d[rows_, e[differ]] - d[rows_, r[differ]])
            row["not_near_ties"] = int((gap > _near_tie_tolerance(X, a["centers"], X.dtype)).sum())
        elif differ.size:
            scale = np.maximum(np.abs(e.astype(np.float64)), 1e-300)
            row["max_rel_diff"] = float(np.max(np.abs(e.astype(np.float64) - r) / scale))
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    from cudaemu.device import device

    from gpukmeans._backend import cuda_backend
    from gpukmeans._gpu import GpuKernels

    from cudaemu.build import Unavailable

    try:
        emulated_gpu = GpuKernels(device("plain").backend())
    except Unavailable as exc:  # no g++ on this GPU host: nothing to compare against
        print(f"emulated-vs-real comparison skipped: {exc}")
        return 0
    real_gpu = GpuKernels(cuda_backend())
    report, bad = [], 0
    print("| shape | dtype | output | elements | differ | detail |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        for dtype in (np.float32, np.float64):
            a = _inputs(*shape, dtype)
            for row in compare(_outputs(emulated_gpu, a), _outputs(real_gpu, a), a):
                row.update(shape="n%d d%d k%d" % shape, dtype=np.dtype(dtype).name)
                report.append(row)
                bad += row.get("not_near_ties", 0)
                detail = (f"{row['not_near_ties']} not near-ties" if "not_near_ties" in row
                          else f"max rel diff {row['max_rel_diff']:.1e}" if row["differ"] else "bitwise")
                print(f"| {row['shape']} | {row['dtype']} | {row['output']} | {row['elements']} "
                      f"| {row['differ']} | {detail} |", flush=True)
    print(f"labels that differ and are not near-ties: {bad}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
