"""KMeans(metric="cosine"): spherical k-means (Dhillon and Modha, 2001) on both engines,
against a float64 NumPy reference of the same algorithm written here, and against FAISS's
``spherical=True`` where faiss imports.

Data are fresh random draws on every run (the seed is printed on failure, see ``rng``):
unit "topic" directions, samples scattered around them, with arbitrary row norms (which
cosine k-means must ignore).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import kmeans_plusplus as sklearn_kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import cosine_distances
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpukmeans import KMeans, MiniBatchKMeans
from gpukmeans._lloyd import to_host
from gpukmeans._spherical import normalize_rows, unit_centers
from conftest import fit_device, route_cpu_fits
from label_checks import assert_labels_nearest_in_float64, assert_labels_nearest


EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-means++ draws differ between a weighted sample and its repetition (as for "
        "the Euclidean KMeans and scikit-learn's; see test_integer_weights_equal_repetition)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "k-means++ draws differ between a weighted sample and its repetition (as on dense "
        "data)."
    ),
    **{check: ("its random sparse data hold rows with no entries, which have no direction: "
               "refused by design, by name (test_zero_rows_are_refused_by_name).")
       for check in ("check_estimator_sparse_tag", "check_estimator_sparse_array",
                     "check_estimator_sparse_matrix")},
    "check_estimators_dtypes": (
        "its integer data hold a row of zeros, which has no direction: refused by design "
        "(test_zero_rows_are_refused_by_name)."
    ),
}


@parametrize_with_checks(
    [KMeans(metric="cosine", device="cpu")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def topic_embeddings(rng, n_samples, n_features, n_topics, spread=0.6):
    """``(X, topic)``: float64 rows scattered around ``n_topics`` random unit directions (a
    von Mises-Fisher-like mixture; ``spread`` is the noise's norm), each row then scaled
    by a random positive factor, and the topic of each row."""
    topics = rng.normal(size=(n_topics, n_features))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    topic = rng.integers(n_topics, size=n_samples)
    X = topics[topic] + spread * rng.normal(size=(n_samples, n_features)) / np.sqrt(n_features)
    return X * rng.uniform(0.2, 5.0, size=(n_samples, 1)), topic


def unit(A):
    A = np.asarray(A, dtype=np.float64)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def spherical_kmeans_reference(X, centers_init, sample_weight=None, max_iter=300, tol=0.0):
    """Dhillon and Modha's spherical k-means in float64 NumPy, with the driver's stopping
    rule: strict convergence when no label changes, else when the squared center shift
    is at most ``tol`` times the mean feature variance of the unit rows; then a final
    assignment. Returns ``(labels, inertia, centers, n_iter)``. Refuses to go on past an
    empty cluster (the tests' data and inits avoid them)."""
    X = unit(X)
    centers = unit(centers_init)
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    tol = tol * X.var(axis=0).mean()
    labels_old = None
    strict = False
    for n_iter in range(1, max_iter + 1):
        labels = np.argmax(X @ centers.T, axis=1)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, w[:, None] * X)
        assert np.all(np.bincount(labels, minlength=centers.shape[0]) > 0), "empty cluster"
        centers_new = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        shift = ((centers_new - centers) ** 2).sum()
        centers = centers_new
        if labels_old is not None and np.array_equal(labels, labels_old):
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels = np.argmax(X @ centers.T, axis=1)
    inertia = w @ (1.0 - np.einsum("ij,ij->i", X, centers[labels]))
    return labels, inertia, centers, n_iter


def _fit(device, X, init, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(init.shape[0], init=init, n_init=1, metric="cosine", device=device,
                      **params)


def _init_rows(rng, X, n_clusters):
    return X[rng.choice(X.shape[0], n_clusters, replace=False)]


@pytest.mark.parametrize("tol", [0.0, 1e-2])  # 1e-2 stops most runs before the labels do
def test_float64_matches_reference_from_same_init(device, rng, tol):
    X, _ = topic_embeddings(rng, 900, 12, 6)
    init = _init_rows(rng, X, 7)
    sample_weight = rng.uniform(0.1, 3.0, size=X.shape[0])
    expected = spherical_kmeans_reference(X, init, sample_weight, tol=tol)
    km = _fit(device, X, init, tol=tol).fit(X, sample_weight=sample_weight)
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_allclose(km.inertia_, expected[1], rtol=1e-12)
    np.testing.assert_allclose(centers, expected[2], rtol=0, atol=1e-12)
    assert km.n_iter_ == expected[3]
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, rtol=0, atol=4e-16)
    np.testing.assert_array_equal(to_host(km.predict(X)), labels)
    np.testing.assert_allclose(-km.score(X, sample_weight=sample_weight), km.inertia_,
                               rtol=1e-12)


# (n_features, n_clusters): on the Numba engine, float32 runs with Hamerly's bounds, then
# with Elkan's (see gpukmeans._cpu.start_lloyd; the fixture below); the NumPy engine
# keeps Hamerly's.
FLOAT32_SHAPES = [(32, 10), (48, 26)]


@pytest.fixture(autouse=True)
def elkan_from_few_features(monkeypatch):
    """Elkan's bounds from 24 clusters whatever the features, as this module's shapes
    name them (by default only from 98,304 clusters x features:
    :func:`gpukmeans._cpu_bounds.elkan_pays`), so that their cosine runs are tested
    on small data."""
    from gpukmeans import _cpu_bounds

    monkeypatch.setattr(_cpu_bounds, "ELKAN_MIN_CLUSTER_FEATURES", 1)


@pytest.mark.parametrize("n_features, n_clusters", FLOAT32_SHAPES)
def test_float32_matches_reference_up_to_near_ties(device, rng, n_features, n_clusters):
    """float32 labels are the float64 run's except at near-ties (after which the runs may
    part); on the CPU, each is the exactly largest cosine of the run's own centers, and
    the centers are the directions of their clusters' sums."""
    # Overlapping topics (5-9 iterations), one initial center in each: no cluster empties,
    # which the reference does not handle.
    X, topic = topic_embeddings(rng, 900, n_features, n_clusters, spread=1.5)
    X = X.astype(np.float32)
    init = X[[rng.choice(np.flatnonzero(topic == t)) for t in range(n_clusters)]]
    labels_ref, inertia_ref, centers_ref, _ = spherical_kmeans_reference(X, init)
    km = _fit(device, X, init).fit(X)
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    assert centers.dtype == np.float32
    assert np.mean(labels == labels_ref) >= 0.99
    if np.array_equal(labels, labels_ref):  # no near-tie went the other way
        np.testing.assert_allclose(centers, centers_ref, rtol=0, atol=2e-6)
        np.testing.assert_allclose(km.inertia_, inertia_ref, rtol=1e-5)
    # A fixed point: each center the direction of its cluster's sum, each label the
    # largest cosine (the nearest center in Euclidean distance between unit vectors).
    X_unit = unit(X)
    sums = np.zeros(centers.shape)
    np.add.at(sums, labels, X_unit)
    np.testing.assert_allclose(centers, unit(sums), rtol=0, atol=2e-6)
    if km.device_ == "cpu":
        assert_labels_nearest_in_float64(labels, X_unit.astype(np.float32), centers)
    else:
        assert_labels_nearest(labels, X_unit.astype(np.float32), centers, np.float32)


def test_engines_give_the_same_float64_fit(rng, request):
    X, _ = topic_embeddings(rng, 700, 10, 5)
    init = _init_rows(rng, X, 6)
    fits = [_fit(fit_device(request, engine), X, init).fit(X)
            for engine in ("cpu-numba", "emulated")]
    np.testing.assert_array_equal(to_host(fits[0].labels_), to_host(fits[1].labels_))
    np.testing.assert_allclose(to_host(fits[0].cluster_centers_),
                               to_host(fits[1].cluster_centers_), rtol=0, atol=1e-13)
    assert fits[0].n_iter_ == fits[1].n_iter_


def test_kmeans_plusplus_seeds_on_cosine_distance(rng):
    """A fit's k-means++ (greedy, 2 + ln k local trials, D^2 weights) on the unit rows,
    with weights 2 (1 - cos), draws as k-means++ on 1 - cos: the same rows as
    scikit-learn's kmeans_plusplus on the unit rows, so the same fit."""
    X, _ = topic_embeddings(rng, 800, 8, 5)
    seed = int(rng.integers(2**31))
    init, _ = sklearn_kmeans_plusplus(unit(X), 6, random_state=seed)
    seeded = KMeans(6, metric="cosine", random_state=seed, device="cpu").fit(X)
    given = KMeans(6, metric="cosine", init=init, device="cpu").fit(X)
    np.testing.assert_array_equal(seeded.labels_, given.labels_)
    np.testing.assert_array_equal(seeded.cluster_centers_, given.cluster_centers_)


def test_kmeans_parallel_gives_unit_centers(device, rng):
    """k-means|| reclusters its candidates by cosine k-means: the run starts from unit
    centers (a Euclidean mean of unit rows is shorter, and its labels would not be the
    largest cosines)."""
    from gpukmeans._device import get_engine
    from gpukmeans._init import kmeans_parallel

    X, _ = topic_embeddings(rng, 2000, 8, 6, spread=1.5)
    X_unit = unit(X)
    engine = get_engine(device, *X.shape, 6)
    centers, candidates = kmeans_parallel(
        engine.xp.asarray(X_unit), 6, engine.xp.ones(X.shape[0]), np.random.RandomState(0),
        engine, metric="cosine")
    assert candidates.size > 6  # reclustered, not taken as they are
    np.testing.assert_allclose(np.linalg.norm(to_host(centers), axis=1), 1.0, rtol=0, atol=4e-16)
    km = KMeans(6, init="k-means||", metric="cosine", random_state=0, device=device).fit(X)
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    np.testing.assert_array_equal(labels, np.argmax(X_unit @ centers.T, axis=1))
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, rtol=0, atol=4e-16)


