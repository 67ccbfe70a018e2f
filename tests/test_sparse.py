"""Sparse input (scipy.sparse on the CPU, CSR on the emulated GPU): against scikit-learn's
own sparse k-means from the same initial centers, against float64 dense references, and
on the edge cases of sparse data (empty rows and columns, duplicate and unsorted entries,
other formats, integers, weights), on both engines.

scikit-learn's own k-means tests run on sparse containers too (test_sklearn_suite.py).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans
from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus

from conftest import fit_device
from gpukmeans import KMeans, MiniBatchKMeans, kmeans_plusplus
from gpukmeans._sparse import is_sparse
from label_checks import assert_labels_nearest_in_float64, near_tie_clusters, sq_dist64

ENGINES = ["cpu", "emulated", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=ENGINES)
def device(request):
    """The device a test fits on: the CPU engine, or the GPU engine on the emulator."""
    return fit_device(request, request.param)


def tfidf_like(rng, n_samples, n_features, nnz_per_row, dtype=np.float64, unit=False):
    """Rows of Zipf-distributed distinct terms (popular terms in many rows), positive
    values, each row scaled to unit norm as TfidfVectorizer gives (``unit``), or to a norm
    of its own in [0.5, 1.5]: with unit rows, two centers that are rows (k-means++'s)
    share the same ``||c||^2``, an exact tie that its last bit decides (see
    :func:`_init_rows`)."""
    rows, cols = [], []
    ranks = np.arange(1, n_features + 1)
    p = 1.0 / ranks
    p /= p.sum()
    for i in range(n_samples):
        n = min(n_features, max(1, rng.poisson(nnz_per_row)))
        terms = rng.choice(n_features, size=n, replace=False, p=p)
        rows.append(np.full(n, i))
        cols.append(terms)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    values = rng.uniform(0.1, 3.0, rows.size)
    X = sp.csr_matrix((values, (rows, cols)), shape=(n_samples, n_features))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1))).ravel()
    scales = np.ones(n_samples) if unit else rng.uniform(0.5, 1.5, n_samples)
    X = sp.diags(scales / np.where(norms > 0, norms, 1.0)) @ X
    return X.tocsr().astype(dtype)


def _init_rows(rng, X, n_clusters):
    """Rows of X, each scaled by its own factor: unit rows as centers make every sample
    that shares no term with two of them an exact tie (both ``||c||^2 - 2 x.c`` are
    ``||c||^2 = 1``), which the last bit of ``||c||^2`` decides, and the GPU engine sums
    ``||c||^2`` in another order than scikit-learn (test_exact_ties_are_scikit_learns)."""
    rows = X[rng.choice(X.shape[0], n_clusters, replace=False)].toarray()
    return rows * rng.uniform(0.5, 1.5, (n_clusters, 1))


def _snapshot(X):
    return X.data.copy(), X.indices.copy(), X.indptr.copy()


def _assert_unchanged(X, snapshot):
    for now, before in zip((X.data, X.indices, X.indptr), snapshot):
        np.testing.assert_array_equal(now, before)


@pytest.mark.parametrize("n_samples, n_features, n_clusters, nnz",
                         [(600, 300, 8, 12), (1000, 2000, 20, 30), (300, 50, 3, 5)])
@pytest.mark.parametrize("weighted", [False, True])
def test_float64_labels_are_scikit_learns(rng, device, n_samples, n_features, n_clusters, nnz,
                                          weighted):
    X = tfidf_like(rng, n_samples, n_features, nnz)
    sample_weight = rng.uniform(0.5, 2.0, n_samples) if weighted else None
    init = _init_rows(rng, X, n_clusters)
    snapshot = _snapshot(X)
    ours = KMeans(n_clusters, init=init, n_init=1, device=device).fit(
        X, sample_weight=sample_weight)
    theirs = SKKMeans(n_clusters, init=init, n_init=1).fit(X, sample_weight=sample_weight)
    _assert_unchanged(X, snapshot)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-12)
    assert isinstance(ours.cluster_centers_, np.ndarray)
    assert ours.cluster_centers_.dtype == np.float64


def test_exact_ties_are_scikit_learns(rng):
    """On the CPU, unit rows as centers (many exact ties): the same ``||c||^2`` as
    scikit-learn's, so the same tie-breaks, at every step."""
    X = tfidf_like(rng, 800, 300, 8, unit=True)
    init = X[rng.choice(800, 12, replace=False)].toarray()
    ours = KMeans(12, init=init, n_init=1, device="cpu").fit(X)
    theirs = SKKMeans(12, init=init, n_init=1).fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("n_clusters", [5, 40])
def test_float32_labels_are_exactly_nearest(rng, device, n_clusters):
    X = tfidf_like(rng, 800, 500, 20, dtype=np.float32)
    init = _init_rows(rng, X, n_clusters)
    km = KMeans(n_clusters, init=init, n_init=1, max_iter=5, tol=0, device=device).fit(X)
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X).dtype == np.float32
    assert_labels_nearest_in_float64(km.labels_, X.toarray(), km.cluster_centers_)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    # The float64 run from the same centers follows the same path, but where a sample's
    # two nearest centers lie within the float32 rounding of the centers (the runs'
    # centers differ by it from the second step): then both runs' labels stay the
    # nearest of their own centers, and differ at few samples.
    km64 = KMeans(n_clusters, init=init, n_init=1, max_iter=5, tol=0, device=device).fit(
        X.astype(np.float64))
    differ = np.flatnonzero(km.labels_ != km64.labels_)
    if differ.size == 0:
        np.testing.assert_allclose(km.cluster_centers_, km64.cluster_centers_, atol=1e-6)
    else:
        assert differ.size <= 0.01 * X.shape[0], f"{differ.size} labels differ"
        assert_labels_nearest_in_float64(km64.labels_, X.toarray(), km64.cluster_centers_)
        dense = X[differ].toarray()
        for centers in (km.cluster_centers_, km64.cluster_centers_):
            ties = near_tie_clusters(dense, centers, np.float32)
            assert set(km.labels_[differ]) | set(km64.labels_[differ]) <= ties, differ


