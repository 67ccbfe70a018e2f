"""Distributed k-means on Dask: :class:`KMeans` over the row blocks of a ``dask.array``.

``import gpukmeans`` never imports this module (nor Dask); ``import gpukmeans.dask`` does.

How a fit runs:

1. One validation pass over the blocks: their array type (NumPy or CuPy), finiteness,
   per-feature sums and squared deviations (combined with Chan's formula), the largest
   absolute value, and the weights' checks. Errors are raised here, before any iteration.
2. The data are centred on the fit's mean, as :class:`gpukmeans.KMeans` centres them, and
   persisted on the workers once. They are never gathered to the client.
3. Initial centers (k-means||, k-means++ on a sample, random, or an array). Each pass
   over the data is one call to a Dask actor per worker (:class:`_Runner`, as in the
   iterations below), its partials added in the same fixed tree. For k-means|| the
   workers keep each sample's distance to its nearest candidate and that candidate's
   number, so a round sends only the candidates, and the candidates' weights need no
   E-step against all of them; a block run where they are not kept recomputes them
   from the candidates, batch by batch, bitwise the same.
4. Lloyd's iterations are :func:`gpukmeans._lloyd.lloyd`, the loop of every gpukmeans fit
   (convergence test, empty-cluster relocation, final E-step), over :class:`_DaskRun`:
   each step sends the centers to a Dask actor on each worker (:class:`_Runner`), which runs
   the engine's own step (:attr:`gpukmeans._engine.Engine.lloyd_iter`) on the blocks it
   holds and answers with float64 per-cluster sums and weights and an exact count of the
   labels that changed (the worker keeps each block's last labels). The client adds the
   partials in a tree fixed by the block order (never by which worker answered first),
   so the result does not depend on the number of workers, on threads or processes, or
   on a worker recomputing a lost block; a block no actor holds runs as a Dask task.
"""

import asyncio
import functools
import logging
import numbers
import sys
import time
import uuid

import numpy as np

import dask
import dask.array as da
from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin,
                          TransformerMixin)
from sklearn.utils.validation import _check_feature_names, check_is_fitted, validate_data

from . import _validation
from ._device import array_module, get_engine, resolve_device
from ._gpu import is_device_array
from ._init import nearer_candidates
from ._lloyd import farthest, lloyd, relocation_resolution, to_host

logger = logging.getLogger(__name__)

__all__ = ["KMeans"]

INITS = ("k-means||", "k-means++", "random")

# Bahmani et al. (2012) take O(log psi) rounds, psi the cost of the first center; psi
# depends on the data's units, and their experiments show a handful of rounds with
# l = 2 k already seeding as well as k-means++. A fixed default keeps the init's cost
# independent of the data's scale; init_max_iter changes it.
DEFAULT_INIT_ROUNDS = 5

# init="k-means++" runs on a uniform sample of this many rows per cluster (at least
# KMEANSPP_MIN_SAMPLE, at most all rows), gathered to the client.
KMEANSPP_SAMPLE_PER_CLUSTER = 32
KMEANSPP_MIN_SAMPLE = 10_000

# Stages of the random streams, so that no two draws of a fit share a stream.
_STAGE_FIRST, _STAGE_ROUND, _STAGE_SAMPLE = 0, 1, 2


# ----------------------------------------------------------------- block tasks
# Module-level functions, run on the workers. Each block's arguments are validated and
# prepared by the fit; "Prior validation of data is assumed" throughout.

def _engine(device, X, n_clusters):
    return get_engine(device, max(X.shape[0], 1), X.shape[1], n_clusters)


STATS_CHUNK_BYTES = 2**16


def _refuse_sparse_block(block, name="X"):
    """Blocks are dense: a scipy or cupyx sparse matrix is named (its ufuncs failed
    deep inside a pass, with messages that said nothing of sparse matrices)."""
    if _validation._is_sparse(block):
        raise TypeError(
            f"{name}'s blocks are sparse matrices ({type(block).__name__}); "
            "gpukmeans.dask.KMeans takes dense NumPy or CuPy blocks (densify them with "
            f"{name}.map_blocks(lambda b: b.toarray()), or fit a scipy.sparse matrix in "
            "memory with gpukmeans.KMeans)."
        )


def _check_query_block(X, centers):
    """predict, transform and score check each block as it is computed (they are lazy):
    gpukmeans.KMeans's checks of a query, finiteness and the usable magnitude."""
    _refuse_sparse_block(X)
    xp = _validation.array_module(X)
    X = _validation.kernel_view(xp.asarray(X, dtype=centers.dtype))
    if X.shape[0] and not bool(xp.isfinite(X).all()):
        raise ValueError(f"Input X contains NaN or infinity, in a block of {X.shape[0]} rows.")
    _validation.check_magnitude(X, centers=centers)
    return X


