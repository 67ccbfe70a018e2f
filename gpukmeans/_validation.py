"""Every check of parameters and input data, for host (NumPy) and device (CuPy) arrays.

Called from the public entry points only; everything downstream assumes validated
input. Each error names the parameter and what was wrong, and is raised before any
work starts. The caller's arrays are never modified: anything we change is a copy.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, validate_data

from ._device import DEVICES
from ._gpu import as_cupy, is_device_array
from ._lloyd import to_host
from ._sparse import is_device_sparse, is_pandas_sparse, is_sparse, without_duplicates
from ._spherical import METRICS

INITS = ("k-means++", "random")
KMEANS_INITS = ("k-means++", "k-means||", "random")
ALGORITHMS = ("lloyd", "elkan")
FLOAT_DTYPES = (np.float64, np.float32)


try:  # private in scikit-learn, so looked up, not relied on
    from sklearn.utils._param_validation import InvalidParameterError as _SklearnParameterError
except ImportError:  # pragma: no cover - a scikit-learn that moved it
    _SklearnParameterError = None


class InvalidParameterError(*((_SklearnParameterError,) if _SklearnParameterError is not None
                              else (ValueError, TypeError))):
    """A hyper-parameter of the wrong type or value. Both a ``ValueError`` and a
    ``TypeError``, and a subclass of scikit-learn's ``InvalidParameterError`` (which is
    both) where scikit-learn has that class: code written for its estimators, catching
    any of the three, catches ours (``n_clusters=2.5`` is a ``ValueError`` there, where
    a plain ``TypeError`` would escape ``except ValueError``). Public as
    ``gpukmeans.InvalidParameterError``."""


def array_module(X):
    """CuPy for a device array or matrix, NumPy otherwise (imports CuPy only for those)."""
    if is_device_array(X) or is_device_sparse(X):
        import cupy

        return cupy
    return np


def holds_fitted_centers(fitted, centers):
    """Whether ``centers`` (``cluster_centers_``) still holds the values of ``fitted``, the
    fit's own copy of its centers: the fit's frame and unit centers serve inference only
    then. A copy, compared by value: an edit in place (``cluster_centers_[0] = ...``)
    changes the centers, as in scikit-learn, without changing the object."""
    return (fitted is not None and type(fitted) is type(centers)
            and fitted.shape == centers.shape
            and bool(array_module(centers).array_equal(fitted, centers)))


def _is_sparse(obj):
    return hasattr(obj, "tocsr") and hasattr(obj, "nnz")


def _check_integer(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidParameterError(
            f"{name} must be an int, got {value!r} of type {type(value).__name__}.")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_params(estimator):
    """Validate the hyper-parameters of a :class:`gpukmeans.KMeans`. Returns nothing."""
    _check_shared_params(estimator, KMEANS_INITS)
    factor = estimator.oversampling_factor
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise InvalidParameterError(f"oversampling_factor must be a float, got {factor!r} of "
                                    f"type {type(factor).__name__}.")
    if not np.isfinite(factor) or factor <= 0:
        raise InvalidParameterError(
            f"oversampling_factor must be a finite float > 0, got {factor}.")
    if estimator.init_max_iter is not None:
        _check_integer("init_max_iter", estimator.init_max_iter, 1)
    if not isinstance(estimator.copy_x, (bool, np.bool_)):
        raise InvalidParameterError(f"copy_x must be a bool, got {estimator.copy_x!r}.")
    for name in ("stream_block_rows", "max_device_memory"):
        if getattr(estimator, name, None) is not None:
            _check_integer(name, getattr(estimator, name), 1)
    if estimator.algorithm not in ALGORITHMS:
        raise InvalidParameterError(
            f"algorithm must be one of {ALGORITHMS}, got {estimator.algorithm!r}."
        )
    if not isinstance(estimator.metric, str) or estimator.metric not in METRICS:
        raise InvalidParameterError(f"metric must be one of {METRICS}, got {estimator.metric!r}.")


def check_minibatch_params(estimator):
    """Validate the hyper-parameters of a :class:`gpukmeans.MiniBatchKMeans` (scikit-learn's
    constraints, with errors that name the parameter). Returns nothing."""
    _check_shared_params(estimator, INITS)
    _check_integer("batch_size", estimator.batch_size, 1)
    if not isinstance(estimator.compute_labels, (bool, np.bool_)):
        raise InvalidParameterError(
            f"compute_labels must be a bool, got {estimator.compute_labels!r}.")
    if estimator.max_no_improvement is not None:
        _check_integer("max_no_improvement", estimator.max_no_improvement, 0)
    if estimator.init_size is not None:
        _check_integer("init_size", estimator.init_size, 1)
    ratio = estimator.reassignment_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise InvalidParameterError(
            f"reassignment_ratio must be a float, got {ratio!r} of type {type(ratio).__name__}."
        )
    if not np.isfinite(ratio) or ratio < 0:
        raise InvalidParameterError(
            f"reassignment_ratio must be a finite float >= 0, got {ratio}.")


def check_tol_and_device(estimator):
    """``tol`` and ``device``, as every estimator of the package takes them."""
    tol = estimator.tol
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise InvalidParameterError(
            f"tol must be a float, got {tol!r} of type {type(tol).__name__}.")
    if not np.isfinite(tol) or tol < 0:
        raise InvalidParameterError(f"tol must be a finite float >= 0, got {tol}.")
    if estimator.device not in DEVICES:
        raise InvalidParameterError(f"device must be one of {DEVICES}, got {estimator.device!r}.")


def _check_shared_params(estimator, inits):
    """The parameters that KMeans and MiniBatchKMeans share; ``inits``: the named inits
    the estimator takes."""
    _check_integer("n_clusters", estimator.n_clusters, 1)
    _check_integer("max_iter", estimator.max_iter, 1)
    # verbose=True is accepted, as in scikit-learn (NumPy's True too).
    if not isinstance(estimator.verbose, (bool, np.bool_)):
        _check_integer("verbose", estimator.verbose, 0)
    if not (isinstance(estimator.n_init, str) and estimator.n_init == "auto"):
        if isinstance(estimator.n_init, str):
            raise InvalidParameterError(
                f"n_init must be 'auto' or an int >= 1, got {estimator.n_init!r}.")
        _check_integer("n_init", estimator.n_init, 1)
    check_tol_and_device(estimator)
    init = estimator.init
    if isinstance(init, str):
        if init not in inits:
            raise InvalidParameterError(
                f"init must be one of {inits}, a callable or an array of shape "
                f"(n_clusters, n_features), got {init!r}."
            )
    elif not callable(init) and not hasattr(init, "__len__") and not is_device_array(init):
        raise InvalidParameterError(
            f"init must be one of {inits}, a callable or an array of shape "
            f"(n_clusters, n_features), got {type(init).__name__}."
        )
    check_random_state_type(estimator.random_state)


def check_random_state_type(random_state):
    """``random_state`` among the parameters, before any work: None, a NumPy seed or a
    RandomState (:func:`check_random_state_param`, which makes the generator, runs only
    once the data were read)."""
    if not (
        random_state is None
        or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool))
        or isinstance(random_state, np.random.RandomState)
    ):
        raise InvalidParameterError(
            "random_state must be None, an int or a numpy.random.RandomState, "
            f"got {type(random_state).__name__}."
        )
    if isinstance(random_state, numbers.Integral) and not 0 <= random_state < 2**32:
        raise InvalidParameterError(
            "random_state must be None, an int in [0, 2**32 - 1] or a "
            f"numpy.random.RandomState, got {random_state!r}.")


def check_real_and_not_empty(X, name):
    """The dtype and shape checks of scikit-learn's ``check_array``, for the 2-D arrays
    it does not see (CuPy arrays, dask arrays), with its messages."""
    if X.dtype.kind == "c":
        raise ValueError(f"Complex data not supported for {name}, got dtype {X.dtype}.")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(
            f"Found array with shape {X.shape} for {name}, while at least one sample "
            "and one feature are required."
        )


def _check_device_X(X, name, xp):
    """Device-side counterpart of scikit-learn's ``check_array`` for CuPy arrays."""
    X = as_cupy(X)  # a zero-copy view of torch tensors and other CUDA arrays
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array for {name}, got {X.ndim}D array of shape {X.shape} instead."
        )
    check_real_and_not_empty(X, name)
    if X.dtype not in FLOAT_DTYPES:
        X = X.astype(xp.float64)
    if not bool(xp.isfinite(X).all()):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return X


