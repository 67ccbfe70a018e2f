"""gpukmeans.dask.KMeans on Dask: agreement with gpukmeans.KMeans and scikit-learn,
determinism across schedulers, a worker killed mid-fit, bad input, lazy inference.

Two clusters start once per module: two worker processes of one thread each (as CI's two
cores allow) and two worker threads in this process. Data are fresh random draws on every
run (the seed is printed on failure), so agreement is tested, not memorised.
"""

import logging
import os
import signal
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import sklearn.cluster  # noqa: E402
import sklearn.exceptions  # noqa: E402
from scipy.spatial import distance as scipy_distance  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

import gpukmeans  # noqa: E402
import gpukmeans.dask as gkd  # noqa: E402
from conftest import fit_device  # noqa: E402
from label_checks import assert_labels_nearest  # noqa: E402


@pytest.fixture(scope="module")
def process_client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def thread_client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def on_processes(process_client):
    # The current client, not dask.config's "scheduler": the nanny passes dask's config
    # to a worker it restarts, and a Client in it cannot be pickled.
    with process_client.as_current():
        yield process_client


def _random_data(rng, n_samples, n_features, n_clusters, dtype, separated):
    if separated:
        X, _ = make_blobs(n_samples=n_samples, n_features=n_features, centers=n_clusters,
                          cluster_std=0.5, center_box=(-20, 20),
                          random_state=int(rng.integers(2**31)))
    else:
        X = rng.standard_normal((n_samples, n_features)) * rng.uniform(0.5, 3, n_features)
        X += rng.uniform(-5, 5, n_features)
    return X.astype(dtype)


# One chunk; uneven chunks; chunks smaller than n_clusters (8).
CHUNKINGS = {
    "one-chunk": lambda n: (n,),
    "uneven": lambda n: (n // 3, 1, n // 2, n - n // 3 - 1 - n // 2),
    "smaller-than-k": lambda n: (5,) * (60 // 5) + (n - 60,),
}


@pytest.mark.parametrize("separated", [True, False], ids=["blobs", "random"])
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_fit_as_gpukmeans_from_the_same_init(on_processes, rng, dtype, chunking,
                                                  separated):
    n_samples, n_features, n_clusters = 1500, 4, 8
    X = _random_data(rng, n_samples, n_features, n_clusters, dtype, separated)
    X_before = X.copy()
    init = X[rng.choice(n_samples, n_clusters, replace=False)]
    local = gpukmeans.KMeans(n_clusters, init=init, device="cpu").fit(X)
    Xd = da.from_array(X, chunks=(CHUNKINGS[chunking](n_samples), n_features))
    km = gkd.KMeans(n_clusters, init=init).fit(Xd)

    labels = km.labels_.compute()
    assert km.labels_.chunks[0] == Xd.chunks[0]
    np.testing.assert_array_equal(X, X_before)  # the caller's data untouched
    assert km.cluster_centers_.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_array_equal(labels, local.labels_)
        assert km.n_iter_ == local.n_iter_
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
        np.testing.assert_allclose(km.cluster_centers_, local.cluster_centers_,
                                   rtol=1e-12, atol=1e-12 * np.abs(X).max())
    else:
        # float32: the sums are added in another order, so the centers differ in their
        # last bits, and a sample at a near-tie may go either way from there on.
        assert_labels_nearest(labels, X, km.cluster_centers_, dtype)
        differ = np.flatnonzero(labels != local.labels_)
        assert differ.size <= max(2, 0.01 * n_samples), f"{differ.size} labels differ"
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-4)
    assert -km.score(Xd) == pytest.approx(km.inertia_, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_each_cpu_engine_per_block(cpu_engine, rng, dtype):
    """Blocks on the NumPy engine and on the Numba engine (chosen by the block's shape on
    a worker; routed here, on the one-thread scheduler that sees the routing)."""
    X = _random_data(rng, 1200, 3, 6, dtype, separated=False)
    init = X[:6]
    local = gpukmeans.KMeans(6, init=init, device="cpu").fit(X)
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(6, init=init).fit(da.from_array(X, chunks=(500, 3)))
        labels = km.labels_.compute()
    if dtype == np.float64:
        np.testing.assert_array_equal(labels, local.labels_)
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
        assert km.n_iter_ == local.n_iter_
    else:
        # The blocks are centred on their mean; the local fit of data this near the
        # origin is not: float32 values a rounding apart, so a near-tie may go the other
        # way, and the fits then take their own number of iterations.
        differ = np.flatnonzero(labels != local.labels_)
        assert differ.size <= 2
        assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-5)
        if differ.size == 0:
            assert km.n_iter_ == local.n_iter_


def test_weighted_fit_as_gpukmeans(on_processes, rng):
    n_samples, n_clusters = 800, 5
    X = _random_data(rng, n_samples, 3, n_clusters, np.float64, separated=False)
    sample_weight = rng.uniform(0, 4, n_samples)
    sample_weight[rng.choice(n_samples, 50)] = 0
    init = X[:n_clusters]
    local = gpukmeans.KMeans(n_clusters, init=init, device="cpu").fit(X, sample_weight=sample_weight)
    Xd = da.from_array(X, chunks=(300, 3))
    km = gkd.KMeans(n_clusters, init=init).fit(Xd, sample_weight=da.from_array(sample_weight,
                                                                                chunks=170))
    np.testing.assert_array_equal(km.labels_.compute(), local.labels_)
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
    assert km.n_iter_ == local.n_iter_
    assert km.score(Xd, sample_weight=sample_weight) == pytest.approx(
        local.score(X, sample_weight=sample_weight), rel=1e-12)


def test_empty_cluster_is_relocated_as_gpukmeans_does(on_processes, rng):
    X = _random_data(rng, 600, 2, 4, np.float64, separated=True)
    init = X[:4].copy()
    init[3] = 1e3  # farther than every sample: its cluster empties on the first step
    local = gpukmeans.KMeans(4, init=init, device="cpu").fit(X)
    km = gkd.KMeans(4, init=init).fit(da.from_array(X, chunks=(170, 2)))
    np.testing.assert_array_equal(km.labels_.compute(), local.labels_)
    assert np.unique(local.labels_).size == 4  # the relocation really happened
    assert km.n_iter_ == local.n_iter_
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)


