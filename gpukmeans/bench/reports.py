"""The reports of a run: ``<name>.json`` (every number, schema :data:`SCHEMA`) and
``<name>.md`` (one table per workload), with the plots beside them."""

import json
import pathlib

import numpy as np

from .contestants import REFERENCE
from .environment import hardware_line, versions_line
from .floors import peak
from .plots import write_plots

SCHEMA = "gpukmeans-bench/1"


def _ms(stats, key="median"):
    return "—" if not stats else f"{stats[key] * 1e3:.1f}"


def _ms_range(stats):
    if not stats:
        return "—"
    if stats["n"] == 1:
        return f"{stats['median'] * 1e3:.1f} (1 run)"
    return f"{stats['median'] * 1e3:.1f} [{stats['min'] * 1e3:.1f}–{stats['max'] * 1e3:.1f}]"


def _num(x, fmt):
    return "—" if x is None else format(x, fmt)


def _peak_sgemm(floors, prefix):
    rate = floors.get(f"{prefix}sgemm_peak_gflops") or peak(floors[f"{prefix}sgemm_gflops"])
    source = floors.get(f"{prefix}sgemm_peak_source", "square product")
    return f"{rate:.0f} GFLOP/s SGEMM ({source}, float32)"


def render_markdown(result):
    env = result["environment"]
    lines = [
        f"# gpukmeans benchmark ({result['profile']} profile)",
        "",
        f"- Date: {env['date']}; commit {env['commit'] or 'unknown'}"
        f"{' (with uncommitted changes)' if env.get('dirty') else ''}",
        f"- Hardware: {hardware_line(env)}",
        f"- Versions: {versions_line(env)}",
        f"- Floor (same run, best sample): {peak(result['floors']['bandwidth_gbps']):.1f} GB/s "
        f"memory copy, {_peak_sgemm(result['floors'], '')}"
        + (f"; GPU {peak(result['floors']['gpu_bandwidth_gbps']):.0f} GB/s copy, "
           f"{_peak_sgemm(result['floors'], 'gpu_')}"
           if "gpu_bandwidth_gbps" in result["floors"] else ""),
        f"- Run time: {result['elapsed_s']:.0f} s",
        "",
        "Times are medians [min–max] in ms over the samples taken after each contestant's first "
        "call. *per iter* = fixed-work fit time / iterations run (includes the fit's fixed costs: "
        "validation, final assignment); *marginal* = (that fit's median time - a one-iteration "
        "fit's from the same centres) / (the iterations between them): an iteration without "
        "the fixed costs (a difference of two medians: noisy on small shapes; none where a "
        "fit stopped early on strict convergence, as it then skips the final labelling pass "
        "the one-iteration fit makes); *× floor* divides *per iter* by this machine's floor for one "
        "iteration (the larger of its 2nkd flops at the peak SGEMM rate and one read of X); *× ref* divides it by "
        "the reference's (scikit-learn Lloyd) per-iteration time (k-means++: whole times). Inertia is recomputed here from each "
        "contestant's final centres; *Δinertia* is relative to the reference; *labels* is the "
        "fraction of points assigned as the reference assigns them (same initial centres, so no "
        "permutation). GPU rows marked † have never run on a GPU in this project's CI."
        + (f" Before the first workload every contestant made "
           f"{result['settings']['warm_up_fits']} untimed fits of 20,000 x 16 blobs, k=16, "
           "alternated (a new process's first fits run slow)."
           if result.get("settings", {}).get("warm_up_fits") else "")
        + (f" Each timed call was followed by a pause of "
           f"{result['settings']['settle_seconds']:g} s, so that the threads a library "
           "leaves spinning after a call are idle before the next contestant's."
           if result.get("settings", {}).get("settle_seconds") else ""),
        "",
    ]
    not_run = [c for c in result["contestants"] if not c["available"]]
    if not_run:
        lines.append("Not run here: " + "; ".join(f"{c['key']} ({c['reason']})" for c in not_run))
        lines.append("")
    for s in result["skipped_workloads"]:
        lines.append(f"Workload {s['workload']} skipped: {s['reason']}.")
    by_workload = {}
    for r in result["results"]:
        by_workload.setdefault(r["workload"], []).append(r)
    for wl in result["workloads"]:
        rows = by_workload.get(wl["name"], [])
        lines += _workload_table(wl, rows)
    return "\n".join(lines) + "\n"


