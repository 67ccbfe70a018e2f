"""The single-run driver: one k-means run from given initial centers, for either engine
and for Dask.

Written once against :class:`gpukmeans._engine.Engine` and its array module ``xp``, as
scikit-learn's ``_kmeans_single_lloyd`` is written once for dense and sparse input. It
owns the loop, the convergence test, empty-cluster relocation and the final E-step; a
*run* owns the passes over the data and the labels: :class:`EngineRun` for data in one
engine's memory, ``gpukmeans.dask``'s run for the blocks of a dask array (the loop,
:func:`lloyd`, is the same).
"""

import numpy as np

from ._progress import NULL_REPORTER


def to_host(array):
    """A NumPy view or copy of a NumPy or CuPy array (small arrays only in the loop)."""
    get = getattr(array, "get", None)
    return get() if get is not None else np.asarray(array)


def kmeans_single_lloyd(
    X,
    x_squared_norms,
    sample_weight,
    centers_init,
    engine,
    max_iter=300,
    tol=0.0,
    reporter=NULL_REPORTER,
    update_centers=None,
):
    """A single run of k-means (Lloyd's algorithm). Prior validation of data is assumed.

    Parameters
    ----------
    X : {ndarray, cupy.ndarray} of shape (n_samples, n_features)
        C-contiguous float32 or float64, in ``engine.xp``'s memory.
    x_squared_norms : float64 array of shape (n_samples,), from ``engine.row_norms(X)``.
    sample_weight : array of shape (n_samples,), same dtype and module as X.
    centers_init : array of shape (n_clusters, n_features), same dtype and module as X.
    engine : Engine
    max_iter : int, default=300
    tol : float, default=0.0
        Absolute tolerance on the sum of squared center shifts (already scaled by the
        data's variance by the caller).
    reporter : Reporter, default=NULL_REPORTER
        From :func:`gpukmeans._progress.make_reporter`, told what scikit-learn's
        ``verbose`` prints; where it ``needs_inertia``, the inertia of each iteration is
        computed for it (an extra pass over X).
    update_centers : callable, default=None
        The M-step's centers, ``update_centers(sums, weight_in_clusters, centers_old,
        dtype, xp)``: :func:`average_centers` when None (Lloyd's means), or
        :func:`gpukmeans._spherical.unit_centers` (spherical k-means: their directions).
        The engine's next step is given these centers, as they are.

    Returns
    -------
    labels : int32 array of shape (n_samples,)
        Labels of the returned centers: a final E-step is run unless the labels
        already stopped changing, so that ``labels`` equals ``predict(X)``.
    inertia : float
    centers : array of shape (n_clusters, n_features)
    n_iter : int
        Number of iterations run.
    """
    run = EngineRun(engine, X, x_squared_norms, sample_weight, centers_init.shape[0])
    centers, inertia, n_iter, _ = lloyd(run, centers_init, engine.xp, max_iter, tol, reporter,
                                        update_centers)
    return run.labels, inertia, centers, n_iter


