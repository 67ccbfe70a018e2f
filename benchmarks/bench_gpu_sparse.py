#!/usr/bin/env python
"""Issue 15's GPU rule: our CSR kernels (``kernels/sparse.cu``) against cuSPARSE through
CuPy, on a TF-IDF-like matrix, side by side in one process.

The GPU engine's sparse E-step is one fused kernel (``assign_labels_csr``: dot products
and argmin, nothing stored), its M-step a thread per feature over X's transpose
(``accumulate_csc``: no atomics, an order fixed by the data). The alternatives cuSPARSE
offers, through ``cupyx.scipy.sparse``:

- E-step: the SpMM ``X @ centers.T`` (an ``(n_samples, n_clusters)`` product written to
  memory), then ``||c||^2 - 2 x.c`` and an argmin;
- M-step: the SpMM ``X.T @ one_hot`` (``one_hot[i, labels[i]] = w_i``: a dense
  ``(n_samples, n_clusters)`` matrix), then the weights by ``bincount``.

Each pair runs alternately (ABAB...), each call ending in a device synchronisation;
medians. Reported per dtype and k: both times, their ratio, the fraction of labels on
which the two E-steps agree (ours are scikit-learn's order of summation; cuSPARSE's is
its own, so float64 may differ at exact ties only) and the largest difference between
the two M-steps' sums. Then one whole ``KMeans(device="gpu")`` fit per iteration, and
scikit-learn on the host's cores for k=20 (one iteration: its time grows with k).

The rule (which is faster, where) is written into ``gpukmeans/_gpu_sparse.py`` from this
run's results. ``--emulated`` runs the same code on the test suite's emulated device with
scipy.sparse standing in for cuSPARSE, at tiny sizes: a smoke test of this script, not a
measurement.

Usage, on a machine with a GPU (benchmarks/gpu_check.sh runs it)::

    PYTHONPATH=. python3 benchmarks/bench_gpu_sparse.py          # results/gpu-sparse-<date>.{md,json}
    PYTHONPATH=. python3 benchmarks/bench_gpu_sparse.py --quick  # smaller matrix
"""

import argparse
import json
import pathlib
import sys
import time
import warnings

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks", REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_sparse import zipf_tfidf  # noqa: E402

from gpukmeans.bench.reports import json_default  # noqa: E402
from gpukmeans.bench.timing import alternate  # noqa: E402

# The issue's TF-IDF shape: 200,000 documents x 100,000 terms, about 100 distinct terms
# each (130 tokens drawn from the Zipf law).
FULL = dict(n_samples=200_000, n_features=100_000, tokens_per_row=130, ks=(20, 256),
            dtypes=("float64", "float32"), repeats=7, fit_iter=5, sklearn_ks=(20,))
QUICK = dict(n_samples=50_000, n_features=30_000, tokens_per_row=100, ks=(20, 256),
             dtypes=("float64", "float32"), repeats=5, fit_iter=3, sklearn_ks=(20,))
EMULATED = dict(n_samples=300, n_features=400, tokens_per_row=12, ks=(5,),
                dtypes=("float64", "float32"), repeats=1, fit_iter=2, sklearn_ks=(5,))


def backend_for(emulated):
    """``(backend, sparse_module, synchronize, name)``: CUDA with cupyx.scipy.sparse, or
    the emulated device with scipy.sparse (a smoke test)."""
    if emulated:
        import scipy.sparse
        from cudaemu import device

        return device.device("plain").backend(), scipy.sparse, lambda: None, "emulated"
    import cupy
    import cupyx.scipy.sparse

    from gpukmeans._backend import cuda_backend

    return (cuda_backend(), cupyx.scipy.sparse, cupy.cuda.Device().synchronize,
            cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())


def library_e_step(X_sp, centers, centers_squared_norms, xp):
    """cuSPARSE's SpMM, then the argmin of ``||c||^2 - 2 x.c``."""
    values = X_sp @ centers.T  # (n_samples, n_clusters), dense
    values *= -2
    values += centers_squared_norms[None, :].astype(values.dtype)
    return values.argmin(axis=1).astype(xp.int32)


def library_m_step(X_t_sp, sample_weight, labels, n_clusters, xp):
    """cuSPARSE's SpMM ``X.T @ one_hot``, transposed to ``(n_clusters, n_features)``."""
    one_hot = xp.zeros((labels.shape[0], n_clusters), dtype=X_t_sp.dtype)
    one_hot[xp.arange(labels.shape[0]), labels] = sample_weight
    sums = xp.ascontiguousarray((X_t_sp @ one_hot).T).astype(xp.float64)
    weights = xp.bincount(labels, weights=sample_weight.astype(xp.float64), minlength=n_clusters)
    return sums, weights


def median_ms(fit):
    return 1e3 * fit["time_s"]["median"]


