"""The mini-batch driver: the steps of a fit, one step, the early stopping, the batch draws.

Sculley's web-scale k-means (2010) as scikit-learn implements it (``_mini_batch_step``,
``MiniBatchKMeans._mini_batch_convergence`` and ``_random_reassign`` in
``sklearn/cluster/_kmeans.py``; ``_minibatch_update_dense`` in ``_k_means_minibatch.pyx``),
written once against :class:`gpukmeans._engine.Engine` and its array module ``xp``: the
engine assigns the labels and measures the inertia, NumPy or CuPy array operations update
the centers (the CPU engine does the whole step on the batch's rows where they lie in X,
and the batch draw's search, in compiled calls, bitwise the same: ``Engine.minibatch_step``,
``Engine.batch_search``).
Every random draw is made on the host by the caller's ``numpy.random.RandomState``, in
scikit-learn's order.

Prior validation of data is assumed everywhere in this module.
"""

import numpy as np

from ._engine import assign_labels_beside_the_data
from ._lloyd import to_host
from ._sparse import is_sparse

# BatchSampler's table: one entry per this many samples (8 bytes each, an eighth of the
# cdf's memory), so that a draw searches about that many entries where weights are even.
BUCKET_SAMPLES = 8


def minibatch_kmeans_single(X, centers_init, random_state, engine, draw_batch, n_steps, tol=0.0,
                            max_no_improvement=10, reassignment_ratio=0.01,
                            compute_inertia=True, verbose=0):
    """The steps of one ``fit``: at most ``n_steps`` mini-batches drawn from ``X``, each
    a :func:`mini_batch_step` with unit weights, until :class:`EarlyStopping` says stop.

    Prior validation of data is assumed.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), in ``engine.xp``'s memory.
    centers_init : array of shape (n_clusters, n_features), X's dtype and module.
    random_state : numpy.random.RandomState
        Draws the batches (through ``draw_batch``) and the reassignments.
    engine : Engine
        The engine for one batch's shapes.
    draw_batch : BatchSampler
        The batches are drawn by weight and then count with unit weight, as in
        scikit-learn: the weights must not count twice.
    n_steps : int
    tol : float, default=0.0
        Absolute tolerance on the squared center change of a step (already scaled by the
        data's variance by the caller).
    max_no_improvement : int or None, default=10
    reassignment_ratio : float, default=0.01
    compute_inertia : bool, default=True
        Whether to measure each batch's inertia, which only the smoothed inertia reads
        (its early stopping, its verbose lines, ``compute_labels=False``'s ``inertia_``).
    verbose : int, default=0

    Returns
    -------
    centers : array of shape (n_clusters, n_features)
    weight_sums : array of shape (n_clusters,)
    n_since_last_reassign : int
    n_steps_done : int
    stopping : EarlyStopping
        Holds the smoothed inertia (``ewa_inertia``) and the last batch's (``last_inertia``).
    """
    xp = engine.xp
    batch_size = draw_batch.batch_size
    n_clusters = centers_init.shape[0]
    centers = centers_init
    weight_sums = xp.zeros(n_clusters, dtype=X.dtype)
    n_since_last_reassign = 0
    unit_sample_weight = xp.ones(batch_size, dtype=X.dtype)
    stopping = EarlyStopping(batch_size, X.shape[0], tol, max_no_improvement, verbose)
    step = 0
    for step in range(n_steps):
        random_reassign, n_since_last_reassign = random_reassign_due(
            weight_sums, n_since_last_reassign, batch_size, n_clusters)
        centers_new, weight_sums, batch_inertia = mini_batch_step(
            X, unit_sample_weight, centers, weight_sums, random_state, engine,
            rows=draw_batch(random_state), random_reassign=random_reassign,
            reassignment_ratio=reassignment_ratio, verbose=verbose,
            compute_inertia=compute_inertia,
        )
        centers_squared_diff = float(((centers_new - centers) ** 2).sum()) if tol > 0.0 else 0.0
        centers = centers_new
        if stopping(step, n_steps, centers_squared_diff, batch_inertia):
            break
    return centers, weight_sums, n_since_last_reassign, step + 1, stopping


def random_reassign_due(weight_sums, n_since_last_reassign, batch_size, n_clusters):
    """scikit-learn's ``_random_reassign``: whether this step reassigns, and the new count
    of samples since the last reassignment. Every ``10 * n_clusters`` samples, and
    whenever a center has received no weight yet."""
    n_since_last_reassign += batch_size
    if bool((weight_sums == 0).any()) or n_since_last_reassign >= 10 * n_clusters:
        return True, 0
    return False, n_since_last_reassign


