"""KMeans on the CPU engine against scikit-learn and float64 NumPy references.

Data are fresh random draws on every run (seeded from the OS, the seed printed on
failure through the test id of ``rng``), so agreement is tested, not memorised.
"""

import pickle
import warnings

import numpy as np
import pytest
import sklearn.cluster
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpukmeans import KMeans, kmeans_plusplus
from gpukmeans import _cpu_runtime, _cpu_small
from label_checks import assert_labels_exactly_nearest, assert_labels_nearest, near_tie_clusters


# scikit-learn's own KMeans lists the same expected failure, for the same reason.
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-means++ draws differ between a weighted sample and its repetition, so the "
        "local optimum found differs; the weighted Lloyd updates themselves are exact "
        "(see test_sample_weight_equals_repetition_from_same_init)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "k-means++ draws differ between a weighted sample and its repetition, as on dense "
        "data (see test_sparse.py's weighted fit from the same init)."
    ),
}


@parametrize_with_checks(
    [KMeans(device="cpu")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _labels_equal_up_to_permutation(a, b):
    """True when a == p(b) for a bijection p of the label values."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b]), axis=1)
    return (
        np.unique(pairs[0]).size == pairs.shape[1] == np.unique(pairs[1]).size
    )


def _dataset(kind, n_samples, n_features, n_clusters, rng):
    if kind == "blobs":
        X, _ = make_blobs(
            n_samples=n_samples,
            n_features=n_features,
            centers=n_clusters,
            cluster_std=rng.uniform(0.3, 2.0),
            random_state=int(rng.integers(2**31)),
        )
    elif kind == "uniform":
        X = rng.uniform(-3, 5, size=(n_samples, n_features))
    else:  # many exact duplicates
        base = rng.normal(size=(max(2, n_samples // 7), n_features))
        X = base[rng.integers(base.shape[0], size=n_samples)]
    return X


SHAPES = [
    # (n_samples, n_features, n_clusters): k=1, d=1, n not a multiple of any chunk
    (1, 3, 1),
    (257, 1, 1),
    (513, 1, 5),
    (1000, 2, 4),
    (1031, 17, 9),
    (3001, 64, 33),
]


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("kind", ["blobs", "uniform", "duplicates"])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", SHAPES)
def test_float64_matches_sklearn_from_same_init(kind, n_samples, n_features, n_clusters, rng):
    X = _dataset(kind, n_samples, n_features, n_clusters, rng)
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    init = init + rng.normal(scale=1e-3, size=init.shape)
    sample_weight = rng.uniform(0.5, 2.0, size=n_samples)
    params = dict(n_clusters=n_clusters, init=init, n_init=1, max_iter=50, tol=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = KMeans(device="cpu", **params).fit(X, sample_weight=sample_weight)
        ref = sklearn.cluster.KMeans(**params).fit(X, sample_weight=sample_weight)

    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10, atol=1e-12)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.cluster_centers_.dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fits_mean_is_numpys_bit_for_bit(dtype, rng):
    """The mean the fit centres float64 data on (scikit-learn centres them on
    ``X.mean(axis=0)``) is NumPy's to the last bit, by the faster route, whatever the
    shape and dtype; infinity and NaN come through as in NumPy. (float32 data are
    centred on float64 sums: test_float32_fits_centre_on_one_mean_whatever_the_engine.)"""
    from gpukmeans._validation import column_means

    for n_features in (1, 2, 3, 8, 33, 784):
        for n_samples in (1, 2, 17, 10007, 3 * 10**6 // n_features):
            X = rng.normal(size=(n_samples, n_features)) * rng.uniform(0.1, 1e4)
            X = (X + rng.uniform(-1e4, 1e4)).astype(dtype)
            expected = X.mean(axis=0)
            got = column_means(X)
            assert got.dtype == expected.dtype
            assert got.tobytes() == expected.tobytes(), (n_samples, n_features)
    X = np.ones((5, 3), dtype)
    X[1, 0], X[2, 1], X[3, 1] = np.inf, np.nan, 2
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(column_means(X), X.mean(axis=0))


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("kind", ["blobs", "uniform"])
@pytest.mark.parametrize("n_samples, n_features, n_clusters", SHAPES[2:])
def test_float32_steps_match_sklearn_along_its_trajectory(
    kind, n_samples, n_features, n_clusters, rng
):
    """Each Lloyd step, taken from the same centers, agrees with scikit-learn's.

    Steps are compared one at a time, each from scikit-learn's current centers: over a
    whole float32 run, a single near-tie resolved differently in an early E-step sends
    the two runs to different nearby optima (seen in 4 of 900 runs, inertia then 4e-4
    apart), which says nothing about either implementation.
    """
    X = _dataset(kind, n_samples, n_features, n_clusters, rng).astype(np.float32)
    centers = X[rng.choice(n_samples, n_clusters, replace=False)]
    center_scale = np.abs(X).max()

    for _ in range(15):
        params = dict(n_clusters=n_clusters, init=centers, n_init=1, max_iter=1, tol=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours = KMeans(device="cpu", **params).fit(X)
            ref = sklearn.cluster.KMeans(**params).fit(X)

        assert ours.cluster_centers_.dtype == np.float32
        assert_labels_nearest(ours.labels_, X, ours.cluster_centers_, np.float32)
        # A near-tie sample of the step's E-step that went the other way moves its two
        # centers, and with them the final labels near those centers and the inertia
        # (1.5e-5 apart, twice in 1,000 runs at k=33). Every other center must agree to
        # float32 rounding; every other label may differ only at a final near-tie; with
        # no center moved, the inertias must agree.
        moved = np.flatnonzero(
            np.abs(ours.cluster_centers_ - ref.cluster_centers_).max(axis=1)
            > 1e-5 * center_scale
        )
        assert moved.size <= 2 * max(2, n_samples // 1000)
        assert set(moved.tolist()) <= near_tie_clusters(X, centers, np.float32)
        differ = np.flatnonzero(ours.labels_ != ref.labels_)
        near_moved = np.isin(ours.labels_[differ], moved) | np.isin(ref.labels_[differ], moved)
        assert np.sum(~near_moved) <= max(2, n_samples // 1000)
        if moved.size == 0:
            np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-5)
        centers = ref.cluster_centers_


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("kind", ["blobs", "uniform"])
def test_float32_whole_run_ends_at_a_lloyd_fixed_point_near_sklearns(kind, rng):
    X = _dataset(kind, 3001, 64, 33, rng).astype(np.float32)
    init = X[rng.choice(3001, 33, replace=False)]
    params = dict(n_clusters=33, init=init, n_init=1, max_iter=300, tol=0)
    ours = KMeans(device="cpu", **params).fit(X)
    ref = sklearn.cluster.KMeans(**params).fit(X)

    assert ours.n_iter_ < 300, "strict convergence (labels unchanged) was not reached"
    assert_labels_nearest(ours.labels_, X, ours.cluster_centers_, np.float32)
    # Usually equal to 1e-6; a differently resolved early near-tie may end in another
    # local optimum, never a much worse one.
    assert ours.inertia_ <= ref.inertia_ * (1 + 1e-2)


@pytest.mark.usefixtures("cpu_engine")
def test_empty_clusters_are_relocated_like_sklearn(rng):
    # Initial centers far from the data leave clusters empty at the first E-step.
    X = rng.normal(size=(600, 3))
    init = np.vstack([X[:3], rng.normal(loc=100.0, size=(4, 3))])
    params = dict(n_clusters=7, init=init, n_init=1, max_iter=20, tol=0)
    ours = KMeans(device="cpu", **params).fit(X)
    ref = sklearn.cluster.KMeans(**params).fit(X)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    assert len(np.unique(ours.labels_)) == 7


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_labels_are_predict_and_inertia_is_exact(dtype, rng):
    X = _dataset("blobs", 2000, 5, 6, rng).astype(dtype)
    km = KMeans(6, random_state=int(rng.integers(1000)), device="cpu", max_iter=3).fit(X)
    np.testing.assert_array_equal(km.labels_, km.predict(X))
    X64 = X.astype(np.float64)
    centers64 = km.cluster_centers_.astype(np.float64)
    # float64 NumPy reference of the nearest center and the inertia.
    d = ((X64[:, None, :] - centers64[None]) ** 2).sum(-1)
    np.testing.assert_allclose(
        d[np.arange(len(X)), km.labels_], d.min(1), rtol=1e-5 if dtype == np.float32 else 1e-12
    )
    np.testing.assert_allclose(km.inertia_, d.min(1).sum(), rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(km.score(X), -km.inertia_, rtol=1e-6)
    np.testing.assert_allclose(km.transform(X), np.sqrt(d), rtol=1e-3 if dtype == np.float32 else 1e-9, atol=1e-3)
    assert km.transform(X).dtype == dtype


@pytest.mark.usefixtures("cpu_engine")
def test_centers_edited_in_place_are_used(rng):
    """Inference measures in the fit's frame only while cluster_centers_ holds the fitted
    values: centers edited in place are used as edited, as scikit-learn uses them."""
    X = _dataset("blobs", 500, 4, 3, rng) + 50.0  # far from the origin: the fit centres
    km = KMeans(3, random_state=0, n_init=1, device="cpu").fit(X)
    km.cluster_centers_[...] = km.cluster_centers_[[1, 2, 0]].copy()
    np.testing.assert_array_equal(km.predict(X), np.array([2, 0, 1])[km.labels_])
    np.testing.assert_allclose(-km.score(X), km.inertia_, rtol=1e-12)


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_cpu_float32_centres_only_data_far_from_the_origin(offset, rng):
    """float32 on the CPU has exact labels either way: near the origin the fit works on X
    as given (labels_ equal predict(X) exactly); far from it, on a centred copy, as
    scikit-learn always does. copy_x changes nothing, bitwise."""
    X = (_dataset("blobs", 3000, 8, 5, rng) + offset).astype(np.float32)
    init = X[rng.choice(len(X), 5, replace=False)]
    copied = KMeans(5, init=init, n_init=1, max_iter=10, device="cpu").fit(X)
    as_given = KMeans(5, init=init, n_init=1, max_iter=10, device="cpu", copy_x=False).fit(X)
    np.testing.assert_array_equal(copied.cluster_centers_, as_given.cluster_centers_)
    np.testing.assert_array_equal(copied.labels_, as_given.labels_)
    if offset:
        # Exact for the centred copy; adding the mean back rounds the centers.
        assert_labels_nearest(copied.labels_, X, copied.cluster_centers_, np.float32)
    else:
        assert_labels_exactly_nearest(copied.labels_, X, copied.cluster_centers_)
        np.testing.assert_array_equal(copied.labels_, copied.predict(X))


@pytest.mark.usefixtures("cpu_engine")
def test_sample_weight_equals_repetition_from_same_init(rng):
    X = rng.normal(size=(300, 4))
    repeats = rng.integers(1, 4, size=300)
    init = X[:5].copy()
    weighted = KMeans(5, init=init, n_init=1, device="cpu").fit(X, sample_weight=repeats)
    repeated = KMeans(5, init=init, n_init=1, device="cpu").fit(np.repeat(X, repeats, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-10)
    np.testing.assert_allclose(weighted.inertia_, repeated.inertia_, rtol=1e-10)


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("n_features, n_clusters, dtype", [
    (40, 22, np.float32), (40, 30, np.float32),  # Hamerly's bounds, Elkan's
    (2, 40, np.float32), (3, 20, np.float64),  # the plain step by rows
    (16, 40, np.float32), (12, 20, np.float64),  # ... from a GEMM folded by rows
])
def test_same_random_state_is_bitwise_identical_across_thread_counts(
        init, n_features, n_clusters, dtype, rng, monkeypatch):
    from gpukmeans import _cpu, _cpu_bounds

    # Elkan's bounds at 30 clusters of 40 features (by default only from 98,304
    # clusters x features: elkan_pays), Hamerly's at 22, from the second step (by
    # default once the labels settle, which these blobs may not wait for).
    monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)
    monkeypatch.setattr(_cpu_bounds, "START_CHANGED", 1.0)
    X_probe = np.empty((1, n_features), dtype)
    assert _cpu._bounds_pay(X_probe, n_clusters) == (n_features >= 32)  # the paths named
    # Enough rows for several accumulation groups, so a thread-dependent reduction
    # order would show.
    X = _dataset("blobs", 20000, n_features, n_clusters, rng).astype(dtype)
    seed = int(rng.integers(1000))
    fits = []
    for n_threads in (1, 2, 1):
        _cpu_runtime.set_num_threads(n_threads)
        try:
            fits.append(KMeans(n_clusters, init=init, n_init=2, random_state=seed,
                               device="cpu").fit(X))
        finally:
            _cpu_runtime.set_num_threads(_cpu_runtime.numba.config.NUMBA_NUM_THREADS)
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].cluster_centers_, other.cluster_centers_)
        np.testing.assert_array_equal(fits[0].labels_, other.labels_)
        assert fits[0].inertia_ == other.inertia_


@pytest.mark.usefixtures("cpu_engine")
def test_kmeans_plusplus_picks_sklearns_points(rng):
    X = _dataset("blobs", 3000, 6, 10, rng)
    sample_weight = rng.uniform(0.1, 3.0, size=X.shape[0])
    seed = int(rng.integers(10000))
    ours, idx_ours = kmeans_plusplus(X, 10, sample_weight=sample_weight, random_state=seed, device="cpu")
    ref, idx_ref = sklearn.cluster.kmeans_plusplus(X, 10, sample_weight=sample_weight, random_state=seed)
    np.testing.assert_array_equal(idx_ours, idx_ref)
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == np.float64


@pytest.mark.usefixtures("cpu_engine")
def test_kmeans_plusplus_picks_sklearns_points_far_from_the_origin(rng, monkeypatch):
    """Far from the origin ``||x||^2 - 2 x.c + ||c||^2`` cancels, and the last bits of
    the row norms pick the rows: float64 data as given are seeded on scikit-learn's own
    norms (the Numba engine's, summed in another order, differed on 11,478 of these
    30,000 rows and picked other rows for 2 seeds in 12)."""
    from sklearn.utils.extmath import row_norms

    from gpukmeans import _estimator

    X = rng.normal(size=(30000, 16)) + 1e6
    used = []
    original = _estimator._kmeans_plusplus
    monkeypatch.setattr(_estimator, "_kmeans_plusplus",
                        lambda X, k, norms, *args: used.append(norms) or original(X, k, norms, *args))
    for seed in rng.integers(10000, size=12):
        ours, idx_ours = kmeans_plusplus(X, 9, random_state=int(seed), device="cpu")
        ref, idx_ref = sklearn.cluster.kmeans_plusplus(X, 9, random_state=int(seed))
        np.testing.assert_array_equal(idx_ours, idx_ref)
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(used[0], row_norms(X, squared=True))


def test_float64_kmeans_plusplus_picks_sklearns_copy_of_a_sample(rng):
    """Where two candidates of a step are copies of one sample (a sample drawn with
    replacement, as MiniBatchKMeans's ``init_size`` draws it, has many), their
    potentials are equal but for the last bits of scikit-learn's one GEMM of the
    candidates by all of X, which depend on each candidate's place among them; the
    steps small enough for the NumPy engine (every one of these) make scikit-learn's
    operations, and pick its copy. Its GEMM's bits also depend on its BLAS threads:
    ours run on one, so the reference does too. (The NumPy engine's former arithmetic
    picked another copy in 4 of these 12 draws, and a MiniBatchKMeans fit went
    another way from its first step.)"""
    from threadpoolctl import threadpool_limits

    for _ in range(12):
        n_features = int(rng.choice([8, 40, 150, 300]))
        n_clusters = int(rng.integers(50, 200))
        X, _ = make_blobs(n_samples=3000, n_features=n_features, centers=n_clusters,
                          random_state=int(rng.integers(2**31)))
        X = X[rng.integers(0, 3000, 3 * n_clusters)]
        assert _cpu_small.is_small(*X.shape, n_clusters)
        seed = int(rng.integers(2**31))
        with threadpool_limits(limits=1, user_api="blas"):
            _, idx_ref = sklearn.cluster.kmeans_plusplus(X, n_clusters, random_state=seed)
        _, idx_ours = kmeans_plusplus(X, n_clusters, random_state=seed, device="cpu")
        np.testing.assert_array_equal(idx_ours, idx_ref)


@pytest.mark.usefixtures("cpu_engine")
def test_float32_kmeans_plusplus_picks_sklearns_points_but_at_rounding(rng):
    """scikit-learn sums float32 potentials by a float32 GEMV and weights float32
    distances in float32; ours are float64 sums. Where two local trials' potentials are
    that close, the picks part ways (1 draw in 300 on such blobs, on both engines): so
    agreement is asked on 20 draws out of 24 (at that rate, a chance of about 1e-8 of
    failing; one draw in a run of the test had failed it 1 time in 150)."""
    agreeing = 0
    for _ in range(24):
        X = _dataset("blobs", 3000, 6, 10, rng).astype(np.float32)
        sample_weight = rng.uniform(0.1, 3.0, size=X.shape[0]).astype(np.float32)
        seed = int(rng.integers(10000))
        ours, idx_ours = kmeans_plusplus(X, 10, sample_weight=sample_weight, random_state=seed,
                                         device="cpu")
        _, idx_ref = sklearn.cluster.kmeans_plusplus(X, 10, sample_weight=sample_weight,
                                                     random_state=seed)
        assert ours.dtype == np.float32 and idx_ours[0] == idx_ref[0]
        np.testing.assert_array_equal(ours, X[idx_ours])
        agreeing += np.array_equal(idx_ours, idx_ref)
    assert agreeing >= 20


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_float32_kmeans_plusplus_far_from_the_origin_is_seeded_centred(offset, rng):
    """float32 rows far from the origin are seeded centred, as KMeans.fit seeds them:
    the picks are scikit-learn's (whose float32 distances are float64's) and the
    float64 copy's; the centers are the caller's rows. Uncentred, at 1e6 from the origin
    3 picks in 6 were others (a helper's find)."""
    for _ in range(5):
        X = (rng.standard_normal((300, 3)) + offset).astype(np.float32)
        seed = int(rng.integers(10000))
        centers, ours = kmeans_plusplus(X, 6, random_state=seed, device="cpu")
        _, theirs = sklearn.cluster.kmeans_plusplus(X.astype(np.float64), 6,
                                                    random_state=seed)
        _, as_float64 = kmeans_plusplus(X.astype(np.float64), 6, random_state=seed,
                                        device="cpu")
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(ours, as_float64)
        np.testing.assert_array_equal(centers, X[ours])


@pytest.mark.usefixtures("cpu_engine")
def test_notebook_blobs_reproduce_sklearn():
    X, _ = make_blobs(centers=4, cluster_std=0.5, random_state=0)
    ours = KMeans(4, random_state=8, device="cpu").fit(X)
    ref = sklearn.cluster.KMeans(4, random_state=8).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)


def test_n_init_auto_and_best_run(rng):
    X = _dataset("blobs", 500, 3, 5, rng)
    assert KMeans(5, n_init="auto", random_state=0, device="cpu").fit(X).n_iter_ >= 1
    ours = KMeans(5, init="random", n_init="auto", random_state=3, device="cpu").fit(X)
    ref = sklearn.cluster.KMeans(5, init="random", n_init="auto", random_state=3).fit(X)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)
    with pytest.warns(RuntimeWarning, match="Explicit initial center"):
        KMeans(5, init=X[:5], n_init=3, device="cpu").fit(X)


def test_callable_init_receives_centred_data_and_random_state(rng):
    X = _dataset("blobs", 400, 2, 3, rng) + 50.0
    seen = {}

    def init(data, n_clusters, random_state):
        seen["mean"] = data.mean(axis=0)
        seen["rs"] = random_state
        return data[:n_clusters]

    KMeans(3, init=init, n_init=1, random_state=1, device="cpu").fit(X)
    np.testing.assert_allclose(seen["mean"], 0, atol=1e-10)
    assert isinstance(seen["rs"], np.random.RandomState)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_callable_init_cannot_write_to_the_callers_data(dtype, rng):
    """float32 near the origin is not centred on the CPU, so the callable sees the
    caller's own array: read-only."""
    X = rng.normal(size=(300, 4)).astype(dtype)
    X0 = X.copy()

    def init(data, n_clusters, random_state):
        data[0] = 1e6
        return data[:n_clusters]

    with pytest.raises(ValueError, match="read-only"):
        KMeans(3, init=init, n_init=1, device="cpu").fit(X)
    np.testing.assert_array_equal(X, X0)


@pytest.mark.usefixtures("cpu_engine")
@pytest.mark.parametrize("copy_x", [True, False])
def test_caller_arrays_are_never_modified(copy_x, rng):
    X = rng.normal(size=(200, 3))
    init = X[:4].copy()
    sw = rng.uniform(size=200)
    X0, init0, sw0 = X.copy(), init.copy(), sw.copy()
    km = KMeans(4, init=init, n_init=1, copy_x=copy_x, device="cpu").fit(X, sample_weight=sw)
    km.predict(X), km.transform(X), km.score(X, sample_weight=sw)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(init, init0)
    np.testing.assert_array_equal(sw, sw0)


def test_pickle_and_params_round_trip(rng):
    X = rng.normal(size=(100, 2)).astype(np.float32)
    km = KMeans(3, random_state=0, device="cpu").fit(X)
    clone = pickle.loads(pickle.dumps(km))
    np.testing.assert_array_equal(clone.predict(X), km.predict(X))
    assert clone.get_params() == km.get_params()
    assert km.set_params(n_clusters=4).n_clusters == 4
    assert km.device_ == "cpu"


def test_pandas_feature_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [0.0, 1.0, 10.0, 11.0], "b": [0.0, 1.0, 10.0, 11.0]})
    km = KMeans(2, random_state=0, device="cpu").fit(df)
    assert list(km.feature_names_in_) == ["a", "b"]
    km.fit(df.to_numpy())
    assert not hasattr(km, "feature_names_in_")


