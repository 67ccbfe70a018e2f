"""The public estimator: parameters, validation calls, device dispatch, fitted attributes."""

import contextlib
import logging
import warnings
from typing import Callable, NamedTuple

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from . import _spherical, _validation
from ._device import array_module, get_engine, resolve_device
from ._engine import shifted_to_centers
from ._init import kmeans_plusplus as _kmeans_plusplus
from ._init import (KMEANS_PARALLEL_ROUNDS, kmeans_parallel, kmeans_plusplus_centred,
                    random_init)
from ._lloyd import kmeans_single_lloyd, to_host
from ._progress import NULL_REPORTER, make_reporter
from ._sparse import is_device_sparse, is_sparse, mean_variance, to_module

logger = logging.getLogger(__name__)


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin,
                  BaseEstimator):
    """What :class:`KMeans` and :class:`gpukmeans.MiniBatchKMeans` share, as
    scikit-learn's ``_BaseKMeans``: the device of a fit, and inference (labels, distances
    and inertia against ``cluster_centers_``, in the fit's frame where it kept one; a
    MiniBatchKMeans fit never centres, so its frame is the data's own)."""

    def _resolve_fit_device(self, X):
        """The device of a fit: data already on the GPU go to the GPU under "auto"."""
        if self.device == "auto" and (_validation.is_device_array(X) or is_device_sparse(X)):
            return resolve_device("gpu")
        return resolve_device(self.device)

    # ------------------------------------------------------------ inference
    def _prepare(self, X, sample_weight=None, use_weight=False, in_fit_frame=True,
                 promote=False):
        """Validate inputs and pick the engine for inference.

        Device arrays go to the GPU engine; host arrays to the engine of ``device_``
        (or the CPU when the model was fitted on a GPU no longer usable).
        Returns ``(X, sample_weight, weight_scale, engine, centers, to_host, zero_rows)``,
        the arrays
        in the engine's memory; ``weight_scale`` multiplies inertias computed with
        ``sample_weight`` (see ``check_sample_weight``), and halves them for
        ``metric="cosine"``; ``to_host`` says whether results go back to NumPy.
        With ``metric="cosine"``, X's rows are L2-normalised, and so are the centers
        unless they are the fit's own; ``zero_rows`` marks X's rows with no direction
        (None when there are none: always for Euclidean models), which the caller
        measures at cosine distance 1 from every center
        (:func:`gpukmeans._spherical.normalize_query_rows`). ``promote``: X and the
        centers in the wider of X's and the centers' dtypes (``transform``; see
        :func:`gpukmeans._validation.check_predict_data`).
        """
        check_is_fitted(self)
        given, unit_weights = X, sample_weight is None
        X, on_device = _validation.check_predict_data(self, X, promote=promote)
        # As the fit streams: a memmap, or any array with stream_block_rows; not a copy
        # that validation made (another dtype), which is in memory already.
        # (MiniBatchKMeans, which shares this inference, has no stream_block_rows.)
        block_rows = getattr(self, "stream_block_rows", None)
        stream = ((isinstance(given, np.memmap) or block_rows is not None)
                  and not on_device and np.may_share_memory(X, given))
        weight_scale = 1.0
        if use_weight:
            sample_weight, weight_scale = _validation.check_sample_weight(sample_weight, X)
        if on_device:
            device = "gpu"
        else:
            device = self.device_ if self.device_ == "cpu" else resolve_device("auto")
        centers = self.cluster_centers_
        sparse = is_sparse(X)
        engine = get_engine(device, X.shape[0], X.shape[1], centers.shape[0], sparse=sparse,
                            unit_centers=_is_cosine(self))
        xp = engine.xp
        X = _to_module(X, xp)
        if use_weight:
            sample_weight = xp.asarray(sample_weight)
        # A sparse query is measured as it is: centring it would make it dense.
        if (in_fit_frame and not sparse and getattr(self, "_fit_origin", None) is not None
                and _validation.holds_fitted_centers(self._frame_of_centers,
                                                     self.cluster_centers_)):
            # Labels and inertia where the fit measured them: X moved by the fit's mean (a
            # new array, bitwise the fit's centring) against the centers as the fit
            # computed them.
            streamed = (_streamed_inference(self, X, sample_weight, unit_weights, engine,
                                            block_rows) if stream else None)
            if streamed is not None:  # centred block by block: no copy of X
                X, engine = streamed
                X.shift = self._fit_origin
            else:
                X = X - xp.asarray(self._fit_origin)
            centers = xp.asarray(self._centers_at_origin)
        else:
            centers = xp.asarray(self.cluster_centers_)
            if in_fit_frame and not stream and not _is_cosine(self):
                # No fit's frame (MiniBatchKMeans, assigned centers): labels measured
                # beside the data where the engine's float32 labels need it (a moved
                # copy of X, as the fit's frame takes one).
                X, centers = shifted_to_centers(engine, X, centers)
        if promote:
            centers = centers.astype(X.dtype, copy=False)  # only ever wider: exact
        zero_rows = None
        if _is_cosine(self):
            streamed = (_streamed_cosine_inference(self, X, sample_weight, unit_weights, engine,
                                                   block_rows)
                        if stream and in_fit_frame else None)
            with engine.runtime():
                if streamed is not None:  # normalised block by block: no copy of X
                    X, engine, zero_rows = streamed
                else:
                    X, zero_rows = _spherical.normalize_query_rows(X, engine)
                if not _validation.holds_fitted_centers(getattr(self, "_unit_centers", None),
                                                        self.cluster_centers_):
                    centers = _normalize_centers(centers, engine, "cluster_centers_")
            weight_scale *= _spherical.INERTIA_SCALE
        return X, sample_weight, weight_scale, engine, centers, not on_device, zero_rows

    def _return(self, array, host):
        return to_host(array) if host else array

    def predict(self, X):
        """Index of the closest cluster center for each sample in X.

        Parameters
        ----------
        X : {array-like, sparse matrix, cupy.ndarray, cupyx.scipy.sparse matrix} of shape \
                (n_samples, n_features)

        Returns
        -------
        labels : ndarray or cupy.ndarray of shape (n_samples,)
        """
        X, _, _, engine, centers, host, zero_rows = self._prepare(X)
        labels = engine.xp.empty(X.shape[0], dtype=engine.xp.int32)
        with engine.runtime():
            engine.assign_labels(X, centers, labels)
        if zero_rows is not None:
            labels[zero_rows] = 0  # equally far from every center
        return self._return(labels, host)

    def transform(self, X):
        """Euclidean distance from each sample to each cluster center; with
        ``metric="cosine"``, the cosine distance ``1 - cos``, in [0, 2].

        Returns
        -------
        X_new : ndarray or cupy.ndarray of shape (n_samples, n_clusters)
            float32 where both X and the model are float32, else float64 (X of another
            dtype counts as float64), as scikit-learn's: a float64 query of a float32
            model is measured in float64.
        """
        # Distances do not depend on the frame, and the engines sum them from the
        # differences where the norm expansion cancels: exactly 0 on a center, as given.
        X, _, _, engine, centers, host, zero_rows = self._prepare(X, in_fit_frame=False,
                                                                  promote=True)
        with engine.runtime():
            distances = engine.pairwise_distances(X, centers)
        if _is_cosine(self):
            distances = _spherical.cosine_distances(distances)
            if zero_rows is not None:
                distances[zero_rows] = 1.0
        return self._return(distances, host)

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then ``transform(X)``."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of X under the fitted centers (cosine
        distances with ``metric="cosine"``).

        Returns
        -------
        score : float
        """
        X, sample_weight, weight_scale, engine, centers, _, zero_rows = self._prepare(
            X, sample_weight, use_weight=True
        )
        labels = engine.xp.empty(X.shape[0], dtype=engine.xp.int32)
        zero_rows_inertia = 0.0
        if zero_rows is not None:  # cosine distance 1 each, whatever their label
            zero_rows_inertia = float(sample_weight[zero_rows].sum()) / _spherical.INERTIA_SCALE
            sample_weight = engine.xp.where(zero_rows, 0, sample_weight).astype(
                sample_weight.dtype)
            if hasattr(X, "blocks"):  # streamed data hold the weights of their blocks
                X.sample_weight = sample_weight
        with engine.runtime():
            engine.assign_labels(X, centers, labels)
            inertia = float(engine.inertia(X, sample_weight, centers, labels))
        return -(inertia + zero_rows_inertia) * weight_scale


class KMeans(_BaseKMeans):
    """K-Means clustering on an NVIDIA GPU (CUDA kernels) or the CPU (Numba).

    A drop-in for :class:`sklearn.cluster.KMeans`: every shared parameter means the
    same, and from the same initial centers the result is scikit-learn's (float64
    labels identical; float32 up to exact near-ties).

    Parameters
    ----------
    n_clusters : int, default=8
        The number of clusters to form, and of centroids to generate.
    init : {"k-means++", "k-means||", "random"}, callable or array-like of shape \
            (n_clusters, n_features), default="k-means++"
        "k-means++": greedy k-means++ with ``2 + int(ln(n_clusters))`` local trials per
        center, weighted by ``sample_weight``: one pass over X per center. "k-means||":
        scalable k-means++ (Bahmani et al., VLDB 2012; cuML's and dask-ml's default),
        ``init_max_iter`` rounds that each keep about ``oversampling_factor *
        n_clusters`` samples, drawn as k-means++ draws one, then the kept samples,
        weighted by the samples nearest to each, clustered into ``n_clusters`` (k-means++
        and Lloyd): a few passes over X instead of ``n_clusters``, for many clusters on
        many more samples (see :func:`gpukmeans._init.kmeans_parallel`); not the same
        centers as k-means++. "random": ``n_clusters`` distinct rows
        drawn with probability proportional to their weight. A callable is called as
        ``init(X, n_clusters, random_state=random_state)`` on the data the fit works on
        (centred where the engine centres it: see ``copy_x``; with ``metric="cosine"``,
        the L2-normalised rows), read-only; the centers it returns are normalised for a
        cosine fit. An array gives the initial centers (NumPy or CuPy).
    n_init : "auto" or int, default="auto"
        Number of runs with different seeds; the one with the lowest inertia wins.
        "auto": 1 for "k-means++", "k-means||" and array init, 10 for "random" and
        callables.
    max_iter : int, default=300
        Maximum number of iterations of a single run.
    tol : float, default=1e-4
        Relative tolerance: a run stops when the sum of squared center shifts is at most
        ``tol`` times the mean variance of the features. A run also stops, strictly
        converged, when no label changed.
    verbose : int, default=0
        0: silent. 1 or more: scikit-learn's lines, printed on stdout as scikit-learn
        prints them ("Initialization complete", "Iteration 0, inertia 1.5.", "Converged
        at iteration 7: strict convergence."), at the cost of one more pass over the data
        per iteration for the inertia. Progress bars are asked for apart, whatever
        ``verbose``: ``with gpukmeans.progress_bars(): km.fit(X)`` draws them on stderr
        (k-means++'s centers, then each run's iterations, each run's inertia when it
        ends), at no extra pass over the data; the ``gpukmeans`` command draws them
        when stderr is a terminal.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation draws. The same seed gives bitwise the same result on
        the same device, whatever the number of threads.
    copy_x : bool, default=True
        Accepted for scikit-learn compatibility; it changes nothing, so that a parameter
        meant to save memory never changes the answer. The data are centred on a copy
        for accurate distances wherever the labels need it: always on the GPU and for
        float64; for float32 on the CPU, whose labels are exact either way, only when the
        data's mean is farther from the origin than the samples are from the mean. The
        caller's array is never modified (scikit-learn's ``copy_x=False`` centres it in
        place and adds the mean back, which need not restore it bit for bit).
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both give Lloyd's exact result; accepted for compatibility with scikit-learn,
        and neither chooses the method: the CPU engine skips distances by Hamerly's,
        Elkan's or Yinyang's bounds where its measured rules say they pay
        (docs/cpu-engine.md), the GPU engine runs a fused distance and argmin pass each step.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "euclidean": k-means. "cosine": spherical k-means (Dhillon and Modha, 2001), for
        directions such as text embeddings: the rows are L2-normalised (on a copy; a row
        with a zero norm is an error that names it in ``fit``, and at cosine distance 1
        from every center, in cluster 0, in ``predict``, ``transform`` and ``score``; any
        other scale is fine, the range Euclidean k-means needs does not apply), each
        sample goes to the center of largest cosine similarity (ties: lowest index among
        centers equally near in float64; see docs/cosine.md on exact ties), and each center
        is the direction
        of its cluster's weighted sum, a unit vector (one whose sum is exactly zero keeps
        its previous center). k-means++ seeds on the cosine distance ``1 - cos``, array
        and callable inits are normalised, and the data are never centred. ``tol`` is
        relative to the mean feature variance of the normalised rows; ``inertia_``,
        ``score`` and ``transform`` give cosine distances. See docs/cosine.md.
    device : {"auto", "cpu", "gpu"}, default="auto"
        "gpu" runs on the CUDA device (an error if none is usable, saying why); "cpu" on
        the CPU engine (NumPy for small fits, Numba for the rest); "auto" picks the GPU
        when CuPy and a device are usable, or when X already lives on the GPU, and the
        CPU otherwise. A parameter of ``fit``:
        inference runs on the GPU for GPU queries, and for host queries where the fit
        ran (``device_``), whatever ``device`` says since.
    oversampling_factor : float, default=2.0
        "k-means||" only (as in cuML): the samples kept per round, about
        ``oversampling_factor * n_clusters``.
    init_max_iter : int or None, default=None
        "k-means||" only (as in cuML): its number of rounds; None means 5.
    stream_block_rows : int or None, default=None
        Rows per block of a streamed CPU fit. A ``numpy.memmap`` X (``np.load(path,
        mmap_mode="r")`` gives one) of float32 or float64 in C order is streamed: each
        pass reads the file a block at a time, and memory holds a few blocks, the
        centers and per sample the int32 labels (twice) and ``sample_weight`` when given,
        whatever ``n_samples`` (k-means++'s distances and float32 distance bounds go to
        temporary files); the result is the in-memory fit's, bit for bit (see the
        README's "KMeans on data larger than memory" and docs/streaming.md). None:
        blocks of about 32 MiB. Set, it also streams an in-memory array. ``predict`` and
        ``score`` on such data centre it block by block where the fit centred, instead of
        copying it. Data too small for
        the Numba engine's passes (at most 2**18 values; at most 2**18 samples and 4e7
        values; or a fit small enough for the NumPy engine) are read into memory instead.
    max_device_memory : int or None, default=None
        Bytes of GPU memory a GPU fit of host data may use; None: the device's free
        memory. Host X (NumPy or memmap) whose fit would not fit is streamed to the
        device in blocks (pinned buffers, the next block's copy overlapping the kernels
        on this one); where not even one block fits, MemoryError, before any work.
        Same result as the in-memory GPU fit up to the rounding of its float64 sums.
        Dense data only: a sparse X is copied to the device whole, whatever this says.

    Attributes
    ----------
    cluster_centers_ : ndarray or cupy.ndarray of shape (n_clusters, n_features)
        Coordinates of the cluster centers, in X's dtype (float32 stays float32).
    labels_ : ndarray or cupy.ndarray of shape (n_samples,)
        Label of each point; equal to ``predict(X)``, bit for bit (inference measures in
        the frame the fit measured in: see docs/exactness.md).
    inertia_ : float
        Sum of (weighted) squared distances of samples to their closest center; with
        ``metric="cosine"``, of (weighted) cosine distances ``1 - cos``.
    n_iter_ : int
        Number of iterations run by the best run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.
    device_ : {"cpu", "gpu"}
        Where the fit ran.

    See Also
    --------
    sklearn.cluster.KMeans : The reference implementation this one reproduces.

    Notes
    -----
    NumPy input gives NumPy results. CuPy input (or any array exposing
    ``__cuda_array_interface__``, such as a PyTorch CUDA tensor) stays on the GPU and
    gives CuPy results; passing ``X`` and ``sample_weight`` on different sides is an error.

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0, device="cpu").fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.predict([[0, 0], [12, 3]]).tolist() == [km.labels_[0], km.labels_[3]]
    True
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        metric="euclidean",
        device="auto",
        oversampling_factor=2.0,
        init_max_iter=None,
        stream_block_rows=None,
        max_device_memory=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.metric = metric
        self.device = device
        self.oversampling_factor = oversampling_factor
        self.init_max_iter = init_max_iter
        self.stream_block_rows = stream_block_rows
        self.max_device_memory = max_device_memory

    # ------------------------------------------------------------------ fit
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform() returns X's dtype, float32 included, as scikit-learn's KMeans.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix, cupy.ndarray, cupyx.scipy.sparse matrix} of shape \
                (n_samples, n_features)
            Training instances. float32 and float64 are kept; other real types become
            float64. Never modified. A sparse matrix (any scipy.sparse format, or a pandas
            DataFrame of sparse columns) is converted once to CSR, duplicates summed, and
            never centred; ``cupyx.scipy.sparse`` CSR stays on the GPU.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : {array-like, cupy.ndarray} of shape (n_samples,), default=None
            Non-negative weights, not all zero, on the same side (host or GPU) as X.
            Used in k-means++/random seeding, in the center updates and in the inertia.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        _validation.check_params(self)
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' "
                "instead.",
                RuntimeWarning,
                stacklevel=2,
            )
        device = self._resolve_fit_device(X)
        xp = array_module(device)
        is_memmap = isinstance(X, np.memmap)
        X, on_device, feature_names, X_mean, x_squared_norms = _validation.check_fit_data(
            self, X, xp, row_norms=not (is_memmap or self.stream_block_rows is not None)
            and self.metric != "cosine",  # streamed fits' norms come block by block
            n_clusters=self.n_clusters)
        n_samples, n_features = X.shape
        _validation.check_n_samples(n_samples, self.n_clusters)
        # Data larger than memory, or than the GPU's: a fit a block of rows at a time.
        streaming = (None if on_device or is_sparse(X)
                     else _plan_streaming(self, X, is_memmap, device, xp))
        if streaming and sample_weight is None:
            weight_scale = 1.0  # unit weights, made block by block
        else:
            sample_weight, weight_scale = _validation.check_sample_weight(sample_weight, X)
            _validation.check_random_init(self.init, self.n_clusters, sample_weight)
        n_init = self._effective_n_init()
        init = self.init
        init_is_array = not isinstance(init, str) and not callable(init)
        if init_is_array:
            init = _validation.check_init_array(init, self.n_clusters, n_features, X.dtype, xp,
                                                scale_free=self.metric == "cosine")
        random_state = _validation.check_random_state_param(self.random_state)

        # Validation is over: from here on, work.
        sparse = is_sparse(X)
        cosine = self.metric == "cosine"
        if streaming:
            unit_mean = None
            if cosine:
                # The unit rows are a new array as large as X (a temporary file for a
                # memmap): the fit streams them, as it would X.
                X = _spherical.normalize_rows_blockwise(X, streaming.block_rows, is_memmap)
                unit_mean = X.mean(axis=0, dtype=np.float64)
            X, engine = streaming.start(X, sample_weight, cosine)
        else:
            engine = get_engine(device, n_samples, n_features, self.n_clusters, sparse=sparse,
                                unit_centers=cosine)
            if not on_device and xp is not np:
                # The one host-to-device copy of the fit.
                X, sample_weight = _to_module(X, xp), xp.asarray(sample_weight)
        if not on_device and xp is not np and not sparse:
            X_mean = xp.asarray(X_mean)
        inertia_scale = weight_scale * (_spherical.INERTIA_SCALE if cosine else 1.0)
        reporter = make_reporter(self.verbose, n_init, self.max_iter, inertia_scale)
        # Closed on the way out, also when the fit fails: no bar is left open.
        with engine.runtime(), contextlib.closing(reporter):
            if cosine and streaming:  # unit rows already, block by block
                from ._replay import RowNormsSum

                x_squared_norms, is_centred, X_mean = RowNormsSum(X), False, unit_mean
            elif cosine:
                # Unit rows in a new array, never centred: centring would move them off
                # the sphere. The tolerance is the variance of the unit rows.
                X = _spherical.normalize_rows(X, engine)
                x_squared_norms, is_centred = engine.row_norms(X), False
                X_mean = X.mean(axis=0, dtype=np.float64)
            else:
                # Centred data give more accurate ||x||^2 - 2 x.c + ||c||^2 distances,
                # where the engine's labels need them. A new array: the caller's is
                # untouched.
                X, x_squared_norms, is_centred = engine.centered(X, X_mean, x_squared_norms)
            if sparse and not cosine:
                # scikit-learn's mean_variance_axis: sparse data are never centred.
                tol = _tolerance(X, self.tol, xp)
            else:
                tol = _tolerance_from_norms(
                    x_squared_norms, None if is_centred else X_mean, n_features, self.tol, xp)
            if init_is_array and is_centred:
                init -= X_mean
            best = self._run_inits(
                X, x_squared_norms, sample_weight, init, random_state, n_init, tol, engine, reporter
            )
            best_labels, best_inertia, best_centers, best_n_iter = best
        centers_at_origin = best_centers
        if is_centred:
            best_centers = best_centers + X_mean

        warn_fewer_distinct_clusters(
            _count_distinct(to_host(best_labels), self.n_clusters), self.n_clusters)

        if not on_device and xp is not np:
            best_centers, best_labels = to_host(best_centers), to_host(best_labels)
            centers_at_origin = to_host(centers_at_origin)

        # Every fitted attribute is set here, together: a failed fit leaves none changed.
        self.cluster_centers_ = best_centers
        # The frame the fit measured in: inference on these centers measures there too,
        # so that predict(X) gives labels_ bit for bit (adding the mean back rounds the
        # centers, and the expansion ||c||^2 - 2 x.c is less accurate far from the origin).
        self._fit_origin = (X_mean if on_device else to_host(X_mean)) if is_centred else None
        self._centers_at_origin = centers_at_origin if is_centred else None
        # Copies: the frame is dropped, and centers are normalised, once cluster_centers_
        # is reassigned or edited in place (see holds_fitted_centers).
        self._frame_of_centers = best_centers.copy() if is_centred else None
        # Fitted unit centers are used as they are; centers assigned later are normalised.
        self._unit_centers = best_centers.copy() if cosine else None
        self.labels_ = best_labels
        self.inertia_ = float(best_inertia) * inertia_scale
        self.n_iter_ = int(best_n_iter)
        self._n_init = n_init  # scikit-learn's name for the runs "auto" chose
        self.n_features_in_ = n_features
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._n_features_out = self.n_clusters
        self.device_ = device
        return self

    def _run_inits(self, X, x_squared_norms, sample_weight, init, random_state, n_init, tol,
                   engine, reporter):
        """``n_init`` runs; returns the best ``(labels, inertia, centers, n_iter)``."""
        best = None
        for run in range(n_init):
            reporter.start_run(run)
            centers_init = self._init_centroids(
                X, x_squared_norms, init, random_state, sample_weight, engine, reporter
            )
            reporter.init_complete()
            labels, inertia, centers, n_iter = kmeans_single_lloyd(
                X,
                x_squared_norms,
                sample_weight,
                centers_init,
                engine,
                max_iter=self.max_iter,
                tol=tol,
                reporter=reporter,
                update_centers=_spherical.unit_centers if self.metric == "cosine" else None,
            )
            # A run replaces the best only if it is better and not the same clustering
            # (rounding can make a permuted twin look marginally better).
            if best is None or (
                inertia < best[1] and not _is_same_clustering(labels, best[0], self.n_clusters)
            ):
                best = labels, inertia, centers, n_iter
        return best

    def _effective_n_init(self):
        n_init = self.n_init
        init = self.init
        if n_init == "auto":
            if isinstance(init, str) and init == "k-means++":
                n_init = 1
            elif isinstance(init, str) and init == "random":
                n_init = 10
            elif callable(init):
                n_init = 10
            else:
                n_init = 1
        if not isinstance(init, str) and not callable(init) and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            n_init = 1
        return n_init

    def _init_centroids(self, X, x_squared_norms, init, random_state, sample_weight, engine,
                        reporter=NULL_REPORTER):
        """Initial centers for one run. Prior validation of data is assumed."""
        xp = engine.xp
        if isinstance(init, str) and init == "k-means||":  # in memory or streamed
            centers, _ = kmeans_parallel(
                X, self.n_clusters, sample_weight, random_state, engine,
                oversampling_factor=self.oversampling_factor,
                n_rounds=self.init_max_iter or KMEANS_PARALLEL_ROUNDS, reporter=reporter,
                metric=self.metric,
            )
        elif hasattr(X, "init_centroids"):  # streamed data (gpukmeans._streaming)
            centers = X.init_centroids(init, self.n_clusters, random_state, reporter)
        elif isinstance(init, str) and init == "k-means++":
            centers, _ = _kmeans_plusplus(
                X, self.n_clusters, x_squared_norms, sample_weight, random_state, engine,
                reporter=reporter,
            )
        elif isinstance(init, str) and init == "random":
            centers = random_init(X, self.n_clusters, sample_weight, random_state, engine)
        elif callable(init):
            # X may be the caller's own array (where the engine does not centre).
            X = read_only(X)
            centers = init(X, self.n_clusters, random_state=random_state)
            centers = _validation.check_init_array(
                centers, self.n_clusters, X.shape[1], X.dtype, xp,
                scale_free=self.metric == "cosine",
            )
        else:
            centers = init
        if self.metric == "cosine" and not isinstance(init, str):
            # k-means++, k-means|| and random give unit rows; given centers are made unit.
            centers = _normalize_centers(centers, engine, "init")
        return xp.ascontiguousarray(centers)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_`` (equal to ``predict(X)``)."""
        return self.fit(X, sample_weight=sample_weight).labels_


def _is_cosine(estimator):
    """Whether inference measures cosine distances: whether the model was fitted with
    ``metric="cosine"`` (only such a fit keeps unit centers), whatever ``metric`` says
    now, as set_params without a new fit changes no fitted attribute. MiniBatchKMeans,
    which shares KMeans' inference (_BaseKMeans), has no ``metric``: always Euclidean."""
    return getattr(estimator, "_unit_centers", None) is not None


