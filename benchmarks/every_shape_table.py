"""The README's every-shape table, from one or more runs of the CPU harness.

    python benchmarks/every_shape_table.py benchmarks/results/harness-full.json [more.json ...]

Each cell is a contestant's time per iteration of the fixed-work fit (its fit time over the
iterations it ran, so its fixed costs are in it), the median of all the runs' samples
pooled, with the iterations in brackets. "ours / best" divides gpukmeans' cell by the
lowest peer's, pooled and then run by run. "whole fit" does the same with the fits'
whole times: where a peer stops on its own convergence test after fewer iterations, or
has none (faiss runs all it is given), per-iteration times spread different fixed costs,
and the whole fit compares the same call. "default fit" does it with each library's own
default fit, ``KMeans(k, random_state=seed)`` from its own k-means++ (faiss has none, and
is left out), the median over the seeds, with the median iterations of ours and of that
peer (the seeds' picks differ between libraries, and a worse local optimum takes more
iterations: on blobs of as many modes as clusters, 2 against 9-17). "marginal" does it with the cost of one more
iteration (the fixed-work fit's median time less a one-iteration fit's, over the
iterations between them; runs from before that measurement have none), the median over
the runs: the fixed costs out, whatever the iterations each ran. "k-means++" divides
gpukmeans' seeding time by scikit-learn's. Prints markdown on stdout.
"""

import json
import sys

import numpy as np

OURS = "gpukmeans-cpu"
PEERS = {"sklearn-lloyd": "scikit-learn lloyd", "sklearn-elkan": "scikit-learn elkan",
         "sklearnex": "sklearnex", "faiss-cpu": "faiss"}


def _title(workload):
    dataset = "mnist" if workload["dataset"] == "mnist" else "blobs"
    dtype = "" if workload["dtype"] == "float32" else f" {workload['dtype']}"
    return (f"{dataset} {workload['n_samples']:,} x {workload['n_features']}{dtype}, "
            f"k={workload['n_clusters']:,}")


def _samples(runs, workload, contestant, benchmark, field):
    """Per run, the samples of ``field`` (``per_iter_s`` or ``time_s``), and the
    iterations of the last run that has them."""
    per_run, n_iter = [], None
    for run in runs:
        rows = [r for r in run["results"] if r["workload"] == workload
                and r["contestant"] == contestant and r["benchmark"] == benchmark
                and r.get("status") == "ok"]
        per_run.append([s for r in rows for s in r[field]["samples"]])
        if rows:
            n_iter = rows[-1].get("n_iter", n_iter)
    return per_run, n_iter


def _default_iterations(runs, workload, contestant):
    """The median over the seeds (and runs) of the default fits' iterations."""
    return _median([r["n_iter"] for run in runs for r in run["results"]
                    if r["workload"] == workload and r["contestant"] == contestant
                    and r["benchmark"] == "time_fit_defaults" and r.get("status") == "ok"
                    and r.get("n_iter") is not None])


def _marginal(runs, workload, contestant):
    """The median over the runs of the fixed-work fit's ``marginal_per_iter_s``."""
    return _median([r["marginal_per_iter_s"] for run in runs for r in run["results"]
                    if r["workload"] == workload and r["contestant"] == contestant
                    and r["benchmark"] == "time_fit" and "marginal_per_iter_s" in r])


def _median(values):
    return float(np.median(values)) if values else None


def _ratio(ours, peers):
    best = min(((v, k) for k, v in peers.items() if v is not None), default=None)
    if ours is None or best is None:
        return None, None
    return ours / best[0], best[1]


def table(runs):
    workloads = list({w["name"]: w for run in runs for w in run["workloads"]}.values())
    header = (["workload", "gpukmeans"] + list(PEERS.values())
              + ["ours / best peer (pooled)", "each run", "whole fit, ours / best",
                 "marginal, ours / best", "default fit, ours / best",
                 "k-means++ ours / scikit-learn"])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for w in workloads:
        name = w["name"]
        cells, per_iter, whole, default, per_run_iter = [], {}, {}, {}, {}
        for key in [OURS, *PEERS]:
            samples, n_iter = _samples(runs, name, key, "time_fit", "per_iter_s")
            fit_samples, _ = _samples(runs, name, key, "time_fit", "time_s")
            default_samples, _ = _samples(runs, name, key, "time_fit_defaults", "time_s")
            per_iter[key] = _median([s for run in samples for s in run])
            whole[key] = _median([s for run in fit_samples for s in run])
            default[key] = _median([s for run in default_samples for s in run])
            per_run_iter[key] = [_median(run) for run in samples]
            cells.append("—" if per_iter[key] is None
                         else f"{per_iter[key] * 1e3:.3g} ({n_iter})")
        if per_iter[OURS] is None:
            continue
        pooled, best = _ratio(per_iter[OURS], {k: per_iter[k] for k in PEERS})
        each = [_ratio(per_run_iter[OURS][i], {k: per_run_iter[k][i] for k in PEERS})[0]
                for i in range(len(runs))]
        whole_ratio, whole_best = _ratio(whole[OURS], {k: whole[k] for k in PEERS})
        default_ratio, default_best = _ratio(default[OURS], {k: default[k] for k in PEERS})
        marginal = {key: _marginal(runs, name, key) for key in [OURS, *PEERS]}
        marginal_ratio, marginal_best = (
            _ratio(marginal[OURS], {k: v for k, v in marginal.items() if k != OURS and v and v > 0})
            if marginal[OURS] and marginal[OURS] > 0 else (None, None))
        init, _ = _samples(runs, name, OURS, "time_init", "time_s")
        init_ref, _ = _samples(runs, name, "sklearn-lloyd", "time_init", "time_s")
        init_ours = _median([s for run in init for s in run])
        init_theirs = _median([s for run in init_ref for s in run])
        cells += [
            "—" if pooled is None else f"{pooled:.2f}x ({PEERS[best]})",
            ", ".join("—" if r is None else f"{r:.2f}" for r in each),
            "—" if whole_ratio is None else f"{whole_ratio:.2f}x ({PEERS[whole_best]})",
            "—" if marginal_ratio is None else
            f"{marginal_ratio:.2f}x ({PEERS[marginal_best]}; ours {marginal[OURS] * 1e3:.3g} ms)",
            "" if default_ratio is None else
            f"{default_ratio:.2f}x ({PEERS[default_best]}; iterations "
            f"{_default_iterations(runs, name, OURS):g} / "
            f"{_default_iterations(runs, name, default_best):g})",
            "" if init_ours is None or init_theirs is None else
            f"{init_ours * 1e3:.0f} / {init_theirs * 1e3:.0f} ms ({init_ours / init_theirs:.2f}x)",
        ]
        lines.append(f"| {_title(w)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(paths):
    runs = [json.load(open(path)) for path in paths]
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
