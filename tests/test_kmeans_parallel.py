"""``init="k-means||"`` (scalable k-means++, Bahmani et al. 2012) on every engine: the
rows it keeps and the centers it makes, against a float64 NumPy reference that draws from
the same RandomState and reclusters with scikit-learn."""

import warnings

import numpy as np
import pytest
import sklearn.cluster
from sklearn.exceptions import ConvergenceWarning

from gpukmeans import KMeans, MiniBatchKMeans, _init
from gpukmeans._device import get_engine
from gpukmeans._init import kmeans_parallel
from gpukmeans._lloyd import to_host
from conftest import fit_device
from label_checks import assert_labels_nearest


@pytest.fixture(params=["cpu", "cpu-numba", "emulated",
                        pytest.param("cuda", marks=pytest.mark.gpu)],
                ids=["cpu", "cpu-numba", "gpu-emulated", "gpu"])
def device(request):
    return fit_device(request, request.param)


def _reference(X, sample_weight, n_clusters, seed, oversampling_factor=2.0, n_rounds=5,
               engine_labels=None):
    """k-means|| in float64 NumPy, distances from the differences; the candidates
    reclustered (k-means++ then Lloyd) from the same RandomState, by scikit-learn in
    float64, by gpukmeans' CPU fit in float32.

    ``engine_labels``: the engine's nearest new candidate of each sample, one array per
    batch of candidates (recorded from :func:`gpukmeans._init.nearest_of`). Where one
    differs from the float64 nearest, it must be a near-tie that the GEMM form cannot
    resolve in X's dtype (:func:`assert_labels_nearest`, the GPU engine's rule), and the
    reference follows it: one such sample weighs on another candidate, and the candidates'
    weights steer the reclustering's k-means++ draws. Without them, the float64 nearest.
    """
    random_state = np.random.RandomState(seed)
    X64 = X.astype(np.float64)
    weight = sample_weight.astype(np.float64)
    n_samples = X.shape[0]
    rows = np.arange(n_samples)
    batches = iter(engine_labels) if engine_labels is not None else None
    closest = np.full(n_samples, np.inf)
    nearest = np.full(n_samples, -1)

    def nearer(new, first):  # the nearest of the new candidates, kept where strictly nearer
        d = ((X64[:, None] - X64[new][None]) ** 2).sum(-1)
        labels = d.argmin(axis=1)
        if batches is not None:
            engine = next(batches)
            if new.size > 1:
                assert_labels_nearest(engine.astype(np.int32), X, X[new], X.dtype)
            labels = engine
        distances = d[rows, labels]
        closer = distances < closest
        closest[closer] = distances[closer]
        nearest[closer] = labels[closer] + first

    first = random_state.choice(n_samples, p=weight / weight.sum())
    chosen = [np.array([first])]
    nearer(chosen[0], 0)
    n_kept = 1
    for _ in range(n_rounds):
        cost = (weight * closest).sum()
        if not cost > 0:
            break
        draws = random_state.random_sample(n_samples)
        new = np.flatnonzero(draws * cost < oversampling_factor * n_clusters * weight * closest)
        if new.size:
            nearer(new, n_kept)
            chosen.append(new)
            n_kept += new.size
    index = np.concatenate(chosen)
    if index.size < n_clusters:  # topped up with distinct rows drawn by weight
        extra = random_state.choice(n_samples, size=min(n_clusters, np.count_nonzero(weight)),
                                    replace=False, p=weight / weight.sum())
        extra = np.setdiff1d(extra, index)
        if extra.size:
            nearer(extra, index.size)
            index = np.concatenate([index, extra])
    if batches is not None:
        assert next(batches, None) is None, "the engine searched more batches of candidates"
    candidate_weight = np.bincount(nearest, weights=weight, minlength=index.size)
    if index.size <= n_clusters:
        return X64[index][np.arange(n_clusters) % index.size], index
    if X.dtype == np.float64:
        recluster = sklearn.cluster.KMeans(n_clusters, init="k-means++", n_init=1,
                                           random_state=random_state)
    else:
        # float32 candidates are reclustered in float32, whose k-means++ potentials and
        # Lloyd labels can part from float64's at a near-tie: the float32 reference is
        # our CPU fit, so float32 checks the candidates, their weights and the draws
        # handed to it, not the reclustering (that fit against scikit-learn:
        # test_kmeans.py, test_cpu_engine.py; float64 here).
        recluster = KMeans(n_clusters, init="k-means++", n_init=1,
                           random_state=random_state, device="cpu")
    centers = recluster.fit(X[index], sample_weight=candidate_weight).cluster_centers_
    return centers, index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("oversampling_factor, n_rounds", [(2.0, 5), (0.5, 3)])