def _block_stats(X, sample_weight, block_index):
    """One block's validation numbers: array type, finiteness, float64 sums and squared
    deviations per feature, largest absolute value, and the weights' checks."""
    _refuse_sparse_block(X)
    kind = "cupy" if is_device_array(X) else "numpy"
    xp = _validation.array_module(X)
    n_samples, n_features = X.shape
    # float64 copies of a few rows at a time (about STATS_CHUNK_BYTES), not of the block:
    # a block-sized float64 copy and its temporaries made this pass 3-4x slower.
    step = max(1, STATS_CHUNK_BYTES // (8 * max(n_features, 1)))
    chunks = [slice(start, start + step) for start in range(0, n_samples, step)]
    block_sum, absmax, finite = xp.zeros(n_features), xp.zeros(()), True
    for rows in chunks:
        part = X[rows].astype(xp.float64)
        finite = finite & xp.isfinite(part).all()
        block_sum += part.sum(axis=0)
        absmax = xp.maximum(absmax, xp.abs(part).max())
    finite = bool(finite)
    stats = {"kind": kind, "n": n_samples, "finite": finite, "dtype": X.dtype.str}
    if finite and n_samples:
        block_mean = block_sum / n_samples
        m2 = xp.zeros(n_features)
        for rows in chunks:
            deviation = X[rows].astype(xp.float64) - block_mean
            m2 += (deviation * deviation).sum(axis=0)
        stats["sum"], stats["m2"] = to_host(block_sum), to_host(m2)
        stats["absmax"] = float(absmax)
    else:
        stats["sum"] = stats["m2"] = np.zeros(X.shape[1])
        stats["absmax"] = 0.0
    if sample_weight is not None:
        sw = to_host(sample_weight).astype(np.float64)
        stats["w_finite"] = bool(np.isfinite(sw).all())
        stats["w_negative"] = bool((sw < 0).any())
        stats["w_max"] = float(sw.max()) if sw.size else 0.0
        positive = sw[sw > 0]
        stats["w_positive"] = int(positive.shape[0])
        stats["w_min_positive"] = float(positive.min()) if positive.size else np.inf
    else:
        stats["w_finite"], stats["w_negative"] = True, False
        stats["w_max"], stats["w_positive"] = (1.0 if n_samples else 0.0), n_samples
        stats["w_min_positive"] = 1.0 if n_samples else np.inf
    return _leaf_stats(stats, block_index)


def _combine_stats(a, b):
    """Chan et al.'s pairwise update of counts, sums and squared deviations."""
    n = a["n"] + b["n"]
    out = {
        "kinds": a["kinds"] | b["kinds"],
        "n": n,
        "bad_blocks": a["bad_blocks"] + b["bad_blocks"],
        "bad_weight_blocks": a["bad_weight_blocks"] + b["bad_weight_blocks"],
        "negative_weight_blocks": a["negative_weight_blocks"] + b["negative_weight_blocks"],
        "sum": a["sum"] + b["sum"],
        "absmax": max(a["absmax"], b["absmax"]),
        "w_max": max(a["w_max"], b["w_max"]),
        "w_min_positive": min(a["w_min_positive"], b["w_min_positive"]),
        "w_positive": a["w_positive"] + b["w_positive"],
    }
    if a["n"] == 0 or b["n"] == 0:
        out["m2"] = a["m2"] + b["m2"]
    else:
        delta = b["sum"] / b["n"] - a["sum"] / a["n"]
        out["m2"] = a["m2"] + b["m2"] + delta**2 * (a["n"] * b["n"] / n)
    return out


def _leaf_stats(stats, block_index):
    return {
        "kinds": frozenset([stats["kind"]]),
        "n": stats["n"],
        "bad_blocks": () if stats["finite"] else (block_index,),
        "bad_weight_blocks": () if stats["w_finite"] else (block_index,),
        "negative_weight_blocks": (block_index,) if stats["w_negative"] else (),
        "sum": stats["sum"],
        "m2": stats["m2"],
        "absmax": stats["absmax"],
        "w_max": stats["w_max"],
        "w_min_positive": stats["w_min_positive"],
        "w_positive": stats["w_positive"],
    }


def _prepare_block(X, X_mean, device):
    """The block the fit works on: on the engine's side, in the fit's dtype, minus the
    fit's mean (NumPy's broadcast subtraction, as :attr:`Engine.centered` does)."""
    xp = array_module(device)
    X = xp.asarray(X, dtype=X_mean.dtype)
    return xp.ascontiguousarray(X - xp.asarray(X_mean))


def _prepare_weight(sample_weight, exponent, dtype, device):
    """The block's weights, divided by the fit's power of two (exact), in the fit's dtype."""
    xp = array_module(device)
    sw = xp.asarray(sample_weight, dtype=xp.float64)
    return xp.ldexp(sw, -exponent).astype(dtype)


def _ones_block(X, dtype, device):
    return array_module(device).ones(X.shape[0], dtype=dtype)


# Each worker keeps, per fit and block, the labels of the block's last step, so that the
# next step counts exactly how many labels changed (the driver's strict-convergence test)
# and relocation finds the step's labels without an E-step. Dask does not know of them: a
# step that runs where they are not (its worker lost, the task stolen by an idle worker)
# assigns the block to the previous centers again, which it is also given.
_LAST_LABELS = {}


def _assigned(engine, X, centers, fit_key=None, block_index=None, n_iter=None):
    """The block's labels against ``centers``: step ``n_iter``'s, when kept on this
    worker (``centers`` are then that step's ``centers_old``); else an E-step."""
    kept = _LAST_LABELS.get((fit_key, block_index))
    if kept is not None and kept[0] == n_iter:
        return kept[1]
    labels = engine.xp.empty(X.shape[0], dtype=engine.xp.int32)
    engine.assign_labels(X, centers, labels)
    return labels


def _step_block(X, sample_weight, centers_old, centers_before, device, fit_key, block_index,
                n_iter):
    """One engine step on a block: ``(sums, weight_in_clusters, n_changed)``, float64
    sums and weights, and how many labels differ from step ``n_iter - 1``'s (against
    ``centers_before``; all of them at the first step)."""
    n_clusters, n_features = centers_old.shape
    if X.shape[0] == 0:
        return np.zeros((n_clusters, n_features)), np.zeros(n_clusters), 0
    engine = _engine(device, X, n_clusters)
    xp = engine.xp
    labels = xp.full(X.shape[0], -1, dtype=xp.int32)
    with engine.runtime():
        if n_iter > 1:
            labels_before = _assigned(engine, X, xp.asarray(centers_before), fit_key,
                                      block_index, n_iter - 1)
        sums, weight_in_clusters = engine.lloyd_iter(X, sample_weight, xp.asarray(centers_old),
                                                     labels)
    _LAST_LABELS[(fit_key, block_index)] = (n_iter, labels)
    n_changed = X.shape[0] if n_iter == 1 else int((labels != labels_before).sum())
    return to_host(sums), to_host(weight_in_clusters), n_changed


def _combine_steps(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _distances_block(X, centers_old, device, fit_key, block_index, n_iter):
    """float64 squared distance of each sample to its center of step ``n_iter``."""
    if X.shape[0] == 0:
        return np.empty(0)
    engine = _engine(device, X, centers_old.shape[0])
    centers = engine.xp.asarray(centers_old)
    with engine.runtime():
        labels = _assigned(engine, X, centers, fit_key, block_index, n_iter)
        return to_host(engine.assigned_distances(X, centers, labels))


def _far_rows_block(X, sample_weight, centers_old, device, rows, fit_key, block_index,
                    n_iter):
    """What :func:`gpukmeans._lloyd.move_to_empty_clusters` needs of the block's
    ``rows``: ``(resolution, labels, weights, float64 rows)``."""
    if rows.size == 0:
        return np.empty(0), np.empty(0, np.int32), np.empty(0), np.empty((0, X.shape[1]))
    engine = _engine(device, X, centers_old.shape[0])
    xp = engine.xp
    centers = xp.asarray(centers_old)
    with engine.runtime():
        labels = to_host(_assigned(engine, X, centers, fit_key, block_index, n_iter))[rows]
        chosen = X[xp.asarray(rows)]
        resolution = relocation_resolution(X.dtype, X.shape[1], to_host(engine.row_norms(chosen)),
                                           centers_old, labels)
    return (resolution, labels, to_host(sample_weight[xp.asarray(rows)]),
            to_host(chosen).astype(np.float64))


def _inertia_block(X, sample_weight, centers, device, fit_key=None, block_index=None,
                   n_iter=None):
    """The block's inertia (float64) against ``centers``, with step ``n_iter``'s labels
    when they are kept here and ``centers`` are that step's, else after an E-step."""
    if X.shape[0] == 0:
        return 0.0
    engine = _engine(device, X, centers.shape[0])
    centers = engine.xp.asarray(centers)
    with engine.runtime():
        labels = _assigned(engine, X, centers, fit_key, block_index, n_iter)
        return float(engine.inertia(X, sample_weight, centers, labels))


def _block_rng(seed, stage, round_, block_index):
    """The random stream of one block at one stage: fixed by the seed and the block's
    position, never by the worker that runs it."""
    return np.random.default_rng([seed, stage, round_, block_index])


def _sample_block(X, sample_weight, n_draws, seed, stage, weighted, block_index, offset):
    """The block's ``n_draws`` largest Efraimidis-Spirakis keys ``log(u) / w``: the
    top keys over all blocks are a weighted sample without replacement. Unweighted:
    every sample of positive weight counts once. ``(keys, indices, rows, weights)``,
    sorted by key (ties: by index)."""
    u = _block_rng(seed, stage, 0, block_index).random(X.shape[0])
    w = to_host(sample_weight).astype(np.float64)
    if not weighted:
        w = (w > 0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
    if 0 < n_draws < keys.size:
        # Only the rows that can be among the top n_draws are sorted (all of those tied
        # with the n_draws-th key, so that ties still go to the lowest index).
        threshold = np.partition(keys, keys.size - n_draws)[keys.size - n_draws]
        rows = np.flatnonzero(keys >= threshold)
    else:
        rows = np.arange(keys.size)
    rows = rows[np.lexsort((rows, -keys[rows]))][:n_draws]
    rows = rows[np.isfinite(keys[rows])]
    xp = _validation.array_module(X)
    return (keys[rows], offset + rows, to_host(X[xp.asarray(rows)]),
            to_host(sample_weight[xp.asarray(rows)]))


def _merge_samples(a, b, n_draws):
    """The top ``n_draws`` of two blocks' :func:`_sample_block` answers."""
    merged = [np.concatenate([x, y]) for x, y in zip(a, b)]
    rows = np.lexsort((merged[1], -merged[0]))[:n_draws]
    return tuple(m[rows] for m in merged)


def _concatenate(a, b):
    return tuple(np.concatenate([x, y]) for x, y in zip(a, b))


# k-means|| state: each worker keeps, per fit and block, each sample's float64 squared
# distance to its nearest candidate so far and that candidate's number, after the
# batches of candidates applied so far. A pass is given every batch: where the state is
# not kept (a task run elsewhere, a worker lost) the block applies them all again, one
# batch after another as the kept state had them, so the result is bitwise the same.
_CLOSEST = {}


def _forget_fit(fit_key):
    """Drop what this process keeps of the fit (labels, k-means|| state)."""
    for kept in (_LAST_LABELS, _CLOSEST):
        for key in [key for key in kept if key[0] == fit_key]:
            kept.pop(key, None)


def _nearest_candidates(X, batches, device, fit_key, block_index):
    """``(closest_dist_sq, nearest)`` of the block after the candidate ``batches`` (a
    list of ``(n_b, n_features)`` arrays, numbered in order across batches): float64
    squared distances from the differences to the nearest candidate, and its int64
    number (see :func:`gpukmeans._init.nearer_candidates`)."""
    kept = _CLOSEST.get((fit_key, block_index))
    if kept is None or kept[0] > len(batches):
        kept = (0, np.full(X.shape[0], np.inf), np.full(X.shape[0], -1, np.int64))
    n_applied, closest, nearest = kept
    first = sum(batch.shape[0] for batch in batches[:n_applied])
    for batch in batches[n_applied:]:
        if batch.shape[0] and X.shape[0]:
            engine = _engine(device, X, batch.shape[0])
            with engine.runtime():
                closest, nearest = nearer_candidates(engine, X, engine.xp.asarray(batch), first,
                                                     closest, nearest)
        first += batch.shape[0]
    _CLOSEST[(fit_key, block_index)] = (len(batches), closest, nearest)
    return closest, nearest


def _cost_block(X, sample_weight, batches, device, fit_key, block_index):
    """k-means||'s cost of the block, ``sum w d^2`` (float64), after ``batches``."""
    closest, _ = _nearest_candidates(X, batches, device, fit_key, block_index)
    return float((to_host(sample_weight).astype(np.float64) * closest).sum())


def _oversample_block(X, sample_weight, batches, device, cost, oversampling, seed, round_,
                      fit_key, block_index, offset):
    """k-means|| sampling: each sample independently with probability
    ``min(1, l w d^2 / cost)``. Returns the chosen rows' global indices and the rows."""
    closest, _ = _nearest_candidates(X, batches, device, fit_key, block_index)
    u = _block_rng(seed, _STAGE_ROUND, round_, block_index).random(X.shape[0])
    w = to_host(sample_weight).astype(np.float64)
    rows = np.flatnonzero(u * cost < oversampling * w * closest)
    xp = _validation.array_module(X)
    return offset + rows, to_host(X[xp.asarray(rows)])


def _candidate_weight_block(X, sample_weight, batches, device, fit_key, block_index):
    """Weight of the block's samples nearest to each candidate (float64), after
    ``batches``."""
    _, nearest = _nearest_candidates(X, batches, device, fit_key, block_index)
    return np.bincount(nearest, weights=to_host(sample_weight).astype(np.float64),
                       minlength=sum(batch.shape[0] for batch in batches))


def _add(a, b):
    return a + b


def _predict_block(X, origin, centers, device):
    """Labels of a block against the fitted centers, measured where the fit measured."""
    X = _check_query_block(X, centers)
    if X.shape[0] == 0:
        return array_module(device).empty(0, dtype=np.int32)
    engine = _engine(device, X, centers.shape[0])
    xp = engine.xp
    X = xp.asarray(X, dtype=centers.dtype)
    if origin is not None:
        X = X - xp.asarray(origin)
    labels = xp.empty(X.shape[0], dtype=xp.int32)
    with engine.runtime():
        engine.assign_labels(xp.ascontiguousarray(X), xp.asarray(centers), labels)
    return labels


def _transform_block(X, centers, device):
    X = _check_query_block(X, centers)
    xp = array_module(device)
    if X.shape[0] == 0:
        return xp.empty((0, centers.shape[0]), dtype=centers.dtype)
    engine = _engine(device, X, centers.shape[0])
    X = xp.ascontiguousarray(xp.asarray(X, dtype=centers.dtype))
    with engine.runtime():
        return engine.pairwise_distances(X, xp.asarray(centers))


def _score_block(X, sample_weight, origin, centers, device):
    X = _check_query_block(X, centers)
    weights = to_host(sample_weight)
    if not np.isfinite(weights).all():
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if (weights < 0).any():
        raise ValueError("Negative values in data passed to sample_weight.")
    if X.shape[0] == 0:
        return 0.0
    engine = _engine(device, X, centers.shape[0])
    xp = engine.xp
    X = xp.asarray(X, dtype=centers.dtype)
    if origin is not None:
        X = X - xp.asarray(origin)
    X = xp.ascontiguousarray(X)
    # Contiguous and writable, as a fit's weights: a block of da.ones is a read-only
    # broadcast (stride 0), a kind of array the kernels would be compiled for again.
    sample_weight = _validation.kernel_view(xp.ascontiguousarray(sample_weight,
                                                                 dtype=centers.dtype))
    centers = xp.asarray(centers)
    labels = xp.empty(X.shape[0], dtype=xp.int32)
    with engine.runtime():
        engine.assign_labels(X, centers, labels)
        return float(engine.inertia(X, sample_weight, centers, labels))


# ------------------------------------------------------------- graph helpers

# Partials are combined SPLIT_EVERY at a time, left to right, one group after another:
# a fixed tree, as shallow as dask's own reductions make it. In the validation and init
# passes each group is a task; Lloyd's partials are added on the client, in the same
# tree.
SPLIT_EVERY = 32


def _tree(parts, combine, split_every=SPLIT_EVERY):
    """Combine ``parts`` in groups of ``split_every`` neighbours, level by level, in a
    tree fixed by their count and order alone: the same additions in the same order
    whatever runs them. ``combine`` takes the list of a group."""
    parts = list(parts)
    while len(parts) > 1:
        parts = [combine(parts[i:i + split_every]) if len(parts[i:i + split_every]) > 1
                 else parts[i] for i in range(0, len(parts), split_every)]
    return parts[0]


def _sequential(combine_two):
    """A group combiner: ``combine_two`` folded left to right over the group."""
    def combine(group):
        result = group[0]
        for part in group[1:]:
            result = combine_two(result, part)
        return result
    return combine


def _delayed_combine(combine_two):
    """A tree's combiner for Delayed parts: one task per group."""
    group_task = dask.delayed(_sequential(combine_two), pure=True)
    return lambda group: group_task(group)


def _pairwise(lo, hi, leaf, combine_two):
    """The value of the fixed pairwise tree over the blocks ``lo`` to ``hi - 1``:
    ``combine_two(tree(lo, mid), tree(mid, hi))`` with ``mid = (lo + hi) // 2``. Fixed
    by the block count alone, so that any subtree has the same value wherever it is
    computed (a worker holding all its blocks, or the client)."""
    if hi - lo == 1:
        return leaf(lo)
    mid = (lo + hi) // 2
    return combine_two(_pairwise(lo, mid, leaf, combine_two),
                       _pairwise(mid, hi, leaf, combine_two))


def _held_subtrees(lo, hi, held, leaf, combine_two, out):
    """INOUT ``out``: ``{(lo, hi): value}`` of the largest subtrees of the pairwise tree
    over ``lo`` to ``hi - 1`` whose blocks are all in ``held``."""
    if all(i in held for i in range(lo, hi)):
        out[(lo, hi)] = _pairwise(lo, hi, leaf, combine_two)
    elif hi - lo > 1:
        mid = (lo + hi) // 2
        _held_subtrees(lo, mid, held, leaf, combine_two, out)
        _held_subtrees(mid, hi, held, leaf, combine_two, out)


def _root(n_blocks, subtrees, combine_two):
    """The pairwise tree's root from subtrees that cover every block."""
    def value(lo, hi):
        if (lo, hi) in subtrees:
            return subtrees[(lo, hi)]
        mid = (lo + hi) // 2
        return combine_two(value(lo, mid), value(mid, hi))
    return value(0, n_blocks)


def _blocks(array):
    """The row blocks of a dask array, as Delayed objects, in order."""
    return list(array.to_delayed().ravel())


def _offsets(row_chunks):
    return np.concatenate([[0], np.cumsum(row_chunks)[:-1]]).astype(np.int64)


def _is_dask_array(X):
    return isinstance(X, da.Array)


def _current_client():
    """The distributed Client that ``dask.compute`` would use now, or None (the
    threaded, process or synchronous schedulers)."""
    scheduler = dask.base.get_scheduler()
    client = getattr(scheduler, "__self__", None)
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(client, distributed.Client):
        return client
    return None


class _BlockHost:
    """A Dask actor on one worker: runs a pass over the fit's blocks that this worker
    holds in memory (a method call, not a task)."""

    def __init__(self):
        from distributed import get_worker

        self._worker = get_worker()

    def run(self, func, shared_args, blocks, n_blocks, combine_two):
        """``(results, seconds)``: ``func(X_i, *shared_args, *args)`` for each ``(i,
        keys, args)`` in ``blocks`` whose keys (X's block, and the weights' where given)
        are in this worker's memory, ``seconds`` the time it took here. ``results`` is
        ``{(i, i + 1): result}``, or, with ``combine_two``, the largest subtrees of the
        pairwise tree over ``n_blocks`` blocks that this worker holds, combined here:
        one partial per run of neighbouring blocks instead of one per block."""
        started = time.perf_counter()
        data = self._worker.data
        results = {}
        for i, keys, args in blocks:
            try:
                arrays = [data[key] for key in keys]
            except KeyError:  # moved or lost since the client looked: a task does it
                continue
            results[(i, i + 1)] = func(*arrays, *shared_args, *args)
        if combine_two is not None:
            leaves = {lo: value for (lo, _), value in results.items()}
            results = {}
            _held_subtrees(0, n_blocks, leaves, leaves.__getitem__, combine_two, results)
        return results, time.perf_counter() - started


# How long the client waits for an actor to start on a worker before it leaves that
# worker's blocks to tasks for the pass (a worker that died, not yet noticed).
HOST_START_TIMEOUT = 10
# How long the client waits for an actor's pass before it leaves that worker's blocks to
# tasks, for this pass and the rest of the fit: ACTOR_PASS_TIMEOUT_FACTOR times the
# longest pass an actor has taken in this fit, at least ACTOR_PASS_MIN_TIMEOUT seconds.
# distributed's Actor resolves a call only on a result or an OSError: a call that fails
# otherwise on the worker (its actor gone: a KeyError) is never answered. The actor that
# went away while the fit ran (the runner kept its handle, not its key's future) is
# fixed; this keeps any other such call from hanging the fit. A pass redone as tasks
# gives the same result, bit for bit.
ACTOR_PASS_TIMEOUT_FACTOR = 20
ACTOR_PASS_MIN_TIMEOUT = 60


class _Runner:
    """Runs passes over a fit's persisted blocks, each block where it lives.

    On a distributed Client, a pass is one call to an actor (:class:`_BlockHost`) on each
    worker that holds blocks, which runs them where they are: no task, so none of the
    scheduler's bookkeeping (a pass of tasks, even as one ``client.map`` with keys of our
    own, cost 25-100 ms on the loaded two-core test machine, a pass on actors 8-23 ms).
    The calls go through the scheduler's proxy, or straight to the workers with
    ``Client(direct_to_workers=True)`` (half the overhead again there). A block no actor has
    (moved, or lost with its worker) is run as a task, which Dask recomputes from X's
    graph where needed; the next pass asks the scheduler again where the blocks are.
    On Dask's other schedulers (no round trips to save) a pass is ``dask.delayed``
    calls computed together. Either way each block's result is the same function of
    the same inputs, so the fit does not depend on where or how blocks ran.

    One runner serves a whole fit, its initialisation and its iterations: what the
    workers keep for the fit (the blocks' last labels, k-means||'s distances) is filed
    under :attr:`fit_key` and dropped by :meth:`close`.
    """

    def __init__(self, X, sample_weight):
        self.client = _current_client()
        self.X_blocks, self.w_blocks = (self._block_refs(a) for a in (X, sample_weight))
        self.fit_key = uuid.uuid4().hex
        self._n_passes = 0  # names each pass's tasks, where tasks are used
        if self.client is not None:
            # The persisted blocks are computed before the first pass looks for them.
            from distributed import wait

            with self.client.as_current():  # wait() asks for the current client
                wait(self.X_blocks + self.w_blocks)
        self._hosts = None  # {worker address: (actor, block indices)}
        # {worker address: (actor, the future that created it)}, kept for the fit. The
        # actor lives while a client wants its key, and its handle does not always want
        # it: a handle from a worker in this process (a LocalCluster of threads) is the
        # worker's own and takes a reference only at its first call, and one that
        # arrives with no current or default client takes none. With the handles alone,
        # the creating futures' release (run on the client's event loop) could reach the
        # scheduler before that first call: the worker dropped the actor, and the call
        # waited for ever (distributed's Actor answers a call only with a result or an
        # OSError, not with the worker's KeyError).
        self._actors = {}
        self._unresponsive = set()  # workers whose actor missed a pass: tasks there
        self._longest_pass = 0.0  # seconds, the longest an actor took for a pass
        # The longest time a worker spent on the last pass, as it measured it (NaN when
        # the pass did not run on actors alone): what the pass cannot do without.
        self.slowest_worker_seconds = float("nan")

    def _block_refs(self, array):
        if self.client is None:
            return _blocks(array)
        from distributed import futures_of

        futures = {future.key: future for future in futures_of(array)}
        return [futures[key] for key in dask.core.flatten(array.__dask_keys__())]

    def _place(self):
        """Where the blocks are (X's and the weights' block on one worker), and an actor
        on each of those workers."""
        who_has = self.client.who_has(self.X_blocks + self.w_blocks)
        placement = {}
        for i, (x, w) in enumerate(zip(self.X_blocks, self.w_blocks)):
            both = [a for a in who_has.get(x.key, ()) if a in who_has.get(w.key, ())
                    and a not in self._unresponsive]
            if both:
                placement.setdefault(both[0], []).append(i)
        starting = {address: self.client.submit(
            _BlockHost, actor=True, workers=[address], allow_other_workers=False,
            pure=False, key=f"gpukmeans-host-{uuid.uuid4().hex}")
            for address in placement if address not in self._actors}
        # A handle that arrives over a comm calls through the client current when it
        # arrives (else the default one): the fit's, even when the fit's client was
        # chosen with dask.config.set(scheduler=client).
        with self.client.as_current():
            for address, future in starting.items():
                try:
                    self._actors[address] = (future.result(timeout=HOST_START_TIMEOUT),
                                             future)
                except Exception as exc:  # noqa: BLE001 - any failure: tasks do these blocks
                    logger.info("no actor on worker %s (%r); its blocks run as tasks",
                                address, exc)
                    future.cancel()
        self._hosts = {address: (self._actors[address][0], blocks)
                       for address, blocks in placement.items() if address in self._actors}

    def map_blocks(self, func, shared_args, block_args=None, with_weights=True,
                   combine_two=None):
        """``[func(X_i, w_i, *shared_args, *block_args[i]) ...]`` (without ``w_i`` unless
        ``with_weights``) for every block, in block order, or, with ``combine_two``, their
        combination over the fixed pairwise tree (:func:`_pairwise`; each worker adds its
        blocks' subtrees). ``shared_args`` (the centers) travel once per worker;
        ``block_args`` defaults to none."""
        n_blocks = len(self.X_blocks)
        if block_args is None:
            block_args = [()] * n_blocks
        self._n_passes += 1
        keys = [f"gpukmeans-{func.__name__.strip('_')}-{self.fit_key}-{self._n_passes}-{i}"
                for i in range(n_blocks)]
        refs = [(x, w) if with_weights else (x,)
                for x, w in zip(self.X_blocks, self.w_blocks)]
        if self.client is None:
            self.slowest_worker_seconds = float("nan")
            found = dict(enumerate(dask.compute(*[
                dask.delayed(func, pure=False)(*ref, *shared_args, *a, dask_key_name=key)
                for ref, a, key in zip(refs, block_args, keys)])))
            return self._finish_pass(found, {}, combine_two)
        if self._hosts is None:
            self._place()
        calls = [actor.run(func, shared_args,
                           [(i, [ref.key for ref in refs[i]], block_args[i]) for i in blocks],
                           n_blocks, combine_two)
                 for actor, blocks in self._hosts.values()]
        subtrees = {}
        worker_seconds = [0.0]
        timeout = max(ACTOR_PASS_MIN_TIMEOUT, ACTOR_PASS_TIMEOUT_FACTOR * self._longest_pass)
        for address, call in zip(list(self._hosts), calls):
            try:
                done, seconds = call.result(timeout=timeout)
            except (TimeoutError, asyncio.TimeoutError):
                logger.warning("the actor on worker %s did not answer in %.0f s; its blocks "
                               "run as tasks for the rest of the fit", address, timeout)
                self._unresponsive.add(address)
                continue
            except Exception as exc:  # noqa: BLE001 - a worker lost mid-pass: tasks redo it
                logger.info("a worker's actor failed (%r); its blocks run as tasks", exc)
                continue
            subtrees.update(done)
            worker_seconds.append(seconds)
            self._longest_pass = max(self._longest_pass, seconds)
        self.slowest_worker_seconds = max(worker_seconds)
        covered = set()
        for lo, hi in subtrees:
            covered.update(range(lo, hi))
        missing = [i for i in range(n_blocks) if i not in covered]
        found = {}
        if missing:
            self.slowest_worker_seconds = float("nan")
            futures = self.client.map(
                func, *zip(*[(*refs[i], *shared_args, *block_args[i]) for i in missing]),
                key=[keys[i] for i in missing], pure=False)
            found = dict(zip(missing, self.client.gather(futures)))
            self._hosts = None
            self._actors = {address: kept for address, kept in self._actors.items()
                            if address in self.client.scheduler_info()["workers"]}
        return self._finish_pass(found, subtrees, combine_two)

    @staticmethod
    def _finish_pass(found, subtrees, combine_two):
        """A pass's list of per-block results, or their tree's root, from ``found``
        (``{i: result}``) and ``subtrees`` (``{(lo, hi): value}``) covering the blocks."""
        subtrees = {**subtrees, **{(i, i + 1): value for i, value in found.items()}}
        n_blocks = max(hi for _, hi in subtrees)
        if combine_two is not None:
            return _root(n_blocks, subtrees, combine_two)
        return [subtrees[(i, i + 1)] for i in range(n_blocks)]

    def close(self):
        """Forget the fit here and on every worker (a lost worker kept nothing)."""
        _forget_fit(self.fit_key)
        if self.client is not None:
            self.client.run(_forget_fit, self.fit_key, on_error="ignore")
        self._hosts, self._actors = None, {}


class _DaskRun:
    """:func:`gpukmeans._lloyd.lloyd`'s run over the persisted blocks of a dask array
    (see :class:`gpukmeans._lloyd.EngineRun` for the one in memory).

    Each step sends the centers, and the previous step's, with the step's task of each
    block (kilobytes, inline), and gets back the blocks' float64 sums, weights and
    counts of changed labels, added in a tree fixed by the block order alone: the same
    result whatever the workers, threads or processes, and whichever finished first.
    The labels stay on the workers. Prior validation of data is assumed.
    """

    def __init__(self, runner, row_chunks, device):
        self.runner = runner
        self.offsets = _offsets(row_chunks)
        self.device = device
        self.fit_key = runner.fit_key
        self.n_iter = 0
        self.seconds = []  # wall time of each step, as the client saw it
        self.slowest_worker_seconds = []  # of each step, on the workers (NaN: not known)
        self._centers_before = None
        self._started = time.perf_counter()

    def _each_block(self, func, *args, with_weights=True, keyed=False, combine_two=None):
        """``func`` on every block (see :meth:`_Runner.map_blocks`); ``keyed`` adds the
        fit's key, the block's index and the step's number."""
        n_blocks = len(self.runner.X_blocks)
        return self.runner.map_blocks(
            func, args, [(self.fit_key, i, self.n_iter) for i in range(n_blocks)]
            if keyed else None, with_weights=with_weights, combine_two=combine_two)

    def step(self, centers_old):
        self.n_iter += 1
        centers_before = centers_old if self._centers_before is None else self._centers_before
        sums, weight_in_clusters, n_changed = self._each_block(
            _step_block, centers_old, centers_before, self.device, keyed=True,
            combine_two=_combine_steps)
        self._centers_before = centers_old
        self.slowest_worker_seconds.append(self.runner.slowest_worker_seconds)
        now = time.perf_counter()
        self.seconds.append(now - self._started)
        self._started = now
        logger.debug("iteration %d: %d labels changed, %.4f s", self.n_iter, n_changed,
                     self.seconds[-1])
        return sums, weight_in_clusters, n_changed

    def farthest(self, centers_old, n_far):
        """The ``n_far`` farthest samples in ``np.argpartition``'s order over all the
        distances, as :class:`gpukmeans._lloyd.EngineRun` finds them: the distances
        (8 bytes a sample) come to the client, then the chosen rows. Rare."""
        distances = np.concatenate(self._each_block(
            _distances_block, centers_old, self.device,
            with_weights=False, keyed=True))
        far_from_centers = farthest(distances, n_far)
        block_of = np.searchsorted(self.offsets, far_from_centers, side="right") - 1
        n_blocks = len(self.runner.X_blocks)
        # Every block is asked (most for no rows): one pass, like the others.
        found = self.runner.map_blocks(
            _far_rows_block, (centers_old, self.device),
            [(far_from_centers[block_of == i] - self.offsets[i], self.fit_key, i, self.n_iter)
             for i in range(n_blocks)])
        position = [0] * n_blocks
        far_samples = []
        for index, i in zip(far_from_centers, block_of.tolist()):
            resolution, labels, weights, rows = found[i]
            j = position[i]
            position[i] += 1
            far_samples.append((distances[index], resolution[j], int(labels[j]), weights[j],
                                rows[j]))
        return far_samples

    def inertia(self, centers_old):
        return self._each_block(_inertia_block, centers_old, self.device,
                                keyed=True, combine_two=_add)

    def finish(self, centers, assign_labels):
        # An E-step either way: when the labels stopped changing it gives them again,
        # and the same inertia.
        return self._each_block(_inertia_block, centers, self.device,
                                combine_two=_add)



# ---------------------------------------------------------------- the estimator

# No set_output: transform returns a lazy dask array, which a pandas container would
# compute whole on the client (an in-memory X's model is gpukmeans.KMeans's, which has it).
class KMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator,
             auto_wrap_output_keys=None):
    """K-Means clustering of a ``dask.array`` on a Dask cluster, each block on its worker's
    gpukmeans engine (Numba on CPUs for NumPy blocks, CUDA for CuPy blocks).

    The data are persisted on the workers once and never gathered; each Lloyd iteration
    sends the centers out and brings back per-block float64 sums and weights and counts
    of changed labels, added in a tree fixed by the block order. From the same initial centers the result is
    :class:`gpukmeans.KMeans`'s: the same labels in float64 (up to near-ties in float32,
    and to the last bits of the centers), the same inertia to about 1e-12.

    Parameters
    ----------
    n_clusters : int, default=8
        The number of clusters.
    init : {"k-means||", "k-means++", "random"} or array-like of shape \
            (n_clusters, n_features), default="k-means||"
        "k-means||": scalable k-means++ (Bahmani, Moseley, Vattani, Kumar and
        Vassilvitskii, "Scalable K-Means++", VLDB 2012): a first center drawn with
        probability proportional to ``sample_weight``, then ``init_max_iter`` rounds in
        which every sample joins the candidates independently with probability
        ``oversampling_factor * n_clusters * w d^2 / cost``; the candidates, weighted by
        the weight of the samples closest to them, are clustered on the client by
        :class:`gpukmeans.KMeans` (greedy weighted k-means++, then Lloyd), as
        :class:`gpukmeans.KMeans`'s own "k-means||" clusters them. "k-means++":
        gpukmeans' greedy k-means++ on a uniform sample of
        ``max(10000, 32 * n_clusters)`` rows (all rows when fewer), gathered to the
        client, with their weights. "random": ``n_clusters`` distinct rows drawn with
        probability proportional to their weight (Efraimidis-Spirakis keys). An array
        gives the initial centers.
    oversampling_factor : float, default=2
        k-means||'s ``l / n_clusters``: about ``oversampling_factor * n_clusters``
        candidates are drawn per round.
    init_max_iter : int, default=None
        Rounds of k-means||; None means 5.
    max_iter : int, default=300
        Maximum number of Lloyd iterations.
    tol : float, default=1e-4
        Relative tolerance, as in :class:`gpukmeans.KMeans`: the fit stops when the sum
        of squared center shifts is at most ``tol`` times the mean variance of the
        features, or, strictly converged, when no label changed.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation's draws. Each block draws from its own stream, fixed
        by the seed and the block's position: the same data, chunks and seed give
        bitwise the same fit whatever the number of workers.
    device : {"auto", "cpu", "gpu"}, default="auto"
        "auto": each block runs where its chunks live (NumPy: CPU engine; CuPy: GPU
        engine). "cpu" refuses CuPy blocks. "gpu" moves NumPy blocks to the GPU of
        their worker, which must have one (see :func:`gpukmeans.gpu_available`).

    Attributes
    ----------
    cluster_centers_ : ndarray or cupy.ndarray of shape (n_clusters, n_features)
        Centers in X's dtype; CuPy when the blocks are CuPy arrays.
    labels_ : dask.array.Array of shape (n_samples,), int32
        Lazy: each block's labels against ``cluster_centers_``, with X's row chunks;
        equal to ``predict(X)``. Computing it recomputes X's graph.
    inertia_ : float
        Sum of the weighted squared distances of the samples to their closest center.
    n_iter_ : int
        Number of Lloyd iterations run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The columns of an in-memory DataFrame X (checked at inference, as
        :class:`gpukmeans.KMeans` checks them); absent for a dask array.
    device_ : {"cpu", "gpu"}

    Raises
    ------
    ValueError
        Unknown row chunk sizes (NaN chunks: call ``X.compute_chunk_sizes()``), X split
        along its features, NaN or infinity in a block (the block is named), bad
        ``sample_weight``, ``n_samples < n_clusters``, bad parameters.
    TypeError
        Blocks mixing NumPy and CuPy arrays, non-numeric data, bad parameter types.

    See Also
    --------
    gpukmeans.KMeans : The single-machine estimator this one reproduces.
    dask_ml.cluster.KMeans : dask-ml's distributed k-means (same init, scikit-learn's
        steps).

    Notes
    -----
    An in-memory array (NumPy, CuPy) is fitted by :class:`gpukmeans.KMeans` with the
    same parameters (its "k-means||" for "k-means||", with ``oversampling_factor`` and
    ``init_max_iter``; see :func:`gpukmeans._init.kmeans_parallel`); ``labels_`` is then
    in memory.

    Lloyd's loop is :class:`gpukmeans.KMeans`'s own (:func:`gpukmeans._lloyd.lloyd`):
    the same convergence test (strict when no label changed, counted exactly on the
    workers; else the center shift against ``tol``), and empty clusters take the samples
    farthest from their centers, paired with them in ``numpy.argpartition``'s order over
    all the distances, as :class:`gpukmeans.KMeans` pairs them (the distances, 8 bytes a
    sample, come to the client for it; this happens rarely).

    On a distributed Client each pass over the blocks is a call to a Dask actor on each
    worker, not a task; the scheduler runs tasks only for blocks no actor holds (moved,
    or lost with a worker, which Dask then recomputes). ``Client(direct_to_workers=True)``
    sends those calls straight to the workers instead of through the scheduler.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from gpukmeans.dask import KMeans
    >>> X = da.from_array(np.array([[1., 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]]),
    ...                   chunks=(2, 2))
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.labels_.compute().tolist() == km.predict(X).compute().tolist()
    True
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means||",
        oversampling_factor=2,
        init_max_iter=None,
        max_iter=300,
        tol=1e-4,
        random_state=None,
        device="auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.oversampling_factor = oversampling_factor
        self.init_max_iter = init_max_iter
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------ validation
    def _check_params(self):
        _validation._check_integer("n_clusters", self.n_clusters, 1)
        _validation._check_integer("max_iter", self.max_iter, 1)
        if self.init_max_iter is not None:
            _validation._check_integer("init_max_iter", self.init_max_iter, 1)
        factor = self.oversampling_factor
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            raise _validation.InvalidParameterError(
                f"oversampling_factor must be a number, got {factor!r}.")
        if not np.isfinite(factor) or factor <= 0:
            raise _validation.InvalidParameterError(
                f"oversampling_factor must be a finite number > 0, got {factor}.")
        _validation.check_tol_and_device(self)
        init = self.init
        if isinstance(init, str):
            if init not in INITS:
                raise _validation.InvalidParameterError(
                    f"init must be one of {INITS} or an array of shape (n_clusters, "
                    f"n_features), got {init!r}."
                )
        elif callable(init) or not (hasattr(init, "__len__") or is_device_array(init)):
            raise _validation.InvalidParameterError(
                f"init must be one of {INITS} or an array of shape (n_clusters, "
                f"n_features), got {type(init).__name__}."
            )
        _validation.check_random_state_type(self.random_state)

    @staticmethod
    def _check_dask_X(X, name="X"):
        """Shape and chunk checks that need no computation."""
        _refuse_sparse_block(X._meta, name)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D dask array for {name}, got {X.ndim}D of shape "
                             f"{X.shape}.")
        if any(np.isnan(c) for c in X.chunks[0]) or np.isnan(X.shape[0]):
            raise ValueError(
                f"{name} has unknown chunk sizes along its rows (NaN chunks, e.g. from "
                f"boolean indexing or a dataframe's .values); call {name}.compute_chunk_sizes()"
                " or build it with known chunks."
            )
        if X.numblocks[1] != 1:
            raise ValueError(
                f"{name} is split along its features into {X.numblocks[1]} chunks "
                f"{X.chunks[1]}; each block must hold whole rows: use "
                f"{name}.rechunk({{1: -1}})."
            )
        _validation.check_real_and_not_empty(X, name)
        dtype = X.dtype if X.dtype in _validation.FLOAT_DTYPES else np.dtype(np.float64)
        return dtype

    def _check_sample_weight(self, sample_weight, X):
        """``sample_weight`` as a dask array with X's row chunks, or None."""
        if sample_weight is None:
            return None
        if _validation.is_number_weight(sample_weight):
            sample_weight = _validation.number_weights(sample_weight, X.shape[0])
        if _is_dask_array(sample_weight) and any(np.isnan(c) for c in sample_weight.chunks[0]):
            raise ValueError("sample_weight has unknown chunk sizes; call "
                             "sample_weight.compute_chunk_sizes().")
        # A dask array's values are checked lazily, by the fit's passes.
        kept = _is_dask_array(sample_weight) or is_device_array(sample_weight)
        sw = _validation.weights_of_shape(sample_weight, X.shape[0],
                                          (lambda weights: weights) if kept else None)
        if _is_dask_array(sw):
            return sw.rechunk((X.chunks[0],))
        return da.from_array(sw, chunks=(X.chunks[0],))

    # ------------------------------------------------------------------- fit
    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of a dask array.

        Parameters
        ----------
        X : dask.array.Array of shape (n_samples, n_features)
            NumPy or CuPy blocks (all of one kind), chunked along the rows only, with
            known chunk sizes. float32 and float64 are kept; other real types become
            float64. An in-memory array is fitted by :class:`gpukmeans.KMeans`.
        y : Ignored
        sample_weight : dask.array.Array or array-like of shape (n_samples,), default=None
            Non-negative, finite, not all zero; rechunked to X's rows.

        Returns
        -------
        self : object
        """
        self._check_params()
        if not _is_dask_array(X):
            return self._fit_in_memory(X, sample_weight)
        if self.device == "gpu":
            # The client makes the graph's CuPy metadata: it says why, before any pass.
            resolve_device("gpu")
        dtype = self._check_dask_X(X)
        n_samples, n_features = X.shape
        _validation.check_n_samples(n_samples, self.n_clusters)
        sw = self._check_sample_weight(sample_weight, X)
        init = self.init
        init_is_array = not isinstance(init, str)
        if init_is_array:
            init = _validation.check_init_array(init, self.n_clusters, n_features, dtype, np)
        random_state = _validation.check_random_state_param(self.random_state)
        X = X.astype(dtype)

        started = time.perf_counter()
        stats = self._data_stats(X, sw)
        device = self._fit_device(stats)
        if isinstance(init, str) and init == "random" and stats["w_positive"] < self.n_clusters:
            raise ValueError(
                f"init='random' draws n_clusters={self.n_clusters} distinct samples with "
                "probability proportional to sample_weight, but only "
                f"{stats['w_positive']} samples have a positive sample_weight."
            )
        X_mean64 = stats["sum"] / n_samples
        lower, upper = _validation.usable_magnitude(dtype, n_samples, n_features)
        if not (stats["absmax"] == 0 or lower <= stats["absmax"] <= upper):
            raise ValueError(
                f"X holds values up to {stats['absmax']:.3g} in absolute value; for {dtype} "
                f"data of shape {X.shape}, k-means' squared distances are exact only when the "
                f"largest absolute value lies between {lower:.3g} and {upper:.3g} (or is 0). "
                "Rescale X, for example with a power of two, which changes no label."
            )
        # The power of two that brings the largest weight to [0.5, 1), as
        # gpukmeans.KMeans scales them: exact, and inertia is multiplied back.
        exponent = 0 if sw is None else _validation.weight_exponent(stats["w_max"])
        if _validation.weights_beyond_dtype(dtype, stats["w_min_positive"], exponent):
            _validation.raise_weights_beyond_dtype(
                dtype, f"positive weights as small as {stats['w_min_positive']:.3g} are",
                stats["w_max"])
        weight_scale = float(np.ldexp(1.0, exponent))
        tol = float(np.mean(stats["m2"] / n_samples) * self.tol) if self.tol else 0.0
        X_mean = X_mean64.astype(dtype)

        # Validation is over: from here on, work. The centred data are persisted once.
        Xc = X.map_blocks(_prepare_block, X_mean, device, dtype=dtype,
                          meta=self._meta(device, dtype, 2))
        if sw is None:
            w = Xc.map_blocks(_ones_block, dtype, device, drop_axis=1, dtype=dtype,
                              meta=self._meta(device, dtype, 1))
        else:
            w = sw.map_blocks(_prepare_weight, exponent, dtype, device, dtype=dtype,
                              meta=self._meta(device, dtype, 1))
        Xc, w = dask.persist(Xc, w)
        # One runner for the init's passes and the iterations: the same actors, and
        # what the workers keep for the fit is dropped at the end.
        runner = _Runner(Xc, w)
        try:
            prepared = time.perf_counter()
            if init_is_array:
                centers_init = init - X_mean
            else:
                centers_init = self._init_centers(init, runner, _offsets(Xc.chunks[0]),
                                                  n_samples, dtype, device, random_state)
            init_seconds = time.perf_counter() - prepared
            logger.info("k-means init (%s) took %.3f s (validation and centring before it "
                        "%.3f s)", init if isinstance(init, str) else "array", init_seconds,
                        prepared - started)
            run = _DaskRun(runner, Xc.chunks[0], device)
            centers, inertia, n_iter, weight_in_clusters = lloyd(
                run, np.ascontiguousarray(centers_init, dtype=dtype), np, self.max_iter, tol)
        finally:
            runner.close()
        run_seconds = {"validation": prepared - started, "init": init_seconds,
                       "iterations": run.seconds, "slowest_worker": run.slowest_worker_seconds}
        del Xc, w, runner, run  # the persisted blocks are released
        from ._estimator import warn_fewer_distinct_clusters

        warn_fewer_distinct_clusters(int((weight_in_clusters > 0).sum()), self.n_clusters)

        cluster_centers = centers + X_mean
        if device == "gpu" and "cupy" in stats["kinds"]:
            xp = array_module(device)
            cluster_centers, centers = xp.asarray(cluster_centers), xp.asarray(centers)
            X_mean = xp.asarray(X_mean)

        # Every fitted attribute is set here, together: a failed fit leaves none changed.
        self.cluster_centers_ = cluster_centers
        self._fit_origin = X_mean
        self._centers_at_origin = centers
        self._frame_of_centers = cluster_centers.copy()  # see holds_fitted_centers
        self.inertia_ = float(inertia) * weight_scale
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = n_features
        self.device_ = device
        self._chunk_kind = "cupy" if "cupy" in stats["kinds"] else "numpy"
        self._timings = run_seconds
        self._n_features_out = self.cluster_centers_.shape[0]
        self.__dict__.pop("feature_names_in_", None)  # a dask array has no column names
        self.labels_ = self.predict(X)
        return self

    def _fit_in_memory(self, X, sample_weight):
        from ._estimator import KMeans as LocalKMeans

        local = LocalKMeans(
            n_clusters=self.n_clusters, init=self.init, n_init=1, max_iter=self.max_iter,
            tol=self.tol, random_state=self.random_state, device=self.device,
            oversampling_factor=self.oversampling_factor, init_max_iter=self.init_max_iter,
        ).fit(X, sample_weight=sample_weight)
        self.cluster_centers_ = local.cluster_centers_
        self._fit_origin = getattr(local, "_fit_origin", None)
        self._centers_at_origin = getattr(local, "_centers_at_origin", None)
        self._frame_of_centers = getattr(local, "_frame_of_centers", None)
        self.labels_ = local.labels_
        self.inertia_ = local.inertia_
        self.n_iter_ = local.n_iter_
        self.n_features_in_ = local.n_features_in_
        self._n_features_out = self.cluster_centers_.shape[0]
        if hasattr(local, "feature_names_in_"):  # a DataFrame's columns
            self.feature_names_in_ = local.feature_names_in_
        else:
            self.__dict__.pop("feature_names_in_", None)
        self.device_ = local.device_
        self._chunk_kind = "cupy" if is_device_array(local.cluster_centers_) else "numpy"
        return self

    @staticmethod
    def _meta(device, dtype, ndim):
        return array_module(device).empty((0,) * ndim, dtype=dtype)

    def _data_stats(self, X, sw):
        """The validation pass (see the module's docstring); raises on bad data."""
        leaves = [dask.delayed(_block_stats, pure=True)(x, s, i)
                  for i, (x, s) in enumerate(zip(_blocks(X), _blocks(sw) if sw is not None
                                                 else [None] * X.numblocks[0]))]
        stats = dask.compute(_tree(leaves, _delayed_combine(_combine_stats)))[0]
        if len(stats["kinds"]) > 1:
            raise TypeError(
                "X's blocks mix NumPy and CuPy arrays; all blocks must live on the same side "
                "(use X.map_blocks(cupy.asarray) or X.map_blocks(cupy.asnumpy))."
            )
        if stats["bad_blocks"]:
            raise ValueError(
                f"Input X contains NaN or infinity, in the block(s) of rows numbered "
                f"{list(stats['bad_blocks'])[:10]}."
            )
        if stats["bad_weight_blocks"]:
            raise ValueError("Input sample_weight contains NaN or infinity, in the block(s) "
                             f"numbered {list(stats['bad_weight_blocks'])[:10]}.")
        if stats["negative_weight_blocks"]:
            raise ValueError("Negative values in data passed to sample_weight, in the "
                             f"block(s) numbered {list(stats['negative_weight_blocks'])[:10]}.")
        if not stats["w_max"] > 0:
            raise ValueError("sample_weight must have at least one positive value, got all "
                             "zeros.")
        return stats

    def _fit_device(self, stats):
        kind = next(iter(stats["kinds"]))
        if kind == "cupy":
            if self.device == "cpu":
                raise ValueError(
                    "X's blocks are CuPy arrays but device='cpu'; move them to the host "
                    "(X.map_blocks(cupy.asnumpy)) or use device='gpu' or 'auto'."
                )
            return "gpu"
        return "gpu" if self.device == "gpu" else "cpu"

    # ------------------------------------------------------------------ init
    def _init_centers(self, init, runner, offsets, n_samples, dtype, device, random_state):
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        if init == "random":
            _, _, rows, _ = self._sample(runner, offsets, self.n_clusters, seed, _STAGE_FIRST,
                                         weighted=True)
            return np.ascontiguousarray(rows, dtype=dtype)
        if init == "k-means++":
            from ._estimator import kmeans_plusplus

            n_draws = min(n_samples, max(KMEANSPP_MIN_SAMPLE,
                                         KMEANSPP_SAMPLE_PER_CLUSTER * self.n_clusters))
            _, _, rows, weights = self._sample(runner, offsets, n_draws, seed, _STAGE_SAMPLE,
                                               weighted=False)
            if rows.shape[0] < self.n_clusters:  # fewer samples of positive weight
                from ._init import repeated_rows

                return np.ascontiguousarray(repeated_rows(rows, self.n_clusters), dtype=dtype)
            centers, _ = kmeans_plusplus(np.ascontiguousarray(rows), self.n_clusters,
                                         sample_weight=weights, random_state=random_state,
                                         device="cpu")
            return np.ascontiguousarray(centers, dtype=dtype)
        return self._kmeans_parallel(runner, offsets, dtype, device, seed, random_state)

    @staticmethod
    def _sample(runner, offsets, n_draws, seed, stage, weighted):
        """``n_draws`` distinct rows, by weight or uniformly among positive weights:
        ``(keys, indices, rows, weights)`` sorted by key. One pass."""
        return runner.map_blocks(
            _sample_block, (n_draws, seed, stage, weighted),
            [(i, offset) for i, offset in enumerate(offsets)],
            combine_two=functools.partial(_merge_samples, n_draws=n_draws))

    def _kmeans_parallel(self, runner, offsets, dtype, device, seed, random_state):
        """k-means|| (Bahmani et al., 2012): its passes on the workers, each one call per
        worker (the workers keep each sample's distance to its nearest candidate), then
        :func:`gpukmeans._init.recluster_candidates` on the client."""
        from ._init import recluster_candidates

        n_clusters = self.n_clusters
        n_rounds = self.init_max_iter or DEFAULT_INIT_ROUNDS
        oversampling = float(self.oversampling_factor) * n_clusters
        fit_key, block_ids = runner.fit_key, [(runner.fit_key, i) for i in range(len(offsets))]
        _, first_index, first_row, _ = self._sample(runner, offsets, 1, seed, _STAGE_FIRST,
                                                    weighted=True)
        # Each pass is given every batch of candidates so far (see _nearest_candidates):
        # the first row, then each round's draws.
        batches, indices = [np.ascontiguousarray(first_row, dtype=dtype)], [first_index]
        cost = None
        for round_ in range(n_rounds):
            if cost is None:  # after new candidates: each sample's distance to them
                cost = runner.map_blocks(_cost_block, (batches, device), block_ids,
                                         combine_two=_add)
            if not cost > 0:
                break  # every sample sits on a candidate
            new_index, new_rows = runner.map_blocks(
                _oversample_block, (batches, device, cost, oversampling, seed, round_),
                [(fit_key, i, offset) for i, offset in enumerate(offsets)],
                combine_two=_concatenate)
            logger.debug("k-means|| round %d: cost %.6g, %d new candidates", round_ + 1, cost,
                         new_index.size)
            if new_index.size:
                batches.append(np.ascontiguousarray(new_rows, dtype=dtype))
                indices.append(new_index)
                cost = None
        # A sample kept once sits at distance 0 from then on, so never twice.
        index = np.concatenate(indices)
        if index.size < n_clusters:
            # Too few candidates (few distinct samples, or cost reached zero): top up with
            # a weighted random draw, as many distinct rows as the data allow.
            _, extra_index, extra_rows, _ = self._sample(
                runner, offsets, n_clusters, seed, _STAGE_SAMPLE, weighted=True)
            new = ~np.isin(extra_index, index)
            batches.append(np.ascontiguousarray(extra_rows[new], dtype=dtype))
        candidates = np.concatenate(batches)
        # The last batches' distances (the last round's draws, the top-up) come in here.
        candidate_weight = runner.map_blocks(_candidate_weight_block, (batches, device),
                                             block_ids, combine_two=_add)
        logger.info("k-means||: %d candidates after %d rounds", candidates.shape[0], n_rounds)
        centers = recluster_candidates(candidates, candidate_weight, n_clusters, random_state)
        return np.ascontiguousarray(centers, dtype=dtype)

    # ------------------------------------------------------------- inference
    def _inference_X(self, X):
        """Validate X for inference. Returns ``(X, is_dask)``."""
        check_is_fitted(self)
        if _is_dask_array(X) or is_device_array(X):
            # No column names: scikit-learn's warning where the fit had a DataFrame's.
            _check_feature_names(self, X, reset=False)
        if _is_dask_array(X):
            self._check_dask_X(X)
            if X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[1]} features, but KMeans is expecting "
                                 f"{self.n_features_in_} features as input.")
            return X, True
        if is_device_array(X):
            X = _validation._check_device_X(X, "X", _validation.array_module(X))
        else:  # a DataFrame's columns are checked against the fit's, as in scikit-learn
            X = validate_data(self, X, dtype=list(_validation.FLOAT_DTYPES), order="C",
                              reset=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but KMeans is expecting "
                             f"{self.n_features_in_} features as input.")
        if not bool(_validation.array_module(X).isfinite(X).all()):
            raise ValueError("Input X contains NaN or infinity.")
        return X, False

    def _frame(self):
        """The origin and centers that labels are measured with (the fit's frame)."""
        if self._fit_origin is not None and _validation.holds_fitted_centers(
                self._frame_of_centers, self.cluster_centers_):
            return self._fit_origin, self._centers_at_origin
        return None, self.cluster_centers_

    def _inference_device(self, X_is_device):
        return "gpu" if (X_is_device or self._chunk_kind == "cupy") else (
            "gpu" if self.device_ == "gpu" else "cpu")

    def predict(self, X):
        """Index of the closest cluster center for each sample.

        Parameters
        ----------
        X : dask.array.Array or array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : dask.array.Array of shape (n_samples,), int32, lazy, with X's row chunks;
            an in-memory array for in-memory X.
        """
        X, is_dask = self._inference_X(X)
        origin, centers = self._frame()
        if not is_dask:
            device = self._inference_device(is_device_array(X))
            labels = _predict_block(X, origin, centers, device)
            return labels if is_device_array(X) else to_host(labels)
        device = self._inference_device(X._meta is not None and is_device_array(X._meta))
        return X.map_blocks(_predict_block, origin, centers, device, drop_axis=1,
                            dtype=np.int32, meta=self._meta(device, np.int32, 1))

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_`` (lazy for a dask X)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distance of each sample to each cluster center.

        Returns
        -------
        X_new : dask.array.Array of shape (n_samples, n_clusters), lazy, X's row chunks;
            an in-memory array for in-memory X. float32 where both X and the model are
            float32, else float64, as scikit-learn's.
        """
        X, is_dask = self._inference_X(X)
        centers = self.cluster_centers_.astype(
            _validation.transform_dtype(X.dtype, self.cluster_centers_.dtype), copy=False)
        if not is_dask:
            device = self._inference_device(is_device_array(X))
            distances = _transform_block(X, centers, device)
            return distances if is_device_array(X) else to_host(distances)
        device = self._inference_device(is_device_array(X._meta))
        return X.map_blocks(_transform_block, centers, device, dtype=centers.dtype,
                            chunks=(X.chunks[0], (centers.shape[0],)),
                            meta=self._meta(device, centers.dtype, 2))

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted inertia of X under the fitted centers (a float,
        computed)."""
        X, is_dask = self._inference_X(X)
        if not is_dask:
            X = da.from_array(X, chunks=X.shape)
        sw = self._check_sample_weight(sample_weight, X)
        if sw is None:
            sw = da.ones(X.shape[0], chunks=(X.chunks[0],))
        origin, centers = self._frame()
        device = self._inference_device(is_device_array(X._meta))
        parts = [dask.delayed(_score_block, pure=True)(x, s, origin, centers, device)
                 for x, s in zip(_blocks(X), _blocks(sw))]
        return -float(dask.compute(_tree(parts, _delayed_combine(_add)))[0])
