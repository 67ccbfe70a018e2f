"""The public mini-batch estimator: parameters, validation calls, dispatch, fitted attributes."""

import contextlib
import logging
import math
import warnings

import numpy as np

from . import _validation
from ._device import array_module, get_engine
from ._engine import labels_and_inertia_beside_the_data
from ._estimator import _BaseKMeans, _to_module, _tolerance, read_only
from ._init import kmeans_plusplus, kmeans_plusplus_centred, random_init
from ._lloyd import to_host
from ._sparse import is_device_sparse, is_sparse
from ._minibatch_step import (
    BatchSampler,
    mini_batch_step,
    minibatch_kmeans_single,
    random_reassign_due,
)

logger = logging.getLogger(__name__)


def _check_same_clusters(model):
    """A partial_fit continues the clusters the model has counts for: assigned centers
    of another number are refused by name (they failed deep in the step, on arrays that
    did not broadcast). A changed ``n_clusters`` only sets how often centers are
    reassigned, as in scikit-learn."""
    n_counted = model._counts.shape[0]
    n_centers = model.cluster_centers_.shape[0]
    if n_centers != n_counted:
        raise ValueError(
            f"partial_fit continues the model's {n_counted} clusters, but "
            f"cluster_centers_ has {n_centers}; assign {n_counted} centers, or fit again.")