def test_row_norms_do_not_matter(device, rng):
    """Rows scaled by powers of two normalise to the same bits: the same fit, bitwise."""
    X, _ = topic_embeddings(rng, 600, 9, 4)
    init = _init_rows(rng, X, 5)
    scaled = X * np.ldexp(1.0, rng.integers(-60, 60, size=(X.shape[0], 1)))
    a = _fit(device, X, init).fit(X)
    b = _fit(device, scaled, init).fit(scaled)
    np.testing.assert_array_equal(to_host(a.labels_), to_host(b.labels_))
    np.testing.assert_array_equal(to_host(a.cluster_centers_), to_host(b.cluster_centers_))
    assert a.inertia_ == b.inertia_


@pytest.mark.parametrize("dtype, exponents", [
    # float32 rows past 1e19 and below 1e-13, which Euclidean k-means refuses (its
    # squared distances would overflow or lose their low bits).
    (np.float32, (-100, 100)),
    # float64 rows whose squared norms overflow (past 1e154) or underflow (below 1e-146).
    (np.float64, (-1000, -900, 600, 1000)),
])
@pytest.mark.parametrize("sparse", [False, True])
def test_rows_of_any_scale_cluster_as_unit_rows(device, rng, dtype, exponents, sparse):
    """Cosine k-means is blind to each row's scale, however large or small: rows scaled
    by powers of two in and beyond the range where their squared norms are representable
    give the unscaled fit bit for bit, and the same predictions, distances and score."""
    X, _ = topic_embeddings(rng, 400, 6, 4)
    X[X < -0.3] = 0.0
    X = X[np.abs(X).sum(axis=1) > 0].astype(dtype)
    init = _init_rows(rng, X, 4)
    power = np.ldexp(1.0, rng.choice(exponents, size=(X.shape[0], 1)))
    scaled = (X.astype(np.float64) * power).astype(dtype)
    assert np.array_equal(scaled.astype(np.float64) / power, X)  # exact: only scaled
    make = sp.csr_matrix if sparse else np.asarray
    a = _fit(device, X, init).fit(make(X))
    b = _fit(device, scaled, init).fit(make(scaled))
    np.testing.assert_array_equal(to_host(a.labels_), to_host(b.labels_))
    np.testing.assert_array_equal(to_host(a.cluster_centers_), to_host(b.cluster_centers_))
    assert a.inertia_ == b.inertia_
    np.testing.assert_array_equal(to_host(b.predict(make(scaled))), to_host(a.labels_))
    np.testing.assert_array_equal(to_host(b.transform(make(scaled))),
                                  to_host(a.transform(make(X))))
    assert b.score(make(scaled)) == a.score(make(X))