def mini_batch_step(X, sample_weight, centers, weight_sums, random_state, engine, rows=None,
                    random_reassign=False, reassignment_ratio=0.01, verbose=0,
                    compute_inertia=True):
    """One step of mini-batch k-means on the batch ``X[rows]`` (``X`` itself where
    ``rows`` is None): new arrays, the inputs untouched.

    Each sample is assigned to its closest center of ``centers``; then each center that
    received weight moves to the weighted mean of its old position, counted with the
    weight it has accumulated so far (``weight_sums``), and of its new samples: a center's
    learning rate is ``w / weight_sums``, which decays as it sees more samples. With
    ``random_reassign``, the centers whose accumulated weight is below
    ``reassignment_ratio`` times the largest move onto samples of the batch drawn at
    random (at most half the batch), and their weight is raised to the smallest of the
    others', so that they are not reassigned again at once (scikit-learn's rule).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        The data or the mini-batch: C-contiguous float32 or float64, or CSR, in
        ``engine.xp``'s memory.
    sample_weight : array of shape (n_batch,), X's dtype and module.
        The batch's weights.
    centers : array of shape (n_clusters, n_features), X's dtype and module. # IN
    weight_sums : array of shape (n_clusters,), X's dtype and module. # IN
        The weight each center has accumulated.
    random_state : numpy.random.RandomState
        Draws the samples that reassigned centers move onto.
    engine : Engine
    rows : int64 NumPy array of shape (n_batch,), default=None
        The batch's rows of ``X``, drawn on the host; None: ``X`` is the batch.
    random_reassign : bool, default=False
    reassignment_ratio : float, default=0.01
    verbose : int, default=0
        Prints scikit-learn's line when centers are reassigned.
    compute_inertia : bool, default=True

    Returns
    -------
    centers_new : array of shape (n_clusters, n_features), X's dtype.
    weight_sums_new : array of shape (n_clusters,), X's dtype.
    inertia : float or None
        Weighted sum of squared distances of the batch to ``centers`` (before the update),
        as scikit-learn's; None unless ``compute_inertia``.
    """
    xp = engine.xp
    n_clusters = centers.shape[0]
    sparse = is_sparse(X)
    if not sparse and engine.minibatch_step is not None:
        # The whole step in compiled calls on the rows where they lie (the CPU engine's:
        # a batch's arithmetic costs less than the dozen array operations below, and
        # copying the batch out of X as much as labelling it).
        _, centers_new, weight_sums_new, inertia = engine.minibatch_step(
            X, rows, sample_weight, centers, weight_sums, compute_inertia)
        return _reassigned(X, rows, centers_new, weight_sums_new,
                           inertia if compute_inertia else None, random_state, engine,
                           random_reassign, reassignment_ratio, verbose)
    if rows is not None:
        X = X[xp.asarray(rows)]
    labels = xp.empty(X.shape[0], dtype=xp.int32)
    # scikit-learn's update of a center that received weight w_new, in float64:
    # (c * W + sum_i w_i x_i) * (1 / (W + w_new)), W + w_new rounded to X's dtype.
    if sparse:
        # The sparse engines' M-step sums the rows by label (float64, in a fixed order);
        # c * W is added last, a rounding per step off scikit-learn's order.
        sums, weight_in_clusters = engine.lloyd_iter(X, sample_weight, centers, labels)
        sums = sums + _times_weights(centers, weight_sums, xp)
    else:
        assign_labels_beside_the_data(engine, X, centers, labels)
        if xp is np:
            sums, weight_in_clusters = _center_sums_host(X, sample_weight, labels, centers,
                                                         weight_sums)
        else:
            sums, weight_in_clusters = _cluster_sums_device(X, sample_weight, labels,
                                                            n_clusters, xp)
            sums = sums.astype(xp.float64) + _times_weights(centers, weight_sums, xp)
    inertia = float(engine.inertia(X, sample_weight, centers, labels)) if compute_inertia else None
    weight_sums_new = weight_sums + weight_in_clusters.astype(X.dtype)
    received = weight_in_clusters > 0
    # A weight sum below the smallest normal number (a cluster reached only by a batch
    # far lighter than the earlier ones) has a reciprocal that overflows: divided.
    normal = weight_sums_new >= np.finfo(X.dtype).tiny
    totals = xp.where(received, weight_sums_new, 1).astype(xp.float64)
    alpha = 1.0 / xp.where(normal, totals, 1.0)
    averaged = xp.where(normal[:, None], sums * alpha[:, None], sums / totals[:, None])
    centers_new = xp.where(received[:, None], averaged.astype(X.dtype), centers)
    return _reassigned(X, None, centers_new, weight_sums_new, inertia, random_state, engine,
                       random_reassign, reassignment_ratio, verbose)