def _tolerance(X, tol, xp):
    """scikit-learn's tolerance: ``tol`` times the mean of the features' variances (of a
    sparse matrix's, implicit zeros included, as scikit-learn's ``mean_variance_axis``)."""
    if tol == 0:
        return 0.0
    variances = mean_variance(X, xp) if is_sparse(X) else xp.var(X, axis=0)
    return float(xp.mean(variances) * tol)


def _normalize_centers(centers, engine, name):
    """Unit rows of dense ``centers`` by the dense engine of ``engine``'s device (that of
    sparse data measures CSR rows only)."""
    dense_engine = get_engine(engine.name, centers.shape[0], centers.shape[1], centers.shape[0])
    return _spherical.normalize_rows(centers, dense_engine, name)


def _to_module(X, xp):
    """X in the memory of the engine's array module (one host-to-device copy at most)."""
    return to_module(X, xp) if is_sparse(X) else xp.asarray(X)


def read_only(X):
    """What a callable ``init`` is given: X, which may be the caller's own, unwritable.

    A new view (a new sparse matrix on views of the arrays) is marked read-only; the
    caller's own array keeps its flags. A GPU array cannot be marked and is passed as is.
    """
    if isinstance(X, np.ndarray):
        X = _validation.original_array(X).view()
        X.flags.writeable = False
    elif is_sparse(X) and isinstance(X.data, np.ndarray):
        # Views of the caller's own parts, not of the kernels' writable views of them
        # (_validation.kernel_view), which a view could be marked writable again through.
        parts = [_validation.original_array(part).view()
                 for part in (X.data, X.indices, X.indptr)]
        for part in parts:
            part.flags.writeable = False
        X = type(X)(tuple(parts), shape=X.shape, copy=False)
    return X