def test_sparse_and_dense_steps_agree(rng, device):
    """Two steps from the same centers. Not rows of X: unit rows make every sample that
    shares no term with two centers an exact tie (both distances are ``||c||^2 = 1``),
    which the last bits of the dense fit's centred arithmetic decide otherwise; whole
    fits need not agree either, for the same reason (nor do scikit-learn's own dense and
    sparse fits)."""
    X = tfidf_like(rng, 500, 200, 10)
    init = rng.uniform(0.0, 0.2, (6, 200))
    sparse = KMeans(6, init=init, n_init=1, max_iter=2, device=device).fit(X)
    dense = KMeans(6, init=init, n_init=1, max_iter=2, device=device).fit(X.toarray())
    np.testing.assert_array_equal(sparse.labels_, dense.labels_)
    np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_, atol=1e-12)
    np.testing.assert_allclose(sparse.inertia_, dense.inertia_, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_transform_score(rng, device, dtype):
    X = tfidf_like(rng, 400, 300, 15, dtype=dtype)
    queries = tfidf_like(rng, 50, 300, 15, dtype=dtype)
    sample_weight = rng.uniform(0.0, 2.0, 50)
    km = KMeans(7, random_state=0, device=device).fit(X)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    dense_queries = queries.toarray().astype(np.float64)
    d = sq_dist64(dense_queries, km.cluster_centers_)
    labels = km.predict(queries)
    assert_labels_nearest_in_float64(labels, dense_queries, km.cluster_centers_)
    distances = km.transform(queries)
    assert distances.shape == (50, 7) and distances.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(distances, np.sqrt(d), rtol=rtol, atol=rtol)
    expected_score = -(sample_weight * d[np.arange(50), labels]).sum()
    np.testing.assert_allclose(km.score(queries, sample_weight=sample_weight), expected_score,
                               rtol=rtol)
    # A dense query gives the same answers as its sparse form.
    np.testing.assert_array_equal(km.predict(queries.toarray()), labels)


def test_sparse_queries_on_a_dense_fit(rng, device):
    X = tfidf_like(rng, 300, 100, 10)
    km = KMeans(5, random_state=0, device=device).fit(X.toarray())
    queries = tfidf_like(rng, 40, 100, 10)
    np.testing.assert_array_equal(km.predict(queries), km.predict(queries.toarray()))
    np.testing.assert_allclose(km.transform(queries), km.transform(queries.toarray()),
                               rtol=1e-12, atol=1e-12)


def test_kmeans_plusplus_picks_scikit_learns_rows(rng, device):
    X = tfidf_like(rng, 700, 400, 15)
    sample_weight = rng.uniform(0.5, 1.5, 700)
    centers, indices = kmeans_plusplus(X, 12, sample_weight=sample_weight, random_state=3,
                                       device=device)
    sk_centers, sk_indices = sk_kmeans_plusplus(X, 12, sample_weight=sample_weight,
                                                random_state=3)
    np.testing.assert_array_equal(indices, sk_indices)
    np.testing.assert_array_equal(centers, sk_centers)
    assert isinstance(centers, np.ndarray) and centers.dtype == np.float64


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "bsr"])
def test_other_formats_convert_to_csr(rng, device, fmt):
    X = tfidf_like(rng, 200, 80, 8)
    init = _init_rows(rng, X, 4)
    expected = KMeans(4, init=init, n_init=1, device=device).fit(X)
    other = X.asformat(fmt)
    km = KMeans(4, init=init, n_init=1, device=device).fit(other)
    np.testing.assert_array_equal(km.labels_, expected.labels_)
    np.testing.assert_array_equal(km.predict(other), expected.labels_)