_FIT_COLUMNS = (
    "contestant", "per iter ms", "marginal ms", "× floor", "× ref", "first call ms", "iters", "Δinertia",
    "labels", "to convergence ms (iters)", "k-means++ ms", "× ref", "notes",
)


def _workload_title(wl):
    return (f"{wl['name']}: {wl['dataset']} {wl['n_samples']:,} x {wl['n_features']} "
            f"{wl.get('dtype', 'float32')}, k={wl['n_clusters']}, {wl['n_iter']} iterations")


def _workload_table(wl, rows):
    lines = ["", f"## {_workload_title(wl)}", ""]
    for device, floor in (wl.get("floors") or {}).items():
        if floor.get("floor_s"):
            lines.append(f"Floor per iteration ({device}): {floor['floor_s'] * 1e3:.3g} ms "
                         f"(2nkd flops at peak SGEMM {floor['flop_s'] * 1e3:.3g} ms, one read "
                         f"of X {floor['read_s'] * 1e3:.3g} ms); BLAS `X @ C.T` on this shape "
                         f"takes {floor['gemm_s'] * 1e3:.3g} ms.")
            lines.append("")
    get = {(r["contestant"], r["benchmark"], r.get("seed")): r for r in rows}
    references = {r["reference"] for r in rows if r.get("reference")}
    if references and references != {REFERENCE}:
        lines += [f"Reference for Δinertia and labels: {', '.join(sorted(references))} "
                  "(scikit-learn does not run this shape).", ""]
    keys = list(dict.fromkeys(r["contestant"] for r in rows))
    lines += ["| " + " | ".join(_FIT_COLUMNS) + " |", "|" + "---|" * len(_FIT_COLUMNS)]
    for cells in _fit_rows(wl, rows):
        if len(cells) == len(_FIT_COLUMNS):
            lines.append("| " + " | ".join(cells) + " |")
        else:  # the reason it did not run, then empty cells
            lines.append(f"| {cells[0]} | {cells[1]} |" + " |" * (len(_FIT_COLUMNS) - 2))
    seeds = sorted({r["seed"] for r in rows if r.get("seed") is not None})
    if seeds:
        lines += ["", f"Library defaults, `KMeans({wl['n_clusters']}, random_state=seed)` end to end "
                  "(own k-means++ init): time ms and Δinertia vs scikit-learn on the same seed.", "",
                  "| contestant | " + " | ".join(f"seed {s}" for s in seeds) + " | median ms | × ref |",
                  "|---|" + "---|" * (len(seeds) + 2)]
        for key in keys:
            cells, times, ref_times = [], [], []
            for seed in seeds:
                r = get.get((key, "time_fit_defaults", seed), {})
                ref = get.get(("sklearn-lloyd", "time_fit_defaults", seed), {})
                if r.get("status") != "ok":
                    cells.append(r.get("status", "—"))
                    continue
                t = r["time_s"]["median"]
                times.append(t)
                if ref.get("status") == "ok":
                    ref_times.append(ref["time_s"]["median"])
                cells.append(f"{t * 1e3:.0f} ({_num(r.get('inertia_rel_diff'), '+.1e')})")
            if not times:
                continue
            med = float(np.median(times))
            ratio = med / float(np.median(ref_times)) if ref_times else None
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {med * 1e3:.0f} | {_num(ratio, '.2f')} |")
    return lines