def run(config, emulated, log):
    from sklearn.cluster import KMeans as SKKMeans

    from gpukmeans import KMeans
    from gpukmeans._backend import use_backend
    from gpukmeans._gpu_sparse import SparseGpuKernels

    backend, sparse, synchronize, device_name = backend_for(emulated)
    xp = backend.xp
    kernels = SparseGpuKernels(backend)
    X64 = zipf_tfidf(config["n_samples"], config["n_features"], config["tokens_per_row"])
    rows = []
    for dtype in config["dtypes"]:
        X_host = X64.astype(dtype)
        X_sp = sparse.csr_matrix(X_host) if not emulated else X_host
        X_t_sp = X_sp.T.tocsr()
        X_csr, X_t = kernels.csr(X_sp), kernels.transpose(X_sp)
        sample_weight = xp.ones(X_host.shape[0], dtype=dtype)
        for k in config["ks"]:
            rng = np.random.default_rng(k)
            centers_host = X_host[rng.choice(X_host.shape[0], k, replace=False)].toarray()
            centers = xp.asarray(centers_host)
            norms = kernels.centers_norms(centers)
            labels_ours = xp.empty(X_host.shape[0], dtype=xp.int32)
            log(f"{dtype} k={k}: E-step")

            def ours_e():
                kernels.e_step_sparse(X_csr, centers, labels_ours)
                synchronize()
                return labels_ours

            def library_e():
                labels = library_e_step(X_sp, centers, norms, xp)
                synchronize()
                return labels

            e = alternate({"ours": ours_e, "cusparse": library_e}, config["repeats"], log=log)
            labels = e["ours"]["result"]
            agree = float((labels == e["cusparse"]["result"]).mean())
            log(f"{dtype} k={k}: M-step")

            def ours_m():
                result = kernels.accumulate_sparse(X_t, sample_weight, labels, k)
                synchronize()
                return result

            def library_m():
                result = library_m_step(X_t_sp, sample_weight, labels, k, xp)
                synchronize()
                return result

            m = alternate({"ours": ours_m, "cusparse": library_m}, config["repeats"], log=log)
            (sums_ours, weights_ours), (sums_lib, weights_lib) = (m["ours"]["result"],
                                                                  m["cusparse"]["result"])
            scale = float(abs(sums_ours).max()) or 1.0
            log(f"{dtype} k={k}: whole fits, {config['fit_iter']} iterations")
            with warnings.catch_warnings(), use_backend(backend):
                warnings.simplefilter("ignore")
                fit = alternate({"gpukmeans": lambda: KMeans(
                    k, init=centers_host, n_init=1, max_iter=config["fit_iter"], tol=0,
                    device="gpu").fit(X_sp)}, max(1, config["repeats"] // 2), log=log)
                sk = None
                if k in config["sklearn_ks"]:
                    sk = alternate({"sklearn": lambda: SKKMeans(
                        k, init=centers_host, n_init=1, max_iter=1, tol=0).fit(X_host)},
                        1, warmup=False, log=log)["sklearn"]
            rows.append(dict(
                dtype=dtype, k=k,
                e_step_ms={c: median_ms(e[c]) for c in e},
                e_step_ratio=median_ms(e["ours"]) / median_ms(e["cusparse"]),
                labels_agree=agree,
                m_step_ms={c: median_ms(m[c]) for c in m},
                m_step_ratio=median_ms(m["ours"]) / median_ms(m["cusparse"]),
                m_step_sums_max_rel_diff=float(abs(sums_ours - sums_lib).max()) / scale,
                m_step_weights_equal=bool((weights_ours == weights_lib).all()),
                fit_ms_per_iter=median_ms(fit["gpukmeans"]) / fit["gpukmeans"]["result"].n_iter_,
                fit_n_iter=int(fit["gpukmeans"]["result"].n_iter_),
                sklearn_ms_per_iter=None if sk is None else median_ms(sk),
                samples={"e": {c: e[c]["time_s"] for c in e}, "m": {c: m[c]["time_s"] for c in m},
                         "fit": fit["gpukmeans"]["time_s"]},
            ))
    shape = (f"{X64.shape[0]:,} x {X64.shape[1]:,}, {X64.nnz / X64.shape[0]:.0f} non-zeros "
             f"per row ({X64.nnz:,})")
    return device_name, shape, rows


def report(device_name, shape, rows, stamp, config, emulated):
    lines = [
        "# Sparse kernels on the GPU: ours against cuSPARSE (issue 15)",
        "",
        f"Device: {device_name}{' (EMULATED: a smoke test, not a measurement)' if emulated else ''}. "
        f"{stamp}. Matrix: {shape}, Zipf TF-IDF (benchmarks/bench_sparse.py's). Medians of "
        f"{config['repeats']}, alternating; each call synchronised.",
        "",
        "| dtype | k | E-step ours ms | E-step cuSPARSE SpMM + argmin ms | ratio | labels agree "
        "| M-step ours ms | M-step cuSPARSE SpMM ms | ratio | sums max rel. diff "
        "| fit ms/iter | scikit-learn ms/iter (host) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        sk = "" if r["sklearn_ms_per_iter"] is None else f"{r['sklearn_ms_per_iter']:.1f}"
        lines.append(
            f"| {r['dtype']} | {r['k']} | {r['e_step_ms']['ours']:.3f} "
            f"| {r['e_step_ms']['cusparse']:.3f} | {r['e_step_ratio']:.2f}x "
            f"| {r['labels_agree']:.6f} | {r['m_step_ms']['ours']:.3f} "
            f"| {r['m_step_ms']['cusparse']:.3f} | {r['m_step_ratio']:.2f}x "
            f"| {r['m_step_sums_max_rel_diff']:.1e} | {r['fit_ms_per_iter']:.2f} | {sk} |")
    lines += ["", "Ratio: ours / cuSPARSE's (below 1: our kernel is faster)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller matrix")
    parser.add_argument("--emulated", action="store_true",
                        help="the emulated device, tiny sizes: a smoke test of this script")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    config = EMULATED if args.emulated else QUICK if args.quick else FULL
    log = lambda line: print(line, flush=True)  # noqa: E731
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    started = time.perf_counter()
    device_name, shape, rows = run(config, args.emulated, log)
    markdown = report(device_name, shape, rows, stamp, config, args.emulated)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"gpu-sparse-{'emulated-' if args.emulated else ''}{stamp}"
    (out / f"{name}.md").write_text(markdown)
    (out / f"{name}.json").write_text(json.dumps(
        dict(device=device_name, matrix=shape, config=config, rows=rows,
             seconds=time.perf_counter() - started), indent=1, default=json_default))
    print(markdown)
    return rows


if __name__ == "__main__":
    main()
