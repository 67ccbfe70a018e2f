"""The command's pictures: clusters as a coloured scatter, centroids as a grid of images.

matplotlib is optional (``pip install gpukmeans[cli]``) and imported only when a picture is
drawn. Figures are built with matplotlib's object API on the Agg canvas, never through
``pyplot``, so drawing changes no global state (backend, open figures) of the caller.
"""

import math

import numpy as np

__all__ = ["require_matplotlib", "plot_clusters", "plot_centroid_grid", "image_shape_for"]

SCATTER_SIZE = (6.4, 5.2)  # inches; at DPI below, 640 x 520 pixels
DPI = 100
MAX_SCATTER_POINTS = 20_000  # a scatter of more points takes long to draw and shows no more


def require_matplotlib():
    """Import matplotlib, or raise ImportError saying how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "drawing pictures needs matplotlib: pip install 'gpukmeans[cli]'"
        ) from None


def _figure(figsize):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def image_shape_for(n_features):
    """The image shape of a centroid with ``n_features`` pixels: 28x28, 8x8, or any square."""
    side = math.isqrt(n_features)
    return (side, side) if side * side == n_features and side > 1 else None


def _project_2d(X, centers, feature_names=None):
    """Return ``(points, marks, (xlabel, ylabel))``: ``X`` and ``centers`` in two dimensions.

    One or two features are drawn as they are, on axes named for them; more are projected
    onto the first two principal axes of ``X``. Prior subsampling of ``X`` is assumed: the
    caller bounds its rows (:data:`MAX_SCATTER_POINTS`).
    """
    X = np.asarray(X, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    n_features = X.shape[1]
    names = (list(map(str, feature_names)) if feature_names is not None
             else [f"feature {i}" for i in range(n_features)])
    if n_features == 1:
        return np.column_stack([X[:, 0], np.zeros(len(X))]), np.column_stack(
            [centers[:, 0], np.zeros(len(centers))]
        ), (names[0], "")
    if n_features == 2:
        return X, centers, (names[0], names[1])
    if len(X) < 2 or not np.ptp(X, axis=0).any():
        # No principal axes to find (one row, or every row the same: PCA fails, or its
        # variance ratios are 0 / 0): the first two features, as they are.
        return X[:, :2], centers[:, :2], (names[0], names[1])
    from sklearn.decomposition import PCA

    # A full SVD of 20,000 x 784 rows takes seconds, and computes 782 axes nobody draws;
    # the randomized solver finds the top two in a few passes over the data.
    pca = PCA(n_components=2, svd_solver="randomized", random_state=0).fit(X)
    ratio = pca.explained_variance_ratio_
    return pca.transform(X), pca.transform(centers), (
        f"PC 1 ({ratio[0]:.0%} of variance)", f"PC 2 ({ratio[1]:.0%} of variance)"
    )


def _plain_text(text):
    """``text`` as matplotlib draws it letter for letter: a ``$`` would start math text
    (a file or column named ``cost_$k`` failed to draw)."""
    return str(text).replace("$", r"\$")


def plot_clusters(X, labels, centers, path, *, title=None, feature_names=None):
    """Write a scatter of ``X`` coloured by ``labels``, the ``centers`` marked, to ``path`` (PNG).

    At most :data:`MAX_SCATTER_POINTS` rows, drawn at random, are shown. One or two features
    are drawn on axes named by ``feature_names`` (default: "feature 0", ...); data with more
    features is drawn on its first two principal axes, found from the rows shown.
    """
    labels = np.asarray(labels)
    if len(X) > MAX_SCATTER_POINTS:
        keep = np.random.default_rng(0).permutation(len(X))[:MAX_SCATTER_POINTS]
        X, labels = np.asarray(X)[keep], labels[keep]
    points, marks, (xlabel, ylabel) = _project_2d(X, centers, feature_names)
    fig = _figure(SCATTER_SIZE)
    ax = fig.add_subplot()
    n_clusters = len(marks)
    from matplotlib import colormaps

    palette = colormaps["tab10" if n_clusters <= 10 else "tab20"]
    colors = palette(labels % palette.N)  # (n_samples, 4) RGBA
    ax.scatter(points[:, 0], points[:, 1], c=colors, s=8, alpha=0.7, linewidths=0)
    ax.scatter(
        marks[:, 0], marks[:, 1], marker="X", s=180, c="black", edgecolors="white", linewidths=1.5,
        label="centers",
    )
    ax.set_xlabel(_plain_text(xlabel))
    ax.set_ylabel(_plain_text(ylabel))
    ax.legend(loc="best", frameon=True)
    if title:
        ax.set_title(_plain_text(title))
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_centroid_grid(centers, image_shape, path, *, title=None, subtitles=None, n_cols=None):
    """Write the ``centers`` drawn as ``image_shape`` images in a grid to ``path`` (PNG).

    Ink is dark on a light background, as the digits are written. ``subtitles``, one
    string per centre, go above the images (default: the cluster index).
    """
    centers = np.asarray(centers, dtype=np.float64)
    n_clusters = len(centers)
    n_cols = n_cols or min(n_clusters, 5 if n_clusters <= 25 else 10)
    n_rows = math.ceil(n_clusters / n_cols)
    fig = _figure((1.3 * n_cols, 1.3 * n_rows + (0.5 if title else 0.1)))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if index < n_clusters:
            # aspect="equal" by name: a style or matplotlibrc setting image.aspect to "auto"
            # would otherwise stretch the pixels to the cell.
            ax.imshow(centers[index].reshape(image_shape), cmap="gray_r", interpolation="nearest",
                      aspect="equal")
            ax.set_title(f"{index}" if subtitles is None else _plain_text(subtitles[index]),
                         fontsize=8, pad=2)
    if title:
        fig.suptitle(_plain_text(title))
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