def _check_sparse_X(estimator, X, device_xp, dtype=None, reset=True, caller=None):
    """``X`` as the sparse engines take it: CSR, float32 or float64 (``dtype`` when
    given), finite, no duplicate entries (summed on a copy). A ``scipy.sparse`` matrix of
    any format is converted once, by scikit-learn's ``check_array``; a
    ``cupyx.scipy.sparse`` one stays on the GPU. Returns ``(X, on_device)``. ``caller``:
    see :func:`check_fit_data`."""
    if not is_device_sparse(X):
        dtypes = list(FLOAT_DTYPES) if dtype is None else dtype
        if reset:  # fit: nothing is set on the estimator before the fit succeeds
            with _quiet_finiteness_check():
                X = check_array(X, accept_sparse="csr", dtype=dtypes,
                                accept_large_sparse=True, estimator=caller or estimator,
                                input_name="X")
        else:
            with _quiet_finiteness_check():
                X = validate_data(estimator, X, accept_sparse="csr", dtype=dtypes,
                                  reset=False, accept_large_sparse=True)
        # A column index out of range (or negative) would be read past the centers: a
        # crash or a silent wrong answer. One pass over the indices refuses it.
        try:
            # On a new matrix over X's arrays: check_format rebinds the arrays of the
            # matrix it checks (prunes them, unifies their index dtypes), and X may be the
            # caller's. Contiguous: scikit-learn's mean_variance_axis takes no strided
            # views (a CSR matrix built on values[:, 1] keeps one), and the engines are
            # compiled for contiguous arrays; a copy only where X's are not.
            X = type(X)(X, copy=False)
            X.data, X.indices, X.indptr = (np.ascontiguousarray(part)
                                           for part in (X.data, X.indices, X.indptr))
            X.check_format(full_check=True)
            # Read-only parts run the writable parts' kernels: views made after the
            # check, which takes views of its own (original_array must find the
            # caller's parts one view down, for a callable init).
            X.data, X.indices, X.indptr = (kernel_view(part)
                                           for part in (X.data, X.indices, X.indptr))
        except ValueError as exc:
            raise ValueError(f"X is not a valid CSR matrix: {exc}") from None
        return without_duplicates(X), False
    if device_xp is np:
        raise ValueError(
            "X is a GPU (cupyx.scipy.sparse) matrix but the fit runs on the CPU "
            "(device='cpu'); pass a scipy.sparse matrix, or use device='gpu' or 'auto'."
        )
    X = X.tocsr()
    check_real_and_not_empty(X, "X")
    if dtype is None and X.dtype not in FLOAT_DTYPES:
        dtype = np.float64
    if dtype is not None and X.dtype != dtype:
        X = X.astype(dtype)
    if not bool(X.data.size == 0 or np.isfinite(float(abs(X.data).max()))):
        raise ValueError("Input X contains NaN or infinity.")
    if not reset and X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return without_duplicates(X), True