def _reassigned(X, rows, centers_new, weight_sums_new, inertia, random_state, engine,
                random_reassign, reassignment_ratio, verbose):
    """The end of :func:`mini_batch_step`: the reassignment, when due; its return."""
    if random_reassign and reassignment_ratio > 0:
        centers_new, weight_sums_new = _reassign_small_clusters(
            X, rows, centers_new, weight_sums_new, random_state, reassignment_ratio, verbose,
            engine
        )
    return centers_new, weight_sums_new, inertia


def _times_weights(centers, weight_sums, xp):
    """``c * W`` per cluster, in float64: where scikit-learn's sums start."""
    return centers.astype(xp.float64) * weight_sums.astype(xp.float64)[:, None]


def _center_sums_host(X, sample_weight, labels, centers, weight_sums):
    """``c * W + sum_i w_i x_i`` per cluster, and ``sum_i w_i``, in float64, in
    scikit-learn's order (``_minibatch_update_dense``): each cluster's sum starts at its
    ``c * W`` and adds each product ``w_i x_i`` (no fused multiply-add) in sample order,
    its weight from zero likewise; float64 centers are then scikit-learn's bit for bit,
    step after step, as the CPU engine's compiled step's
    (:mod:`gpukmeans._cpu_minibatch`). Added one after another by ``cumsum`` along the
    samples, a cluster at a time (``np.add.at`` took 9 ms on a batch of MNIST; a
    product's sums are in another order, which on wide data with many clusters sent the
    runs apart within a few steps)."""
    n_clusters = centers.shape[0]
    order = np.argsort(labels, kind="stable")  # sample order within each cluster
    counts = np.bincount(labels, minlength=n_clusters)
    ends = np.cumsum(counts)
    weights = sample_weight[order].astype(np.float64)
    products = X[order].astype(np.float64) * weights[:, None]
    sums = _times_weights(centers, weight_sums, np)
    weight_in_clusters = np.zeros(n_clusters)
    for cluster in np.flatnonzero(counts):
        members = slice(ends[cluster] - counts[cluster], ends[cluster])
        sums[cluster] = np.cumsum(np.concatenate([sums[cluster][None], products[members]]),
                                  axis=0)[-1]
        weight_in_clusters[cluster] = np.cumsum(weights[members])[-1]
    return sums, weight_in_clusters


def _cluster_sums_device(X, sample_weight, labels, n_clusters, xp):
    """``sum_i w_i x_i`` per cluster in X's dtype and ``sum_i w_i`` in float64 on the GPU:
    a dense one-hot product through cuBLAS, whose sums have a fixed order (scatter-adds
    with atomics would not), if not scikit-learn's: ``c * W`` is added to them after (in
    float64), a rounding per step off its float64 centers."""
    membership = (labels[None, :] == xp.arange(n_clusters, dtype=xp.int32)[:, None])
    weighted = membership.astype(X.dtype) * sample_weight[None, :]  # (n_clusters, n_samples)
    sums = weighted @ X
    weight_in_clusters = weighted.astype(xp.float64).sum(axis=1)
    return sums, weight_in_clusters