def _fit_rows(wl, rows):
    """A workload's main table, the cells of :data:`_FIT_COLUMNS` for each contestant, or
    ``[name, reason]`` for one whose fixed-work fit has no time."""
    get = {(r["contestant"], r["benchmark"], r.get("seed")): r for r in rows}
    ref_fit = get.get(("sklearn-lloyd", "time_fit", None))
    ref_init = get.get(("sklearn-lloyd", "time_init", None))
    table = []
    for key in dict.fromkeys(r["contestant"] for r in rows):
        fit = get.get((key, "time_fit", None), {})
        conv = get.get((key, "time_fit_converge", None), {})
        init = get.get((key, "time_init", None), {})
        name = key + (" †" if fit.get("untested") else "")
        if fit.get("status") != "ok":
            table.append([name, fit.get("reason") or fit.get("status", "—")])
            continue
        ratio_ref = _ratio(fit, ref_fit, "per_iter_s")
        conv_cell = "—"
        if conv.get("status") == "ok":
            conv_cell = f"{_ms(conv['time_s'])} ({_num(conv.get('n_iter'), 'd')})"
        elif conv:
            conv_cell = conv.get("reason", conv.get("status"))[:40]
        init_cell = _ms_range(init.get("time_s")) if init.get("status") == "ok" else "—"
        notes = list(fit.get("notes", []))[:2]
        if fit.get("h2d_s"):
            notes.insert(0, f"H2D copy {_ms(fit['h2d_s'])} ms excluded "
                            f"(fit incl. copy {fit['time_with_h2d_s'] * 1e3:.1f} ms)")
        if fit.get("n_iter") is not None and fit["n_iter"] != wl["n_iter"]:
            notes.insert(0, f"stopped after {fit['n_iter']} of {wl['n_iter']} iterations "
                            "(strict convergence)")
        if fit.get("first_call_used_as_sample"):
            notes.append("single slow run")
        if fit.get("library_log"):
            notes.append("; ".join(fit["library_log"])[:120])
        table.append([
            name, _ms_range(fit.get("per_iter_s")),
            _num(fit.get("marginal_per_iter_s") and fit["marginal_per_iter_s"] * 1e3, ".1f"),
            _num(fit.get("ratio_to_floor"), ".2f"),
            _num(ratio_ref, ".2f"),
            _num(fit.get("first_call_s") and fit["first_call_s"] * 1e3, ".0f"),
            _num(fit.get("n_iter"), "d"), _num(fit.get("inertia_rel_diff"), "+.1e"),
            _num(fit.get("label_agreement"), ".4f"), conv_cell, init_cell,
            _num(_ratio(init, ref_init), ".2f"), "; ".join(notes).replace("|", "/"),
        ])
    return table


def render_text(result):
    """The results for a terminal: each workload's main table as the markdown has it, less
    its notes, in aligned columns."""
    lines = [f"Workload {s['workload']} skipped: {s['reason']}." for s in result["skipped_workloads"]]
    by_workload = {}
    for r in result["results"]:
        by_workload.setdefault(r["workload"], []).append(r)
    columns = _FIT_COLUMNS[:-1]
    for wl in result["workloads"]:
        table = _fit_rows(wl, by_workload.get(wl["name"], []))
        timed = [cells[:-1] for cells in table if len(cells) == len(_FIT_COLUMNS)]
        widths = [max(map(len, column)) for column in zip(columns, *timed)]
        lines += ["", _workload_title(wl), _aligned(columns, widths)]
        for cells in table:
            if len(cells) == len(_FIT_COLUMNS):
                lines.append(_aligned(cells[:-1], widths))
            else:
                lines.append(f"  {cells[0]:<{widths[0]}}  {cells[1]}")
    lines += ["",
              "ms: medians [min–max] after the first call; marginal: (the fit - a one-iteration fit) /",
              "the iterations between, fixed costs out; × floor: per iteration / this machine's floor;",
              "× ref, Δinertia, labels: against scikit-learn's Lloyd from the same centres; † never run",
              "on a GPU in CI. Notes and each library's own defaults: in the markdown report."]
    return "\n".join(lines).lstrip("\n") + "\n"


def _aligned(cells, widths):
    first, *rest = cells
    return "  " + "  ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:])])


def _ratio(record, reference, field="time_s"):
    if not record or not reference or record.get("status") != "ok" or reference.get("status") != "ok":
        return None
    if not record.get(field) or not reference.get(field):
        return None
    return record[field]["median"] / reference[field]["median"]


def json_default(o):
    """What ``json.dumps`` cannot write itself: NumPy scalars and arrays, paths."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    return repr(o)


def write_reports(result, out_dir, name, plots=True, log=print):
    """``<name>.json``, ``<name>.md`` and (matplotlib permitting) ``<name>-*.png``."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    pngs = write_plots(result, out_dir, name) if plots else []
    result["files"] = [json_path.name, md_path.name] + [p.name for p in pngs]
    json_path.write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    md_path.write_text(render_markdown(result))
    log(f"wrote {', '.join(str(out_dir / f) for f in result['files'])}")
    return json_path, md_path, pngs