def test_convergence_warning_on_duplicates():
    X = np.zeros((10, 2))
    X[5:] = 1.0
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        KMeans(3, random_state=0, device="cpu").fit(X)


def test_verbose_reports_progress(capsys, rng):
    X = rng.normal(size=(200, 2))
    KMeans(3, random_state=0, verbose=1, device="cpu").fit(X)
    captured = capsys.readouterr()
    assert "inertia" in (captured.out + captured.err).lower()


def test_quiet_by_default(capsys, rng):
    capsys.readouterr()  # drop the fixture's seed line
    KMeans(3, random_state=0, device="cpu").fit(rng.normal(size=(50, 2)))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_tolerance_is_tol_times_the_mean_feature_variance(rng, dtype, offset):
    # The tolerance comes from the fit's row norms, centred or not (float32 near the
    # origin is not centred): it must be scikit-learn's definition, to rounding.
    from gpukmeans import _cpu
    from gpukmeans._estimator import _tolerance_from_norms

    X = (rng.standard_normal((3000, 7)) * rng.uniform(0.1, 10, 7) + offset).astype(dtype)
    X_mean = X.mean(axis=0)
    X_work, x_squared_norms, is_centred = _cpu.centered(X, X_mean)
    assert is_centred == (dtype == np.float64 or offset > 0)
    tol = _tolerance_from_norms(x_squared_norms, None if is_centred else X_mean, 7, 1e-4, np)
    expected = np.mean(np.var(X.astype(np.float64), axis=0)) * 1e-4
    np.testing.assert_allclose(tol, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert _tolerance_from_norms(x_squared_norms, None, 7, 0.0, np) == 0.0