def _tolerance_from_norms(x_squared_norms, X_mean, n_features, tol, xp):
    """scikit-learn's tolerance, ``tol`` times the mean of the features' variances, from
    the fit's float64 row norms instead of ``np.var(X, axis=0)`` (three more passes over
    X and a temporary as large; 7 ms of a 100,000 x 32 fit whose steps take 4).

    The mean of the variances is ``sum_i ||x_i - mean||^2 / (n_samples n_features)``:
    the centred data's norms give it directly (their own mean is zero up to rounding);
    uncentred data (``X_mean`` given: float32 near the origin, where the mean's squared
    norm is at most the spread, and the unit rows of a cosine fit, whose variance sum is
    ``1 - ||mean||^2``) subtract ``||mean||^2``. Summed in float64, so it agrees
    with NumPy's to rounding (NumPy sums float32 data in float32), not bit for bit.
    """
    if tol == 0:
        return 0.0
    n_samples = x_squared_norms.shape[0]
    variance_sum = float(x_squared_norms.sum()) / n_samples
    if X_mean is not None:
        variance_sum -= float((xp.asarray(X_mean, dtype=xp.float64) ** 2).sum())
    return max(variance_sum, 0.0) / n_features * tol


def warn_fewer_distinct_clusters(distinct_clusters, n_clusters):
    """scikit-learn's ConvergenceWarning when a fit ended with empty clusters; for the
    caller of the ``fit`` that calls this."""
    if distinct_clusters < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({distinct_clusters}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )


def _count_distinct(labels, n_clusters):
    """How many of the clusters have a label: ``bincount`` a million labels at a time
    (it converts them to int64, a copy twice the labels' size on the whole array)."""
    counts = np.zeros(n_clusters, dtype=np.int64)
    for start in range(0, labels.shape[0], 2**20):
        counts += np.bincount(labels[start:start + 2**20], minlength=n_clusters)
    return int(np.count_nonzero(counts))


class _Streaming(NamedTuple):
    """How a fit streams: ``start(X, sample_weight, unit_centers) -> (data, engine)``
    (``unit_centers``: see :func:`gpukmeans._device.get_engine`), reading ``block_rows``
    rows at a time."""

    start: Callable
    block_rows: int


def _streamed_inference(estimator, X, sample_weight, unit_weights, engine, block_rows):
    """``(data, engine)`` for predict and score on host array ``X`` (the caller's memmap,
    or an array with ``stream_block_rows``, not a converted copy) that the CPU fit would
    stream: :class:`gpukmeans._streaming.StreamedData` and the streamed engine, whose
    labels and inertia are the in-memory engine's, bit for bit, without a centred copy
    of X. None otherwise."""
    from . import _replay, _streaming

    if engine.name != "cpu" or not _streaming.streams(X, estimator.n_clusters):
        return None
    block_rows = _replay.block_rows_for(X, block_rows)
    weights = None if unit_weights else sample_weight
    return _streaming.StreamedData(X, weights, block_rows), _streaming.streamed_engine()


