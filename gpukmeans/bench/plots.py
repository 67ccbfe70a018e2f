"""The PNG plots of a run: time per iteration against n, k and d, and per library on MNIST."""

import pathlib

import numpy as np

from .contestants import CONTESTANTS
from .environment import hardware_line

_MARKERS = {"cpu": "o", "gpu": "s"}


def contestant_styles(contestants):
    """``key -> (colour, marker)`` for ``(key, library, device)`` triples in a fixed order.

    A contestant's style follows from its place in that order, never from its place in one
    plot's legend, so it keeps its colour from plot to plot even where others did not run.
    Each library gets one hue of matplotlib's tab20, its first contestant the dark tone and
    its second the light one (gpukmeans on CPU and on GPU: two blues); the marker says the
    device. Distinct for up to ten libraries of up to two contestants each.
    """
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    hues, shades, styles = {}, {}, {}
    for key, library, device in contestants:
        hue = hues.setdefault(library, len(hues))
        shade = shades.get(library, 0)
        shades[library] = shade + 1
        styles[key] = (palette[(2 * hue + shade) % len(palette)], _MARKERS[device])
    return styles


def write_plots(result, out_dir, name):
    """PNG plots (time per iteration vs n, k, d; per library on MNIST). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    workloads = {w["name"]: w for w in result["workloads"]}
    fits = [r for r in result["results"] if r["benchmark"] == "time_fit" and r["status"] == "ok"]
    # Built once from every contestant there is, in the registry's order: the same colours
    # in every plot of this run, and of any other run.
    styles = contestant_styles(dict.fromkeys(
        [(key, c.library, c.device) for key, c in CONTESTANTS.items()]
        + [(r["contestant"], r["library"], r["device"]) for r in fits
           if r["contestant"] not in CONTESTANTS]))
    written = []
    for group, axis in (("sweep_n", "n_samples"), ("sweep_k", "n_clusters"), ("sweep_d", "n_features")):
        series = {}
        for r in fits:
            if r["group"] == group and r.get("per_iter_s"):
                x = workloads[r["workload"]][axis]
                series.setdefault(r["contestant"], []).append((x, r["per_iter_s"]["median"]))
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, points in sorted(series.items()):
            points.sort()
            color, marker = styles[key]
            ax.plot(*zip(*points), color=color, marker=marker, label=key)
        floors = sorted({(workloads[w][axis], workloads[w]["floor"]["floor_s"])
                         for w in workloads if workloads[w]["group"] == group
                         and (workloads[w].get("floor") or {}).get("floor_s")})
        if floors:
            ax.plot(*zip(*floors), "k--", label="floor (this machine)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel("seconds per iteration")
        fixed = [a for a in ("n_samples", "n_features", "n_clusters") if a != axis]
        group_wls = [w for w in workloads.values() if w["group"] == group]
        held = ", ".join(f"{a}={group_wls[0][a]:,}" for a in fixed
                         if len({w[a] for w in group_wls}) == 1)
        ax.set_title(f"Time per iteration vs {axis} ({held}, blobs, float32)\n"
                     f"{hardware_line(result['environment'])}", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
        path = pathlib.Path(out_dir) / f"{name}-{group}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    # Per-iteration time per library, one bar group per MNIST/notebook workload.
    names = [w for w in workloads if workloads[w]["group"] in ("mnist", "notebook", "anchor")]
    keys = list(dict.fromkeys(r["contestant"] for r in fits if r["workload"] in names))
    if names and keys:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            values = []
            for w in names:
                r = next((r for r in fits if r["workload"] == w and r["contestant"] == key), None)
                values.append(r["per_iter_s"]["median"] * 1e3 if r and r.get("per_iter_s") else 0)
            ax.bar(np.arange(len(names)) + i * width, values, width, label=key,
                   color=styles[key][0])
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
        ax.set_ylabel("ms per iteration")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("Time per iteration per library", fontsize=9)
        path = pathlib.Path(out_dir) / f"{name}-per-library.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