def test_callable_init_sees_unit_rows(device, rng):
    """A callable init is given the rows the fit works on, unit rows, and what it returns
    is normalised like an array init: the fit equals the one from that array."""
    X, _ = topic_embeddings(rng, 300, 5, 3)
    X *= rng.uniform(0.1, 10, size=(X.shape[0], 1))
    seen = []

    def init(X_fit, n_clusters, random_state):
        X_fit = to_host(X_fit)
        seen.append(X_fit)
        return X_fit[:n_clusters] * 3.0

    km = _fit(device, X[:3], X[:3]).set_params(init=init, n_init=1).fit(X)
    np.testing.assert_allclose(np.linalg.norm(seen[0], axis=1), 1.0, rtol=0, atol=4e-16)
    from_array = _fit(device, X, X[:3]).fit(X)
    np.testing.assert_array_equal(to_host(km.labels_), to_host(from_array.labels_))
    np.testing.assert_array_equal(to_host(km.cluster_centers_),
                                  to_host(from_array.cluster_centers_))


def test_integer_weights_equal_repetition(device, rng):
    X, _ = topic_embeddings(rng, 400, 6, 4)
    init = _init_rows(rng, X, 4)
    weights = rng.integers(0, 4, size=X.shape[0])
    weights[0] = 1
    weighted = _fit(device, X, init).fit(X, sample_weight=weights)
    repeated_X = np.repeat(X, weights, axis=0)
    repeated = _fit(device, repeated_X, init).fit(repeated_X)
    np.testing.assert_allclose(to_host(weighted.cluster_centers_),
                               to_host(repeated.cluster_centers_), rtol=0, atol=1e-13)
    np.testing.assert_allclose(weighted.inertia_, repeated.inertia_, rtol=1e-12)