def _tied_far_points(rng):
    """Integer data, symmetric about the origin (so centring and every sum are exact),
    and initial centers of which three are far from every sample: three clusters empty
    at the first step, and the four samples farthest from their centers tie (at 5000).
    Rows are shuffled until ``np.argpartition`` pairs the ties with the empty clusters
    in another order than their row order, the order a merge of per-block maxima
    would give."""
    blob = rng.integers(-6, 7, size=(120, 2))
    group = blob + 50
    half = np.concatenate([blob, group, [[100, 0], [0, 100]]])
    X = np.concatenate([half, -half]).astype(np.float64)
    init = np.array([[0, 0], [50, 50], [-50, -50], [1e4, 1e4], [-1e4, 1e4], [1e4, -1e4]])
    first_labels = ((X[:, None, :] - init[None]) ** 2).sum(axis=2).argmin(axis=1)
    distances = ((X - init[first_labels]) ** 2).sum(axis=1)
    assert np.sort(distances)[-4:].tolist() == [5000.0] * 4
    while True:
        X = X[rng.permutation(X.shape[0])]
        distances = ((X[:, None, :] - init[None]) ** 2).sum(axis=2).min(axis=1)
        by_argpartition = np.argpartition(distances, -3)[:-4:-1]
        by_row = np.lexsort((np.arange(X.shape[0]), -distances))[:3]
        if not np.array_equal(by_argpartition, by_row):
            return X, init


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_clusters_emptied_together_are_paired_as_gpukmeans_pairs_them(on_processes, rng,
                                                                      chunking):
    X, init = _tied_far_points(rng)
    local = gpukmeans.KMeans(6, init=init, device="cpu").fit(X)
    assert np.unique(local.labels_).size == 6  # the three relocations happened
    km = gkd.KMeans(6, init=init).fit(
        da.from_array(X, chunks=(CHUNKINGS[chunking](X.shape[0]), 2)))
    np.testing.assert_array_equal(km.labels_.compute(), local.labels_)
    assert km.cluster_centers_.tobytes() == local.cluster_centers_.tobytes()
    assert km.n_iter_ == local.n_iter_
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_finds_scikit_learns_clustering_of_separated_blobs(on_processes, rng, init, dtype):
    n_clusters = 6
    X, truth = make_blobs(n_samples=1200, n_features=5, centers=n_clusters, cluster_std=0.3,
                          center_box=(-30, 30), random_state=int(rng.integers(2**31)))
    X = X.astype(dtype)
    reference = sklearn.cluster.KMeans(n_clusters, n_init=10, random_state=0).fit(X)
    km = gkd.KMeans(n_clusters, init=init, random_state=int(rng.integers(2**31))).fit(
        da.from_array(X, chunks=(250, 5)))
    labels = km.labels_.compute()
    # The same partition (both find the blobs), up to a permutation of the labels.
    pairs = np.unique(np.stack([labels, reference.labels_]), axis=1)
    assert pairs.shape[1] == n_clusters == np.unique(labels).size
    assert km.inertia_ <= reference.inertia_ * (1 + 1e-5)


def test_random_init_reaches_a_lloyd_fixed_point(on_processes, rng):
    """One random seeding may well put two centers in one blob; what must hold is a
    converged fit: each label the nearest center, each center its cluster's mean."""
    X = _random_data(rng, 1000, 3, 5, np.float64, separated=True)
    km = gkd.KMeans(5, init="random", tol=0, random_state=int(rng.integers(2**31))).fit(
        da.from_array(X, chunks=(300, 3)))
    labels = km.labels_.compute()
    assert_labels_nearest(labels, X, km.cluster_centers_, np.float64)
    for cluster in np.unique(labels):
        np.testing.assert_allclose(km.cluster_centers_[cluster],
                                   X[labels == cluster].mean(axis=0), rtol=1e-12, atol=1e-12)


def test_kmeans_parallel_seeds_as_well_as_kmeans_plusplus(on_processes, rng):
    """k-means|| on overlapping clusters lands where scikit-learn's k-means++ does: within
    5% of the median inertia of three scikit-learn fits (local optima differ by a few %)."""
    X = _random_data(rng, 3000, 4, 20, np.float64, separated=False)
    reference = np.median([sklearn.cluster.KMeans(20, n_init=1, random_state=seed).fit(X)
                           .inertia_ for seed in range(3)])
    km = gkd.KMeans(20, random_state=int(rng.integers(2**31))).fit(
        da.from_array(X, chunks=700))
    assert km.inertia_ <= reference * 1.05
    assert_labels_nearest(km.labels_.compute(), X, km.cluster_centers_, np.float64)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_fewer_distinct_samples_than_clusters(init):
    """Three distinct points, five clusters: every init still gives five centers, the
    three points among them, and the fit warns as gpukmeans.KMeans does."""
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 20, axis=0)
    with dask.config.set(scheduler="sync"):
        with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="distinct clusters"):
            km = gkd.KMeans(5, init=init, random_state=0).fit(da.from_array(X, chunks=(7, 2)))
    assert km.cluster_centers_.shape == (5, 2)
    # Each point is a center, up to the rounding of centring and adding the mean back.
    nearest = scipy_distance.cdist(X[::20], km.cluster_centers_).min(axis=1)
    np.testing.assert_array_less(nearest, 1e-12)
    assert km.inertia_ == pytest.approx(0, abs=1e-20)