def lloyd(run, centers_init, xp, max_iter, tol, reporter=NULL_REPORTER, update_centers=None):
    """Lloyd's loop over a run's passes: the one loop of every fit, in memory or on Dask.

    ``run`` owns the data and the labels; the loop owns the centers, the convergence
    test and empty-cluster relocation. A run has (see :class:`EngineRun`):

    - ``step(centers_old) -> (sums, weight_in_clusters, n_changed)``: the E-step and
      the M-step's accumulation (:attr:`Engine.lloyd_iter`'s ``sums`` and
      ``weight_in_clusters``, in ``xp``), and how many labels differ from the previous
      step's (all of them at the first), exactly;
    - ``farthest(centers_old, n_far)``: the ``n_far`` samples farthest from their
      centers of the last step, in :func:`relocate_empty_clusters`' order, each as
      ``(distance, resolution, label, weight, row)``;
    - ``inertia(centers_old)``: the last step's inertia (asked only for a reporter that
      shows it);
    - ``finish(centers, assign_labels) -> inertia``: the final E-step when
      ``assign_labels``, then the inertia.

    ``update_centers``: as for :func:`kmeans_single_lloyd`. Prior validation of data is
    assumed. ``centers_init`` is in ``xp`` and the data's dtype; ``tol`` is absolute.
    Returns ``(centers, inertia, n_iter,
    weight_in_clusters)``, the last the final step's (after relocation).
    """
    if update_centers is None:
        update_centers = average_centers
    centers = centers_init.copy()
    dtype = centers.dtype
    strict_convergence = False
    n_iter = 0
    weight_in_clusters = None

    for n_iter in range(1, max_iter + 1):
        sums, weight_in_clusters, n_changed = run.step(centers)

        # One small read per iteration: how many clusters emptied, whether labels moved.
        n_empty, labels_changed = (
            int(v) for v in to_host(xp.stack([(weight_in_clusters == 0).sum(), n_changed]))
        )
        relocated = bool(n_empty) and relocate_empty_clusters(
            run, centers, sums, weight_in_clusters
        )
        centers_new = update_centers(sums, weight_in_clusters, centers, dtype, xp)

        # scikit-learn reports the inertia of the assignment just made: a pass over the
        # data, paid only by a reporter that shows it (verbose lines), not by the bars.
        reporter.iteration(n_iter, float(run.inertia(centers))
                           if reporter.needs_inertia else None)

        center_shift_tot = ((centers_new - centers) ** 2).sum()
        centers = centers_new

        # A relocation moved a center this iteration: the labels may be stale even when
        # the E-step changed none, so the run goes on (or ends with a final E-step).
        if not labels_changed and not relocated:
            strict_convergence = True
            reporter.converged(n_iter)
            break
        center_shift_tot = float(center_shift_tot)
        if center_shift_tot <= tol:
            # Shown in X's dtype, as scikit-learn shows it (float64 holds a float32 exactly).
            reporter.converged(n_iter, dtype.type(center_shift_tot), tol)
            break

    # Unless they stopped changing, the labels belong to the centers before the last
    # update: the E-step runs once more so that labels_ == predict(X).
    inertia = float(run.finish(centers, assign_labels=not strict_convergence))
    reporter.end_run(n_iter, inertia)
    return centers, inertia, n_iter, weight_in_clusters


class EngineRun:
    """:func:`lloyd`'s run over data in one engine's memory: the engine's passes
    (:attr:`Engine.start_lloyd`) and the run's labels. Prior validation of data is
    assumed."""

    def __init__(self, engine, X, x_squared_norms, sample_weight, n_clusters):
        xp = engine.xp
        self.engine = engine
        self.X = X
        self.x_squared_norms = x_squared_norms
        self.sample_weight = sample_weight
        self.labels = xp.full(X.shape[0], -1, dtype=xp.int32)
        self._labels_old = self.labels.copy()
        self._passes = engine.start_lloyd(X, x_squared_norms, sample_weight, n_clusters)

    def step(self, centers_old):
        # The engine's passes are given the same labels array every time (they may keep
        # bounds that refer to it): the previous labels are copied aside instead.
        self._labels_old[:] = self.labels
        sums, weight_in_clusters = self._passes.step(centers_old, self.labels)
        return sums, weight_in_clusters, (self.labels != self._labels_old).sum()

    def farthest(self, centers_old, n_far):
        X = self.X
        if hasattr(X, "far_samples"):  # streamed data: gpukmeans._streaming.StreamedData
            return X.far_samples(centers_old, self.labels, n_far)
        distances = to_host(self.engine.assigned_distances(X, centers_old, self.labels))
        far = farthest(distances, n_far)
        far_device = self.engine.xp.asarray(far)
        return far_sample_tuples(
            X.dtype, centers_old, distances[far], to_host(self.x_squared_norms[far_device]),
            to_host(self.labels[far_device]), to_host(self.sample_weight[far_device]),
            self.engine.take_rows(X, far_device))

    def inertia(self, centers_old):
        return self.engine.inertia(self.X, self.sample_weight, centers_old, self.labels)

    def finish(self, centers, assign_labels):
        return self._passes.finish(centers, self.labels, assign_labels)