@contextlib.contextmanager
def _generator_restored_on_failure(random_state):
    """``random_state`` (a ``numpy.random.RandomState``) put back as it was where the
    block raises. With ``random_state=None`` that is NumPy's global generator, as
    scikit-learn's ``check_random_state`` gives it: a failed call then draws nothing from
    it either."""
    state = random_state.get_state()
    try:
        yield
    except BaseException:
        random_state.set_state(state)
        raise


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means on an NVIDIA GPU (CuPy) or the CPU.

    A drop-in for :class:`sklearn.cluster.MiniBatchKMeans`: the same parameters, each with
    scikit-learn's meaning, and the same algorithm (Sculley 2010, as scikit-learn 1.9
    implements it). From the same ``random_state`` (and, for an exact comparison, the same
    array ``init``) the same initial centers are chosen, the same mini-batches drawn, the
    same centers reassigned, and float64 centers agree with scikit-learn's to 1e-10
    relative (tested; about 1e-15 in practice: the order of a sum differs, see Notes).
    ``partial_fit`` learns from a stream, one batch at a time (a generator, chunks of a
    file, CuPy arrays on the GPU).

    Parameters
    ----------
    n_clusters : int, default=8
        The number of clusters to form, and of centroids to generate.
    init : {"k-means++", "random"}, callable or array-like of shape \
            (n_clusters, n_features), default="k-means++"
        As in :class:`gpukmeans.KMeans`, computed on ``init_size`` samples drawn at random
        (in ``fit``) or on the first batch (``partial_fit``). A callable is called as
        ``init(X_init, n_clusters, random_state=random_state)``.
    max_iter : int, default=100
        Maximum number of passes over the data in ``fit``: at most
        ``max_iter * n_samples // batch_size`` mini-batches, whatever the early stopping.
    batch_size : int, default=1024
        Size of the mini-batches ``fit`` draws (with replacement, with probability
        proportional to ``sample_weight``).
    verbose : int, default=0
        0: silent. 1 or more: scikit-learn's lines on stdout (the inits, each step's mean
        batch inertia and its smoothed average, reassignments, why the fit stopped).
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` over the whole data (``fit``) or the batch
        (``partial_fit``) once the centers are updated.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, of the mini-batches and of the reassignments.
    tol : float, default=0.0
        ``fit`` stops when the squared change of the centers in one step,
        ``sum ||c_new - c_old||^2``, is at most ``tol`` times the mean variance of the
        features. 0 disables this test.
    max_no_improvement : int or None, default=10
        ``fit`` stops when the smoothed (exponentially weighted average) batch inertia has
        not improved on its minimum for this many steps in a row. None disables this test.
    init_size : int or None, default=None
        Number of samples the initialisation of ``fit`` is computed on (and of the
        validation set the ``n_init`` initialisations are compared on). None:
        ``3 * batch_size``, or ``3 * n_clusters`` when that is larger; values below
        ``n_clusters`` become ``3 * n_clusters`` with a warning; at most ``n_samples``.
    n_init : "auto" or int, default="auto"
        Number of initialisations ``fit`` tries; the one of lowest inertia on the
        validation set is kept, and the mini-batch optimisation runs once, from it.
        "auto": 1 for "k-means++" and array init, 3 for "random" and callables.
        ``partial_fit`` initialises once.
    reassignment_ratio : float, default=0.01
        Centers whose accumulated weight is below this fraction of the largest are moved
        onto random samples of the batch, every ``10 * n_clusters`` samples seen and
        whenever a center has received no weight yet (at most half the batch's samples
        become centers; a reassigned center's weight becomes the smallest of the others').
        0 disables reassignment. Above 1 every center can be below it: where all are
        reassigned, each keeps its weight (scikit-learn fails there).
    device : {"auto", "cpu", "gpu"}, default="auto"
        As in :class:`gpukmeans.KMeans`. ``partial_fit`` runs where the first batch did.

    Attributes
    ----------
    cluster_centers_ : ndarray or cupy.ndarray of shape (n_clusters, n_features)
        Coordinates of the cluster centers, in X's dtype (float32 stays float32).
    labels_ : ndarray or cupy.ndarray of shape (n_samples,)
        Labels of each point of the data (``fit``) or of the last batch
        (``partial_fit``), under the final centers, when ``compute_labels``.
    inertia_ : float
        With ``compute_labels``, the weighted sum of squared distances of the samples of
        the data (``fit``) or the last batch (``partial_fit``) to their closest center.
        Otherwise, after ``fit``, the smoothed batch inertia per sample times the total
        weight (scikit-learn's approximation).
    n_iter_ : int
        Number of passes over the data ``fit`` made, ``ceil(n_steps_ * batch_size /
        n_samples)``.
    n_steps_ : int
        Number of mini-batches processed (``partial_fit`` adds one per call).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when X has string column names.
    device_ : {"cpu", "gpu"}
        Where the model learns.

    Raises
    ------
    TypeError, ValueError
        From ``fit`` and ``partial_fit``, before any work and leaving the model as it was:
        a parameter of the wrong type or value (the message names it); X not a 2-D real
        array, or holding NaN or infinity; fewer samples than ``n_clusters``; a
        ``sample_weight`` of the wrong shape, negative, or on the other side (host or GPU)
        from X; from ``partial_fit``, a batch whose number of features (or feature names)
        differ from the first batch's, or on the other side from the model's centers.

    See Also
    --------
    sklearn.cluster.MiniBatchKMeans : The reference implementation this one reproduces.
    gpukmeans.KMeans : Lloyd's algorithm over the whole data at every iteration.

    Notes
    -----
    The algorithm is D. Sculley, "Web-scale k-means clustering", WWW 2010, with
    scikit-learn's choices: per-center learning rates from the accumulated weights, random
    reassignment of small clusters, early stopping on the smoothed inertia. The data are
    not centred (scikit-learn's ``MiniBatchKMeans`` does not centre either, and a stream's
    mean is not known in advance); the caller's arrays are never modified.

    Where the results may differ from scikit-learn's, on purpose:

    * each center's new samples are summed first and added to ``c * W`` after, where
      scikit-learn adds them one by one to ``c * W``: one rounding per step in X's dtype;
    * the batch inertias that drive the early stopping are summed in float64 (scikit-learn:
      in X's dtype, in an order that depends on its thread count);
    * float32 labels are the exactly nearest centers (near-ties decided exactly, as
      :class:`gpukmeans.KMeans` on the CPU); scikit-learn's may differ at near-ties, after
      which the runs follow different paths;
    * a ``sample_weight`` must be non-negative with a positive value.

    Examples
    --------
    >>> import numpy as np
    >>> from gpukmeans import MiniBatchKMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0],
    ...               [4, 2], [4, 0], [4, 4],
    ...               [4, 5], [0, 1], [2, 2],
    ...               [3, 2], [5, 5], [1, -1]])
    >>> kmeans = MiniBatchKMeans(n_clusters=2, random_state=0, batch_size=6, device="cpu")
    >>> kmeans = kmeans.partial_fit(X[0:6, :])
    >>> kmeans = kmeans.partial_fit(X[6:12, :])
    >>> kmeans.cluster_centers_.round(4).tolist()
    [[3.375, 3.0], [0.75, 0.5]]
    >>> kmeans.predict([[0, 0], [4, 4]]).tolist()
    [1, 0]
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
        device="auto",
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform() returns X's dtype, float32 included, as scikit-learn's.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        return tags

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_`` (needs ``compute_labels=True``)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, sample_weight=None):
        """Compute the centroids on X by drawing mini-batches from it.

        Parameters
        ----------
        X : {array-like, sparse matrix, cupy.ndarray} of shape (n_samples, n_features)
            Training instances. float32 and float64 are kept; other real types become
            float64. Never modified.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : {array-like, cupy.ndarray} of shape (n_samples,), default=None
            Non-negative weights, not all zero, on the same side (host or GPU) as X. The
            mini-batches are drawn with probability proportional to them (then count
            with unit weight); they weigh the initialisation and the inertia.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        _validation.check_minibatch_params(self)
        device = self._resolve_fit_device(X)
        xp = array_module(device)
        # The mini-batches are never centred: no mean.
        X, on_device, feature_names, _, _ = _validation.check_fit_data(self, X, xp,
                                                                       need_mean=False)
        n_samples, n_features = X.shape
        _validation.check_n_samples(n_samples, self.n_clusters)
        sample_weight, weight_scale = _validation.check_sample_weight(sample_weight, X)
        _validation.check_random_init(self.init, self.n_clusters, sample_weight)
        batch_size, init_size, n_init = self._sizes(n_samples, default_n_init=3)
        init = self._checked_init(n_features, X.dtype, xp)
        random_state = _validation.check_random_state_param(self.random_state)

        # Validation is over: from here on, work.
        if not on_device and xp is not np:
            X, sample_weight = _to_module(X, xp), xp.asarray(sample_weight)  # the one copy
        sparse = is_sparse(X)
        engine = get_engine(device, n_samples, n_features, self.n_clusters, sparse=sparse)
        # The batches run on the fit's engine, not on the one a single batch's shapes
        # would pick: a fit large enough for Numba makes many steps, and Numba's E-step
        # costs half NumPy's on them (MNIST, k=10, 110 steps of 1,024: 0.34 s of CPU
        # against 0.54; the same labels, both being exact).
        batch_engine = engine
        # The initialisation's init_size samples: float32 on the fit's engine too (its
        # k-means++ and the validation set's inertia, MNIST, one thread: k=10 13 against
        # 21 ms on the NumPy engine, k=20 16 against 28; the NumPy engine's float32
        # k-means++ steps and E-step are slower than Numba's on 3,072 x 784); float64
        # on the engine of their own shapes, whose small k-means++ steps make
        # scikit-learn's picks between copies of a sample, common among samples drawn
        # with replacement (see gpukmeans._cpu_small.MAX_KMEANSPP_DISTANCES).
        init_engine = (engine if X.dtype == np.float32 else
                       get_engine(device, init_size, n_features, self.n_clusters, sparse=sparse))
        tol = _tolerance(X, self.tol, xp)
        sample_weight_host = to_host(sample_weight)
        with engine.runtime():
            centers = self._best_init(X, sample_weight, init, init_size, n_init, random_state,
                                      init_engine)
            n_steps = (int(self.max_iter) * n_samples) // batch_size
            draw_batch = BatchSampler(sample_weight_host / sample_weight_host.sum(), batch_size,
                                      batch_engine.batch_search)
            with batch_engine.runtime():
                centers, counts, n_since_last_reassign, n_steps_done, stopping = (
                    minibatch_kmeans_single(
                        X, centers, random_state, batch_engine, draw_batch, n_steps, tol=tol,
                        max_no_improvement=self.max_no_improvement,
                        reassignment_ratio=self.reassignment_ratio,
                        compute_inertia=(self.max_no_improvement is not None
                                         or not self.compute_labels or bool(self.verbose)),
                        verbose=self.verbose,
                    ))
            labels = inertia = None
            if self.compute_labels:
                labels = xp.empty(n_samples, dtype=xp.int32)
                inertia = labels_and_inertia_beside_the_data(
                    engine, X, sample_weight, centers, labels) * weight_scale
            else:
                # scikit-learn's approximation: the smoothed inertia per sample times the
                # total weight (a fit of one step has no average: its batch's).
                ewa = stopping.ewa_inertia
                if ewa is None:
                    ewa = stopping.last_inertia
                inertia = ewa * float(sample_weight_host.sum()) * weight_scale

        if not on_device and xp is not np:
            centers = to_host(centers)
            labels = None if labels is None else to_host(labels)
        # Every fitted attribute is set here, together: a failed fit leaves none changed.
        self.cluster_centers_ = centers
        if labels is not None:
            self.labels_ = labels
        elif hasattr(self, "labels_"):
            del self.labels_  # the labels of an earlier fit are not this fit's
        self.inertia_ = inertia
        self.n_steps_ = n_steps_done
        self.n_iter_ = int(math.ceil(n_steps_done * batch_size / n_samples))
        self._counts, self._counts_exponent = counts, 0  # counts of samples: unit weights
        self._n_since_last_reassign = n_since_last_reassign
        self._batch_size = batch_size
        self._init_size = init_size
        self._n_init = n_init
        self._tol = tol
        self._set_features(n_features, feature_names, device)
        logger.debug("MiniBatchKMeans.fit: %d steps of %d samples on the %s, of at most %d",
                     n_steps_done, batch_size, device, n_steps)
        return self

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centers with one mini-batch X.

        The first call (on an unfitted model) initialises the centers on X as ``init``
        says; every call then makes one mini-batch step on all of X. Batches may come from
        a generator or a file one chunk at a time; CuPy batches stay on the GPU.

        Parameters
        ----------
        X : {array-like, sparse matrix, cupy.ndarray} of shape (n_samples, n_features)
            The batch. On a fitted model: the model's number of features (and feature
            names), on the side (host or GPU) of its ``cluster_centers_``, and cast to
            their dtype. The first batch needs at least ``n_clusters`` samples.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : {array-like, cupy.ndarray} of shape (n_samples,), default=None
            Non-negative weights, not all zero, on X's side: each sample's share of the
            update and of the inertia.

        Returns
        -------
        self : object
            Updated estimator.
        """
        _validation.check_minibatch_params(self)
        has_centers = hasattr(self, "cluster_centers_")
        if has_centers:
            model_on_device = _validation.is_device_array(self.cluster_centers_)
            if (_validation.is_device_array(X) or is_device_sparse(X)) != model_on_device:
                side = "GPU" if model_on_device else "host (NumPy)"
                raise ValueError(
                    f"X is a {'host (NumPy)' if model_on_device else 'GPU'} array but this "
                    f"MiniBatchKMeans keeps its cluster_centers_ on the {side}; pass batches "
                    "on one side."
                )
            X, on_device = _validation.check_predict_data(self, X)
            _check_same_clusters(self)
            device = self.device_
            xp = array_module(device)
            feature_names = getattr(self, "feature_names_in_", None)
        else:
            device = self._resolve_fit_device(X)
            xp = array_module(device)
            X, on_device, feature_names, _, _ = _validation.check_fit_data(
                self, X, xp, need_mean=False)  # mini-batches are never centred
            _validation.check_n_samples(X.shape[0], self.n_clusters)
        n_samples, n_features = X.shape
        sample_weight, weight_scale = _validation.check_sample_weight(sample_weight, X)
        if has_centers:
            batch_size, init_size = self._batch_size, self._init_size
        else:
            batch_size, init_size, _ = self._sizes(n_samples, default_n_init=3)
            init = self._checked_init(n_features, X.dtype, xp)
            _validation.check_random_init(init, self.n_clusters, sample_weight)
        random_state = getattr(self, "_random_state", None)
        if random_state is None:
            random_state = _validation.check_random_state_param(self.random_state)

        # Validation is over: from here on, work.
        # A call that fails leaves the model as it was, its generator included: the
        # draws a failed step made would otherwise change every later call's batches.
        with _generator_restored_on_failure(random_state):
            if not on_device and xp is not np:
                X, sample_weight = _to_module(X, xp), xp.asarray(sample_weight)
            # The update counts the weights as given, relative to the counts so far: both
            # are kept divided by a power of two, 2**counts_exponent, the larger of the
            # batches' so far (each batch's own scale brings its largest weight near 1).
            # Scaling by a power of two is exact, so the steps are those of the weights
            # given, bit for bit, wherever those do not overflow or underflow X's dtype
            # (float32 weights of 1e38 made the counts infinite and the centers NaN).
            batch_exponent = math.frexp(weight_scale)[1] - 1
            if has_centers:
                kept_exponent = getattr(self, "_counts_exponent", 0)
                counts_exponent = max(kept_exponent, batch_exponent)
                counts = xp.ldexp(self._counts, kept_exponent - counts_exponent).astype(
                    X.dtype, copy=False)
            else:
                counts = xp.zeros(self.n_clusters, dtype=X.dtype)
                counts_exponent = batch_exponent
            sample_weight = xp.ldexp(sample_weight, batch_exponent - counts_exponent).astype(
                X.dtype, copy=False)
            engine = get_engine(device, n_samples, n_features, self.n_clusters,
                                sparse=is_sparse(X))
            with engine.runtime():
                if has_centers:
                    centers = xp.asarray(self.cluster_centers_)
                    n_since_last_reassign = self._n_since_last_reassign
                else:
                    centers = self._init_centroids(X, sample_weight, init, init_size,
                                                   random_state, engine)
                    n_since_last_reassign = 0
                random_reassign, n_since_last_reassign = random_reassign_due(
                    counts, n_since_last_reassign, batch_size, int(self.n_clusters))
                centers, counts, _ = mini_batch_step(
                    X, sample_weight, centers, counts, random_state, engine,
                    random_reassign=random_reassign, reassignment_ratio=self.reassignment_ratio,
                    verbose=self.verbose, compute_inertia=False,
                )
                labels = inertia = None
                if self.compute_labels:
                    labels = xp.empty(n_samples, dtype=xp.int32)
                    with np.errstate(over="ignore"):  # an inertia past float64's range is inf
                        inertia = float(np.ldexp(labels_and_inertia_beside_the_data(
                            engine, X, sample_weight, centers, labels), counts_exponent))

            if not on_device and xp is not np:
                centers = to_host(centers)
                labels = None if labels is None else to_host(labels)
        # The model changes here only, all at once.
        self._random_state = random_state
        self.cluster_centers_ = centers
        if labels is not None:
            self.labels_, self.inertia_ = labels, inertia
        self._counts, self._counts_exponent = counts, counts_exponent
        self._n_since_last_reassign = n_since_last_reassign
        self.n_steps_ = getattr(self, "n_steps_", 0) + 1
        if not has_centers:
            self._batch_size, self._init_size = batch_size, init_size
            self._set_features(n_features, feature_names, device)
        return self

    # ------------------------------------------------------------- helpers
    def _set_features(self, n_features, feature_names, device):
        self.n_features_in_ = n_features
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._n_features_out = self.n_clusters
        self.device_ = device

    def _sizes(self, n_samples, default_n_init):
        """scikit-learn's ``_check_params_vs_input``: ``(batch_size, init_size, n_init)``
        for data of ``n_samples`` (warnings included), as Python ints: NumPy integer
        parameters (np.int8(100)) would overflow in the step counts and the samples
        counted since the last reassignment."""
        n_clusters, batch_size = int(self.n_clusters), min(int(self.batch_size), n_samples)
        init_size = None if self.init_size is None else int(self.init_size)
        if init_size is None:
            init_size = 3 * batch_size
            if init_size < n_clusters:
                init_size = 3 * n_clusters
        elif init_size < n_clusters:
            warnings.warn(
                f"init_size={init_size} should be larger than n_clusters={n_clusters}. "
                "Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            init_size = 3 * n_clusters
        init_size = min(init_size, n_samples)

        n_init = self.n_init
        init = self.init
        if n_init == "auto":
            n_init = default_n_init if (callable(init) or (isinstance(init, str)
                                                           and init == "random")) else 1
        if not isinstance(init, str) and not callable(init) and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            n_init = 1
        return batch_size, init_size, n_init

    def _checked_init(self, n_features, dtype, xp):
        init = self.init
        if not isinstance(init, str) and not callable(init):
            init = _validation.check_init_array(init, self.n_clusters, n_features, dtype, xp)
        return init

    def _best_init(self, X, sample_weight, init, init_size, n_init, random_state, engine):
        """scikit-learn's choice among ``n_init`` initialisations: the lowest inertia on a
        validation set of ``init_size`` samples drawn once, before them."""
        xp = engine.xp
        n_samples = X.shape[0]
        validation_indices = random_state.randint(0, n_samples, init_size)
        if n_init == 1 and not self.verbose:
            # The one initialisation is the best whatever its inertia: the validation set
            # is drawn (the random stream stays scikit-learn's), not moved to the device,
            # gathered nor labelled (MNIST, init_size 3,072: a gather of 9.6 MB and an
            # E-step, 4-6 ms of a 160 ms fit at k=10).
            return self._init_centroids(X, sample_weight, init, init_size, random_state,
                                        engine)
        validation_indices = xp.asarray(validation_indices)
        X_valid = X[validation_indices]
        sample_weight_valid = sample_weight[validation_indices]
        labels = xp.empty(init_size, dtype=xp.int32)
        best_inertia = best_centers = None
        for init_idx in range(n_init):
            if self.verbose:
                print(f"Init {init_idx + 1}/{n_init} with method {init}")
            centers = self._init_centroids(X, sample_weight, init, init_size, random_state,
                                           engine)
            inertia = labels_and_inertia_beside_the_data(engine, X_valid, sample_weight_valid,
                                                         centers, labels)
            if self.verbose:
                print(f"Inertia for init {init_idx + 1}/{n_init}: {inertia}")
            if best_inertia is None or inertia < best_inertia:
                best_centers, best_inertia = centers, inertia
        return best_centers

    def _init_centroids(self, X, sample_weight, init, init_size, random_state, engine):
        """Initial centers from ``init_size`` samples drawn at random (scikit-learn draws
        them for every kind of ``init``, an array's included). Prior validation of data
        is assumed."""
        xp = engine.xp
        n_samples = X.shape[0]
        if init_size < n_samples:
            init_indices = xp.asarray(random_state.randint(0, n_samples, init_size))
            X = X[init_indices]
            sample_weight = sample_weight[init_indices]
        if isinstance(init, str):
            # The whole X had enough samples of positive weight (checked before any work);
            # the init_size drawn from it, uniformly as scikit-learn draws them, may not.
            n_positive = int((sample_weight > 0).sum())
            needed = self.n_clusters if init == "random" else 1
            if n_positive < needed:
                draws = (f"n_clusters={self.n_clusters} distinct samples" if init == "random"
                         else "its first center")
                raise ValueError(
                    f"init={init!r} draws {draws} by sample_weight from the "
                    f"init_size={init_size} samples drawn for the initialisation, but only "
                    f"{n_positive} of those have a positive weight; raise init_size.")
        if isinstance(init, str) and init == "k-means++":
            if X.dtype == np.float32 and not is_sparse(X) and engine.name != "gpu":
                # Seeded centred, as KMeans seeds float32 rows (far from the origin the
                # CPU engine's float32 products cancel: other picks than scikit-learn's,
                # whose float32 distances are float64's; the GPU's are float64
                # differences).
                mean = X.mean(axis=0, dtype=xp.float64).astype(X.dtype)  # as a fit's
                centers, _ = kmeans_plusplus_centred(X, mean, self.n_clusters,
                                                     sample_weight, random_state, engine)
            else:
                centers, _ = kmeans_plusplus(X, self.n_clusters, engine.row_norms(X),
                                             sample_weight, random_state, engine)
        elif isinstance(init, str) and init == "random":
            centers = random_init(X, self.n_clusters, sample_weight, random_state, engine)
        elif callable(init):
            X = read_only(X)  # the callable may hold the caller's own rows
            centers = init(X, self.n_clusters, random_state=random_state)
            centers = _validation.check_init_array(
                centers, self.n_clusters, X.shape[1], X.dtype, xp
            )
        else:
            centers = init.copy()
        return xp.ascontiguousarray(centers)