def test_changed_labels_are_counted_exactly_with_or_without_the_kept_labels(rng):
    """A block's step counts the labels that differ from its previous step's: against
    the labels its worker kept, or, where they are not (a step run elsewhere), against
    the previous centers' labels assigned again; the same exact count either way."""
    X = rng.standard_normal((400, 3))
    sample_weight = np.ones(400)
    centers_before = X[:5].copy()
    centers_old = centers_before + rng.normal(0, 0.3, centers_before.shape)
    nearest = [scipy_distance.cdist(X, c).argmin(axis=1) for c in (centers_before, centers_old)]
    truth = int((nearest[0] != nearest[1]).sum())
    assert truth > 0
    fit_key = "test-count"
    try:
        first = gkd._step_block(X, sample_weight, centers_before, centers_before, "cpu",
                                fit_key, 0, 1)
        assert first[2] == 400  # every label was -1
        kept = gkd._step_block(X, sample_weight, centers_old, centers_before, "cpu", fit_key,
                               0, 2)[2]
        gkd._forget_fit(fit_key)
        assigned_again = gkd._step_block(X, sample_weight, centers_old, centers_before, "cpu",
                                         fit_key, 0, 2)[2]
        # Labels kept from another step than the previous one are not used.
        stale = gkd._step_block(X, sample_weight, centers_old, centers_before, "cpu", fit_key,
                                0, 4)[2]
    finally:
        gkd._forget_fit(fit_key)
    assert kept == assigned_again == stale == truth


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_parallel_distances_kept_or_recomputed_are_the_same(rng, dtype):
    """k-means||'s per-block state after batches of candidates: kept by the worker
    pass after pass, or recomputed at once where it is not kept (a task run elsewhere),
    bitwise the same; and each sample's nearest candidate and distance are right."""
    X = rng.standard_normal((600, 4)).astype(dtype)
    sample_weight = rng.uniform(0.5, 2, 600).astype(dtype)
    batches = [X[rng.choice(600, size, replace=False)] for size in (1, 15, 30)]
    fit_key = "test-closest"
    try:
        costs = [gkd._cost_block(X, sample_weight, batches[:j], "cpu", fit_key, 0)
                 for j in range(1, 4)]
        weights = gkd._candidate_weight_block(X, sample_weight, batches, "cpu", fit_key, 0)
        closest, nearest = gkd._CLOSEST[(fit_key, 0)][1:]
        gkd._forget_fit(fit_key)
        assert (fit_key, 0) not in gkd._CLOSEST
        weights_again = gkd._candidate_weight_block(X, sample_weight, batches, "cpu",
                                                    fit_key, 0)
        closest_again, nearest_again = gkd._CLOSEST[(fit_key, 0)][1:]
    finally:
        gkd._forget_fit(fit_key)
    assert weights.tobytes() == weights_again.tobytes()
    assert closest.tobytes() == closest_again.tobytes()
    np.testing.assert_array_equal(nearest, nearest_again)
    # Against float64 distances to every candidate.
    X64, w64 = X.astype(np.float64), sample_weight.astype(np.float64)
    distances = scipy_distance.cdist(X64, np.concatenate(batches).astype(np.float64),
                                     "sqeuclidean")
    np.testing.assert_allclose(closest, distances.min(axis=1), rtol=1e-5, atol=1e-5)
    chosen = distances[np.arange(600), nearest]
    np.testing.assert_allclose(chosen, distances.min(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights, np.bincount(nearest, weights=w64, minlength=46))
    assert weights.sum() == pytest.approx(w64.sum())
    for j, cost in enumerate(costs, start=1):
        sizes = sum(batch.shape[0] for batch in batches[:j])
        assert cost == pytest.approx((w64 * distances[:, :sizes].min(axis=1)).sum(),
                                     rel=1e-5)


def test_bitwise_same_fit_on_processes_threads_and_one_thread(process_client, thread_client,
                                                              rng):
    X = _random_data(rng, 2000, 3, 10, np.float32, separated=False)
    Xd = da.from_array(X, chunks=(333, 3))
    fits = {}
    for name, scheduler in [("processes", process_client), ("threads", thread_client),
                            ("one thread", None)]:
        with (scheduler.as_current() if scheduler else dask.config.set(scheduler="sync")):
            km = gkd.KMeans(10, random_state=7).fit(Xd)
            fits[name] = (km.cluster_centers_.tobytes(), km.inertia_, km.n_iter_,
                          km.labels_.compute().tobytes())
    assert fits["processes"] == fits["threads"] == fits["one thread"]


@pytest.mark.parametrize("moment", ["k-means|| round 2:", "iteration 3:"])
def test_a_worker_killed_mid_fit_changes_nothing(on_processes, rng, moment):
    """A worker process is killed in k-means|| (after its second round's draws: the
    distances it kept are lost) or after the third iteration: its persisted blocks are
    recomputed by Dask on the survivor (or the restarted worker), and the fit is
    bitwise the one without the fault."""
    X = _random_data(rng, 3000, 4, 12, np.float64, separated=False)
    Xd = da.from_array(X, chunks=(400, 4))
    expected = gkd.KMeans(12, random_state=3, tol=0).fit(Xd)
    assert expected.n_iter_ > 4, "too few iterations to kill a worker in the middle"

    client = on_processes
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    killed = []

    class KillAtIteration3(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith(moment) and not killed:
                os.kill(pids[victim], signal.SIGKILL)
                killed.append(victim)

    handler = KillAtIteration3(level=logging.DEBUG)
    logger = logging.getLogger("gpukmeans.dask")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        km = gkd.KMeans(12, random_state=3, tol=0).fit(Xd)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert killed, "no worker was killed"
    assert pids[victim] not in client.run(os.getpid).values()  # really gone
    assert km.cluster_centers_.tobytes() == expected.cluster_centers_.tobytes()
    assert km.inertia_ == expected.inertia_ and km.n_iter_ == expected.n_iter_
    np.testing.assert_array_equal(km.labels_.compute(), expected.labels_.compute())
    # The nanny's restart, for the tests after: the new worker imports NumPy, Dask and
    # gpukmeans while CI's background job compiles on both cores; on a 2-core EPYC that
    # took more than 30 s (WorkerStartTimeoutError after a fit that had passed).
    client.wait_for_workers(2, timeout=180)


def test_an_actor_that_does_not_answer_leaves_its_blocks_to_tasks(thread_client, rng,
                                                                  monkeypatch, caplog):
    """An actor's pass that does not return in time (a call that fails on the worker
    other than by an OSError is never answered by distributed's Actor) is not waited
    for for ever: that worker's blocks run as tasks, for the rest of the fit, and the
    fit is the same, bit for bit."""
    import threading
    import time as _time

    X = _random_data(rng, 3000, 4, 6, np.float64, separated=False)
    init = X[:6]
    Xd = da.from_array(X, chunks=(500, 4))
    with thread_client.as_current():
        expected = gkd.KMeans(6, init=init, max_iter=8, tol=0).fit(Xd)
        real_run = gkd._BlockHost.run
        stalled = threading.Event()

        def stall_once(self, *args):
            if not stalled.is_set():
                stalled.set()
                _time.sleep(3)
            return real_run(self, *args)

        monkeypatch.setattr(gkd._BlockHost, "run", stall_once)
        monkeypatch.setattr(gkd, "ACTOR_PASS_MIN_TIMEOUT", 1)
        with caplog.at_level(logging.WARNING, logger="gpukmeans.dask"):
            km = gkd.KMeans(6, init=init, max_iter=8, tol=0).fit(Xd)
    assert stalled.is_set() and "did not answer" in caplog.text
    assert km.cluster_centers_.tobytes() == expected.cluster_centers_.tobytes()
    assert km.inertia_ == expected.inertia_ and km.n_iter_ == expected.n_iter_
    np.testing.assert_array_equal(km.labels_.compute(), expected.labels_.compute())


def _n_rows(X, sample_weight):
    return X.shape[0]


def test_the_actors_live_until_the_fit_ends(thread_client, monkeypatch, caplog):
    """The handle of an actor on a worker in this process (a LocalCluster of threads) is
    the worker's own and refers to the actor's key only from its first call; the runner
    holds the key. When only the handle was kept, a release of the creating futures
    that reached the scheduler before that first call (a race, made certain here by
    waiting) had the worker drop the actor; the call's KeyError was lost in
    distributed's Actor (which answers a call only with a result or an OSError), and the
    pass waited until the timeout (before it, for ever)."""
    import gc
    import time as _time

    X = da.from_array(np.random.default_rng(0).standard_normal((600, 3)), chunks=(100, 3))
    with thread_client.as_current():
        Xc = X.persist()
        w = Xc.map_blocks(gkd._ones_block, np.float64, "cpu", drop_axis=1,
                          dtype=np.float64).persist()
        runner = gkd._Runner(Xc, w)
        try:
            runner._place()
            keys = [actor.key for actor, _ in runner._hosts.values()]
            assert keys, "no actor was placed"

            def held():
                return thread_client.run_on_scheduler(
                    lambda dask_scheduler: [key in dask_scheduler.tasks for key in keys])

            gc.collect()
            # A release goes from the client to the scheduler, then to the worker.
            deadline = _time.monotonic() + 1
            while _time.monotonic() < deadline and all(held()):
                _time.sleep(0.05)
            still_held = held()
            monkeypatch.setattr(gkd, "ACTOR_PASS_MIN_TIMEOUT", 5)
            with caplog.at_level(logging.WARNING, logger="gpukmeans.dask"):
                n_rows = runner.map_blocks(_n_rows, (), combine_two=gkd._add)
            on_actors_alone = np.isfinite(runner.slowest_worker_seconds)
        finally:
            runner.close()
    assert all(still_held)
    assert n_rows == 600
    assert on_actors_alone and "did not answer" not in caplog.text


@pytest.mark.parametrize("cluster", ["process_client", "thread_client"])
def test_a_client_neither_current_nor_default_runs_the_fit(request, rng, cluster):
    """dask.config.set(scheduler=client) with a Client made with set_as_default=False:
    the fit's waits and actors use that client (they looked for a current or default
    one: 'No clients found', or an actor handle bound to no client), every pass runs on
    the actors, and the fit is the one made under client.as_current()."""
    client = request.getfixturevalue(cluster)
    with pytest.raises(ValueError):
        distributed.default_client()
    X = _random_data(rng, 1000, 3, 5, np.float64, separated=False)
    Xd = da.from_array(X, chunks=(250, 3))
    with client.as_current():
        expected = gkd.KMeans(5, random_state=0).fit(Xd)
    with dask.config.set(scheduler=client):
        km = gkd.KMeans(5, random_state=0).fit(Xd)
        labels = km.labels_.compute()
    assert np.isfinite(km._timings["slowest_worker"]).all()
    assert km.cluster_centers_.tobytes() == expected.cluster_centers_.tobytes()
    assert km.inertia_ == expected.inertia_ and km.n_iter_ == expected.n_iter_
    with client.as_current():
        np.testing.assert_array_equal(labels, expected.labels_.compute())


def test_inference_is_lazy_with_the_inputs_chunks(on_processes, rng):
    X = _random_data(rng, 900, 3, 4, np.float32, separated=True)
    Xd = da.from_array(X, chunks=(200, 3))
    km = gkd.KMeans(4, random_state=0).fit(Xd)
    for result, width in [(km.predict(Xd), None), (km.transform(Xd), 4), (km.labels_, None)]:
        assert isinstance(result, da.Array)
        assert result.chunks[0] == Xd.chunks[0]
        if width:
            assert result.chunks[1] == (width,)
    np.testing.assert_array_equal(km.predict(Xd).compute(), km.labels_.compute())
    np.testing.assert_array_equal(km.predict(X), km.labels_.compute())  # in memory
    distances = km.transform(Xd).compute()
    assert distances.dtype == np.float32
    np.testing.assert_allclose(
        distances, scipy_distance.cdist(X.astype(np.float64), km.cluster_centers_), rtol=1e-5,
        atol=1e-5)
    np.testing.assert_array_equal(km.fit_predict(Xd).compute(), km.labels_.compute())
    # A float64 query of the float32 model is measured and returned in float64, as
    # scikit-learn's transform (and gpukmeans.KMeans's) does.
    X64 = X.astype(np.float64) * 1.5
    for query in (da.from_array(X64, chunks=(200, 3)), X64):
        distances = np.asarray(km.transform(query))
        assert distances.dtype == np.float64
        np.testing.assert_allclose(
            distances, scipy_distance.cdist(X64, km.cluster_centers_.astype(np.float64)),
            rtol=1e-12)


@pytest.mark.parametrize("init", ["k-means||", "k-means++"])
def test_in_memory_array_is_fitted_as_gpukmeans(rng, monkeypatch, init):
    """In memory, gpukmeans.KMeans fits with the same parameters: its own k-means||
    (with oversampling_factor and init_max_iter) for "k-means||"."""
    from gpukmeans import _estimator

    rounds = []
    kmeans_parallel = _estimator.kmeans_parallel

    def spy(*args, **kwargs):
        rounds.append((kwargs["oversampling_factor"], kwargs["n_rounds"]))
        return kmeans_parallel(*args, **kwargs)

    monkeypatch.setattr(_estimator, "kmeans_parallel", spy)
    X = _random_data(rng, 500, 3, 5, np.float64, separated=False)
    params = dict(init=init, oversampling_factor=3, init_max_iter=2, random_state=1)
    km = gkd.KMeans(5, **params).fit(X)
    assert rounds == ([(3, 2)] if init == "k-means||" else [])
    local = gpukmeans.KMeans(5, device="cpu", **params).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, local.cluster_centers_)
    np.testing.assert_array_equal(km.labels_, local.labels_)
    assert km.inertia_ == local.inertia_
    np.testing.assert_array_equal(km.predict(X), local.predict(X))


@pytest.mark.parametrize("in_memory", [True, False])
def test_centers_edited_in_place_are_used(rng, in_memory):
    """predict measures in the fit's frame only while cluster_centers_ holds the fitted
    values: an edit in place counts, as in scikit-learn."""
    X = rng.normal(size=(900, 3)) + 50.0  # far from the origin: the fit centres
    X = X if in_memory else da.from_array(X, chunks=300)
    km = gkd.KMeans(3, random_state=0, device="cpu").fit(X)
    labels = np.asarray(km.predict(X))
    km.cluster_centers_[...] = km.cluster_centers_[[1, 2, 0]].copy()
    np.testing.assert_array_equal(np.asarray(km.predict(X)), np.array([2, 0, 1])[labels])


def test_gpu_engine_per_block_on_the_emulated_device(request, rng):
    """``device="gpu"``: each NumPy block goes to the GPU engine, here the emulated device
    (tests/cudaemu), on the one-thread scheduler that sees the test's backend. What only
    hardware can tell (CuPy blocks on a dask_cuda worker) is not tested here."""
    device = fit_device(request, "emulated")
    X = _random_data(rng, 700, 3, 5, np.float64, separated=False)
    init = X[:5]
    local = gpukmeans.KMeans(5, init=init, device=device).fit(X)
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(5, init=init, device="gpu").fit(da.from_array(X, chunks=(250, 3)))
        labels = km.labels_.compute()
    assert km.device_ == "gpu"
    np.testing.assert_array_equal(labels, local.labels_)
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
    assert km.n_iter_ == local.n_iter_


def test_kmeans_parallel_on_the_gpu_engine_per_block_on_the_emulated_device(request, rng):
    """k-means||'s passes on the GPU engine (here the emulated device): the distances
    the blocks keep, the draws and the candidates' weights give the CPU engine's fit."""
    fit_device(request, "emulated")
    # Overlapping clusters and two iterations: different initial centers would show.
    X = _random_data(rng, 700, 3, 5, np.float64, separated=False)
    Xd = da.from_array(X, chunks=(250, 3))
    seed = int(rng.integers(2**31))
    with dask.config.set(scheduler="sync"):
        fits = {device: gkd.KMeans(5, random_state=seed, max_iter=2, tol=0,
                                   device=device).fit(Xd)
                for device in ("cpu", "gpu")}
        labels = {device: km.labels_.compute() for device, km in fits.items()}
    assert fits["gpu"].device_ == "gpu"
    np.testing.assert_array_equal(labels["gpu"], labels["cpu"])
    np.testing.assert_allclose(fits["gpu"].cluster_centers_, fits["cpu"].cluster_centers_,
                               rtol=1e-12, atol=1e-12)
    assert fits["gpu"].inertia_ == pytest.approx(fits["cpu"].inertia_, rel=1e-12)


# ------------------------------------------------------------------ bad input

def test_unknown_chunk_sizes_are_refused():
    X = da.from_array(np.arange(40.0).reshape(20, 2), chunks=(5, 2))
    X = X[X[:, 0] > 3]  # boolean indexing: NaN chunk sizes
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        gkd.KMeans(2).fit(X)


def test_chunks_split_along_features_are_refused():
    X = da.ones((20, 4), chunks=(10, 2))
    with pytest.raises(ValueError, match=r"split along its features.*rechunk\(\{1: -1\}\)"):
        gkd.KMeans(2).fit(X)


def test_nan_in_a_block_is_named_before_any_iteration(monkeypatch):
    X = np.random.default_rng(0).standard_normal((30, 2))
    X[17, 1] = np.nan
    ran = []
    monkeypatch.setattr(gkd, "lloyd", lambda *a, **k: ran.append(1))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match=r"NaN or infinity.*numbered \[1\]"):
            gkd.KMeans(2).fit(da.from_array(X, chunks=(10, 2)))
    assert not ran