def _quiet_finiteness_check():
    """scikit-learn's finiteness check sums X first: finite values of both signs near
    the dtype's largest overflow that sum to inf and -inf, which NumPy warns about
    ('invalid value encountered in reduce') before each value is checked. The check's
    answer is right; the warning is noise beside the error that names the range."""
    return np.errstate(over="ignore", invalid="ignore")


class _WritableInterface:
    """Another NumPy array's memory, exported as writable (see :func:`kernel_view`)."""

    def __init__(self, array):
        interface = dict(array.__array_interface__)
        interface["data"] = (interface["data"][0], False)  # (pointer, read-only flag)
        self.__array_interface__ = interface
        self.array = array  # its memory lives as long as the view


def kernel_view(X):
    """X as the CPU engine's kernels take it: a read-only NumPy array (a memmap opened
    with ``mode="r"``, an array marked unwritable) becomes a view of the same memory not
    marked so; any other X is returned as it is. Numba compiles each kernel once per
    kind of array, and read-only is a kind of its own: every fit, ``predict`` and
    ``transform`` of read-only data compiled the whole engine again (14 s on a first
    memmap fit, until ``gpukmeans compile`` compiled every kernel a second time for it).
    The kernels never write X (a write to a read-only memmap's view would be a
    segmentation fault, not a silent change): they write only arrays the engine made.
    Only arrays the kernels read and nothing writes are passed through here: the
    validated X of a fit or query (once converted by ``check_array``, before the checks'
    own passes, which run kernels too), a CSR X's three parts, ``kmeans_plusplus``'s
    ``x_squared_norms`` and a Dask block's weights. A callable ``init`` is given the
    caller's arrays (X's, or a CSR X's parts), not these views (:func:`original_array`)."""
    if isinstance(X, np.ndarray) and not X.flags.writeable and X.size:
        return np.asarray(_WritableInterface(X))
    return X


def original_array(X):
    """The array that :func:`kernel_view` made ``X`` a view of (else X): what a callable
    ``init`` is shown, read-only, so that it cannot mark its way into the caller's memory
    (a view of the kernel view could be made writable again)."""
    base = X
    # Down through whole views of the same memory (scipy re-wraps a matrix's parts).
    while isinstance(base, np.ndarray) and (
            base is X or (base.shape, base.strides, base.dtype, base.ctypes.data)
            == (X.shape, X.strides, X.dtype, X.ctypes.data)):
        if isinstance(base.base, _WritableInterface):
            return base.base.array
        base = base.base
    return X