def test_sparse_arrays_and_integer_data(rng, device):
    dense = rng.integers(0, 3, size=(300, 40)) * (rng.random((300, 40)) < 0.2)
    init = dense[rng.choice(300, 4, replace=False)].astype(np.float64)
    for container in (sp.csr_matrix, sp.csr_array):
        X = container(dense)
        assert X.dtype.kind == "i"
        km = KMeans(4, init=init, n_init=1, device=device).fit(X)
        sk = SKKMeans(4, init=init, n_init=1).fit(X)
        np.testing.assert_array_equal(km.labels_, sk.labels_)
        np.testing.assert_array_equal(km.cluster_centers_, sk.cluster_centers_)
        assert km.cluster_centers_.dtype == np.float64


def test_pandas_sparse_dataframe_is_sparse_input(rng):
    """A DataFrame of sparse columns (``DataFrame.sparse.from_spmatrix``) is taken as
    scikit-learn takes it: as its sparse matrix, with its column names, never densified
    (it was refused as "sparse data passed, dense data required")."""
    pd = pytest.importorskip("pandas")
    X = tfidf_like(rng, 200, 30, 5)
    X.sort_indices()  # the DataFrame's matrix has sorted entries: the same sums, bit for bit
    columns = [f"term{j}" for j in range(X.shape[1])]
    frame = pd.DataFrame.sparse.from_spmatrix(X, columns=columns)
    init = _init_rows(rng, X, 3)
    for metric in ("euclidean", "cosine"):
        X_fit = X[X.getnnz(axis=1) > 0] if metric == "cosine" else X
        frame_fit = pd.DataFrame.sparse.from_spmatrix(X_fit, columns=columns)
        expected = KMeans(3, init=init, n_init=1, device="cpu", metric=metric).fit(X_fit)
        km = KMeans(3, init=init, n_init=1, device="cpu", metric=metric).fit(frame_fit)
        np.testing.assert_array_equal(km.labels_, expected.labels_)
        np.testing.assert_array_equal(km.cluster_centers_, expected.cluster_centers_)
        assert list(km.feature_names_in_) == columns
        np.testing.assert_array_equal(km.predict(frame_fit), expected.labels_)
        assert km.score(frame_fit) == expected.score(X_fit)
        with pytest.raises(ValueError, match="feature names should match"):
            km.predict(frame_fit.rename(columns={"term0": "other"}))
    sk = SKKMeans(3, init=init, n_init=1).fit(frame)
    np.testing.assert_array_equal(KMeans(3, init=init, n_init=1, device="cpu").fit(frame).labels_,
                                  sk.labels_)
    np.testing.assert_array_equal(kmeans_plusplus(frame, 3, random_state=0)[1],
                                  sk_kmeans_plusplus(X, 3, random_state=0)[1])
    model = MiniBatchKMeans(3, random_state=0, device="cpu").partial_fit(frame)
    assert list(model.feature_names_in_) == columns
    model.partial_fit(frame)
    assert model.n_steps_ == 2


def test_edge_structures(rng, device):
    """Empty rows, empty columns, duplicated rows, one stored value per row."""
    n_samples, n_features = 400, 60
    one_per_row = sp.csr_matrix(
        (rng.uniform(1, 2, n_samples), (np.arange(n_samples), rng.integers(0, 20, n_samples))),
        shape=(n_samples, n_features))  # columns 20 and up are empty
    base = tfidf_like(rng, 100, n_features, 6)
    X = sp.vstack([one_per_row, base, base[:50], sp.csr_matrix((30, n_features))]).tocsr()
    init = _init_rows(rng, X, 9)
    ours = KMeans(9, init=init, n_init=1, device=device).fit(X)
    theirs = SKKMeans(9, init=init, n_init=1).fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-12)
    assert_labels_nearest_in_float64(ours.labels_, X.toarray(), ours.cluster_centers_)