class _FakeDeviceArray(np.ndarray):
    """A NumPy array that the dispatch takes for a CuPy block."""


def _as_fake_device(block):
    return block.view(_FakeDeviceArray)


@pytest.fixture
def fake_cupy_blocks(monkeypatch):
    real = gkd.is_device_array
    monkeypatch.setattr(gkd, "is_device_array",
                        lambda x: isinstance(x, _FakeDeviceArray) or real(x))
    monkeypatch.setattr(gkd._validation, "array_module", lambda x: np)


def test_mixed_numpy_and_cupy_blocks_are_refused(fake_cupy_blocks):
    X = da.from_array(np.ones((20, 2)), chunks=(5, 2))
    blocks = [X.blocks[i] for i in range(4)]
    blocks[2] = blocks[2].map_blocks(_as_fake_device)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(TypeError, match="mix NumPy and CuPy"):
            gkd.KMeans(2).fit(da.concatenate(blocks))


def test_cupy_blocks_with_device_cpu_are_refused(fake_cupy_blocks):
    X = da.from_array(np.ones((20, 2)), chunks=(5, 2)).map_blocks(_as_fake_device)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="CuPy arrays but device='cpu'"):
            gkd.KMeans(2, device="cpu").fit(X)


def test_cupy_blocks_run_the_gpu_engine_on_the_emulated_device(request, rng, monkeypatch,
                                                               fake_cupy_blocks):
    """Blocks the dispatch takes for CuPy arrays, with device="auto": the fit, its
    validation pass and inference go where CuPy blocks go, each block on the GPU engine,
    here the emulated device (tests/cudaemu) in place of a worker's GPU. Real CuPy
    arrays (their memory, cupy.asarray of a NumPy block, a dask_cuda worker) are not
    tested here: that needs a GPU."""
    device = fit_device(request, "emulated")
    X = _random_data(rng, 700, 3, 5, np.float64, separated=False)
    init = X[:5]
    local = gpukmeans.KMeans(5, init=init, device=device).fit(X)
    devices = []
    real_get_engine = gkd.get_engine
    monkeypatch.setattr(gkd, "get_engine",
                        lambda device, *shape: devices.append(device) or real_get_engine(
                            device, *shape))
    with dask.config.set(scheduler="sync"):
        Xd = da.from_array(X, chunks=(250, 3)).map_blocks(_as_fake_device)
        km = gkd.KMeans(5, init=init).fit(Xd)
        labels = km.labels_.compute()
        predicted = km.predict(Xd).compute()
    assert km.device_ == "gpu" and devices and set(devices) == {"gpu"}
    np.testing.assert_array_equal(labels, local.labels_)
    np.testing.assert_array_equal(predicted, local.labels_)
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
    assert km.n_iter_ == local.n_iter_