def check_fit_data(estimator, X, device_xp, need_mean=True, caller=None, row_norms=False,
                   n_clusters=None):
    """Validate ``X`` for ``fit``; ``caller`` (a name) replaces the estimator's class
    name in scikit-learn's messages (``kmeans_plusplus``'s NaN error named KMeans).
    ``n_clusters``: the clusters of a fit whose CPU engine the shapes pick
    (:func:`gpukmeans._cpu_small.cpu_engine`), so that one which will run on the Numba
    engine scans X there (see below); None where the engine is not known.

    Returns ``(X, on_device, feature_names, X_mean, x_squared_norms)`` where X is a
    C-contiguous float32/float64 array: NumPy for host input, ``device_xp`` (CuPy) for
    device input, and ``X_mean``, X's column means, on the same side (None unless
    ``need_mean``: a pass over X that a fit which never centres need not pay). X may be
    the caller's own array: callers must not modify it in place. Sparse X gives a CSR
    matrix (see :func:`_check_sparse_X`; a pandas DataFrame of sparse columns too, as
    scikit-learn takes it) and ``X_mean`` None: sparse data are never centred.

    ``X_mean`` of float64 host data is ``X.mean(axis=0)`` bit for bit (scikit-learn's
    centring); of float32 host data, float64 sums rounded once
    (:func:`float32_column_means`), the same bits on either CPU engine. Float32 data
    that a CPU fit runs on the Numba engine (:func:`_runs_compiled`: more than
    MAX_SAMPLES samples or MAX_ELEMENTS values, or by ``n_clusters``) are read once
    for the largest magnitude, the mean and, with ``row_norms`` and past the passes
    that run on NumPy, the row norms (:func:`gpukmeans._cpu_passes.scan_float32`).
    ``x_squared_norms`` is those norms, else None.
    """
    from sklearn.utils.validation import _get_feature_names

    scale_free = getattr(estimator, "metric", "euclidean") == "cosine"
    if is_sparse(X) or is_pandas_sparse(X):
        feature_names = _get_feature_names(X)  # a sparse DataFrame's column names
        X, on_device = _check_sparse_X(estimator, X, device_xp, caller=caller)
        check_magnitude(X, scale_free=scale_free)
        return X, on_device, feature_names, None, None
    if is_device_array(X):
        if device_xp is None or device_xp is np:
            raise ValueError(
                "X is a GPU array but the fit runs on the CPU (device='cpu'); pass a NumPy "
                "array, or use device='gpu' or 'auto'."
            )
        X = device_xp.ascontiguousarray(_check_device_X(X, "X", device_xp))
        check_magnitude(X, scale_free=scale_free)
        return X, True, None, X.mean(axis=0) if need_mean else None, None

    feature_names = _get_feature_names(X)
    X = check_array(
        X,
        dtype=list(FLOAT_DTYPES),
        order="C",
        ensure_all_finite=False,
        estimator=caller or estimator,
        input_name="X",
    )
    X = kernel_view(X)
    # The finiteness check comes with passes that the fit needs anyway (scikit-learn's
    # check is a pass of its own, a sum): NaN and infinity make the largest magnitude,
    # and the mean, non-finite. Either may also be an overflow of finite values, so only
    # then is each value checked, with scikit-learn's own message.
    X_mean = x_squared_norms = None
    if need_mean and X.dtype == np.float32 and _runs_compiled(X, device_xp, n_clusters):
        from ._cpu import scan_float32
        from ._cpu_small import _small_pass

        # Only where the engine's own row norms are the Numba pass's (bitwise these).
        with np.errstate(over="ignore", invalid="ignore"):
            largest, X_mean, x_squared_norms = scan_float32(
                X, with_norms=row_norms and not _small_pass(X))
    else:
        largest = largest_magnitude(X, compiled=device_xp is np, n_clusters=n_clusters)
        if need_mean:
            with np.errstate(over="ignore", invalid="ignore"):
                X_mean = (float32_column_means(X) if X.dtype == np.float32
                          else column_means(X))
    finite = bool(np.isfinite(largest))
    if need_mean:
        finite = finite and bool(np.isfinite(X_mean).all())
    if not finite:
        with _quiet_finiteness_check():
            check_array(X, dtype=None, estimator=caller or estimator, input_name="X")
    check_magnitude(X, scale_free=scale_free, largest=largest)
    return X, False, feature_names, X_mean, x_squared_norms


# float32 column means are summed in float64 over this many blocks of rows, each block
# in row order, then the blocks' sums in block order: the Numba engine's threads share
# its pass by these blocks, and NumPy's route below adds in the same order.
MEAN_BLOCKS = 64


def float32_column_means(X):
    """The column means of a C-contiguous float32 array, summed in float64 and rounded
    once: bit for bit those of :func:`gpukmeans._cpu_passes.scan_float32`, so that both
    CPU engines centre the same data on the same mean, and a fit does not change with the
    engine its shapes pick. (NumPy's float32 mean sums in float32: on 5,000 rows it could
    differ from these by a unit in the last place, and the fits' k-means++ draws then
    went their own ways.)"""
    return (float32_column_sums(X) / X.shape[0]).astype(np.float32)


def float32_column_sums(X):
    """:func:`float32_column_means`'s float64 sums: each of the :data:`MEAN_BLOCKS`
    blocks' rows added in row order, then the blocks' sums in block order.

    A call per block: NumPy's ``reduce`` over the rows of two or more columns adds them
    row by row, but sums one contiguous column pairwise, as ``reduceat`` sums any
    block, in another order (their bits differed on data of many magnitudes); one
    column is accumulated instead, which adds in order."""
    n_samples = X.shape[0]
    starts = np.arange(MEAN_BLOCKS + 1) * n_samples // MEAN_BLOCKS
    sums = np.zeros(X.shape[1])  # from +0.0, as the Numba pass: -0.0 columns sum to +0.0
    for start, end in zip(starts[:-1], starts[1:]):
        if end == start:
            continue
        if X.shape[1] == 1:
            sums += np.add.accumulate(X[start:end, 0], dtype=np.float64)[-1]
        else:
            sums += np.add.reduce(X[start:end], axis=0, dtype=np.float64)
    return sums


def column_means(X):
    """``X.mean(axis=0)`` of a C-contiguous NumPy array, bit for bit, in a third of its time.

    NumPy's mean adds the rows in order, in X's dtype, calling its add loop once per row
    (1.3 ms on 100,000 x 32 float32); einsum adds them in the same order in one loop
    (0.45 ms), then the sums are divided as ``mean`` divides them (by the count as an
    ``intp``, so in float64 for float32 sums, then rounded). A single column, which
    ``mean`` sums pairwise, is left to ``mean``. float64 data are centred on this mean
    as scikit-learn centres them, so their labels stay scikit-learn's bit for bit
    (float32 data on :func:`float32_column_means`).
    """
    if X.shape[1] == 1:
        return X.mean(axis=0)
    sums = np.einsum("ij->j", X)
    return np.true_divide(sums, np.intp(X.shape[0]), out=sums, casting="unsafe")