def test_empty_cluster_relocation_is_scikit_learns(rng, device):
    X = tfidf_like(rng, 300, 100, 8)
    init = _init_rows(rng, X, 5)
    init[2] = 50.0  # far from every sample: its cluster empties at the first step
    ours = KMeans(5, init=init, n_init=1, device=device).fit(X)
    theirs = SKKMeans(5, init=init, n_init=1).fit(X)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-12)
    assert len(np.unique(ours.labels_)) == 5


def test_all_zero_matrix(device):
    X = sp.csr_matrix((20, 5))
    with pytest.warns(Warning, match="distinct clusters"):
        km = KMeans(3, random_state=0, device=device).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, 0.0)
    np.testing.assert_array_equal(km.labels_, 0)
    assert km.inertia_ == 0.0


def test_strided_arrays_and_the_callers_attributes(rng, device):
    """A CSR matrix on strided views (``csr_matrix((values[:, 1], indices, indptr))`` keeps
    them) is scikit-learn's input too: it failed in scikit-learn's ``mean_variance_axis``
    with "ndarray is not C-contiguous". And the caller's matrix keeps its own arrays:
    scipy's ``check_format`` rebinds them (prunes them, unifies the index dtypes) on the
    matrix it checks."""
    X = tfidf_like(rng, 300, 80, 8)
    pairs = np.stack([X.data, -X.data], axis=1)  # the values, as one column of a 2-D array
    strided = sp.csr_matrix((pairs[:, 0], X.indices, X.indptr), shape=X.shape)
    assert not strided.data.flags.c_contiguous
    init = _init_rows(rng, X, 4)
    ours = KMeans(4, init=init, n_init=1, device=device).fit(strided)
    theirs = SKKMeans(4, init=init, n_init=1).fit(strided)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(strided), theirs.labels_)
    model = MiniBatchKMeans(4, random_state=0, tol=1e-4, device=device).fit(strided)
    np.testing.assert_array_equal(model.predict(strided), model.labels_)
    # int32 column ids with int64 row pointers, as an attribute assignment leaves them.
    mixed = X.copy()
    mixed.indptr = mixed.indptr.astype(np.int64)
    arrays = (mixed.data, mixed.indices, mixed.indptr)
    KMeans(4, init=init, n_init=1, device=device).fit(mixed).predict(mixed)
    kmeans_plusplus(mixed, 4, random_state=0, device=device)
    for now, before in zip((mixed.data, mixed.indices, mixed.indptr), arrays):
        assert now is before
    assert mixed.indices.dtype == np.int32


def test_unsorted_and_duplicate_entries(rng, device):
    """Unsorted distinct entries are used as stored (scikit-learn's order); duplicate
    entries are summed on a copy, as scipy's own arithmetic (and ``toarray``) counts them."""
    X = tfidf_like(rng, 300, 120, 10)
    init = _init_rows(rng, X, 6)
    expected = KMeans(6, init=init, n_init=1, device=device).fit(X)
    # Unsorted: each row's entries reversed.
    unsorted = X.copy()
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        unsorted.indices[lo:hi] = X.indices[lo:hi][::-1]
        unsorted.data[lo:hi] = X.data[lo:hi][::-1]
    unsorted.has_sorted_indices = False
    snapshot = _snapshot(unsorted)
    km = KMeans(6, init=init, n_init=1, device=device).fit(unsorted)
    sk = SKKMeans(6, init=init, n_init=1).fit(unsorted)
    _assert_unchanged(unsorted, snapshot)
    np.testing.assert_array_equal(km.labels_, sk.labels_)
    np.testing.assert_array_equal(km.labels_, expected.labels_)
    # Duplicates: each value split in two halves stored apart.
    parts = [(np.tile(X.indices[lo:hi], 2), np.tile(X.data[lo:hi] / 2, 2))
             for lo, hi in zip(X.indptr[:-1], X.indptr[1:])]
    duplicated = sp.csr_matrix(
        (np.concatenate([d for _, d in parts]), np.concatenate([i for i, _ in parts]),
         2 * X.indptr), shape=X.shape)  # no sum_duplicates by this constructor
    snapshot = _snapshot(duplicated)
    assert duplicated.nnz == 2 * X.nnz
    km = KMeans(6, init=init, n_init=1, device=device).fit(duplicated)
    _assert_unchanged(duplicated, snapshot)
    np.testing.assert_array_equal(km.labels_, expected.labels_)
    np.testing.assert_allclose(km.cluster_centers_, expected.cluster_centers_, atol=1e-12)
    # k-means++ from the summed entries: the same picks as from the canonical matrix.
    _, picked = kmeans_plusplus(duplicated, 6, random_state=0, device=device)
    _, canonical = kmeans_plusplus(X, 6, random_state=0, device=device)
    np.testing.assert_array_equal(picked, canonical)