@pytest.mark.parametrize("params, error, match", [
    ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
    ({"init": "kmeans"}, ValueError, "init must be one of"),
    ({"init": len}, TypeError, "init must be one of"),
    ({"oversampling_factor": 0}, ValueError, "oversampling_factor"),
    ({"init_max_iter": 0}, ValueError, "init_max_iter must be >= 1"),
    ({"tol": -1.0}, ValueError, "tol must be"),
    ({"device": "tpu"}, ValueError, "device must be one of"),
    ({"random_state": "seed"}, TypeError, "random_state"),
])
def test_bad_parameters_are_named(params, error, match):
    with pytest.raises(error, match=match) as caught:
        gkd.KMeans(**params).fit(da.ones((20, 2), chunks=(10, 2)))
    # scikit-learn's InvalidParameterError: caught by either except clause, and by its own.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)
    assert isinstance(caught.value, gpukmeans.InvalidParameterError)


def test_object_weights_convert_and_a_bad_seed_is_named_before_any_work():
    from decimal import Decimal

    X = da.from_array(np.arange(40, dtype=np.float64).reshape(20, 2), chunks=(10, 2))
    weights = np.linspace(0.5, 3.0, 20)
    with dask.config.set(scheduler="sync"):
        expected = gkd.KMeans(2, random_state=0).fit(X, sample_weight=weights)
        model = gkd.KMeans(2, random_state=0).fit(
            X, sample_weight=[Decimal(float(w)) for w in weights])
        with pytest.raises(ValueError, match="do not convert"):
            gkd.KMeans(2).fit(X, sample_weight=["a"] * 20)
        with pytest.raises(ValueError, match="random_state must be None, an int in"):
            gkd.KMeans(2, random_state=-1).fit(X, sample_weight=["a"] * 20)
    np.testing.assert_array_equal(model.cluster_centers_, expected.cluster_centers_)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # X is all ones