def _reassign_small_clusters(X, rows, centers, weight_sums, random_state, reassignment_ratio,
                             verbose, engine):
    """scikit-learn's random reassignment, on the host (``n_clusters`` values), onto
    samples of the batch ``X[rows]`` (``X`` where ``rows`` is None). ``centers`` is this
    step's own new array, changed in place; returns it and the new weights."""
    xp = engine.xp
    n_batch = X.shape[0] if rows is None else rows.shape[0]
    weight_sums_host = to_host(weight_sums).copy()
    to_reassign = weight_sums_host < reassignment_ratio * weight_sums_host.max()
    # At most half of the batch's samples become centers.
    if to_reassign.sum() > 0.5 * n_batch:
        indices_dont_reassign = np.argsort(weight_sums_host)[int(0.5 * n_batch):]
        to_reassign[indices_dont_reassign] = False
    n_reassigns = int(to_reassign.sum())
    if n_reassigns:
        new_centers = random_state.choice(n_batch, replace=False, size=n_reassigns)
        if verbose:
            print(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
        if rows is not None:
            new_centers = rows[new_centers]
        centers[xp.asarray(np.flatnonzero(to_reassign))] = engine.take_rows(
            X, xp.asarray(new_centers))
    # A reassigned center's weight is raised to the smallest of the others', so that it
    # is not reassigned again at once (this also lowers its learning rate, as there).
    # Where every center is reassigned (a reassignment_ratio above 1, with at most half
    # the batch's samples as clusters), there are no others: each keeps its own weight
    # (scikit-learn fails there, on the minimum of nothing).
    if not to_reassign.all():
        weight_sums_host[to_reassign] = np.min(weight_sums_host[~to_reassign])
    return centers, xp.asarray(weight_sums_host)


class EarlyStopping:
    """scikit-learn's ``_mini_batch_convergence``: stop when the squared center change
    is at most ``tol`` (already scaled by the data's variance), or when the exponentially
    weighted average (EWA) of the batch inertia per sample has not improved on its
    minimum for ``max_no_improvement`` steps in a row."""

    def __init__(self, batch_size, n_samples, tol, max_no_improvement, verbose):
        self.batch_size = batch_size
        self.n_samples = n_samples
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.verbose = verbose
        self.ewa_inertia = None
        self.last_inertia = None
        self.ewa_inertia_min = None
        self.no_improvement = 0

    def __call__(self, step, n_steps, centers_squared_diff, batch_inertia):
        """Whether to stop after step ``step`` (from 0) of ``n_steps``. ``batch_inertia``
        may be None where nothing reads the smoothed inertia (see the estimator's fit)."""
        step = step + 1
        if batch_inertia is not None:
            # Per sample, comparable whatever batch_size.
            batch_inertia /= self.batch_size
            self.last_inertia = batch_inertia
        # The first step's inertia is the initialisation's; its change is not tested either.
        if step == 1:
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if batch_inertia is None:
            return self.tol > 0.0 and centers_squared_diff <= self.tol
        if self.ewa_inertia is None:
            self.ewa_inertia = batch_inertia
        else:
            alpha = min(self.batch_size * 2.0 / (self.n_samples + 1), 1)
            self.ewa_inertia = self.ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch inertia: "
                  f"{batch_inertia}, ewa inertia: {self.ewa_inertia}")
        if self.tol > 0.0 and centers_squared_diff <= self.tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self.ewa_inertia_min is None or self.ewa_inertia < self.ewa_inertia_min:
            self.no_improvement = 0
            self.ewa_inertia_min = self.ewa_inertia
        else:
            self.no_improvement += 1
        if (self.max_no_improvement is not None
                and self.no_improvement >= self.max_no_improvement):
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False


class BatchSampler:
    """Draws fit's mini-batches as scikit-learn's
    ``random_state.choice(n_samples, batch_size, p=normalized_sample_weight)`` does, the
    same indices from the same draws, without its pass over all the weights at every step.

    NumPy's ``RandomState.choice`` with ``p`` and replacement builds ``cdf = p.cumsum();
    cdf /= cdf[-1]``, then returns ``cdf.searchsorted(random_sample(size), "right")``; the
    cdf is built once here (on 2,000,000 samples, ``choice`` costs 30 ms a step). The
    search itself starts from a table of where each of ``n_buckets`` equal slices of
    [0, 1] begins in the cdf, so that each draw is searched in a few entries, not
    ``log2(n_samples)`` cache misses across the whole cdf (1.8 ms a step at 2,000,000).
    ``compiled_search``: an engine's ``batch_search``, or None for :meth:`search`.
    """

    def __init__(self, normalized_sample_weight, batch_size, compiled_search=None):
        self.compiled_search = compiled_search
        cdf = np.asarray(normalized_sample_weight, dtype=np.float64).cumsum()
        cdf /= cdf[-1]
        self.cdf = cdf
        self.batch_size = batch_size
        # About BUCKET_SAMPLES samples a slice where the weights are even.
        self.n_buckets = max(1, cdf.shape[0] // BUCKET_SAMPLES)
        edges = np.arange(self.n_buckets + 1, dtype=np.float64) / self.n_buckets
        # bucket_starts[b]: the first index whose cdf exceeds the slice's left edge.
        self.bucket_starts = cdf.searchsorted(edges, side="right")

    def __call__(self, random_state):
        uniform = random_state.random_sample(self.batch_size)
        if self.compiled_search is not None:
            return self.compiled_search(self.cdf, self.bucket_starts, uniform)
        return self.search(uniform)

    def search(self, uniform):
        """``self.cdf.searchsorted(uniform, side="right")``, bucket by bucket."""
        cdf, n_buckets = self.cdf, self.n_buckets
        # The answer for u lies between the starts of u's slice and of the next one;
        # floor(u * n_buckets) may be off by one slice in the last bit, so one more
        # slice on each side.
        bucket = np.floor(uniform * n_buckets).astype(np.int64)
        lo = self.bucket_starts[np.clip(bucket - 1, 0, n_buckets)]
        hi = self.bucket_starts[np.clip(bucket + 2, 0, n_buckets)]
        # Binary search of each draw's range [lo, hi] for the first cdf > u, all at once.
        while True:
            open_ = lo < hi
            if not open_.any():
                return lo
            mid = (lo + hi) // 2
            beyond = cdf[np.minimum(mid, cdf.shape[0] - 1)] > uniform
            hi = np.where(open_ & beyond, mid, hi)
            lo = np.where(open_ & ~beyond, mid + 1, lo)