def usable_magnitude(dtype, n_samples, n_features):
    """``(lower, upper)``: the largest absolute value of the data must lie in this range
    (or be 0) for the labels to be those of exact arithmetic.

    upper: every sum that k-means forms in the data's dtype stays finite with a margin:
    ``||c||^2 - 2 x.c`` (at most ``3 n_features M^2``) and the per-feature variances of
    the tolerance (at most ``4 n_samples M^2``).
    lower: two samples one unit in the last place apart at this scale still have a
    normal (not subnormal, not zero) squared distance, ``(M eps)^2 >= tiny``. Below it
    the CPU engines' float32 labels would stay exact (their near-ties are decided in
    float64, and their margins cover subnormal roundings: tested on MNIST scaled down to
    2^-72, 5e-20), but the GPU engine's kernels are compiled with ``-ftz=true`` (CuPy
    adds it): a float32 product below ``tiny`` is flushed to 0, an error of up to
    ``n_features tiny`` in every dot product, which this bound keeps below the
    products' own rounding ``M^2 eps`` (at 2^-69, MNIST's dot products would lose most of
    their value). One bound for every engine, since a model fitted on one predicts on
    the other.
    """
    info = np.finfo(dtype)
    upper = float(np.sqrt(float(info.max) / (16 * max(n_samples, n_features))))
    lower = float(np.sqrt(float(info.tiny)) / float(info.eps))
    return lower, upper


def largest_magnitude(X, compiled=False, n_clusters=None):
    """The largest absolute value of X's values (a sparse matrix's stored ones), 0.0
    when there are none; NaN or infinity where X holds them.

    ``compiled``: X is a fit's C-contiguous NumPy data, to be clustered on the CPU. Past
    the NumPy engine's :data:`~gpukmeans._cpu_small.MAX_ELEMENTS` values or
    :data:`~gpukmeans._cpu_small.MAX_SAMPLES` samples the fit runs on the Numba engine
    whatever its clusters, whose one pass over X's bits
    (:func:`gpukmeans._cpu.largest_magnitude`) replaces NumPy's two, ``max`` and ``min``
    (MNIST float32: 6 against 15 ms on one thread; 100,000 x 32 float32: 0.4 against 1.0).
    So does a fit of ``n_clusters`` that its shapes put on the Numba engine. The same
    value either way."""
    if compiled and not is_sparse(X) and _runs_compiled(X, np, n_clusters):
        from ._cpu import largest_magnitude as one_pass

        return one_pass(X)
    values = X.data if is_sparse(X) else X  # a sparse matrix's implicit zeros change nothing
    return max(float(values.max()), -float(values.min())) if values.size else 0.0


def _runs_compiled(X, device_xp, n_clusters=None):
    """Whether a fit of X on ``device_xp`` runs on the Numba engine: on the CPU past the
    NumPy engine's :data:`~gpukmeans._cpu_small.MAX_ELEMENTS` values or
    :data:`~gpukmeans._cpu_small.MAX_SAMPLES` samples whatever its clusters, or where
    ``n_clusters`` (when known) makes it too large for that engine
    (:func:`~gpukmeans._cpu_small.is_small`). Validation's passes then run there too:
    10,000 x 32 float32 at k=32, NumPy's column sums, largest magnitude and the engine's
    row norms took 1.4 ms of a 10 ms fit, the one Numba scan 0.1."""
    from ._cpu_small import MAX_ELEMENTS, MAX_SAMPLES, is_small

    if device_xp is not np:
        return False
    if X.size > MAX_ELEMENTS or X.shape[0] > MAX_SAMPLES:
        return True
    return n_clusters is not None and not is_small(X.shape[0], X.shape[1], n_clusters)


def check_magnitude(X, name="X", centers=None, scale_free=False, largest=None):
    """Refuse, before any work, data whose scale would overflow or underflow the squared
    distances in their dtype: the labels would be wrong, or the centers NaN, silently.

    ``scale_free`` (``metric="cosine"``): only values past the dtype's range are refused;
    the rows are measured once scaled to unit length, whatever their scale
    (:func:`gpukmeans._spherical.normalize_rows`).

    For ``fit``, the scale is X's and the bounds count its samples (the tolerance sums
    squares over them). For inference (``centers`` given), the scale is the larger of X's
    and the fitted centers', and only the distances' own sums count: a query near the
    origin is measured against centers of ordinary size, whatever the batch size.
    ``largest``: X's :func:`largest_magnitude`, where the caller has it already.
    """
    if largest is None:
        largest = largest_magnitude(X)
    if not np.isfinite(largest):
        raise ValueError(
            f"{name} holds values beyond the range of {X.dtype}, the dtype of the model's "
            f"cluster_centers_ (fitted on {X.dtype} data): fit on float64 data to predict such "
            "values."
        )
    if scale_free:
        return
    remedy = (f"Rescale {name} (for example with sklearn.preprocessing."
              + ("MaxAbsScaler, which keeps it sparse" if is_sparse(X) else "StandardScaler")
              + ", or by a power of two, which changes no label)"
              + (", or pass float64 data." if X.dtype == np.float32 else "."))
    if centers is None:
        lower, upper = usable_magnitude(X.dtype, *X.shape)
    else:
        centers_largest = float(np.abs(to_host(centers)).max())
        if centers_largest > largest:  # centers assigned by hand: name them, not X
            name, largest = "cluster_centers_", centers_largest
            remedy = "Assign centers within that range, or refit on rescaled data."
        lower, upper = usable_magnitude(X.dtype, 1, X.shape[1])
    if largest == 0 or lower <= largest <= upper:
        return
    raise ValueError(
        f"{name} holds values up to {largest:.3g} in absolute value; for {X.dtype} data of "
        f"shape {X.shape}, k-means' squared distances are exact only when the largest "
        f"absolute value lies between {lower:.3g} and {upper:.3g} (or is 0). {remedy}"
    )