def test_inference_measures_cosine(device, rng):
    X, _ = topic_embeddings(rng, 500, 7, 4)
    km = KMeans(4, metric="cosine", random_state=0, device=device).fit(X)
    centers = to_host(km.cluster_centers_)
    Q, _ = topic_embeddings(rng, 50, 7, 4)
    distances = to_host(km.transform(Q))
    np.testing.assert_allclose(distances, cosine_distances(Q, centers), rtol=0, atol=1e-13)
    np.testing.assert_array_equal(to_host(km.predict(Q)), distances.argmin(axis=1))
    np.testing.assert_allclose(-km.score(Q), distances.min(axis=1).sum(), rtol=1e-12)
    # A center as a query is normalised again (its norm is 1 within a rounding): distance
    # 0 up to the square of that rounding.
    assert np.all(np.diag(to_host(km.transform(centers))) <= 7 * np.finfo(float).eps ** 2)
    # Centers assigned by hand are normalised for inference, not taken as they are.
    km.cluster_centers_ = centers * np.array([[3.0], [0.5], [7.0], [1e-3]])
    np.testing.assert_array_equal(to_host(km.predict(Q)), distances.argmin(axis=1))
    np.testing.assert_allclose(to_host(km.transform(Q)), distances, rtol=0, atol=1e-13)
    # So are the fitted centers once edited in place (scikit-learn honours such edits).
    edited = KMeans(4, metric="cosine", random_state=0, device=device).fit(X)
    edited.cluster_centers_ *= edited.cluster_centers_.dtype.type(5.0)
    np.testing.assert_allclose(to_host(edited.transform(Q)), distances, rtol=0, atol=1e-13)
    edited.cluster_centers_[...] = edited.cluster_centers_[::-1].copy()
    np.testing.assert_array_equal(to_host(edited.predict(Q)), 3 - distances.argmin(axis=1))


def test_opposite_samples_keep_their_center(device):
    """A cluster whose weighted sum is exactly zero (x and -x) has no direction: it keeps
    its center, which stays a unit vector."""
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    init = np.array([[0.0, -1.0], [0.0, 1.0]])
    km = _fit(device, X, init).fit(X)
    # [1, 0] and [-1, 0] are at cosine 0 from both centers: a tie, to the lower index.
    np.testing.assert_array_equal(to_host(km.labels_), [0, 0, 1, 1])
    np.testing.assert_array_equal(to_host(km.cluster_centers_), init)
    assert km.inertia_ == 2.0


def test_unit_centers_keeps_zero_sums_and_empty_clusters():
    sums = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    weight_in_clusters = np.array([2.0, 1.0, 0.0])
    centers_old = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    centers = unit_centers(sums, weight_in_clusters, centers_old, np.float32, np)
    assert centers.dtype == np.float32
    np.testing.assert_array_equal(centers, np.array([[0.6, 0.8], [0, 1], [-1, 0]], np.float32))