def _streamed_cosine_inference(estimator, X, sample_weight, unit_weights, engine, block_rows):
    """``(data, engine, zero_rows)`` for a cosine model's predict and score on host array
    ``X`` that a CPU fit would stream (see :func:`_streamed_inference`): the rows
    normalised block by block as they are read (``StreamedData.unit_rows``), bitwise
    the in-memory inference's unit rows, and the zero rows found in one pass (None when
    there are none). None where X does not stream."""
    from . import _replay, _streaming

    if engine.name != "cpu" or not _streaming.streams(X, estimator.n_clusters):
        return None
    block_rows = _replay.block_rows_for(X, block_rows)
    data = _streaming.StreamedData(X, None if unit_weights else sample_weight, block_rows)
    zero_rows = _streaming.zero_rows(data)
    data.unit_rows = True
    return data, _streaming.streamed_engine(unit_centers=True), zero_rows


def _plan_streaming(estimator, X, is_memmap, device, xp):
    """A :class:`_Streaming` when the fit of host array ``X`` streams, else None: on the
    CPU, a memmap (or any array with ``stream_block_rows``) large enough for the Numba
    engine (:mod:`gpukmeans._streaming`); on the GPU, X too large for the device memory
    the fit may use (:mod:`gpukmeans._gpu_streaming`, which raises MemoryError where not
    even a block fits)."""
    if device == "cpu":
        if not (is_memmap or estimator.stream_block_rows is not None):
            return None
        from . import _replay, _streaming

        if not _streaming.streams(X, estimator.n_clusters):
            return None
        block_rows = _replay.block_rows_for(X, estimator.stream_block_rows)
        return _Streaming(lambda X, sample_weight, unit_centers: (
            _streaming.StreamedData(X, sample_weight, block_rows),
            _streaming.streamed_engine(unit_centers)), block_rows)
    from . import _gpu_streaming
    from ._backend import current_backend

    block_rows = _gpu_streaming.plan(X, estimator.n_clusters, _gpu_streaming.device_budget(
        xp, estimator.max_device_memory))
    if block_rows is None:
        return None
    backend = current_backend()
    return _Streaming(lambda X, sample_weight, unit_centers: (
        _gpu_streaming.DeviceStreamedData(X, sample_weight, block_rows, backend),
        _gpu_streaming.streamed_engine(backend, unit_centers)), block_rows)


