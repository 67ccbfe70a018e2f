"""Bad input: a clear error naming the parameter, before any work, nothing modified."""

import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.utils._param_validation import InvalidParameterError

import gpukmeans
from gpukmeans import KMeans, MiniBatchKMeans
from gpukmeans import _device, _validation

X_OK = np.arange(40, dtype=np.float64).reshape(20, 2)


def _fit(X=X_OK, sample_weight=None, **params):
    params.setdefault("n_clusters", 2)
    params.setdefault("device", "cpu")
    return KMeans(**params).fit(X, sample_weight=sample_weight)


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), ValueError, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), ValueError, "infinity"),
        (np.empty((0, 2)), ValueError, "0 sample"),
        (np.empty((3, 0)), ValueError, "0 feature"),
        (np.arange(5.0), ValueError, "Expected 2D array"),
        (np.ones((3, 2), dtype=complex), ValueError, "[Cc]omplex"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), ValueError, "string|convert"),
        (np.array([[object(), 1]] * 3, dtype=object), (TypeError, ValueError), "float|number"),
    ],
)
def test_bad_X(X, error, match):
    with pytest.raises(error, match=match):
        _fit(X)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_kmeans_plusplus_names_itself_in_the_finiteness_error(bad, sparse):
    from gpukmeans import kmeans_plusplus

    X = np.ones((10, 2))
    X[3, 1] = bad
    X = scipy.sparse.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity).*") as info:
        kmeans_plusplus(X, 2, random_state=0, device="cpu")
    assert "KMeans" not in str(info.value)
    if np.isnan(bad):
        assert "kmeans_plusplus does not accept missing values" in str(info.value)


# scikit-learn's own check sums X first, and max + max + -inf warns there.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad, match", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_finite_check_is_exact_when_the_mean_overflows(bad, match):
    """The finiteness check rides on the mean: a column of huge finite float32 values
    overflows it without being NaN or infinity (it is refused for its magnitude, which
    would overflow the distances), and a bad value next to them is still named."""
    X = np.ones((6, 3), dtype=np.float32)
    X[:, 1] = np.finfo(np.float32).max
    with pytest.raises(ValueError, match="largest absolute value lies between"):
        _validation.check_fit_data(KMeans(), X, np)
    X[4, 1] = bad
    with pytest.raises(ValueError, match=match):
        _validation.check_fit_data(KMeans(), X, np)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pass_largest_magnitude_is_numpys(dtype):
    """The Numba engine's one pass over X's bits gives NumPy's ``max(X.max(), -X.min())``
    on fresh data of every scale (subnormals, signed zeros, values near the dtype's
    largest), and names NaN before infinity wherever either lies, whatever its sign."""
    from gpukmeans._cpu import largest_magnitude

    rng = np.random.default_rng()
    info = np.finfo(dtype)
    for scale in (1.0, 1e-3, float(info.tiny) * 4, float(info.max) / 8):
        for shape in ((1, 1), (7, 3), (1000, 17), (5000, 64)):
            X = (rng.standard_normal(shape) * scale).astype(dtype)
            X.flat[rng.integers(X.size)] = -0.0
            assert largest_magnitude(X) == max(float(X.max()), -float(X.min()))
            negative = -np.abs(X)  # the largest magnitude is the minimum
            assert largest_magnitude(negative) == -float(negative.min())
    assert largest_magnitude(np.zeros((4, 3), dtype=dtype)) == 0.0
    assert largest_magnitude(np.full((2, 2), -0.0, dtype=dtype)) == 0.0
    X = rng.standard_normal((3000, 5)).astype(dtype)
    X.flags.writeable = False  # the caller's read-only data
    assert largest_magnitude(X) == max(float(X.max()), -float(X.min()))
    for bad in (np.inf, -np.inf):
        X = rng.standard_normal((3000, 5)).astype(dtype)
        X[rng.integers(3000), rng.integers(5)] = bad
        assert largest_magnitude(X) == np.inf
        X[rng.integers(3000), rng.integers(5)] = -np.nan if bad < 0 else np.nan
        assert np.isnan(largest_magnitude(X))


