"""Public k-means bug reports, replayed as kinds, on both engines (the GPU engine on the
emulated device, and on a real GPU where one is usable): empty clusters, zero weights,
parameters at their edges. Expected values come from scikit-learn 1.9 where it is right,
else from float64 arithmetic."""

import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.cluster import MiniBatchKMeans as SklearnMiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from gpukmeans import KMeans, MiniBatchKMeans
from gpukmeans._lloyd import to_host
from label_checks import sq_dist64


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


def test_a_far_away_empty_center_does_not_stop_relocation(device):
    """The rounding allowance for 'a sample already on its center' is each sample's own;
    one center at 1e8 left every other cluster unrelocated (scikit-learn relocates)."""
    rng = np.random.default_rng(15)
    X = np.r_[rng.standard_normal((100, 2)), rng.standard_normal((100, 2)) + 10]
    km, X = _fit(device, X, [[1e8, 0], [0, 0], [10, 10], [5, 5]])
    assert (np.bincount(to_host(km.labels_), minlength=4) > 0).all()
    assert km.inertia_ < 300  # 385.5 with a cluster stuck at 1e8
    _assert_consistent(km, X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_kept_empty_center_beside_a_sample_keeps_the_labels_exact(device, dtype):
    """More clusters than distinct samples, and an initial center a hair from a sample's
    own (a breaker's find, stop 56): the kept empty center lies within the rounding of
    ``||c||^2 - 2 x.c``, which in float64 decides between the two, as scikit-learn's
    E-step does (its labels_ went to the center 1e-9 away, not to the one on the
    sample). float32 labels are still the exactly nearest, lowest index on a tie;
    float64 ones within that rounding, and predict(X) gives labels_ in both."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        X = np.repeat(rng.normal(size=(3, 2)), 10, axis=0).astype(dtype)
        gap = 10.0 ** (rng.uniform(-7, -3) if dtype == np.float32 else rng.uniform(-12, -7))
        init = np.r_[X[::10], X[:1] + dtype(gap)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(4, init=init, n_init=1, device=device).fit(X)
        _assert_consistent(km, X)
        if dtype == np.float32:
            centers = to_host(km.cluster_centers_).astype(np.longdouble)
            exact = ((X.astype(np.longdouble)[:, None] - centers[None]) ** 2).sum(-1)
            np.testing.assert_array_equal(to_host(km.labels_), exact.argmin(axis=1))


@pytest.mark.parametrize("dtype, offset", [(np.float64, 1e8), (np.float32, 1e3),
                                           (np.float32, 1e5)])
def test_labels_far_from_the_origin_are_nearest_and_predicted(device, dtype, offset):
    """The fit works on centred data there; labels_ are its exact nearest centers, and
    predict (which measures in the fit's frame) gives them bit for bit."""
    from label_checks import assert_labels_nearest

    X = (np.random.default_rng(16).standard_normal((200, 3)) + offset).astype(dtype)
    km = KMeans(5, random_state=0, device=device).fit(X)
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    np.testing.assert_array_equal(to_host(km.predict(X)), labels)
    np.testing.assert_allclose(-km.score(X), km.inertia_, rtol=1e-9)
    # Against the centers as returned (rounded by adding the mean back): near-ties only.
    centred = (X.astype(np.float64) - X.astype(np.float64).mean(0))
    assert_labels_nearest(labels, centred, centers - X.astype(np.float64).mean(0), np.float64
                          if dtype == np.float64 else np.float32)


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


# ----------------------------------------------------------------------------------------
# Values at the edges of the dtype
# ----------------------------------------------------------------------------------------


def _scales(dtype):
    """Powers of ten from the smallest subnormal to the largest finite value."""
    info = np.finfo(dtype)
    smallest = float(np.nextafter(dtype(0), dtype(1)))
    exponents = np.arange(np.ceil(np.log10(smallest)), np.floor(np.log10(float(info.max))) + 1)
    return [smallest, *(10.0**exponents), float(info.max)]


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_scale_gives_exact_labels_or_a_clear_error(device, dtype):
    """At every scale of the dtype, a fit either gives the labels of the same data brought
    to unit scale by a power of two (exact), or is refused before any work with an error
    that names X and the usable range; predict likewise. Never NaN centers, never a label
    outside [0, n_clusters)."""
    from gpukmeans._validation import usable_magnitude

    base = np.random.default_rng(7).standard_normal((64, 3))
    base /= np.abs(base).max()
    lower, upper = usable_magnitude(dtype, 64, 3)
    accepted = 0
    for scale in _scales(dtype):
        X = (base * scale).astype(dtype)  # the largest |x| is the scale, rounded
        largest = float(np.abs(X).max())
        init = X[:4].copy()
        params = dict(n_clusters=4, init=init, n_init=1, max_iter=5)
        if not lower <= largest <= upper:
            with pytest.raises(ValueError, match=r"X holds values up to .* between"):
                KMeans(device=device, **params).fit(X)
            continue
        accepted += 1
        km = KMeans(device=device, **params).fit(X)
        labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
        assert np.isfinite(centers).all() and np.isfinite(km.inertia_)
        assert labels.min() >= 0 and labels.max() < 4
        unit = 2.0 ** -np.frexp(largest)[1]  # X * unit is exact, with a largest |x| near 1
        reference = KMeans(4, init=init.astype(np.float64) * unit, n_init=1, max_iter=5,
                           device="cpu").fit(X.astype(np.float64) * unit)
        np.testing.assert_array_equal(labels, reference.labels_, err_msg=f"scale {scale:g}")
        np.testing.assert_array_equal(to_host(km.predict(X)), labels)
    assert accepted >= 20  # the usable range spans many decades


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_far_initial_center_gives_the_same_fit_or_a_clear_error(device, dtype, rng):
    """One initial center far beyond the data: its cluster empties at the first step and
    takes the farthest sample, wherever that center is, so every accepted position gives
    the same fit. Past the bound that a model's centers meet for inference, the fit is
    refused before any work, naming init: there ``||c||^2 - 2 x.c`` overflowed into NaN
    in X's dtype, which took samples silently (float32, a center at 3e38: inertia 45%
    above the fit from a center at 1e15, labels 6/50/444 of 500). Arrays and callables,
    KMeans and MiniBatchKMeans; on the Numba engine's sizes too."""
    from gpukmeans._validation import usable_magnitude

    upper = usable_magnitude(dtype, 1, 3)[1]
    sizes = (500, 2**18 + 7) if device == "cpu" else (500,)
    for n_samples in sizes:
        X = (rng.normal(size=(n_samples, 3)) + rng.integers(0, 3, (n_samples, 1)) * 4)
        X = X.astype(dtype)

        def fit(cls, position, as_callable=False):
            init = np.vstack([X[:2], np.full((1, 3), position)]).astype(dtype)
            start = (lambda data, n_clusters, random_state: init) if as_callable else init
            return cls(3, init=start, n_init=1, random_state=0, device=device).fit(X)

        for cls in (KMeans, MiniBatchKMeans):
            near = fit(cls, 1e3)
            for position in (upper / 4, upper * 0.99):
                with warnings.catch_warnings():
                    warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
                    far = fit(cls, position)
                np.testing.assert_array_equal(to_host(far.labels_), to_host(near.labels_))
                np.testing.assert_array_equal(to_host(far.cluster_centers_),
                                              to_host(near.cluster_centers_))
            for position in (upper * 1.01, np.finfo(dtype).max / 2):
                for as_callable in (False, True):
                    with pytest.raises(ValueError, match=r"init holds values up to .* beyond"):
                        fit(cls, position, as_callable)
    # metric="cosine" makes initial centers unit: any finite scale is taken.
    if dtype == np.float32:
        X = rng.normal(size=(500, 3)).astype(dtype) + 3
        init = X[:3] * np.float32(upper * 8)
        KMeans(3, init=init, n_init=1, metric="cosine", device=device).fit(X)


def test_predict_refuses_data_the_model_cannot_measure(device):
    X = np.random.default_rng(8).standard_normal((50, 2))
    km = KMeans(3, random_state=0, device=device).fit(X)
    with pytest.raises(ValueError, match="X holds values up to"):
        km.predict(X * 1e200)
    km32 = KMeans(3, random_state=0, device=device).fit(X.astype(np.float32))
    with pytest.raises(ValueError, match="beyond the range of float32.*fit on float64"):
        km32.predict(X * 1e300)  # float64 values past float32's range once cast
    # Queries are measured against the centers: a point at (almost) the origin is fine,
    # and the bounds do not shrink with the batch size.
    assert to_host(km32.predict(np.array([[1e-15, 0.0]]))).shape == (1,)
    # Centers assigned by hand beyond the range: the error names them, not the query.
    assigned = KMeans(3, random_state=0, device=device).fit(X)
    assigned.cluster_centers_ = np.full((3, 2), 1e200)
    for method in (assigned.predict, assigned.transform, assigned.score):
        with pytest.raises(ValueError, match=r"cluster_centers_ holds values up to 1e\+200"):
            method(X)
    # NaN passed the scale test above (max() carried it through, and a comparison with
    # NaN is False), and a cosine model has no scale test; a list, integer centers or
    # another shape failed deep inside.
    cosine = KMeans(3, random_state=0, metric="cosine", device=device).fit(X)
    for model in (assigned, cosine):
        for bad_value in (np.nan, np.inf):
            bad_centers = to_host(model.cluster_centers_).copy()
            bad_centers[0, 0] = bad_value
            model.cluster_centers_ = bad_centers
            for method in (model.predict, model.transform, model.score):
                with pytest.raises(ValueError, match="cluster_centers_ holds NaN or infinity"):
                    method(X)
    for bad in (np.ones((3, 2)).tolist(), np.ones((3, 2), dtype=np.int64)):
        assigned.cluster_centers_ = bad
        with pytest.raises(TypeError, match="cluster_centers_ should be a float32 or float64"):
            assigned.predict(X)
    for bad in (np.ones((3, 5)), np.ones(6)):
        assigned.cluster_centers_ = bad
        with pytest.raises(ValueError, match=r"cluster_centers_ should have shape \(n_clusters, "
                                             r"2\).*got \("):
            assigned.predict(X)
    big = KMeans(3, random_state=0, device=device).fit((X * 1e17).astype(np.float32))
    query = np.tile((X * 1e17).astype(np.float32), (400, 1))
    np.testing.assert_array_equal(to_host(big.predict(query))[:50], to_host(big.labels_))


# ----------------------------------------------------------------------------------------
# Weights, init and random_state at their edges
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight", [1e39, 1e-46, 1e307, 1.7e308, 2.0**-1074])
def test_weights_are_scale_invariant(device, dtype, weight):
    """Any positive finite uniform weight gives the unweighted fit, with the inertia
    multiplied by the weight; it was 'contains NaN or infinity', 'all zeros' or numpy's
    'probabilities do not sum to 1'. From 2**1023 on, the weights' scale (2**1024) was
    infinite: an inertia of 0 came out NaN, with an overflow warning."""
    X = np.random.default_rng(9).standard_normal((200, 3)).astype(dtype)
    params = dict(n_clusters=4, init=X[:4], n_init=1)
    plain = KMeans(device=device, **params).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        weighted = KMeans(device=device, **params).fit(X, sample_weight=np.full(200, weight))
        warnings.simplefilter("ignore", ConvergenceWarning)  # one distinct row below
        ones = np.ones((20, 3), dtype=dtype)  # every center exact: an inertia of 0
        on_centers = KMeans(2, init=ones[:2], n_init=1, device=device).fit(
            ones, sample_weight=np.full(20, weight))
        assert on_centers.inertia_ == 0.0
        assert on_centers.score(ones, sample_weight=np.full(20, weight)) == 0.0
    np.testing.assert_array_equal(to_host(weighted.labels_), to_host(plain.labels_))
    # A weight that is not a power of two rounds the sums otherwise: equal up to that.
    np.testing.assert_allclose(to_host(weighted.cluster_centers_),
                               to_host(plain.cluster_centers_),
                               rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
    with np.errstate(over="ignore"):
        expected = plain.inertia_ * weight
    np.testing.assert_allclose(weighted.inertia_, expected, rtol=1e-6)  # inf past 1e308
    np.testing.assert_allclose(-weighted.score(X, sample_weight=np.full(200, weight)),
                               expected, rtol=1e-6)
    centers, _ = __import__("gpukmeans").kmeans_plusplus(
        X, 4, sample_weight=np.full(200, weight), random_state=0, device=device)
    plain_centers, _ = __import__("gpukmeans").kmeans_plusplus(X, 4, random_state=0, device=device)
    np.testing.assert_array_equal(to_host(centers), to_host(plain_centers))


@pytest.mark.parametrize("dtype, weight", [
    (np.float32, 1e38), (np.float32, 3e38), (np.float32, 1e39), (np.float32, 1e-46),
    (np.float64, 1e-310), (np.float64, 5e-324), (np.float64, 1.7e308),
])
def test_partial_fit_weights_at_the_dtypes_edges(device, dtype, weight):
    """partial_fit counts the weights as given, relative to the counts so far: the first
    batch's centers are those of unit weights, bit for bit, and a later batch whose
    weights dwarf the counts so far moves the centers onto its own weighted means, as in
    float64. Multiplying the power-of-two scale back into X's dtype made the counts
    infinite (float32 weights of 1e38: NaN centers, every sample in cluster 0) or
    subnormal (float64 weights of 1e-310: infinite centers), and a first batch of 1e39
    in float32 failed in NumPy's draw."""
    from gpukmeans import MiniBatchKMeans

    X = np.random.default_rng(4).normal(size=(500, 6)).astype(dtype)
    params = dict(n_clusters=4, random_state=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        first = MiniBatchKMeans(**params).partial_fit(X, sample_weight=np.full(500, weight))
        unit = MiniBatchKMeans(**params).partial_fit(X)
        # A weight that is not a power of two rounds the batch's 500 products otherwise:
        # equal up to that.
        np.testing.assert_allclose(to_host(first.cluster_centers_),
                                   to_host(unit.cluster_centers_),
                                   rtol=64 * np.finfo(dtype).eps, atol=64 * np.finfo(dtype).eps)
        # Counts of 500 unit weights, then 500 weights of `weight`.
        later = MiniBatchKMeans(**params).partial_fit(X).partial_fit(
            X, sample_weight=np.full(500, weight))
    X64 = X.astype(np.float64)
    reference = MiniBatchKMeans(**params).partial_fit(X64).partial_fit(
        X64, sample_weight=np.full(500, float(weight)))
    centers = to_host(later.cluster_centers_)
    assert np.isfinite(centers).all()
    np.testing.assert_array_equal(to_host(later.labels_), to_host(reference.labels_))
    np.testing.assert_allclose(centers, to_host(reference.cluster_centers_),
                               rtol=1e-5, atol=1e-6)


def test_weights_float32_cannot_hold_are_an_error_not_zero():
    X = np.random.default_rng(17).standard_normal((60, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="sample_weight spans more than float32 can hold"):
        KMeans(3, device="cpu").fit(X, sample_weight=np.r_[1e39, 1e-10 * np.ones(59)])
    KMeans(3, device="cpu").fit(X.astype(np.float64), sample_weight=np.r_[1e39, 1e-10 * np.ones(59)])


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("dtype, heavy, held, lost", [
    (np.float32, 1.0, 2.0**-120, 2.0**-127), (np.float64, 1.0, 2.0**-1000, 1e-310),
    # Weights the power of two takes below the smallest subnormal, to exactly 0: they
    # passed, and their cluster kept its initial center (a reviewer's find; Dask refused).
    (np.float64, 1e300, 1e-5, 1e-300), (np.float32, 1e300, 1e270, 1e-300),
    (np.float64, 2.0**1023, 4.0, 2.0**-1000),
])
def test_weights_that_would_be_subnormal_are_an_error_not_infinite_centers(dtype, heavy, held,
                                                                           lost):
    """A cluster whose float64 weights were all subnormal beside the largest (1e-310 next
    to 1) had a weight whose reciprocal overflowed: an infinite center and inertia, with
    warnings only; float32 weights rounded to subnormals lost their precision (1e-45 is
    one bit). Such weights are refused; the smallest normal ones average exactly."""
    from gpukmeans import MiniBatchKMeans

    X = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]], dtype=dtype)
    X = np.repeat(X, 10, axis=0)
    init = X[[0, 20]]
    for weight, refused in ((held, False), (lost, True)):
        sample_weight = np.r_[np.full(20, heavy), np.full(20, weight)]
        for estimator in (KMeans(2, init=init, n_init=1, device="cpu"),
                          # (no reassignment of the light cluster: its weight is tiny)
                          MiniBatchKMeans(2, init=init, n_init=1, device="cpu", batch_size=40,
                                          reassignment_ratio=0.0)):
            if refused:
                with pytest.raises(ValueError, match=(
                        rf"sample_weight spans more than {np.dtype(dtype)} can hold: 20 "
                        rf"positive weights are over 2\*\*{-np.finfo(dtype).minexp - 1} times")):
                    estimator.fit(X, sample_weight=sample_weight)
                assert not hasattr(estimator, "cluster_centers_")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                estimator.fit(X, sample_weight=sample_weight)
            np.testing.assert_array_equal(estimator.labels_, np.repeat([0, 1], 20))
            assert np.isfinite(estimator.cluster_centers_).all()
            assert np.isfinite(estimator.inertia_)
            if isinstance(estimator, KMeans):  # (mini-batches are drawn by weight)
                # The means, to the rounding of the data (float32 data are centred first).
                np.testing.assert_allclose(
                    estimator.cluster_centers_, [[0.05, 0.0], [10.05, 10.0]], rtol=0,
                    atol=8 * np.finfo(dtype).eps * np.abs(X).max())


@pytest.mark.parametrize("dtype, heavy, light, subnormal", [
    (np.float32, 1e30, 1e-12, True), (np.float64, 1e300, 1e-20, True),
    (np.float32, 1e20, 1e-12, False), (np.float64, 1e200, 1e-20, False),
])
def test_partial_fit_batch_far_lighter_than_the_counts_keeps_finite_centers(
        device, dtype, heavy, light, subnormal):
    """Each batch's weights pass the one-call check, but kept beside the heavier counts
    of earlier batches they can be subnormal: a cluster reached only by them had a
    weight sum whose reciprocal overflowed, an infinite center (a reviewer's find). Its
    center is now the weighted mean of its samples, to the precision its subnormal
    weights keep (a few bits: float32's 1e-42 is 2**-139, with 10 of 24)."""
    from gpukmeans import MiniBatchKMeans

    rng = np.random.default_rng(0)
    A = rng.normal(size=(100, 2)).astype(dtype)
    C = (rng.normal(size=(50, 2)) - 100).astype(dtype)
    model = MiniBatchKMeans(2, init=np.array([[0, 0], [-100, -100]], dtype), n_init=1,
                            reassignment_ratio=0.0, device=device)
    model.partial_fit(A, sample_weight=np.full(100, heavy))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model.partial_fit(C, sample_weight=np.full(50, light))
    centers = to_host(model.cluster_centers_)
    assert np.isfinite(centers).all()
    # The light batch alone reached the second cluster: its mean.
    np.testing.assert_allclose(centers[1], C.astype(np.float64).mean(axis=0),
                               rtol=1e-2 if subnormal else 1e-5)


def test_random_init_needs_enough_positive_weights(device):
    """KMeans, MiniBatchKMeans.fit and partial_fit name init and sample_weight before any
    work (MiniBatchKMeans gave NumPy's 'Fewer non-zero entries in p than size'); and
    when the whole X has enough but MiniBatchKMeans's init_size sample does not, the
    error says so."""
    from gpukmeans import MiniBatchKMeans

    X = np.random.default_rng(10).standard_normal((50, 2))
    weight = np.r_[np.ones(3), np.zeros(47)]
    message = r"init='random'.*n_clusters=5.*only 3 .*sample_weight"
    with pytest.raises(ValueError, match=message):
        KMeans(5, init="random", device=device).fit(X, sample_weight=weight)
    with pytest.raises(ValueError, match=message):
        MiniBatchKMeans(5, init="random", device=device).fit(X, sample_weight=weight)
    with pytest.raises(ValueError, match=message):
        MiniBatchKMeans(5, init="random", device=device).partial_fit(X, sample_weight=weight)
    X = np.random.default_rng(10).standard_normal((3000, 2))
    weight = np.r_[np.ones(6), np.zeros(2994)]
    for init in ("random", "k-means++"):  # k-means++: NumPy's 'probabilities contain NaN'
        with pytest.raises(ValueError, match=r"init_size=30 samples .* raise init_size"):
            MiniBatchKMeans(5, init=init, init_size=30, random_state=0,
                            device=device).fit(X, sample_weight=weight)


@pytest.mark.parametrize("random_state", [-1, 2**32, 1.5])
def test_random_state_errors_name_the_parameter(random_state):
    X = np.random.default_rng(11).standard_normal((50, 2))
    with pytest.raises((TypeError, ValueError), match="random_state"):
        KMeans(3, random_state=random_state, device="cpu").fit(X)


def test_a_numpy_integer_n_clusters_fits_a_memmap(tmp_path, rng):
    """A memmap's fit asks whether it streams (``_streaming.streams``) with the
    estimator's own ``n_clusters``: np.int8(5) met the sizes in NumPy arithmetic there
    too (OverflowError: 40000 out of bounds for int8), after stop 62 had converted it
    for validation's question alone. Now :func:`gpukmeans._cpu_small.is_small` takes
    any integers, and the fit is the Python int's."""
    path = tmp_path / "X.npy"
    np.save(path, rng.standard_normal((10000, 4)))
    X = np.load(path, mmap_mode="r")
    plain = KMeans(5, random_state=0, max_iter=5, device="cpu").fit(X)
    ours = KMeans(np.int8(5), random_state=0, max_iter=5, device="cpu").fit(X)
    np.testing.assert_array_equal(ours.cluster_centers_, plain.cluster_centers_)
    assert ours.n_iter_ == plain.n_iter_


@pytest.mark.parametrize("integer", [np.int8, np.int16])
def test_numpy_integer_parameters_give_the_python_int_fit(device, integer, rng):
    """Integer parameters given as NumPy integers (np.int32(k) from an array of candidate
    k) give the fit of the same Python ints. They met the sizes in NumPy arithmetic: an
    OverflowError (the engine's choice, n_samples * n_features * n_clusters; the
    mini-batch step count, max_iter * n_samples), or a product that wrapped with a
    RuntimeWarning (the samples counted since the last reassignment)."""
    X = rng.standard_normal((2000, 4))
    params = dict(n_clusters=5, max_iter=20, n_init=2)
    for cls, extra in ((KMeans, {}), (MiniBatchKMeans, dict(batch_size=100))):
        given = {**params, **extra}
        plain = cls(**given, random_state=0, device=device).fit(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # an overflow warns
            ours = cls(**{name: integer(value) for name, value in given.items()},
                       random_state=0, device=device).fit(X)
        np.testing.assert_array_equal(to_host(ours.cluster_centers_),
                                      to_host(plain.cluster_centers_))
        assert ours.n_iter_ == plain.n_iter_
    plain = MiniBatchKMeans(5, batch_size=100, random_state=0, device=device)
    ours = MiniBatchKMeans(integer(5), batch_size=integer(100), random_state=0, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for start in range(0, 2000, 250):  # more samples than an int8 counts
            plain.partial_fit(X[start:start + 250])
            ours.partial_fit(X[start:start + 250])
    np.testing.assert_array_equal(to_host(ours.cluster_centers_), to_host(plain.cluster_centers_))


# ----------------------------------------------------------------------------------------
# The transformer API
# ----------------------------------------------------------------------------------------


def test_feature_names_out_and_pandas_output(device):
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(12).standard_normal((80, 3))
    km = KMeans(4, random_state=0, device=device).fit(X)
    np.testing.assert_array_equal(km.get_feature_names_out(), [f"kmeans{i}" for i in range(4)])
    km.set_output(transform="pandas")
    frame = km.transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(km.get_feature_names_out())
    pipeline = make_pipeline(StandardScaler(), KMeans(3, random_state=0, device=device)).fit(X)
    np.testing.assert_array_equal(pipeline.get_feature_names_out(), ["kmeans0", "kmeans1", "kmeans2"])
    union = FeatureUnion([("a", KMeans(2, random_state=0, device=device)),
                          ("b", KMeans(3, random_state=1, device=device))]).fit(X)
    assert list(union.get_feature_names_out()) == [
        "a__kmeans0", "a__kmeans1", "b__kmeans0", "b__kmeans1", "b__kmeans2"]
    assert KMeans().__sklearn_tags__().transformer_tags.preserves_dtype == ["float64", "float32"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_of_the_centers_is_exactly_zero_on_the_diagonal(device, dtype):
    X = (np.random.default_rng(13).standard_normal((300, 5)) * 7 + 40).astype(dtype)
    km = KMeans(6, random_state=0, device=device).fit(X)
    distances = to_host(km.transform(km.cluster_centers_))
    assert distances.dtype == dtype
    assert (np.diag(distances) == 0).all()
    np.testing.assert_allclose(distances, np.sqrt(sq_dist64(to_host(km.cluster_centers_),
                                                            to_host(km.cluster_centers_))),
                               rtol=1e-6)


@pytest.mark.parametrize("model_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("estimator", [KMeans, MiniBatchKMeans])
def test_transform_measures_in_the_wider_dtype_as_scikit_learn(device, rng, estimator,
                                                                  model_dtype):
    """A float64 query of a float32 model was cast to float32 and measured there; as
    scikit-learn's euclidean_distances, transform returns float32 only where both the
    query and the model are float32, and any other query dtype counts as float64."""
    import scipy.sparse as sp

    X = rng.standard_normal((400, 6)) * 5
    km = estimator(4, random_state=0, n_init=1, device=device).fit(X.astype(model_dtype))
    sk = (SklearnKMeans if estimator is KMeans else SklearnMiniBatchKMeans)(
        4, random_state=0, n_init=1).fit(X.astype(model_dtype))
    centers = to_host(km.cluster_centers_).astype(np.float64)
    query = rng.standard_normal((50, 6)) * 5 + 0.1
    for query_dtype in (np.float32, np.float64, np.int64, np.float16):
        q = (query * 10).astype(query_dtype)
        expected = sk.transform(q).dtype
        assert expected == (np.float32 if query_dtype == np.float32 == model_dtype
                            else np.float64)
        forms = [q] if query_dtype == np.float16 else [q, sp.csr_matrix(q)]
        for form in forms:
            distances = to_host(km.transform(form))
            assert distances.dtype == expected, (query_dtype, type(form))
            reference = np.sqrt(sq_dist64(q.astype(np.float64), centers))
            rtol = 1e-5 if expected == np.float32 else 1e-12
            np.testing.assert_allclose(distances, reference, rtol=rtol)
        # predict and score still measure in the model's dtype, on every query dtype
        np.testing.assert_array_equal(to_host(km.predict(q)),
                                      to_host(km.predict(q.astype(model_dtype))))


def test_elkan_with_one_cluster_warns_as_scikit_learn_does():
    X = np.random.default_rng(14).standard_normal((30, 2))
    with pytest.warns(RuntimeWarning, match="algorithm='elkan' doesn't make sense"):
        KMeans(1, algorithm="elkan", device="cpu").fit(X)


# ----------------------------------------------------------------------------------------
# Exact ties: scikit-learn's float64 labels, bit for bit
# ----------------------------------------------------------------------------------------


def _tie_heavy(kind, rng):
    if kind == "boolean":
        return (rng.random((40, 6)) < 0.5).astype(float), 3
    if kind == "one-hot":
        return np.eye(5)[rng.integers(0, 5, 60)] + np.eye(5)[rng.integers(0, 5, 60)], 4
    if kind == "wide-integers":  # the GEMM's own summation order decides the ties
        return rng.integers(0, 3, (300, int(rng.choice([20, 64, 200])))).astype(float), 10
    return rng.integers(-3, 4, (80, 4)).astype(float), 5


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("kind", ["boolean", "one-hot", "integers", "wide-integers"])
def test_float64_exact_ties_resolve_as_in_scikit_learn(kind):
    """Integer-valued data make exact ties in ||c||^2 - 2 x.c; which way one goes depends
    on the last bit of each term, so ||c||^2 is summed as scikit-learn sums it (its
    row_norms), and centers are sums times the reciprocal weight, as scikit-learn rounds
    them. From the same initial centers (kmeans_plusplus picks scikit-learn's rows),
    labels and centers are scikit-learn's, bit for bit. With many features the ties also
    depend on the GEMM's summation order, so both engines call it as scikit-learn does."""
    from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus

    from gpukmeans import kmeans_plusplus

    for seed in range(30):
        X, n_clusters = _tie_heavy(kind, np.random.default_rng(seed))
        init, indices = sklearn_kmeans_plusplus(X, n_clusters, random_state=seed)
        np.testing.assert_array_equal(
            kmeans_plusplus(X, n_clusters, random_state=seed, device="cpu")[1], indices)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = KMeans(n_clusters, init=init, n_init=1, device="cpu").fit(X)
            theirs = SklearnKMeans(n_clusters, init=init, n_init=1).fit(X)
        np.testing.assert_array_equal(ours.labels_, theirs.labels_, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(ours.cluster_centers_, theirs.cluster_centers_)
        assert ours.n_iter_ == theirs.n_iter_
        # The inertia is summed in another (fixed) order: the last bit may differ.
        np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-14)