def _check_assigned_centers(estimator):
    """``cluster_centers_`` as inference reads it. A fit leaves a valid array there, but
    the attribute is public and may be assigned (scikit-learn's users do): a list, an
    integer array, centers of another shape or holding NaN or infinity fail here, named,
    not deep in an engine or silently (NaN: max() carries it through the scale test, and
    every comparison with it is False), whatever the metric (their scale:
    :func:`check_magnitude`)."""
    centers = estimator.cluster_centers_
    if (not (isinstance(centers, np.ndarray) or is_device_array(centers))
            or centers.dtype not in (np.float32, np.float64)):
        got = (f"an array of dtype {centers.dtype}" if hasattr(centers, "dtype")
               else f"a {type(centers).__name__}")
        raise TypeError(f"cluster_centers_ should be a float32 or float64 array, got {got}; "
                        "assign np.asarray(centers, dtype=np.float64), for example.")
    if centers.ndim != 2 or centers.shape[1] != estimator.n_features_in_:
        raise ValueError(f"cluster_centers_ should have shape (n_clusters, "
                         f"{estimator.n_features_in_}) (the features the model was fitted "
                         f"on), got {centers.shape}.")
    if not bool(array_module(centers).isfinite(centers).all()):
        raise ValueError("cluster_centers_ holds NaN or infinity: assign finite centers, "
                         "or refit.")


def transform_dtype(query_dtype, centers_dtype):
    """The dtype ``transform`` measures and returns in: float32 where both the query and
    the centers are float32, else float64 (a query of any other dtype counts as
    float64), as scikit-learn's ``euclidean_distances``."""
    return np.result_type(np.float32 if query_dtype == np.float32 else np.float64,
                          centers_dtype)


def check_predict_data(estimator, X, promote=False):
    """Validate ``X`` for predict/transform/score against the fitted model.

    Returns ``(X, on_device)``; X is cast to the dtype of ``cluster_centers_``, or with
    ``promote`` (``transform``) to :func:`transform_dtype`'s: a float64 query of a
    float32 model is measured and returned in float64, as scikit-learn's.
    """
    _check_assigned_centers(estimator)
    dtype = estimator.cluster_centers_.dtype

    def cast_to(query_dtype):
        return transform_dtype(query_dtype, dtype) if promote else dtype

    # A cosine model (only its fit keeps unit centers) measures unit rows.
    scale_free = getattr(estimator, "_unit_centers", None) is not None
    if is_sparse(X) or is_pandas_sparse(X):
        with np.errstate(over="ignore"):  # a float64 value past float32's range: said below
            X, on_device = _check_sparse_X(estimator, X, None,
                                           dtype=None if promote else dtype, reset=False)
            wanted = cast_to(X.dtype)
            if X.dtype != wanted:
                X = X.astype(wanted)
        check_magnitude(X, centers=estimator.cluster_centers_, scale_free=scale_free)
        return X, on_device
    if is_device_array(X):
        import cupy

        X = _check_device_X(X, "X", cupy)
        if X.shape[1] != estimator.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                f"{estimator.n_features_in_} features as input."
            )
        X = cupy.ascontiguousarray(X, dtype=cast_to(X.dtype))
        check_magnitude(X, centers=estimator.cluster_centers_, scale_free=scale_free)
        return X, True
    with _quiet_finiteness_check():
        X = validate_data(estimator, X, dtype=list(FLOAT_DTYPES), order="C", reset=False)
    with np.errstate(over="ignore"):  # a float64 value past float32's range: said below
        X = kernel_view(np.ascontiguousarray(X, dtype=cast_to(X.dtype)))
    check_magnitude(X, centers=estimator.cluster_centers_, scale_free=scale_free)
    return X, False


def weight_exponent(largest):
    """The power of two by which weights whose largest is ``largest`` (finite, > 0) are
    divided: the largest lands in [0.5, 1), or in [1, 2) from 2**1023 on, whose [0.5, 1)
    scale, 2**1024, float64 cannot hold (it was infinite, and an inertia of 0 times it
    NaN)."""
    return min(int(np.frexp(largest)[1]), int(np.finfo(np.float64).maxexp) - 1)


def is_number_weight(sample_weight):
    """Whether ``sample_weight`` is one number for every sample. A bool is one, as in
    scikit-learn (``True`` weighs each sample 1, as an array of bools weighs it 0 or 1;
    it was refused as an array of shape ())."""
    return isinstance(sample_weight, (numbers.Number, np.bool_))


def number_weights(sample_weight, n_samples):
    """A number given as ``sample_weight``: its ``n_samples`` copies, a host array
    (:func:`converted_weights`: a Decimal or Fraction becomes float64, a complex number
    keeps its dtype for :func:`weights_of_shape` to refuse by name). The caller puts
    them where X is."""
    return converted_weights(np.full(n_samples, sample_weight))


def converted_weights(sw):
    """A NumPy ``sample_weight`` of strings or objects (Decimals, Fractions) as float64,
    converted as scikit-learn's ``check_array`` converts them (and an X of such values),
    with its error classes: a ValueError where a value does not parse or overflows, a
    TypeError where it is no number (complex). None becomes NaN, refused later as
    scikit-learn refuses it. Other arrays are returned as they are."""
    if sw.dtype.kind not in "OUS":
        return sw
    try:
        return sw.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        error = TypeError if isinstance(exc, TypeError) else ValueError
        raise error("sample_weight must hold real numbers: its values do not convert to "
                    f"float64 ({exc}).") from None