def _is_same_clustering(labels1, labels2, n_clusters):
    """True when two labelings are the same partition up to a permutation of labels."""
    labels1 = to_host(labels1).astype(np.int64)
    labels2 = to_host(labels2).astype(np.int64)
    pairs = np.unique(labels1 * n_clusters + labels2)
    return pairs.shape[0] == np.unique(labels1).shape[0] == np.unique(labels2).shape[0]


def kmeans_plusplus(
    X,
    n_clusters,
    *,
    sample_weight=None,
    x_squared_norms=None,
    random_state=None,
    n_local_trials=None,
    device="auto",
):
    """Initial centers by greedy k-means++, as :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : {array-like, sparse matrix, cupy.ndarray, cupyx.scipy.sparse matrix} of shape \
            (n_samples, n_features)
        For cosine seeding, pass L2-normalised rows (``KMeans(metric="cosine")`` does).
    n_clusters : int
    sample_weight : array-like of shape (n_samples,), default=None
    x_squared_norms : array-like of shape (n_samples,) or (n_samples, 1), default=None
        Squared row norms of X, finite (else ``ValueError``), taken as float64 on X's
        side; computed when None, and then float32 rows are seeded centred on the CPU
        (as ``KMeans`` seeds them: far from the origin the float32 products cancel),
        where given norms are of X as it is.
    random_state : int, RandomState instance or None, default=None
    n_local_trials : int, default=None
        ``2 + int(ln(n_clusters))`` when None.
    device : {"auto", "cpu", "gpu"}, default="auto"

    Returns
    -------
    centers : ndarray or cupy.ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row of X each center was taken from.

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import kmeans_plusplus
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> centers, indices = kmeans_plusplus(X, 2, random_state=0, device="cpu")
    >>> centers.shape, indices.shape
    ((2, 2), (2,))
    """
    params = KMeans(n_clusters=n_clusters, device=device, random_state=random_state)
    _validation.check_params(params)
    if n_local_trials is not None:
        _validation._check_integer("n_local_trials", n_local_trials, 1)
    resolved = params._resolve_fit_device(X)
    xp = array_module(resolved)
    # float32 dense data are seeded centred on the CPU, as KMeans.fit seeds them (the
    # same picks): far from the origin ||x||^2 - 2 x.c + ||c||^2 cancels in float32's
    # products (at 1e6 from it, 3 picks in 6 were not scikit-learn's, whose float32
    # distances are float64's). float64 data keep scikit-learn's own arithmetic, and its
    # picks; given norms are the caller's (of X as it is).
    # (The GPU engine's candidates are float64 differences already: it needs no copy.)
    centre = (x_squared_norms is None and resolved != "gpu"
              and getattr(X, "dtype", None) == np.float32 and not is_sparse(X))
    X, on_device, _, X_mean, _ = _validation.check_fit_data(
        params, X, xp, need_mean=centre, caller="kmeans_plusplus", n_clusters=n_clusters)
    _validation.check_n_samples(X.shape[0], n_clusters)
    engine = get_engine(resolved, X.shape[0], X.shape[1], n_clusters, sparse=is_sparse(X))
    sample_weight, _ = _validation.check_sample_weight(sample_weight, X)  # scale-free here
    if x_squared_norms is not None:
        x_squared_norms = _validation.check_x_squared_norms(x_squared_norms, X.shape[0], xp)
    random_state = _validation.check_random_state_param(random_state)
    if not on_device and xp is not np:
        X, sample_weight = _to_module(X, xp), xp.asarray(sample_weight)
    with engine.runtime():
        if centre:
            centers, indices = kmeans_plusplus_centred(
                X, xp.asarray(X_mean), n_clusters, sample_weight, random_state, engine,
                n_local_trials)
        else:
            if x_squared_norms is None and X.dtype == np.float64 and isinstance(X, np.ndarray):
                # scikit-learn's own norms, whose last bits its picks follow: on data far
                # from the origin ||x||^2 - 2 x.c + ||c||^2 cancels, and the engine's
                # norms (summed in another order) picked other rows for 2 seeds in 12.
                from sklearn.utils.extmath import row_norms

                x_squared_norms = row_norms(X, squared=True)
            elif x_squared_norms is None:
                x_squared_norms = engine.row_norms(X)
            centers, indices = _kmeans_plusplus(
                X, n_clusters, x_squared_norms, sample_weight, random_state, engine,
                n_local_trials)
    if not on_device and xp is not np:
        centers = to_host(centers)
    return centers, indices
