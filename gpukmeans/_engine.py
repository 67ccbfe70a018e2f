"""The contract between the single-run driver and the two compute engines.

The driver (:mod:`gpukmeans._lloyd`) and the initialisations (:mod:`gpukmeans._init`)
are written once, against an :class:`Engine`. The CPU engine (:mod:`gpukmeans._cpu`,
Numba) and the GPU engine (:mod:`gpukmeans._gpu`, CUDA kernels through CuPy) differ only
in the functions they put in it, as scikit-learn picks ``lloyd_iter_chunked_dense`` or
``lloyd_iter_chunked_sparse``.

Every function assumes validated input: ``X`` is a C-contiguous 2-D array of float32 or
float64 in the engine's array module; ``sample_weight`` has ``X``'s dtype and shape
``(n_samples,)``; centers have ``X``'s dtype and shape ``(n_clusters, n_features)``;
``labels`` are int32. No function may depend on thread count or timing: reductions are
done in a fixed order, so the same input gives bitwise the same output.
"""

from typing import Any, Callable, NamedTuple


class Engine(NamedTuple):
    name: str
    """``"cpu"`` or ``"gpu"``; becomes the estimator's ``device_``."""

    xp: Any
    """The array module the engine's arrays live in (``numpy`` or ``cupy``)."""

    assign_labels: Callable
    """``assign_labels(X, centers, labels, distances) -> None``

    E-step. OUT ``labels[i]``: index of the closest center (lowest index on ties).
    OUT ``distances[i]``: squared euclidean distance to that center, ``X.dtype``,
    clipped at 0 (it may come from ``||x||^2 - 2 x.c + ||c||^2``).
    """

    lloyd_iter: Callable
    """``lloyd_iter(X, sample_weight, centers_old, labels, distances) -> (sums, weight_in_clusters)``

    One fused E-step and M-step accumulation: writes ``labels`` and ``distances`` as
    :attr:`assign_labels` does and returns ``sums`` (float64, ``(n_clusters, n_features)``,
    ``sum_i w_i x_i`` per cluster) and ``weight_in_clusters`` (float64, ``(n_clusters,)``).
    Division, empty-cluster relocation and the convergence test are the driver's.
    """

    inertia: Callable
    """``inertia(X, sample_weight, centers, labels) -> float64 0-d array``

    ``sum_i w_i ||x_i - centers[labels[i]]||^2`` computed from the differences (not the
    norm expansion), accumulated in float64 in a fixed order. Returned as a 0-d array of
    the engine's module so that the GPU engine needs no synchronisation.
    """

    pairwise_distances: Callable
    """``pairwise_distances(X, centers) -> (n_samples, n_clusters) X.dtype``

    Euclidean (not squared) distances, for ``transform``.
    """

    kmeanspp_candidates: Callable
    """``kmeanspp_candidates(X, x_squared_norms, sample_weight, candidate_ids, closest_dist_sq)
    -> (distance_to_candidates, candidates_pot)``

    The greedy k-means++ local-trial step. IN ``candidate_ids`` int64 ``(n_candidates,)``;
    IN ``closest_dist_sq`` ``X.dtype`` ``(n_samples,)``; IN ``x_squared_norms`` float64
    ``(n_samples,)``. OUT ``distance_to_candidates`` ``X.dtype`` ``(n_candidates, n_samples)``:
    ``min(closest_dist_sq, ||x - X[candidate]||^2)``, the distance evaluated in float64
    (as scikit-learn upcasts float32 here) and clipped at 0; OUT ``candidates_pot`` float64
    ``(n_candidates,)``: ``distance_to_candidates @ sample_weight``, fixed-order sum.
    """