def test_float32_scan_gives_the_three_passes():
    """Validation's one pass over large float32 data (the Numba engine's) gives NumPy's
    largest magnitude, the row norms of the engine's own pass bit for bit, and the
    column means of float64 arithmetic rounded to float32, on fresh data of every scale,
    the same bits with one thread or two, and with NumPy's route for smaller data
    (:func:`~gpukmeans._validation.float32_column_means`, both of its branches); NaN and
    infinity make both the magnitude and the mean non-finite."""
    import numba

    from gpukmeans import _cpu
    from gpukmeans._validation import float32_column_means

    rng = np.random.default_rng()
    info = np.finfo(np.float32)
    for scale in (1.0, 1e-3, float(info.tiny) * 4, 1e30):
        # (One column: where NumPy would sum pairwise, the means must still add in order.)
        for shape in ((1, 1), (7, 3), (1000, 17), (5000, 64), (300, 784), (70, 5000),
                      (20000, 1), (300000, 1), (3000, 2)):
            X = (rng.standard_normal(shape) * scale + scale * rng.uniform(-3, 3)).astype(
                np.float32)
            X.flat[rng.integers(X.size)] = -0.0
            largest, X_mean, norms = _cpu.scan_float32(X, with_norms=True)
            assert largest == max(float(X.max()), -float(X.min()))
            np.testing.assert_array_equal(norms, _cpu.row_norms_f64(X))
            assert X_mean.dtype == np.float32 and X_mean.shape == (shape[1],)
            assert float32_column_means(X).tobytes() == X_mean.tobytes(), shape
            exact = X.astype(np.float64).mean(axis=0)
            # rounded once to float32 (by at most a subnormal's spacing below tiny)
            np.testing.assert_allclose(
                X_mean, exact, rtol=float(info.eps),
                atol=max(float(np.abs(X).max()) * 1e-12, float(info.smallest_subnormal)))
            assert _cpu.scan_float32(X, with_norms=False)[2] is None
            threads = numba.get_num_threads()
            try:
                numba.set_num_threads(1)
                alone = _cpu.scan_float32(X, with_norms=True)
            finally:
                numba.set_num_threads(threads)
            assert alone[0] == largest
            np.testing.assert_array_equal(alone[1], X_mean)
            np.testing.assert_array_equal(alone[2], norms)
    for bad in (np.inf, -np.inf, np.nan):
        X = rng.standard_normal((3000, 5)).astype(np.float32)
        X[rng.integers(3000), rng.integers(5)] = bad
        largest, X_mean, _ = _cpu.scan_float32(X, with_norms=False)
        assert not np.isfinite(largest) and not np.isfinite(X_mean).all()
        with np.errstate(invalid="ignore"):
            assert float32_column_means(X).tobytes() == X_mean.tobytes()
        assert np.isnan(largest) == np.isnan(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fit_its_clusters_put_on_numba_validates_there(dtype, rng, monkeypatch):
    """Below the NumPy engine's MAX_SAMPLES and MAX_ELEMENTS, a fit whose clusters make
    it too large for that engine iterates on Numba, and its validation's passes run there
    too (float32: the one scan for the largest magnitude, the mean and the row norms;
    float64: the one-pass magnitude): the same fit as NumPy's route, bit for bit, near
    the origin and far from it (centred); a fit small enough for the NumPy engine keeps
    NumPy's route."""
    from gpukmeans import _cpu, _cpu_small

    scanned = []
    for name in ("scan_float32", "largest_magnitude"):
        original = getattr(_cpu, name)
        monkeypatch.setattr(_cpu, name, lambda *args, _f=original, _n=name, **kwargs: (
            scanned.append(_n), _f(*args, **kwargs))[1])
    n_samples, n_features, n_clusters = 9000, 24, 40
    assert not _cpu_small.is_small(n_samples, n_features, n_clusters)
    assert _cpu_small.is_small(n_samples, n_features, 8)
    for offset in (0.0, 1e3):
        centers = rng.uniform(-10, 10, (n_clusters, n_features))
        X = (centers[rng.integers(0, n_clusters, n_samples)]
             + rng.standard_normal((n_samples, n_features)) + offset).astype(dtype)
        params = dict(n_init=1, random_state=int(rng.integers(2**31)), device="cpu")
        scanned.clear()
        ours = KMeans(n_clusters, **params).fit(X)
        assert scanned == ["scan_float32" if dtype == np.float32 else "largest_magnitude"]
        with monkeypatch.context() as numpy_route:
            numpy_route.setattr(_validation, "_runs_compiled", lambda *args: False)
            reference = KMeans(n_clusters, **params).fit(X)
        np.testing.assert_array_equal(ours.labels_, reference.labels_)
        assert ours.cluster_centers_.tobytes() == reference.cluster_centers_.tobytes()
        assert ours.inertia_ == reference.inertia_ and ours.n_iter_ == reference.n_iter_
        scanned.clear()
        KMeans(8, **params).fit(X)
        assert scanned == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_passes_serial_twins_give_their_parallel_bits(dtype, rng):
    """Small data take the once-a-fit passes' serial twins (a parallel loop's wake-up
    cost more than the pass), larger their parallel kernels: both give the same bits,
    for validation's scan (largest magnitude, sums, row norms), the row norms, centring
    and the largest magnitude."""
    import numba

    from gpukmeans import _cpu_passes, _cpu_runtime

    scan = _cpu_passes._scan_float32
    assert scan.runs_serially(np.empty((10000, 32), np.float32))
    assert not scan.runs_serially(np.empty((100000, 32), np.float32)) or (
        numba.get_num_threads() == 1)
    signed = np.int32 if dtype == np.float32 else np.int64
    magnitude_mask = signed(np.iinfo(signed).max)
    for shape in ((1, 1), (65, 3), (3000, 32), (20000, 7), (500, 784)):
        X = (rng.standard_normal(shape) * rng.uniform(0.1, 1e3)
             + rng.uniform(-1e3, 1e3)).astype(dtype)
        bits = X.reshape(-1).view(signed)
        mean = X.mean(axis=0)
        results = []
        with _cpu_runtime.cpu_runtime():
            for version in ("serial", "parallel"):
                out, norms = np.empty_like(X), np.empty(shape[0])
                getattr(_cpu_passes._subtract_rows_and_norms, version)(X, mean, out, norms)
                result = [getattr(_cpu_passes._row_norms_f64, version)(X).tobytes(),
                          out.tobytes(), norms.tobytes(), int(getattr(
                              _cpu_passes._largest_magnitude_bits, version)(bits, magnitude_mask))]
                if dtype == np.float32:
                    norms = np.empty(shape[0])
                    largest, sums = getattr(scan, version)(X, bits, magnitude_mask, norms, True)
                    result += [int(largest), sums.tobytes(), norms.tobytes()]
                results.append(result)
        assert results[0] == results[1], shape


def test_float32_column_sums_add_in_the_scans_order(rng):
    """NumPy's route to the float32 means (the NumPy engine's) adds in the Numba pass's
    order, each block's rows one after another, on values of many magnitudes, where
    another order (NumPy's pairwise sums of a contiguous column, ``reduceat``'s of any
    block) gives other float64 sums; and on a tie that the order decides: 1 + 2^-24 +
    2^-53 + 2^-53 in order is 1 + 2^-24, whose mean over 256 rows rounds down."""
    from gpukmeans import _cpu_passes
    from gpukmeans._validation import float32_column_means, float32_column_sums

    def scan_sums(X):
        magnitude_mask = np.int32(np.iinfo(np.int32).max)
        return _cpu_passes._scan_float32(X, X.reshape(-1).view(np.int32), magnitude_mask,
                                         np.empty(0), False)[1]

    for shape in ((5, 1), (256, 1), (20000, 1), (300000, 1), (3000, 2), (20000, 3),
                  (1000, 17), (130000, 2), (200, 784)):
        X = (rng.standard_normal(shape)
             * 10.0 ** rng.integers(-20, 20, shape)).astype(np.float32)
        assert float32_column_sums(X).tobytes() == scan_sums(X).tobytes(), shape
    for n_features in (1, 2, 3):
        X = np.zeros((256, n_features), np.float32)
        X[:4, 0] = [1.0, 2.0**-24, 2.0**-53, 2.0**-53]
        assert float32_column_sums(X)[0] == 1.0 + 2.0**-24
        assert float32_column_means(X)[0] == np.float32(1 / 256)
        assert float32_column_means(X).tobytes() == _cpu_passes.scan_float32(X, False)[1].tobytes()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("estimator", [KMeans, MiniBatchKMeans])
@pytest.mark.parametrize("bad, match", [("nan", "NaN"), ("-inf", "infinity"),
                                        ("huge", "largest absolute value lies between")])
def test_large_X_is_refused_by_the_one_pass_check(estimator, bad, match, dtype, monkeypatch):
    """Past the NumPy engine's MAX_ELEMENTS values, a CPU fit checks X's scale and
    finiteness in the Numba engine's one pass: a bad value anywhere is still refused
    with its own message, before any work, and the caller's X is left as it was."""
    from gpukmeans import _cpu, _cpu_small

    monkeypatch.setattr(_cpu_small, "MAX_ELEMENTS", 1000)
    passes = []
    monkeypatch.setattr(_cpu, "largest_magnitude",
                        lambda X, one_pass=_cpu.largest_magnitude: passes.append(1) or one_pass(X))
    # float32 fits of KMeans take the mean and row norms in the same pass
    monkeypatch.setattr(_cpu, "scan_float32", lambda X, with_norms, one_pass=_cpu.scan_float32:
                        passes.append(2) or one_pass(X, with_norms))
    rng = np.random.default_rng()
    X = rng.standard_normal((600, 3)).astype(dtype)
    huge = 1e19 if dtype == np.float32 else 1e160  # finite, past k-means' range
    X[rng.integers(600), rng.integers(3)] = {"nan": np.nan, "-inf": -np.inf, "huge": huge}[bad]
    before = X.copy()
    with pytest.raises(ValueError, match=match):
        estimator(3, device="cpu", random_state=0).fit(X)
    assert passes
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_near_the_dtype_max_warn_nothing(dtype):
    """Finite values of both signs near the dtype's largest: a fit is refused by the range
    it names, and a float64 model predicts float32 ones, with no NumPy 'invalid value'
    warning from the overflowing sum of scikit-learn's finiteness check."""
    rng = np.random.default_rng()
    X = rng.standard_normal((40, 3))
    huge = (X / np.abs(X).max() * (0.9 * np.finfo(dtype).max)).astype(dtype)
    model = KMeans(3, random_state=0, device="cpu").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in (huge, scipy.sparse.csr_matrix(huge)):
            for estimator in (KMeans(3, device="cpu"), MiniBatchKMeans(3, device="cpu")):
                with pytest.raises(ValueError, match="largest absolute value lies between"):
                    estimator.fit(data)
            if dtype == np.float32:
                assert model.predict(data).shape == (40,)
            else:
                with pytest.raises(ValueError, match="X holds values up to"):
                    model.predict(data)


def test_n_samples_below_n_clusters():
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_clusters=4"):
        _fit(X_OK[:3], n_clusters=4)


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters must be an int"),
        ({"n_clusters": True}, TypeError, "n_clusters must be an int"),
        # scikit-learn takes these as 1: a slip, refused here (README).
        ({"max_iter": True}, TypeError, "max_iter must be an int, got True of type bool"),
        ({"n_init": np.True_}, TypeError, "n_init must be an int, got np.True_"),
        ({"tol": True}, TypeError, "tol must be a float, got True of type bool"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"n_init": "many"}, ValueError, "n_init"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"tol": "x"}, TypeError, "tol"),
        ({"algorithm": "full"}, ValueError, "algorithm"),
        ({"device": "tpu"}, ValueError, "device must be one of"),
        ({"init": "kmeans++"}, ValueError, "init must be one of"),
        ({"init": 3}, TypeError, "init must be one of"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"copy_x": "yes"}, TypeError, "copy_x"),
        ({"init": np.zeros((3, 2))}, ValueError, r"initial centers \(3, 2\).*number of clusters 2"),
        ({"init": np.zeros((2, 3))}, ValueError, r"initial centers \(2, 3\).*number of features"),
        ({"init": np.array([[0.0, np.nan], [1.0, 1.0]])}, ValueError, "NaN"),
        # check_array's own messages for these name no argument.
        ({"init": np.zeros(2)}, ValueError, "init must be an array.*Expected 2D array"),
        ({"init": np.zeros((2, 2, 1))}, ValueError, "init must be an array.*dim 3"),
        ({"init": np.full((2, 2), "a")}, ValueError, "init must be an array.*convert string"),
        ({"init": np.ones((2, 2), dtype=complex)}, ValueError, "init must be an array.*[Cc]omplex"),
        ({"init": lambda X, k, random_state: X[0]}, ValueError, "init must be an array.*2D"),
    ],
)
def test_bad_params(params, error, match):
    with pytest.raises(error, match=match) as caught:
        _fit(**params)
    if isinstance(params.get("init"), np.ndarray):  # data, not a hyper-parameter's type
        assert type(caught.value) is ValueError