@pytest.mark.parametrize("make_init", ["array", "callable"])
def test_init_past_the_range_of_float32_data_is_refused(rng, make_init):
    """Initial centers are cast to X's dtype: float64 values past float32's range became
    infinite there, and KMeans went on from them (MiniBatchKMeans ended with NaN centers)
    where scikit-learn refuses them. Sparse and dense X alike."""
    X = tfidf_like(rng, 100, 30, 5, dtype=np.float32)
    centers = X[:3].toarray().astype(np.float64)
    centers[1, 2] = -1e39
    init = centers if make_init == "array" else (lambda data, n_clusters, random_state: centers)
    for data in (X, X.toarray()):
        for estimator in (KMeans(3, init=init, n_init=1, device="cpu"),
                          MiniBatchKMeans(3, init=init, n_init=1, device="cpu")):
            with pytest.raises(ValueError, match="init holds values beyond the range of float32"):
                estimator.fit(data)
        # A float64 fit takes them.
        KMeans(3, init=init, n_init=1, device="cpu").fit(data.astype(np.float64))


def test_random_init_and_callable_init(rng, device):
    X = tfidf_like(rng, 300, 100, 10)
    km = KMeans(5, init="random", n_init=2, random_state=0, device=device).fit(X)
    sk = SKKMeans(5, init="random", n_init=2, random_state=0).fit(X)
    np.testing.assert_array_equal(km.labels_, sk.labels_)
    seen = []

    def init(data, n_clusters, random_state):
        seen.append(data)
        if isinstance(data.data, np.ndarray):  # a CuPy array cannot be marked read-only
            with pytest.raises(ValueError):
                data.data[0] = 1.0  # the caller's matrix must not be writable through init
        return data[:n_clusters].toarray()

    snapshot = _snapshot(X)
    KMeans(5, init=init, n_init=1, device=device).fit(X)
    _assert_unchanged(X, snapshot)
    assert is_sparse(seen[0])  # scipy's, or cupyx's on a real GPU


@pytest.mark.parametrize("X, error, match", [
    (sp.csr_matrix(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]])), ValueError, "NaN"),
    (sp.csr_matrix(np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]])), ValueError, "infinity"),
    (sp.csr_matrix((0, 3)), ValueError, "0 sample"),
    (sp.csr_matrix(np.ones((3, 2), dtype=complex)), ValueError, "[Cc]omplex"),
    (sp.csr_matrix(np.array([[1e30, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)),
     ValueError, "Rescale"),
])
def test_bad_sparse_input(X, error, match):
    with pytest.raises(error, match=match):
        KMeans(2, n_init=1, device="cpu").fit(X)


def test_predict_checks_sparse_queries(rng):
    km = KMeans(3, random_state=0, device="cpu").fit(tfidf_like(rng, 100, 30, 5))
    with pytest.raises(ValueError, match="30 features"):
        km.predict(tfidf_like(rng, 10, 31, 5))
    with pytest.raises(ValueError, match="NaN"):
        km.predict(sp.csr_matrix(np.array([[np.nan] * 30])))
    # A float32 query for a float64 model, and the other way round, is cast.
    queries = tfidf_like(rng, 10, 30, 5)
    np.testing.assert_array_equal(km.predict(queries.astype(np.float32)),
                                  km.predict(queries.astype(np.float32).toarray()))