def test_empty_cluster_is_relocated_to_the_farthest_sample(device, rng):
    """A center no sample chooses takes the sample of lowest cosine to its center."""
    X = np.abs(topic_embeddings(rng, 300, 5, 3)[0]) + 0.05  # all in the positive orthant
    init = np.vstack([_init_rows(rng, X, 3), -np.ones((1, 5))])
    km = _fit(device, X, init).fit(X)
    labels, centers = to_host(km.labels_), to_host(km.cluster_centers_)
    assert np.unique(labels).size == 4
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1.0, rtol=0, atol=4e-16)
    similarities = unit(X) @ centers.T
    np.testing.assert_array_equal(labels, similarities.argmax(axis=1))
    np.testing.assert_allclose(km.inertia_, (1 - similarities.max(axis=1)).sum(), rtol=1e-12)


def test_zero_rows_are_refused_by_name(device, rng):
    X, _ = topic_embeddings(rng, 50, 4, 2)
    X[[3, 17]] = 0.0
    before = X.copy()
    with pytest.raises(ValueError, match=r"X .* 2 have none \(rows 3, 17\)"):
        KMeans(2, metric="cosine", device=device).fit(X)
    np.testing.assert_array_equal(X, before)
    init = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"init .* \(rows 1\)"):
        KMeans(2, metric="cosine", init=init, device=device).fit(np.delete(X, [3, 17], 0))


@pytest.mark.parametrize("sparse", [False, True])
def test_inference_measures_zero_rows_at_cosine_distance_one(device, rng, sparse):
    """A query row with no direction (an empty document) fails nothing: it is at cosine
    distance 1 from every center (scikit-learn's cosine_similarity gives 0 for a zero
    vector), goes to the first center, and adds its weight to -score; the other rows are
    measured as without it."""
    X, _ = topic_embeddings(rng, 300, 6, 3)
    km = KMeans(3, metric="cosine", random_state=0, device=device).fit(X)
    Q, _ = topic_embeddings(rng, 40, 6, 3)
    zero = [0, 7, 39]
    Q[zero] = 0.0
    weights = rng.uniform(0.5, 2.0, Q.shape[0])
    keep = np.setdiff1d(np.arange(Q.shape[0]), zero)
    make = sp.csr_matrix if sparse else np.asarray
    labels = to_host(km.predict(make(Q)))
    distances = to_host(km.transform(make(Q)))
    np.testing.assert_array_equal(labels[zero], 0)
    np.testing.assert_array_equal(distances[zero], 1.0)
    np.testing.assert_array_equal(labels[keep], to_host(km.predict(make(Q[keep]))))
    np.testing.assert_array_equal(distances[keep], to_host(km.transform(make(Q[keep]))))
    np.testing.assert_allclose(
        km.score(make(Q), sample_weight=weights),
        km.score(make(Q[keep]), sample_weight=weights[keep]) - weights[zero].sum(), rtol=1e-12)
    np.testing.assert_allclose(distances, cosine_distances(Q, to_host(km.cluster_centers_)),
                               rtol=0, atol=1e-13)


def test_many_zero_rows_are_counted(rng):
    X, _ = topic_embeddings(rng, 100, 3, 2)
    X[::4] = 0.0
    with pytest.raises(ValueError, match=r"25 have none \(rows 0, 4, .*, 36 and 15 more\)"):
        KMeans(2, metric="cosine", device="cpu").fit(X)


def test_callers_arrays_are_not_modified(device, rng):
    X = topic_embeddings(rng, 200, 5, 3)[0].astype(np.float32)
    init = _init_rows(rng, X, 3) * 4
    sample_weight = rng.uniform(0.5, 2, size=X.shape[0])
    copies = X.copy(), init.copy(), sample_weight.copy()
    km = _fit(device, X, init).fit(X, sample_weight=sample_weight)
    km.predict(X), km.transform(X), km.score(X, sample_weight=sample_weight)
    for given, copy in zip((X, init, sample_weight), copies):
        np.testing.assert_array_equal(given, copy)


def test_verbose_reports_cosine_inertia(rng, capsys):
    X, _ = topic_embeddings(rng, 200, 5, 3)
    init = _init_rows(rng, X, 3)
    _fit("cpu", X, init, verbose=1, max_iter=1).fit(X)
    out = capsys.readouterr().out
    labels = np.argmax(unit(X) @ unit(init).T, axis=1)
    first_inertia = (1 - np.einsum("ij,ij->i", unit(X), unit(init)[labels])).sum()
    reported = float(out.split("Iteration 0, inertia ")[1].split(".\n")[0])
    np.testing.assert_allclose(reported, first_inertia, rtol=1e-6)