def test_bad_data_and_weights_are_named():
    X = da.ones((20, 2), chunks=(10, 2))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match="n_samples=20 should be >= n_clusters=30"):
            gkd.KMeans(30).fit(X)
        with pytest.raises(ValueError, match="Expected a 2D dask array"):
            gkd.KMeans(2).fit(da.ones(20, chunks=10))
        with pytest.raises(TypeError, match="real numbers"):
            gkd.KMeans(2).fit(da.from_array(np.array([["a", "b"]] * 20), chunks=(10, 2)))
        with pytest.raises(ValueError, match=r"sample_weight.shape == \(19,\)"):
            gkd.KMeans(2).fit(X, sample_weight=np.ones(19))
        with pytest.raises(ValueError, match="Negative values.*sample_weight"):
            gkd.KMeans(2).fit(X, sample_weight=-np.ones(20))
        with pytest.raises(ValueError, match="at least one positive"):
            gkd.KMeans(2).fit(X, sample_weight=np.zeros(20))
        with pytest.raises(ValueError, match="shape of the initial centers"):
            gkd.KMeans(2, init=np.ones((3, 2))).fit(X)
        with pytest.raises(ValueError, match="expecting 2 features"):
            gkd.KMeans(2, init=np.eye(2)).fit(X).predict(da.ones((4, 3), chunks=(2, 3)))


