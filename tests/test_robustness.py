"""Public k-means bug reports, replayed as kinds, on both engines (the GPU engine on the
emulated device, and on a real GPU where one is usable): empty clusters, zero weights,
parameters at their edges. Expected values come from scikit-learn 1.9 where it is right,
else from float64 arithmetic."""

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.exceptions import ConvergenceWarning

from gpukmeans import KMeans
from gpukmeans._backend import cuda_backend, use_backend
from gpukmeans._lloyd import to_host
from label_checks import sq_dist64

ENGINES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("emulated", id="gpu-emulated"),
    pytest.param("cuda", id="gpu", marks=pytest.mark.gpu),
]


@pytest.fixture(params=ENGINES)
def device(request):
    """The ``device`` to fit on; "gpu" runs on the emulated device or on CUDA."""
    if request.param == "cpu":
        yield "cpu"
        return
    backend = (cuda_backend() if request.param == "cuda"
               else request.getfixturevalue("emulated_device").backend())
    with use_backend(backend):
        yield "gpu"


def _fit(device, X, init, sample_weight=None, **params):
    X = np.asarray(X, dtype=np.float64)
    init = np.asarray(init, dtype=np.float64)
    if X.ndim == 1:
        X, init = X[:, None], init[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(init.shape[0], init=init, n_init=1, device=device, **params).fit(
            X, sample_weight=sample_weight), X


def _assert_consistent(km, X, sample_weight=None):
    """Every label a nearest center of cluster_centers_, inertia_ their weighted sum,
    labels_ == predict(X)."""
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    d = sq_dist64(X, centers)
    own = d[np.arange(X.shape[0]), labels]
    scale = (X.astype(np.float64) ** 2).sum(1) + (centers.astype(np.float64) ** 2).sum(1).max()
    assert np.all(own <= d.min(axis=1) + 1e-12 * scale), "a label is not a nearest center"
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    np.testing.assert_allclose(km.inertia_, own @ w, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(to_host(km.predict(X)), labels)


# ----------------------------------------------------------------------------------------
# Empty clusters
# ----------------------------------------------------------------------------------------


def test_more_clusters_than_distinct_points_stops_like_scikit_learn(device):
    """Relocating when every sample sits on its center only moves the emptiness around
    (scikit-learn #28055): this ran all 10,000 iterations."""
    X = [[10, 10], [10, 13], [15, 10], [16, 12], [16, 12], [17, 10]]
    init = [[8, 14], [12, 10], [18, 12], [19, 10], [20, 10], [21, 10]]
    km, X = _fit(device, X, init, max_iter=10_000)
    assert km.n_iter_ == 2 and km.inertia_ == 0
    _assert_consistent(km, X)

    km, X = _fit(device, [2, 2, 2, 2, 4], [2, 4, 2, 2, 2])
    assert km.n_iter_ == 1 and km.inertia_ == 0
    _assert_consistent(km, X)


def test_relocation_in_the_last_iteration_leaves_no_stale_label(device):
    km, X = _fit(device, [2, 2, 2, 1, 1, 1, 2, 0], [1, 1, 1, 1, 0])
    assert km.inertia_ == 0
    # Clusters 2 and 3 stay empty on their initial centers (scikit-learn moves them onto
    # the heaviest cluster, 2).
    np.testing.assert_array_equal(to_host(km.cluster_centers_).ravel(), [1, 2, 1, 1, 0])
    _assert_consistent(km, X)


@pytest.mark.parametrize("copy_x", [True, False])
def test_a_cluster_with_no_weight_keeps_its_center_not_the_origin(device, copy_x):
    """It was 0.0 or 20.75 depending on copy_x (the origin of the working coordinates).
    The cluster holds only the zero-weight sample: it keeps its center, 30, whatever
    copy_x says (scikit-learn moves it onto the heaviest cluster's, 11.5)."""
    weight = np.array([1, 1, 1, 0.0])
    km, X = _fit(device, [10, 11, 12, 50], [10, 11, 30], sample_weight=weight, copy_x=copy_x)
    np.testing.assert_array_equal(to_host(km.cluster_centers_).ravel(), [10, 11.5, 30])
    assert km.inertia_ == 0.5
    _assert_consistent(km, X, weight)


def test_duplicate_heavy_data_with_zero_weights_keep_every_invariant(device):
    """Random small fits with more clusters than distinct points, a third of the weights
    zero: labels are nearest centers, the inertia is theirs, predict agrees, copy_x changes
    nothing, and no fit runs to max_iter where scikit-learn converges."""
    rng = np.random.default_rng(0)
    for trial in range(25):
        n_distinct = int(rng.integers(2, 6))
        points = rng.integers(-3, 4, (n_distinct, 2)).astype(float)
        X = points[rng.integers(0, n_distinct, int(rng.integers(8, 20)))]
        n_clusters = int(rng.integers(n_distinct, min(X.shape[0], n_distinct + 4) + 1))
        weight = np.where(rng.random(X.shape[0]) < 0.3, 0.0, rng.uniform(0.5, 2, X.shape[0]))
        weight[0] = 1.0
        init = X[rng.choice(X.shape[0], n_clusters, replace=False)]
        fits = [_fit(device, X, init, sample_weight=weight, copy_x=c, max_iter=100)[0]
                for c in (True, False)]
        for km in fits:
            _assert_consistent(km, X, weight)
        np.testing.assert_array_equal(to_host(fits[0].labels_), to_host(fits[1].labels_))
        np.testing.assert_allclose(to_host(fits[0].cluster_centers_),
                                   to_host(fits[1].cluster_centers_), rtol=1e-12, atol=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference = SklearnKMeans(n_clusters, init=init, n_init=1, max_iter=100).fit(
                X, sample_weight=weight)
        if reference.n_iter_ < 100:
            assert fits[0].n_iter_ < 100, (trial, reference.n_iter_)