def test_metric_is_validated():
    X = np.eye(3)
    for metric in ("manhattan", None, 1):
        with pytest.raises(ValueError, match="metric must be one of"):
            KMeans(2, metric=metric, device="cpu").fit(X)
    with pytest.raises(TypeError, match="metric"):
        MiniBatchKMeans(2, metric="cosine")  # Euclidean only (docs/cosine.md)


@pytest.mark.parametrize("fitted, changed", [("euclidean", "cosine"), ("cosine", "euclidean")])
def test_inference_keeps_the_fitted_metric(rng, fitted, changed):
    """Inference measures with the metric the model was fitted with: set_params alone,
    without a new fit, does not turn fitted Euclidean centers into cosine ones."""
    X, _ = topic_embeddings(rng, 400, 5, 3)
    X += 3.0  # off the origin, where the Euclidean fit centres its copy
    km = KMeans(3, metric=fitted, random_state=0, device="cpu").fit(X)
    expected = km.transform(X), km.score(X)
    km.set_params(metric=changed)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    np.testing.assert_array_equal(km.transform(X), expected[0])
    assert km.score(X) == expected[1]


def test_normalize_rows_sparse_matches_dense(rng):
    """The same normalisation for a scipy.sparse matrix (for sparse input, which KMeans
    does not take yet): scaled values, the same structure, the input untouched."""
    dense = rng.normal(size=(40, 30)) * (rng.uniform(size=(40, 30)) < 0.2)
    dense[:, 0] = rng.uniform(1, 2, size=40)  # no zero row
    X = sp.csr_matrix(dense.astype(np.float32))
    before = X.copy()

    class Engine:
        xp = np

        @staticmethod
        def row_norms(A):
            return np.asarray(A.astype(np.float64).multiply(A).sum(axis=1)).ravel()

    X_unit = normalize_rows(X, Engine)
    assert sp.issparse(X_unit) and X_unit.dtype == np.float32 and X_unit.nnz == X.nnz
    np.testing.assert_allclose(X_unit.toarray(), unit(X.toarray()), rtol=2e-7, atol=0)
    assert (X != before).nnz == 0
    # The stored values are scaled a chunk at a time (bounded temporaries): chunks that
    # cut rows give the same bits as one.
    from gpukmeans import _spherical

    original = _spherical.SCALE_CHUNK_VALUES
    try:
        _spherical.SCALE_CHUNK_VALUES = 7
        chunked = normalize_rows(X, Engine)
    finally:
        _spherical.SCALE_CHUNK_VALUES = original
    np.testing.assert_array_equal(chunked.data, X_unit.data)
    np.testing.assert_array_equal(chunked.indices, X_unit.indices)
    assert (X != before).nnz == 0


# ----------------------------------------------------------------------------------------
# FAISS's spherical k-means, where faiss imports
# ----------------------------------------------------------------------------------------


def test_matches_faiss_spherical(rng):
    """From the same initial centers and for the same number of iterations, with no
    subsampling, faiss.Kmeans(spherical=True) ends on the same clustering. faiss computes
    in float32 and has no convergence test (it runs all ``niter``; ours stops at the
    fixed point, where more iterations change nothing): labels agree up to float32
    near-ties (at most 0.5%), centers to 1e-6 (a few float32 roundings)."""
    faiss = pytest.importorskip("faiss")
    X, topic = topic_embeddings(rng, 3000, 16, 8, spread=1.0)
    X = X.astype(np.float32)
    # One initial center in each topic: no cluster empties (faiss splits a large cluster
    # where we take the farthest samples).
    init = unit(X[[rng.choice(np.flatnonzero(topic == t)) for t in range(8)]]).astype(np.float32)
    n_iter = 50
    ours = _fit("cpu", X, init, max_iter=n_iter, tol=0.0).fit(X)
    assert ours.n_iter_ < n_iter, "not converged: the comparison would be of a midway state"
    theirs = faiss.Kmeans(X.shape[1], init.shape[0], niter=n_iter, spherical=True, seed=0,
                          max_points_per_centroid=X.shape[0], min_points_per_centroid=1)
    theirs.train(unit(X).astype(np.float32), init_centroids=init)
    _, faiss_labels = theirs.index.search(unit(X).astype(np.float32), 1)
    assert np.mean(faiss_labels[:, 0] == ours.labels_) >= 0.995
    np.testing.assert_allclose(ours.cluster_centers_, theirs.centroids, rtol=0, atol=1e-6)