def check_sample_weight(sample_weight, X):
    """A fresh, validated ``sample_weight`` of X's dtype, on X's side, and its scale.

    Returns ``(sample_weight, scale)``: the weights divided by ``scale``, a power of two
    (:func:`weight_exponent`'s) that brings the largest to [0.5, 1). Every result is
    scale-invariant, and a power of two scales exactly, so the fit is the same as with
    the weights given, bit for bit; only weights a float32 (or float64) could not hold
    (1e39, 1e-46; sums past 1e308) now work. Inertias computed with these weights are
    multiplied by ``scale``.
    """
    xp = array_module(X)
    n_samples = X.shape[0]
    if sample_weight is None:
        return xp.ones(n_samples, dtype=X.dtype), 1.0
    if is_number_weight(sample_weight):
        # A number has no side: its copies go where X is (a GPU X refused it as a host
        # array before).
        sample_weight = number_weights(sample_weight, n_samples)
        if xp is not np:
            sample_weight = xp.asarray(sample_weight)
    x_on_device = is_device_array(X) or is_device_sparse(X)
    if is_device_array(sample_weight) != x_on_device:
        where_sw = "GPU" if is_device_array(sample_weight) else "host (NumPy)"
        where_x = "GPU" if x_on_device else "host (NumPy)"
        raise ValueError(
            f"sample_weight is a {where_sw} array but X is a {where_x} array; "
            "pass both on the same side."
        )
    sw = weights_of_shape(sample_weight, n_samples, as_cupy if xp is not np else None)
    sw = sw.astype(xp.float64, copy=True)  # checked before any rounding to X's dtype
    if not bool(xp.isfinite(sw).all()):
        raise ValueError("Input sample_weight contains NaN or infinity.")
    if bool((sw < 0).any()):
        raise ValueError("Negative values in data passed to sample_weight.")
    largest = float(sw.max())
    if not largest > 0:
        raise ValueError("sample_weight must have at least one positive value, got all zeros.")
    exponent = weight_exponent(largest)
    positive = sw > 0
    sw = xp.ldexp(sw, -exponent)  # exact: a power of two, unless it leaves the normals
    # Below the smallest normal number a weight keeps fewer significant bits (float32's
    # 1e-45 is one bit), or none (1e-300 beside 1e300 became 0: its cluster kept its
    # initial center), and a cluster of such float64 weights has a weight whose
    # reciprocal, which averages its center, overflows: infinite centers.
    lost = int((positive & (sw < float(np.finfo(X.dtype).tiny))).sum())
    if lost:
        raise_weights_beyond_dtype(X.dtype, f"{lost} positive weights are", largest)
    return sw.astype(X.dtype, copy=False), float(np.ldexp(1.0, exponent))


def weights_of_shape(sample_weight, n_samples, as_array=None):
    """The checks of ``sample_weight`` that read no value, for every estimator: a sparse
    matrix refused; the array, ``as_array(sample_weight)`` (a device or dask array kept as
    it is), or by default :func:`converted_weights` of it on the host; a real dtype
    (``TypeError``) and the shape ``(n_samples,)`` (``ValueError``). A number is taken
    as ``n_samples`` copies of itself (before this call: the side it lands on is the
    caller's). Returns the array; its values are the caller's to check, where it has
    them (a dask array's are read by the fit)."""
    if _is_sparse(sample_weight):
        raise TypeError("sample_weight must be a dense 1-D array, got a sparse matrix.")
    sw = (as_array(sample_weight) if as_array is not None
          else converted_weights(np.asarray(sample_weight)))
    if sw.dtype.kind == "c":  # a ValueError, as scikit-learn's for complex X or weights
        raise ValueError(f"sample_weight must hold real numbers, got dtype {sw.dtype}.")
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {sw.dtype}.")
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight.shape == {sw.shape}, expected ({n_samples},) to match X."
        )
    return sw


def weights_beyond_dtype(dtype, smallest_positive, exponent):
    """Whether a positive weight of ``smallest_positive``, divided by ``2**exponent``
    (:func:`weight_exponent`'s), falls below ``dtype``'s smallest normal number, where it
    keeps fewer significant bits, or none (see :func:`check_sample_weight`)."""
    return float(np.ldexp(smallest_positive, -exponent)) < float(np.finfo(dtype).tiny)


def raise_weights_beyond_dtype(dtype, which, largest):
    """The error for weights :func:`weights_beyond_dtype` refuses; ``which`` names them
    (``"20 positive weights are"``)."""
    dtype = np.dtype(dtype)
    remedy = "Pass float64 X, or set" if dtype == np.float32 else "Set"
    raise ValueError(
        f"sample_weight spans more than {dtype} can hold: {which} over "
        f"2**{-int(np.finfo(dtype).minexp) - 1} times smaller than the largest "
        f"({largest:.3g}) and would lose their precision or count as zero. {remedy} "
        "those weights to 0 yourself."
    )