# Hyper-parameters of a wrong type or value, each estimator's (sample of them).
PARAMETER_ERRORS = [
    (KMeans, {"n_clusters": 2.5}), (KMeans, {"n_clusters": 0}), (KMeans, {"max_iter": 1.5}),
    (KMeans, {"n_init": "many"}), (KMeans, {"tol": "x"}), (KMeans, {"tol": -1.0}),
    (KMeans, {"init": 3}), (KMeans, {"init": "kmeans++"}), (KMeans, {"algorithm": "full"}),
    (KMeans, {"random_state": "seed"}), (KMeans, {"random_state": -1}),
    (KMeans, {"copy_x": "yes"}), (KMeans, {"verbose": -1}), (KMeans, {"device": "tpu"}),
    (KMeans, {"metric": "manhattan"}), (KMeans, {"oversampling_factor": 0}),
    (KMeans, {"stream_block_rows": 0}),
    (MiniBatchKMeans, {"batch_size": 2.5}), (MiniBatchKMeans, {"batch_size": 0}),
    (MiniBatchKMeans, {"compute_labels": "yes"}), (MiniBatchKMeans, {"init_size": 0}),
    (MiniBatchKMeans, {"reassignment_ratio": "high"}),
    (MiniBatchKMeans, {"max_no_improvement": -1}), (MiniBatchKMeans, {"n_clusters": 2.5}),
]