@pytest.mark.parametrize("dtype, heavy, held, lost", [
    (np.float32, 1.0, 2.0**-120, 2.0**-127), (np.float64, 1.0, 2.0**-1000, 1e-310),
    (np.float64, 1e300, 1e-5, 1e-300),
])
def test_weights_that_would_be_subnormal_are_refused_as_gpukmeans_refuses_them(
        dtype, heavy, held, lost):
    """As gpukmeans.KMeans (test_robustness.py): positive weights that, divided by the
    power of two of the largest, fall below the dtype's smallest normal number are an
    error before any pass (a float64 cluster of 1e-310 weights beside 1 had an infinite
    center); the smallest normal ones fit, and give the clusters' means."""
    X = np.repeat(np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]], dtype=dtype),
                  10, axis=0)
    init = X[[0, 20]]
    Xd = da.from_array(X, chunks=(10, 2))
    with dask.config.set(scheduler="sync"):
        with pytest.raises(ValueError, match=(
                rf"sample_weight spans more than {np.dtype(dtype)} can hold: positive weights "
                rf"as small as {lost:.3g} are over 2\*\*{-np.finfo(dtype).minexp - 1} times")):
            gkd.KMeans(2, init=init).fit(Xd, sample_weight=np.r_[np.full(20, heavy),
                                                                 np.full(20, lost)])
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            km = gkd.KMeans(2, init=init).fit(Xd, sample_weight=np.r_[np.full(20, heavy),
                                                                      np.full(20, held)])
    np.testing.assert_array_equal(km.labels_.compute(), np.repeat([0, 1], 20))
    np.testing.assert_allclose(km.cluster_centers_, [[0.05, 0.0], [10.05, 10.0]], rtol=0,
                               atol=8 * np.finfo(dtype).eps * 10)


@pytest.mark.parametrize("in_memory", [False, True])
def test_inference_refuses_what_gpukmeans_refuses(in_memory, rng):
    """predict, transform and score check each block as it is computed, as
    gpukmeans.KMeans checks a query: NaN or infinity (predict gave label 0, transform NaN
    distances, score NaN), values past the usable range, and score's weights: negative
    (a positive 'score') or NaN. A reviewer's findings."""
    X = rng.standard_normal((100, 3))
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(2, random_state=0).fit(da.from_array(X, chunks=(25, 3)))
        local = gpukmeans.KMeans(2, init=km.cluster_centers_, n_init=1, max_iter=1,
                                 device="cpu").fit(X)
        bad = X.copy()
        bad[55, 1] = np.nan
        query = bad if in_memory else da.from_array(bad, chunks=(25, 3))
        for method in (km.predict, km.transform, km.score):
            with pytest.raises(ValueError, match="contains NaN"):
                result = method(query)
                if not in_memory and not np.isscalar(result):
                    result.compute()
        huge = da.from_array(X * 1e200, chunks=(25, 3))
        with pytest.raises(ValueError, match="X holds values up to"):
            km.predict(huge).compute()
        query = X if in_memory else da.from_array(X, chunks=(25, 3))
        for weights, message in ((-np.ones(100), "Negative values"),
                                 (np.r_[np.ones(99), np.nan], "NaN")):
            with pytest.raises(ValueError, match=message):
                km.score(query, sample_weight=weights)
            with pytest.raises(ValueError, match=message):
                local.score(X, sample_weight=weights)  # the same refusal in memory


def test_a_number_as_sample_weight_is_taken_as_gpukmeans_takes_it(rng):
    """A number is its copies for every sample, converted as gpukmeans.KMeans converts
    it (one helper: a Decimal is its float64; 2, a power of two, gives the unweighted fit
    bit for bit); a complex
    number is refused by name (``float(1j)`` raised a bare TypeError)."""
    from decimal import Decimal

    X = rng.standard_normal((200, 3))
    Xd = da.from_array(X, chunks=(50, 3))
    with dask.config.set(scheduler="sync"):
        params = dict(init=X[:3], max_iter=5)
        plain = gkd.KMeans(3, **params).fit(Xd)
        for weight in (2, Decimal("2.0"), np.float32(2)):
            weighted = gkd.KMeans(3, **params).fit(Xd, sample_weight=weight)
            np.testing.assert_array_equal(weighted.cluster_centers_, plain.cluster_centers_)
            assert weighted.inertia_ == pytest.approx(2 * plain.inertia_, rel=1e-12)
            assert plain.score(Xd, sample_weight=weight) == pytest.approx(
                -weighted.inertia_, rel=1e-12)
        for estimator, data in ((gkd.KMeans(3, **params), Xd),
                                (gpukmeans.KMeans(3, n_init=1, device="cpu", **params), X)):
            with pytest.raises(ValueError, match="sample_weight must hold real numbers, "
                                                "got dtype complex128"):
                estimator.fit(data, sample_weight=1j)