def test_kept_rows_and_centers_are_the_reference_ones(
        device, dtype, oversampling_factor, n_rounds, rng, monkeypatch):
    """The CPU engines label every sample with its float64 nearest candidate; the GPU
    engine's GEMM-form labels may go the other way at a near-tie (seen in CI: 1 sample of
    1,500 in float32, 2.5e-5 apart at squared norms of 200), which the reference then
    follows (see :func:`_reference`)."""
    n_samples, n_features, n_clusters = 1500, 5, 12
    modes = rng.normal(scale=5.0, size=(n_clusters, n_features))
    X = (modes[rng.integers(n_clusters, size=n_samples)]
         + rng.normal(size=(n_samples, n_features))).astype(dtype)
    sample_weight = rng.uniform(0.5, 2.0, n_samples).astype(dtype)
    sample_weight[rng.choice(n_samples, 100, replace=False)] = 0  # never kept
    seed = int(rng.integers(1000))

    engine = get_engine(device, n_samples, n_features, n_clusters)
    engine_labels = []
    nearest_of = _init.nearest_of

    def recorded(*args):
        labels, distances = nearest_of(*args)
        engine_labels.append(labels.copy())
        return labels, distances

    monkeypatch.setattr(_init, "nearest_of", recorded)
    with engine.runtime():
        centers, index = kmeans_parallel(
            engine.xp.asarray(X), n_clusters, engine.xp.asarray(sample_weight),
            np.random.RandomState(seed), engine, oversampling_factor, n_rounds)
    expected_centers, expected_index = _reference(
        X, sample_weight, n_clusters, seed, oversampling_factor, n_rounds,
        engine_labels if device == "gpu" else None)
    np.testing.assert_array_equal(index, expected_index)
    assert np.all(sample_weight[index] > 0)
    assert index.size >= n_clusters
    centers = to_host(centers)
    assert centers.dtype == dtype and centers.shape == (n_clusters, n_features)
    if dtype == np.float32:  # the same candidates, weights and draws: the same fit
        np.testing.assert_array_equal(centers, expected_centers)
    else:
        np.testing.assert_allclose(centers, expected_centers, rtol=1e-10, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_with_kmeans_parallel_finds_the_blobs_and_is_reproducible(device, dtype, rng):
    n_clusters = 20
    # 141 apart, noise 1: a k-means++ draw lands in a blob not yet seeded with
    # probability 0.96 or more, even for the last one (at 15 apart, 0.37).
    modes = 100.0 * np.eye(n_clusters)
    truth = rng.integers(n_clusters, size=4000)
    X = (modes[truth] + rng.normal(size=(4000, n_clusters))).astype(dtype)
    seed = int(rng.integers(1000))
    fits = [KMeans(n_clusters, init="k-means||", random_state=seed, device=device).fit(X)
            for _ in range(2)]
    np.testing.assert_array_equal(to_host(fits[0].labels_), to_host(fits[1].labels_))
    np.testing.assert_array_equal(to_host(fits[0].cluster_centers_),
                                  to_host(fits[1].cluster_centers_))
    # Each true cluster is one found cluster.
    pairs = np.unique(truth * n_clusters + to_host(fits[0].labels_))
    assert pairs.size == n_clusters and np.unique(pairs % n_clusters).size == n_clusters


def test_fewer_distinct_samples_than_clusters(device):
    X = np.repeat(np.arange(3.0)[:, None], 10, axis=0)  # 3 distinct rows, 30 samples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(5, init="k-means||", random_state=0, device=device).fit(X)
    assert sorted(np.unique(to_host(km.cluster_centers_)).tolist()) == [0.0, 1.0, 2.0]
    assert km.inertia_ == 0.0


@pytest.mark.parametrize("n_positive", [1, 2, 3])
def test_fewer_samples_of_positive_weight_than_clusters(device, n_positive, rng):
    """Every sample of positive weight already a candidate when the candidates are topped
    up: nothing left to draw (it was an IndexError from an E-step against no rows). The
    fit goes on as k-means++'s does: its centers are those samples, the inertia 0."""
    X = rng.normal(size=(1000, 4))
    sample_weight = np.r_[np.ones(n_positive), np.zeros(1000 - n_positive)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(3, init="k-means||", n_init=1, random_state=0, device=device).fit(
            X, sample_weight=sample_weight)
    centers = to_host(km.cluster_centers_)
    assert np.isfinite(centers).all() and km.inertia_ == 0.0
    for row in X[:n_positive]:  # each sample of positive weight sits on a center
        assert np.isclose(((centers - row) ** 2).sum(axis=1).min(), 0.0, atol=1e-20)


@pytest.mark.parametrize("params, error, message", [
    ({"oversampling_factor": 0}, ValueError, "oversampling_factor must be a finite float > 0"),
    ({"oversampling_factor": float("nan")}, ValueError, "oversampling_factor"),
    ({"oversampling_factor": "2"}, TypeError, "oversampling_factor must be a float"),
    ({"oversampling_factor": True}, TypeError, "oversampling_factor must be a float"),
    ({"init_max_iter": 0}, ValueError, "init_max_iter"),
    ({"init_max_iter": 1.5}, TypeError, "init_max_iter"),
])
def test_bad_kmeans_parallel_parameters_are_named(params, error, message):
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(error, match=message):
        KMeans(3, init="k-means||", device="cpu", **params).fit(X)


def test_minibatch_refuses_kmeans_parallel():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="init must be one of"):
        MiniBatchKMeans(3, init="k-means||", device="cpu").fit(X)


def test_reclustering_the_candidates_stays_inside(capsys):
    # 5 distinct rows, 8 clusters, every copy kept in the first round: the candidates
    # reclustered hold fewer distinct rows than clusters. The user sees the fit's one
    # warning and the fit's bars, not those of the inner KMeans that reclusters.
    from gpukmeans import progress_bars

    X = np.repeat(np.random.default_rng(0).normal(size=(5, 3)), 200, axis=0)
    with warnings.catch_warnings(record=True) as caught, progress_bars():
        warnings.simplefilter("always")
        KMeans(8, init="k-means||", oversampling_factor=50, random_state=0,
               device="cpu").fit(X)
    assert [str(w.message)[:31] for w in caught] == ["Number of distinct clusters (5)"]
    assert caught[0].filename == __file__
    assert "k-means++" not in capsys.readouterr().err  # the inner seeding's bar