def average_centers(sums, weight_in_clusters, centers_old, dtype, xp):
    """``sums * (1 / weight)`` per cluster, cast to the data's dtype.

    A cluster whose weight is still zero after relocation (every sample already on a
    center, or only zero-weight samples to move) keeps its center from ``centers_old``:
    never the origin of the working coordinates, which would depend on whether the data
    were centred. (scikit-learn 1.9 moves it onto the heaviest cluster's center, or its
    unaveraged sum when that cluster has a higher index; on the heaviest center it takes
    that cluster's samples at the next E-step, ties going to the lower index, and the
    emptiness moves on, iteration after iteration.)
    """
    has_weight = weight_in_clusters > 0
    divisor = xp.where(has_weight, weight_in_clusters, 1.0)
    # Times the reciprocal, not divided: scikit-learn's rounding, so that float64 centers
    # (and so the next labels) are bitwise its own.
    centers = xp.where(has_weight[:, None], sums * (1.0 / divisor)[:, None], centers_old)
    return centers.astype(dtype, copy=False)


def relocate_empty_clusters(run, centers_old, sums, weight_in_clusters):
    """Give each empty cluster one of the points farthest from their centers.

    scikit-learn's rule exactly: the ``n_empty`` largest distances, in the order
    ``np.argpartition`` leaves them over the whole data (``run.farthest``), are paired
    with the empty clusters in index order; each chosen point's weighted contribution
    moves from its cluster to the empty one. Labels are not changed (the next E-step
    does that). Runs on the host's ordering so that every engine, and Dask, chooses the
    same points; it happens rarely.

    A sample that already sits on its center (more clusters than distinct samples) is
    not moved: the next E-step would send it back to its old cluster (a tie, which the
    lower index wins), and the emptiness would move from cluster to cluster until
    ``max_iter`` (scikit-learn #28055). "On its center" means within the rounding of the
    E-step's ``||c||^2 - 2 x.c`` (:func:`relocation_resolution`), not exactly: centring
    rounds the coordinates, and a sample a rounding away from its center would loop all
    the same.

    INOUT ``sums``, ``weight_in_clusters``. Returns whether any weight was moved (a
    zero-weight sample moves nothing).
    """
    empty_clusters = np.flatnonzero(to_host(weight_in_clusters) == 0)
    far_samples = run.farthest(centers_old, empty_clusters.shape[0])
    return move_to_empty_clusters(empty_clusters, far_samples, sums, weight_in_clusters)


def farthest(distances, n_far):
    """The indices of the ``n_far`` largest ``distances`` (a host array, or a memmap),
    in the order scikit-learn takes them: ``np.argpartition``'s over the whole array,
    from its end."""
    # A copy: the slice would keep the whole n_samples-long index array alive.
    return np.array(np.argpartition(distances, -n_far)[: -n_far - 1 : -1])


def far_sample_tuples(dtype, centers_old, distances, x_squared_norms, labels, weights, rows):
    """:func:`move_to_empty_clusters`' ``far_samples`` from the far samples' distances,
    row norms, labels, weights (host arrays) and rows (either module), in order."""
    resolution = relocation_resolution(dtype, rows.shape[1], x_squared_norms,
                                       to_host(centers_old), labels)
    return ((distances[j], resolution[j], int(labels[j]), weights[j], row.astype(np.float64))
            for j, row in enumerate(rows))


def relocation_resolution(dtype, n_features, x_squared_norms, centers_old, labels):
    """float64 (n_samples,): how far a sample must lie from its own center to be moved,
    the rounding of the E-step's ``||c||^2 - 2 x.c`` for it (each sample's own center:
    one far-away, empty, center must not blur everyone's). Host arrays."""
    own_center_norms = (centers_old.astype(np.float64) ** 2).sum(axis=1)[labels]
    return 4 * n_features * np.finfo(dtype).eps * (x_squared_norms + own_center_norms)


def move_to_empty_clusters(empty_clusters, far_samples, sums, weight_in_clusters):
    """Move each far sample's weighted row from its cluster to the next empty one.

    ``far_samples`` yields, in :func:`relocate_empty_clusters`' order, ``(distance,
    resolution, label, weight, row)`` (``row`` in float64); a sample no farther from its
    center than the resolution stays. INOUT ``sums``, ``weight_in_clusters``. Returns
    whether any weight was moved.
    """
    moved = False
    for new_cluster_id, (distance, resolution, old_cluster_id, weight, row) in zip(
            empty_clusters, far_samples):
        if not distance > resolution:
            continue
        contribution = row * weight
        sums[old_cluster_id] -= contribution
        sums[new_cluster_id] = contribution
        weight_in_clusters[new_cluster_id] = weight
        weight_in_clusters[old_cluster_id] -= weight
        moved = moved or bool(weight > 0)
    return moved