def _raised(call):
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("estimator, params", PARAMETER_ERRORS,
                         ids=[f"{e.__name__}-{p}" for e, p in PARAMETER_ERRORS])
def test_parameter_errors_are_value_and_type_errors_as_scikit_learns(estimator, params):
    """scikit-learn raises its InvalidParameterError, a ValueError and a TypeError both,
    so code written for its estimators may catch either: ours are both too (n_clusters=2.5
    was a plain TypeError, which escaped ``except ValueError``)."""
    import sklearn.cluster

    (name,) = params
    ours = _raised(lambda: estimator(**{"n_clusters": 2, "device": "cpu", **params}).fit(X_OK))
    assert isinstance(ours, ValueError) and isinstance(ours, TypeError), type(ours)
    assert isinstance(ours, gpukmeans.InvalidParameterError), type(ours)
    assert isinstance(ours, InvalidParameterError), type(ours)  # scikit-learn's
    assert name in str(ours)
    theirs_class = getattr(sklearn.cluster, estimator.__name__)
    if name in theirs_class().get_params():
        theirs = _raised(lambda: theirs_class(**{"n_clusters": 2, **params}).fit(X_OK))
        assert isinstance(theirs, ValueError) and isinstance(theirs, TypeError), type(theirs)


@pytest.mark.parametrize("estimator, name", [
    (KMeans, "max_iter"), (KMeans, "n_init"), (KMeans, "tol"), (MiniBatchKMeans, "batch_size"),
    (MiniBatchKMeans, "max_no_improvement"), (MiniBatchKMeans, "reassignment_ratio"),
    (MiniBatchKMeans, "init_size")])