def check_x_squared_norms(x_squared_norms, n_samples, xp):
    """``kmeans_plusplus``'s ``x_squared_norms`` as its kernels take it: float64, on X's
    side (``xp``), contiguous, never read-only (:func:`kernel_view`), of shape
    ``(n_samples,)``; a column ``(n_samples, 1)`` is taken as scikit-learn takes it.
    NaN or infinity is refused, as scikit-learn refuses it (they picked one row again
    and again)."""
    if np.ndim(x_squared_norms) == 0:
        raise ValueError(f"x_squared_norms must be an array of shape ({n_samples},), got "
                         f"{x_squared_norms!r}.")
    if xp is np and not is_device_array(x_squared_norms):
        with _quiet_finiteness_check():
            norms = check_array(x_squared_norms, dtype=np.float64, ensure_2d=False,
                                input_name="x_squared_norms")
    else:  # on the GPU: the host's checks, without check_array
        norms = xp.asarray(x_squared_norms)
        if norms.dtype.kind not in "biuf":
            raise ValueError("x_squared_norms must hold real numbers, got dtype "
                             f"{norms.dtype}.")
        norms = norms.astype(xp.float64, copy=False)
        if not bool(xp.isfinite(norms).all()):
            raise ValueError("Input x_squared_norms contains NaN or infinity.")
    if norms.ndim == 2 and norms.shape[1] == 1:
        norms = norms[:, 0]
    if norms.shape[0] != n_samples:
        raise ValueError(  # scikit-learn's message
            f"The length of x_squared_norms {norms.shape[0]} should be equal to the length "
            f"of n_samples {n_samples}.")
    if norms.ndim != 1:
        raise ValueError(f"x_squared_norms must have shape ({n_samples},) or "
                         f"({n_samples}, 1), got {norms.shape}.")
    return kernel_view(xp.ascontiguousarray(norms))


def check_random_state_param(random_state):
    """scikit-learn's ``check_random_state``, with an error that names the parameter."""
    try:
        return check_random_state(random_state)
    except ValueError as exc:
        raise InvalidParameterError(
            "random_state must be None, an int in [0, 2**32 - 1] or a "
            f"numpy.random.RandomState, got {random_state!r}."
        ) from exc


def check_random_init(init, n_clusters, sample_weight):
    """``init="random"`` draws ``n_clusters`` distinct samples with probability
    proportional to their weight: there must be that many with a positive weight."""
    if isinstance(init, str) and init == "random":
        n_positive = int((sample_weight > 0).sum())
        if n_positive < n_clusters:
            raise ValueError(
                f"init='random' draws n_clusters={n_clusters} distinct samples with "
                f"probability proportional to sample_weight, but only {n_positive} samples "
                "have a positive sample_weight."
            )


def check_init_array(init, n_clusters, n_features, dtype, xp, scale_free=False):
    """A fresh, validated copy of an array ``init`` in X's dtype, in ``xp``'s memory
    (``init`` itself may be on either side: it is a parameter, not data).

    Its values must lie within :func:`usable_magnitude`'s upper bound for one sample
    (as a fitted model's centers must for inference, see :func:`check_magnitude`): a
    center farther out overflows ``||c||^2 - 2 x.c`` in X's dtype, and the NaN or
    infinities that make would decide labels silently. ``scale_free``
    (``metric="cosine"``, whose initial centers are made unit): any finite values."""
    if _is_sparse(init):
        raise TypeError("init must be a dense array, got a sparse matrix.")
    if is_device_array(init):
        import cupy

        centers = _check_device_X(init, "init", cupy)
        centers = xp.asarray(centers.get() if xp is np else centers)
    else:
        try:
            centers = check_array(init, dtype=list(FLOAT_DTYPES), input_name="init")
        except (TypeError, ValueError) as exc:
            # Some of check_array's messages ("Expected 2D array", "could not convert
            # string to float") do not say which argument they are about.
            if "init" in str(exc):
                raise
            raise type(exc)(f"init must be an array of shape (n_clusters, n_features) of "
                            f"real numbers: {exc}") from None
        centers = xp.asarray(centers)
    if centers.shape[0] != n_clusters:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not match "
            f"the number of clusters {n_clusters}."
        )
    if centers.shape[1] != n_features:
        raise ValueError(
            f"The shape of the initial centers {centers.shape} does not match "
            f"the number of features of the data {n_features}."
        )
    with np.errstate(over="ignore"):  # said below
        rounded = xp.array(centers, dtype=dtype, order="C", copy=True)
    # Finite values past the range of X's dtype (float32) round to infinity there: the
    # fit would start from them silently (scikit-learn refuses them, as its check_array
    # casts init to X's dtype first).
    if not bool(xp.isfinite(rounded).all()):
        raise ValueError(
            f"init holds values beyond the range of {np.dtype(dtype)}, the dtype of X; "
            "rescale init and X, or pass float64 X."
        )
    upper = usable_magnitude(dtype, 1, n_features)[1]
    largest = float(xp.abs(rounded).max()) if rounded.size else 0.0
    if not scale_free and largest > upper:
        raise ValueError(
            f"init holds values up to {largest:.3g} in absolute value; for {np.dtype(dtype)} "
            f"data of {n_features} features, centers beyond {upper:.3g} overflow the squared "
            "distances in that dtype and would decide labels silently. Assign initial "
            "centers within that range, or rescale init and X (by a power of two, which "
            "changes no label)"
            + (", or pass float64 X." if np.dtype(dtype) == np.float32 else ".")
        )
    return rounded


def check_n_samples(n_samples, n_clusters):
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
