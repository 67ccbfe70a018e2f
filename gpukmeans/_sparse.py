"""Sparse input: recognising it, bringing it to the engines' form, and its variances.

The engines for sparse data (:mod:`gpukmeans._cpu_sparse`, :mod:`gpukmeans._gpu_sparse`)
take a CSR matrix of float32 or float64 without duplicate entries: ``scipy.sparse`` on the
host, ``cupyx.scipy.sparse`` on a GPU (and ``scipy.sparse`` on the test suite's emulated
device, whose arrays are NumPy's). Centers are always dense.

CuPy is never imported here unless a CuPy matrix is met or asked for.
"""

import sys

import numpy as np


def is_sparse(X):
    """True for a ``scipy.sparse`` or ``cupyx.scipy.sparse`` matrix or array."""
    import scipy.sparse

    return scipy.sparse.issparse(X) or is_device_sparse(X)


def is_pandas_sparse(X):
    """True for a pandas DataFrame whose columns are all sparse
    (``pandas.DataFrame.sparse.from_spmatrix``), which scikit-learn's ``check_array``
    takes as a sparse matrix: its ``.sparse`` accessor exists only then."""
    return getattr(X, "ndim", 0) == 2 and hasattr(X, "dtypes") and hasattr(X, "sparse")


def is_device_sparse(X):
    """True for a ``cupyx.scipy.sparse`` matrix (never imports CuPy: when it is not
    imported yet, no such matrix can exist)."""
    module = sys.modules.get("cupyx.scipy.sparse")
    return module is not None and module.issparse(X)


def without_duplicates(X):
    """``X``, or a copy of it with duplicate entries summed (and so its indices sorted).

    scikit-learn keeps duplicates as they are: its E-step adds their products one by one,
    which is the same dot product, but its row norms (and so its k-means++) square each
    entry apart. A matrix whose entries are unsorted but distinct is kept as it is, so
    that every dot product is summed in scikit-learn's order.
    """
    if X.has_canonical_format:
        return X
    if not is_device_sparse(X):  # TfidfVectorizer's rows are unsorted: a cheap check first
        from ._cpu_sparse import has_duplicate_entries

        if not has_duplicate_entries(X.indices, X.indptr, X.shape[1]):
            return X
    summed = X.copy()
    summed.sum_duplicates()
    return summed if summed.nnz != X.nnz else X


def to_module(X, xp):
    """A CSR matrix in the memory of the array module ``xp``: a host matrix becomes
    ``cupyx.scipy.sparse`` for CuPy (one copy to the device); a device matrix, or any
    matrix for a NumPy stand-in (the emulator), is ``X`` itself."""
    if getattr(xp, "__name__", "") != "cupy" or is_device_sparse(X):
        return X
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse.csr_matrix(X)


def mean_variance(X, xp):
    """The features' variances (float64, ``(n_features,)``) of a CSR matrix, the implicit
    zeros included: scikit-learn's ``mean_variance_axis`` on the host; on a GPU the same
    two passes (the means, then the squared deviations of the stored entries, plus a
    squared mean for each implicit zero)."""
    if xp is np or not is_device_sparse(X):
        from sklearn.utils.sparsefuncs import mean_variance_axis

        return np.asarray(mean_variance_axis(X, axis=0)[1], dtype=np.float64)
    n_samples, n_features = X.shape
    data = X.data.astype(xp.float64)
    columns = X.indices
    means = xp.bincount(columns, weights=data, minlength=n_features) / n_samples
    deviations = data - means[columns]
    squared = xp.bincount(columns, weights=deviations * deviations, minlength=n_features)
    n_stored = xp.bincount(columns, minlength=n_features)
    return (squared + (n_samples - n_stored) * means**2) / n_samples