def test_a_bool_is_no_number_of_any_parameter(estimator, name):
    """``True`` for a count or a tolerance is refused by name (scikit-learn takes some as
    1 and fails on others with a bare TypeError: README)."""
    for value in (True, np.False_):
        error = _raised(lambda: estimator(2, device="cpu", **{name: value}).fit(X_OK))
        assert isinstance(error, gpukmeans.InvalidParameterError), type(error)
        assert f"{name} must be" in str(error) and "of type bool" in str(error), error


def test_kmeans_plusplus_checks_x_squared_norms_as_scikit_learn(rng):
    """NaN or infinite norms are refused by name (they picked one row again and again: a
    helper's find); a column of norms is taken as scikit-learn takes it, the same picks
    as the flat norms and as scikit-learn's; other shapes name what was expected."""
    import sklearn.cluster

    from gpukmeans import kmeans_plusplus

    X = rng.standard_normal((200, 4))
    norms = (X**2).sum(axis=1)
    flat = kmeans_plusplus(X, 5, x_squared_norms=norms, random_state=0, device="cpu")[1]
    column = kmeans_plusplus(X, 5, x_squared_norms=norms[:, None], random_state=0,
                             device="cpu")[1]
    theirs = sklearn.cluster.kmeans_plusplus(X, 5, x_squared_norms=norms[:, None],
                                             random_state=0)[1]
    np.testing.assert_array_equal(flat, column)
    np.testing.assert_array_equal(column, theirs)
    for bad, message in ((np.where(np.arange(200) == 7, np.nan, norms),
                          "Input x_squared_norms contains NaN"),
                         (np.full(200, np.inf), "Input x_squared_norms contains infinity"),
                         (norms[:10], "The length of x_squared_norms 10 should be equal to "
                                      "the length of n_samples 200"),
                         (np.c_[norms, norms], r"x_squared_norms must have shape \(200,\) "
                                               r"or \(200, 1\), got \(200, 2\)"),
                         (3.0, r"x_squared_norms must be an array of shape \(200,\), got "
                               "3.0")):
        with pytest.raises(ValueError, match=message):
            kmeans_plusplus(X, 5, x_squared_norms=bad, device="cpu")