def test_feature_names_as_gpukmeans_keeps_them(rng):
    """An in-memory DataFrame's columns are kept and checked at inference, as
    gpukmeans.KMeans keeps them (they were dropped: a helper's find); the output names
    are scikit-learn's; a refit on a dask array forgets the columns. No set_output:
    transform's lazy array would be computed whole into a pandas frame."""
    pd = pytest.importorskip("pandas")

    frame = pd.DataFrame(rng.standard_normal((120, 3)), columns=["a", "b", "c"])
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(3, random_state=0, device="cpu").fit(frame)
        local = gpukmeans.KMeans(3, random_state=0, device="cpu").fit(frame)
        np.testing.assert_array_equal(km.feature_names_in_, ["a", "b", "c"])
        np.testing.assert_array_equal(km.get_feature_names_out(),
                                      local.get_feature_names_out())
        np.testing.assert_array_equal(km.predict(frame), km.labels_)
        with pytest.raises(ValueError, match="feature names should match"):
            km.predict(frame.rename(columns={"a": "z"}))
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            km.transform(frame.to_numpy())
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            km.predict(da.from_array(frame.to_numpy(), chunks=(40, 3))).compute()
        km.fit(da.from_array(frame.to_numpy(), chunks=(40, 3)))
        assert not hasattr(km, "feature_names_in_")
        np.testing.assert_array_equal(km.get_feature_names_out(),
                                      ["kmeans0", "kmeans1", "kmeans2"])
    assert not hasattr(km, "set_output")


def test_kmeans_plusplus_with_fewer_positive_weights_than_clusters(rng):
    """k-means++ on a sample of the samples of positive weight, when there are fewer of
    those than clusters: each is a center, as in gpukmeans.KMeans (the sample's k-means++
    said 'n_samples=2 should be >= n_clusters=3' of a 1,000-row X, after two passes)."""
    X = rng.standard_normal((1000, 4))
    weights = np.r_[np.ones(2), np.zeros(998)]
    with dask.config.set(scheduler="sync"):
        with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="distinct clusters"):
            km = gkd.KMeans(3, init="k-means++", random_state=0).fit(
                da.from_array(X, chunks=(200, 4)), sample_weight=weights)
    nearest = scipy_distance.cdist(X[:2], km.cluster_centers_).min(axis=1)
    np.testing.assert_array_less(nearest, 1e-12)
    assert km.inertia_ == pytest.approx(0, abs=1e-20)


def test_sparse_blocks_and_an_unusable_gpu_are_named_before_any_work(monkeypatch):
    """Blocks that are scipy.sparse matrices (TypeError: ufunc 'isfinite' not
    supported) and device='gpu' with no usable GPU (CUDA's own error, after the
    validation pass) get errors that say so, before any pass."""
    import scipy.sparse

    X = da.from_array(np.random.default_rng(0).standard_normal((40, 3)), chunks=(10, 3))
    sparse = X.map_blocks(scipy.sparse.csr_matrix)
    monkeypatch.setattr(gkd.KMeans, "_data_stats", None)  # any pass would fail otherwise
    with dask.config.set(scheduler="sync"):
        with pytest.raises(TypeError, match="blocks are sparse matrices"):
            gkd.KMeans(2).fit(sparse)
        monkeypatch.setattr(gkd, "resolve_device", lambda device: (_ for _ in ()).throw(
            ValueError("device='gpu' was requested but no GPU is usable: no CuPy.")))
        with pytest.raises(ValueError, match="no GPU is usable"):
            gkd.KMeans(2, device="gpu").fit(X)
    monkeypatch.undo()
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(2, random_state=0).fit(X)
        with pytest.raises(TypeError, match="blocks are sparse matrices"):
            km.predict(sparse)


def test_a_failed_fit_leaves_the_fitted_model_unchanged():
    X = da.from_array(np.random.default_rng(0).standard_normal((40, 2)), chunks=(10, 2))
    with dask.config.set(scheduler="sync"):
        km = gkd.KMeans(3, random_state=0).fit(X)
        before = (km.cluster_centers_.copy(), km.inertia_, km.n_iter_)
        bad = np.random.default_rng(1).standard_normal((40, 2))
        bad[3] = np.inf
        with pytest.raises(ValueError, match="NaN or infinity"):
            km.fit(da.from_array(bad, chunks=(10, 2)))
    np.testing.assert_array_equal(km.cluster_centers_, before[0])
    assert (km.inertia_, km.n_iter_) == before[1:]


def test_dask_is_imported_only_by_gpukmeans_dask():
    """``import gpukmeans`` (and a single-machine fit) never imports Dask; importing
    ``gpukmeans.dask`` prints nothing."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, gpukmeans\n"
        "gpukmeans.KMeans(2, device='cpu').fit(np.eye(4))\n"
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))\n"
        "import gpukmeans.dask\n"
        "print(gpukmeans.dask.KMeans.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [os.path.dirname(os.path.dirname(gpukmeans.__file__)),
                                 os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "KMeans"]
    assert result.stderr == ""


@pytest.mark.gpu
@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_cupy_blocks_on_a_real_gpu(rng, processes):
    """Real CuPy blocks on a LocalCluster worker that shares this machine's GPU (what
    dask_cuda's one worker per GPU gives, with one GPU): each block runs the GPU engine,
    and the fit is gpukmeans.KMeans's on the whole CuPy array; labels and predictions
    stay on the GPU. Run by benchmarks/gpu_check.sh, whose device carries Dask's wheels."""
    cupy = pytest.importorskip("cupy")
    X = _random_data(rng, 20_000, 16, 8, np.float64, separated=False)
    init = X[:8]
    local = gpukmeans.KMeans(8, init=init, device="gpu").fit(cupy.asarray(X))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=processes,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster):
        Xd = da.from_array(X, chunks=(5_000, 16)).map_blocks(cupy.asarray)
        km = gkd.KMeans(8, init=init).fit(Xd)
        labels = km.labels_.compute()
        predicted = km.predict(Xd).compute()
    assert km.device_ == "gpu"
    assert isinstance(labels, cupy.ndarray) and isinstance(predicted, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(labels), cupy.asnumpy(local.labels_))
    np.testing.assert_array_equal(cupy.asnumpy(predicted), cupy.asnumpy(local.labels_))
    assert km.inertia_ == pytest.approx(local.inertia_, rel=1e-12)
    assert km.n_iter_ == local.n_iter_