@pytest.mark.parametrize("init", ["array", "k-means++"])
def test_sparse_rows_cluster_as_their_dense_twins(init, rng):
    import scipy.sparse

    dense = rng.random((400, 30)) * (rng.random((400, 30)) < 0.3)
    dense[:, 0] += 0.05  # no empty row
    X = scipy.sparse.csr_matrix(dense)
    init = dense[:5] * 7.0 if init == "array" else init  # a given center is made unit
    fits = [KMeans(5, metric="cosine", init=init, n_init=1, random_state=0, device="cpu")
            .fit(data) for data in (X, dense)]
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_allclose(fits[0].cluster_centers_, fits[1].cluster_centers_, atol=1e-12)
    np.testing.assert_allclose(fits[0].inertia_, fits[1].inertia_, rtol=1e-12)
    np.testing.assert_allclose(fits[0].transform(X[:7]), fits[1].transform(dense[:7]),
                               atol=1e-12)


def _two_vocabularies(rng, n_samples, n_features, dtype):
    """Rows with a few terms of the first half of the features (vocabulary A) or, one row
    in three, of the second (B): a B row shares no term with a center made of A rows."""
    X = np.zeros((n_samples, n_features))
    half = n_features // 2
    in_b = np.arange(n_samples) % 3 == 2
    for i in range(n_samples):
        first = half if in_b[i] else 0
        X[i, first + rng.choice(half, 3, replace=False)] = rng.integers(1, 4, 3)
    return X.astype(dtype), in_b


def _unit_centers_largest_first(rng, X, in_b, n_clusters):
    """Unit A rows of distinct directions as centers, ordered so that the first one's
    squared norm rounds largest (in X's dtype and in float64): a tie broken by the
    rounding of ``||c||^2`` would then never go to center 0."""
    candidates = np.unique(unit(X[~in_b].astype(np.float64)), axis=0)
    centers = candidates[rng.choice(candidates.shape[0], n_clusters, replace=False)]
    centers = centers.astype(X.dtype)
    norms = (centers * centers).sum(axis=1), (centers.astype(np.float64) ** 2).sum(axis=1)
    return np.ascontiguousarray(centers[np.lexsort((-norms[1], -norms[0]))])


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype, n_features, n_clusters", [
    (np.float64, 12, 4),
    (np.float32, 12, 4),  # the plain step
    (np.float32, 40, 10),  # Hamerly's bounds (the Numba engine's; the NumPy engine's)
    (np.float32, 60, 30),  # Elkan's
    (np.float32, 64, 200),  # Yinyang's group bounds
])
def test_exact_cosine_ties_go_to_the_lowest_index(device, rng, dtype, n_features, n_clusters,
                                                  sparse):
    """A row that shares no term with any center has cosine 0 with all of them: an exact
    tie, which goes to center 0, as argmax of the similarities orders them. Unit centers
    are unit only to a rounding: comparing ``||c||^2 - 2 x.c`` with their rounded norms
    sent such rows to the center whose norm rounded lowest (so that the same data as
    CSR, or scaled by 3, could take other labels). Every pass of a cosine fit's run (the
    first step, a step with its bounds set, the final E-step) and inference, on every
    engine and run kind."""
    from gpukmeans._device import get_engine

    n_samples = 1500 if n_clusters < 100 else 2500
    X, in_b = _two_vocabularies(rng, n_samples, n_features, dtype)
    centers = _unit_centers_largest_first(rng, X, in_b, n_clusters)
    # The same centers moved within vocabulary A: B rows still share no term with them.
    moved = centers + (centers != 0) * rng.uniform(0, 0.05, centers.shape).astype(dtype)
    moved = unit(moved.astype(np.float64)).astype(dtype)
    engine = get_engine(device, n_samples, n_features, n_clusters, sparse=sparse,
                        unit_centers=True)
    xp = engine.xp
    with engine.runtime():
        # In the engine's memory first, as a fit normalises them: on CUDA, normalize_rows
        # of host rows fails (the emulated device's arrays are NumPy's, so it did not).
        X_in = sp.csr_matrix(X) if sparse else X
        if device == "gpu":
            from gpukmeans._sparse import to_module
            X_in = to_module(X_in, xp) if sparse else xp.asarray(X_in)
        X_unit = normalize_rows(X_in, engine)
        centers_, moved_ = xp.asarray(centers), xp.asarray(moved)
        run = engine.start_lloyd(X_unit, engine.row_norms(X_unit),
                                 xp.ones(n_samples, dtype=dtype), n_clusters)
        labels = xp.full(n_samples, -1, dtype=xp.int32)
        run.step(centers_, labels)
        assert (to_host(labels)[in_b] == 0).all(), np.bincount(to_host(labels)[in_b])
        run.step(moved_, labels)
        assert (to_host(labels)[in_b] == 0).all(), np.bincount(to_host(labels)[in_b])
        run.finish(moved_, labels, True)
        assert (to_host(labels)[in_b] == 0).all(), np.bincount(to_host(labels)[in_b])
        labels[:] = -1
        engine.assign_labels(X_unit, moved_, labels)
        assert (to_host(labels)[in_b] == 0).all(), np.bincount(to_host(labels)[in_b])
    # Through the estimator: a model's B rows, dense, CSR or 3 X, against A centers.
    model = _fit(device, X, centers, max_iter=1).fit(X[~in_b])
    for query in (X[in_b], sp.csr_matrix(X[in_b]), 3 * X[in_b]):
        np.testing.assert_array_equal(to_host(model.predict(query)), 0)