def test_kmeans_plusplus_parameter_errors_are_value_and_type_errors():
    from gpukmeans import kmeans_plusplus

    for params in ({"n_local_trials": 0}, {"n_local_trials": 1.5}, {"random_state": "seed"}):
        error = _raised(lambda: kmeans_plusplus(X_OK, 2, device="cpu", **params))
        assert isinstance(error, ValueError) and isinstance(error, TypeError), params
        assert isinstance(error, InvalidParameterError), params


def test_object_weights_convert_as_scikit_learn_converts_them():
    """A list of Decimals (or Fractions) is taken as its float64 values, as scikit-learn
    takes it, and as an object X is; values that do not convert name sample_weight."""
    from decimal import Decimal
    from fractions import Fraction

    weights = np.linspace(0.5, 3.0, 20)
    expected = _fit(sample_weight=weights, random_state=0)
    for given in ([Decimal(float(w)) for w in weights], [Fraction(float(w)) for w in weights],
                  np.array(weights, dtype=object)):
        model = _fit(sample_weight=given, random_state=0)
        np.testing.assert_array_equal(model.cluster_centers_, expected.cluster_centers_)
        assert model.inertia_ == expected.inertia_
    # Strings parse, as check_array parses them.
    model = _fit(sample_weight=np.array([repr(float(w)) for w in weights]), random_state=0)
    np.testing.assert_array_equal(model.cluster_centers_, expected.cluster_centers_)
    # scikit-learn's error classes: ValueError for what does not parse or overflows,
    # TypeError for what is no number.
    for bad, error in (([10**400] * 20, ValueError), (["a"] * 20, ValueError),
                       ([1j] * 20, TypeError), (np.array(["a"] * 20), ValueError)):
        with pytest.raises(error, match="sample_weight must hold real numbers.*do not convert"):
            _fit(sample_weight=np.array(bad, dtype=object))


@pytest.mark.parametrize("random_state", [-1, 2**32])
def test_a_seed_out_of_range_is_refused_before_the_data_are_read(random_state):
    """Parameters are checked before any work: a bad seed is named even when the data
    would fail too (it was checked only after the data were scanned)."""
    from gpukmeans import kmeans_plusplus

    X_bad = X_OK.copy()
    X_bad[3, 1] = np.nan
    for call in (lambda: _fit(X_bad, random_state=random_state),
                 lambda: MiniBatchKMeans(2, random_state=random_state, device="cpu").fit(X_bad),
                 lambda: kmeans_plusplus(X_bad, 2, random_state=random_state, device="cpu")):
        error = _raised(call)
        assert isinstance(error, ValueError) and isinstance(error, TypeError), repr(error)
        assert "random_state" in str(error)


