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


def _project_2d(X, centers):
    """Project onto the first two features, or onto two principal axes when there are more."""
    X = np.asarray(X, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    if X.shape[1] == 1:
        return np.column_stack([X[:, 0], np.zeros(len(X))]), np.column_stack(
            [centers[:, 0], np.zeros(len(centers))]
        ), ("feature 0", "")
    if X.shape[1] == 2:
        return X, centers, ("feature 0", "feature 1")
    mean = X.mean(axis=0)
    # The principal axes are the top right singular vectors of the centred data.
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    axes = vt[:2].T  # (n_features, 2)
    return (X - mean) @ axes, (centers - mean) @ axes, ("principal axis 1", "principal axis 2")


def plot_clusters(X, labels, centers, path, *, title=None):
    """Write a scatter of ``X`` coloured by ``labels``, the ``centers`` marked, to ``path`` (PNG).

    Data with more than two features is drawn on its first two principal axes.
    """
    points, marks, (xlabel, ylabel) = _project_2d(X, centers)
    fig = _figure(SCATTER_SIZE)
    ax = fig.add_subplot()
    n_clusters = len(marks)
    from matplotlib import colormaps

    palette = colormaps["tab10" if n_clusters <= 10 else "tab20"]
    colors = palette(np.asarray(labels) % palette.N)  # (n_samples, 4) RGBA
    ax.scatter(points[:, 0], points[:, 1], c=colors, s=8, alpha=0.7, linewidths=0)
    ax.scatter(
        marks[:, 0], marks[:, 1], marker="X", s=180, c="black", edgecolors="white", linewidths=1.5,
        label="centres",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", frameon=True)
    if title:
        ax.set_title(title)
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
            ax.imshow(centers[index].reshape(image_shape), cmap="gray_r", interpolation="nearest")
            ax.set_title(f"{index}" if subtitles is None else subtitles[index], fontsize=8, pad=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