@pytest.mark.parametrize("n_features, n_clusters, kind", [
    (40, 22, "bounds"), (60, 40, "bounds"), (64, 200, "yinyang")])
def test_bounds_runs_give_the_plain_runs_labels(rng, n_features, n_clusters, kind,
                                                monkeypatch):
    """The float32 runs that keep distance bounds (Hamerly's, Elkan's, Yinyang's) label
    by the values ``1 - 2 x.c`` of a cosine fit, which differ from ``||x - c||^2`` by
    the unit centers' rounding; their margins cover it, so a step labels as the plain
    step does from the same centers: the first step's labels, and the final E-step's
    (``labels_`` is ``predict(X)``, the plain E-step, on the fit's own centers). Yinyang's
    M-step is the plain step's, so its whole fit is the plain run's bit for bit.
    Hamerly's and Elkan's move the samples that change cluster between float32 sums, so
    their centers differ from the plain run's by a rounding, and a near-tie can later go
    the other way (22 of 4,000 labels after 12 iterations, for one seed of 30 clusters):
    only a near-identical fit is asked of them there."""
    from gpukmeans import _cpu, _cpu_bounds, _cpu_yinyang

    # Bounds from the second step on, whatever the labels do in the first.
    monkeypatch.setattr(_cpu_yinyang, "START_CHANGED", 1.0)
    monkeypatch.setattr(_cpu_bounds, "START_CHANGED", 1.0)
    X, _ = topic_embeddings(rng, 4000, n_features, max(4, n_clusters // 4), spread=1.0)
    X = X.astype(np.float32)
    init = _init_rows(rng, X, n_clusters)
    assert _cpu.run_kind(X, n_clusters) == kind
    route_cpu_fits(monkeypatch, "numba")
    fits = {}
    for run_kind in (kind, "plain"):
        monkeypatch.setattr(_cpu, "run_kind", lambda X, n_clusters, run_kind=run_kind: run_kind)
        fits[run_kind] = [_fit("cpu", X, init, max_iter=max_iter, tol=0.0).fit(X)
                          for max_iter in (1, 12)]
    (first, with_bounds), (plain_first, plain) = fits[kind], fits["plain"]
    np.testing.assert_array_equal(first.labels_, plain_first.labels_)
    np.testing.assert_array_equal(with_bounds.labels_, with_bounds.predict(X))
    if kind == "yinyang":
        np.testing.assert_array_equal(with_bounds.labels_, plain.labels_)
        np.testing.assert_array_equal(with_bounds.cluster_centers_, plain.cluster_centers_)
    else:
        assert np.mean(with_bounds.labels_ != plain.labels_) < 0.02
        assert with_bounds.inertia_ == pytest.approx(plain.inertia_, rel=1e-3)