@pytest.mark.parametrize(
    "sample_weight, error, match",
    [
        (np.full(20, np.nan), ValueError, "sample_weight contains NaN"),
        (np.r_[np.ones(19), np.inf], ValueError, "sample_weight contains NaN or infinity"),
        (np.r_[np.ones(19), -1.0], ValueError, "Negative values in data passed to sample_weight"),
        (np.zeros(20), ValueError, "sample_weight must have at least one positive"),
        (np.ones(19), ValueError, r"sample_weight.shape == \(19,\)"),
        (np.ones((20, 1)), ValueError, "sample_weight.shape"),
        (np.array(["a"] * 20), ValueError, "sample_weight must hold real numbers.*convert"),
        # A ValueError, as scikit-learn's for complex data (X or weights).
        (np.ones(20, dtype=complex), ValueError, "sample_weight must hold real numbers, got "
                                                 "dtype complex128"),
        (False, ValueError, "sample_weight must have at least one positive"),
    ],
)
def test_bad_sample_weight(sample_weight, error, match):
    before = np.array(sample_weight, copy=True)
    with pytest.raises(error, match=match):
        _fit(sample_weight=sample_weight)
    np.testing.assert_array_equal(np.asarray(sample_weight), before)


def test_bools_that_scikit_learn_takes_as_numbers(capsys):
    """``sample_weight=True`` weighs every sample 1, as in scikit-learn (and as an array
    of bools weighs each 0 or 1; it was refused as an array of shape ()), and
    ``verbose=np.True_`` is ``verbose=True`` (a helper's finds). Counts and tolerances
    stay refused as bools (README)."""
    plain = _fit(random_state=0)
    weighted = _fit(random_state=0, sample_weight=True)
    np.testing.assert_array_equal(weighted.cluster_centers_, plain.cluster_centers_)
    assert weighted.inertia_ == plain.inertia_
    assert MiniBatchKMeans(2, random_state=0, device="cpu").fit(
        X_OK, sample_weight=np.True_).n_steps_ > 0
    KMeans(2, verbose=np.True_, n_init=1, device="cpu").fit(X_OK)
    assert "Iteration 0" in capsys.readouterr().out  # verbose, as with True


def test_feature_mismatch_at_predict_and_transform():
    km = _fit()
    for method in (km.predict, km.transform, km.score):
        with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 2"):
            method(np.ones((4, 3)))


def test_failed_refit_leaves_the_model_unchanged():
    km = _fit()
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in vars(km).items()}
    with pytest.raises(ValueError):
        km.fit(np.ones((5, 7)), sample_weight=np.ones(4))
    with pytest.raises(ValueError):
        km.set_params(n_clusters=50).fit(np.ones((5, 7)))
    km.set_params(n_clusters=2)
    for key, value in before.items():
        np.testing.assert_array_equal(getattr(km, key), value)


def test_gpu_requested_without_gpu_says_why(monkeypatch):
    monkeypatch.setattr(_device, "gpu_status", lambda: (False, "CuPy is not installed (test)"))
    with pytest.raises(ValueError, match="device='gpu'.*CuPy is not installed"):
        _fit(device="gpu")
    # "auto" falls back to the CPU quietly.
    assert _fit(device="auto").device_ == "cpu"


def test_gpu_status_reasons_without_device():
    usable, reason = _device.gpu_status()
    if not usable:
        assert any(word in reason for word in ("CuPy", "driver", "device"))


def test_gpu_array_with_cpu_device_is_an_error():
    class FakeDeviceArray:
        __cuda_array_interface__ = {"shape": (3, 2), "typestr": "<f8", "data": (0, False), "version": 3}

    with pytest.raises(ValueError, match="X is a GPU array but the fit runs on the CPU"):
        _fit(FakeDeviceArray(), device="cpu")
