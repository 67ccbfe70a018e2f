"""The single-run driver: one k-means run from given initial centers, for either engine.

Written once against :class:`gpukmeans._engine.Engine` and its array module ``xp``, as
scikit-learn's ``_kmeans_single_lloyd`` is written once for dense and sparse input. It
owns the loop, the convergence test, empty-cluster relocation and the final E-step; the
engine owns the passes over the data.
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
    xp = engine.xp
    n_samples = X.shape[0]
    centers = centers_init.copy()
    labels = xp.full(n_samples, -1, dtype=xp.int32)
    labels_old = labels.copy()
    strict_convergence = False
    n_iter = 0
    run = engine.start_lloyd(X, x_squared_norms, sample_weight, centers.shape[0])

    for n_iter in range(1, max_iter + 1):
        sums, weight_in_clusters = run.step(centers, labels)

        # One small read per iteration: how many clusters emptied, whether labels moved.
        n_empty, labels_changed = (
            int(v)
            for v in to_host(
                xp.stack(
                    [
                        (weight_in_clusters == 0).sum(),
                        (labels != labels_old).sum(),
                    ]
                )
            )
        )
        relocated = bool(n_empty) and relocate_empty_clusters(
            X, x_squared_norms, sample_weight, centers, sums, weight_in_clusters, labels, engine
        )
        centers_new = average_centers(sums, weight_in_clusters, centers, X.dtype, xp)

        # scikit-learn reports the inertia of the assignment just made: a pass over the
        # data, paid only by a reporter that shows it (verbose lines), not by the bars.
        reporter.iteration(n_iter, float(engine.inertia(X, sample_weight, centers, labels))
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
            reporter.converged(n_iter, X.dtype.type(center_shift_tot), tol)
            break
        labels_old[:] = labels

    # Unless they stopped changing, the labels belong to the centers before the last
    # update: the E-step runs once more so that labels_ == predict(X).
    inertia = float(run.finish(centers, labels, assign_labels=not strict_convergence))
    reporter.end_run(n_iter, inertia)
    return labels, inertia, centers, n_iter


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


def relocate_empty_clusters(
    X, x_squared_norms, sample_weight, centers_old, sums, weight_in_clusters, labels, engine
):
    """Give each empty cluster one of the points farthest from their centers.

    scikit-learn's rule exactly: the ``n_empty`` largest distances, in the order
    ``np.argpartition`` leaves them, are paired with the empty clusters in index order;
    each chosen point's weighted contribution moves from its cluster to the empty one.
    Labels are not changed (the next E-step does that). Runs on the host's ordering so
    that both engines choose the same points; it happens rarely.

    A sample that already sits on its center (more clusters than distinct samples) is
    not moved: the next E-step would send it back to its old cluster (a tie, which the
    lower index wins), and the emptiness would move from cluster to cluster until
    ``max_iter`` (scikit-learn #28055). "On its center" means within the rounding of the
    E-step's ``||c||^2 - 2 x.c``, not exactly: centring rounds the coordinates, and a
    sample a rounding away from its center would loop all the same.

    INOUT ``sums``, ``weight_in_clusters``. Returns whether any weight was moved (a
    zero-weight sample moves nothing).
    """
    empty_clusters = np.flatnonzero(to_host(weight_in_clusters) == 0)
    n_empty = empty_clusters.shape[0]
    distances = to_host(engine.assigned_distances(X, centers_old, labels))
    centers_host = to_host(centers_old).astype(np.float64)
    labels_host = to_host(labels)
    # Each sample's own center: one far-away (empty) center must not blur everyone's.
    own_center_norms = (centers_host**2).sum(axis=1)[labels_host]
    resolution = (
        4 * X.shape[1] * np.finfo(X.dtype).eps * (to_host(x_squared_norms) + own_center_norms)
    )
    far_from_centers = np.argpartition(distances, -n_empty)[: -n_empty - 1 : -1]
    far_rows = engine.take_rows(X, engine.xp.asarray(far_from_centers)).astype(np.float64)
    far_samples = ((distances[i], resolution[i], int(labels_host[i]), sample_weight[i], row)
                   for i, row in zip(far_from_centers, far_rows))
    return move_to_empty_clusters(empty_clusters, far_samples, sums, weight_in_clusters)


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