def test_cpu_engine_independent_of_thread_count(rng):
    from gpukmeans import _cpu_runtime

    X = tfidf_like(rng, 3000, 400, 10)
    init = _init_rows(rng, X, 16)
    fits = []
    for n_threads in (1, 2):
        _cpu_runtime.set_num_threads(n_threads)
        try:
            fits.append(KMeans(16, init=init, n_init=1, device="cpu").fit(X))
        finally:
            import numba

            _cpu_runtime.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    np.testing.assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    assert fits[0].inertia_ == fits[1].inertia_


@pytest.mark.parametrize("kwargs", [{}, {"reassignment_ratio": 0.5}, {"init": "random"}])
def test_minibatch_is_scikit_learns(rng, device, kwargs):
    """From the same random_state, scikit-learn's batches, centers to 1e-10, labels."""
    X = tfidf_like(rng, 1500, 200, 10)
    sample_weight = rng.uniform(0.5, 2.0, 1500)
    snapshot = _snapshot(X)
    ours = MiniBatchKMeans(6, random_state=0, batch_size=128, device=device, **kwargs).fit(
        X, sample_weight=sample_weight)
    theirs = SKMiniBatchKMeans(6, random_state=0, batch_size=128, **kwargs).fit(
        X, sample_weight=sample_weight)
    _assert_unchanged(X, snapshot)
    assert ours.n_steps_ == theirs.n_steps_
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    np.testing.assert_allclose(ours.inertia_, theirs.inertia_, rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_minibatch_partial_fit(rng, device):
    """float64 batches: scikit-learn's centers. float32: the exactly nearest labels (not
    scikit-learn's float32 ones, which round the many exact ties of unit rows otherwise)."""
    X = tfidf_like(rng, 1200, 150, 8)
    sample_weight = rng.uniform(0.5, 2.0, 1200)
    ours = MiniBatchKMeans(5, random_state=0, device=device)
    theirs = SKMiniBatchKMeans(5, random_state=0)
    ours32 = MiniBatchKMeans(5, random_state=0, device=device)
    for start in range(0, 1200, 300):
        batch, weights = X[start:start + 300], sample_weight[start:start + 300]
        ours.partial_fit(batch, sample_weight=weights)
        theirs.partial_fit(batch, sample_weight=weights)
        ours32.partial_fit(batch.astype(np.float32), sample_weight=weights)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=0,
                               atol=1e-10)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours32.cluster_centers_.dtype == np.float32
    assert_labels_nearest_in_float64(ours32.labels_, X[900:].toarray(), ours32.cluster_centers_)


@pytest.mark.gpu
def test_cupy_sparse_in_cupy_out(rng):
    """A cupyx.scipy.sparse matrix stays on the GPU: CuPy labels, centers and
    transform; its float64 labels are the CPU engine's (from the same centers)."""
    import cupy
    import cupyx.scipy.sparse

    X = tfidf_like(rng, 2000, 500, 20)
    init = _init_rows(rng, X, 16)
    X_gpu = cupyx.scipy.sparse.csr_matrix(X)
    km = KMeans(16, init=init, n_init=1).fit(X_gpu)
    assert km.device_ == "gpu"
    assert isinstance(km.labels_, cupy.ndarray) and isinstance(km.cluster_centers_, cupy.ndarray)
    assert isinstance(km.predict(X_gpu), cupy.ndarray)
    assert isinstance(km.transform(X_gpu), cupy.ndarray)
    cpu = KMeans(16, init=init, n_init=1, device="cpu").fit(X)
    np.testing.assert_array_equal(km.labels_.get(), cpu.labels_)
    np.testing.assert_allclose(km.cluster_centers_.get(), cpu.cluster_centers_, atol=1e-12)
    with pytest.raises(ValueError, match="GPU"):
        KMeans(16, init=init, n_init=1, device="cpu").fit(X_gpu)


@pytest.mark.parametrize("bad_index", [10**7, -5])
def test_malformed_csr_is_refused_before_any_work(rng, bad_index):
    """A column index past n_features (or negative) in a hand-built CSR matrix: a
    ValueError naming X, not a crash (scikit-learn's segfaults) or a silent answer."""
    X = sp.random(60, 8, density=0.3, format="csr", random_state=int(rng.integers(1000)))
    broken = X.copy()
    broken.indices[3] = bad_index
    with pytest.raises(ValueError, match="X is not a valid CSR matrix"):
        KMeans(3, device="cpu").fit(broken)
    km = KMeans(3, random_state=0, device="cpu").fit(X)
    with pytest.raises(ValueError, match="X is not a valid CSR matrix"):
        km.predict(broken)
