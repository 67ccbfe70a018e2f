"""Exercise: k-means after PCA on MNIST, ``make_pipeline(PCA(50), KMeans(10))``.

Projecting the 784 pixels onto 50 principal components keeps most of the variance, so
k-means finds nearly the same clusters (compare the adjusted Rand index against the true
digits) on data 15 times smaller. The centroids found in PCA space are mapped back to
pixels with ``PCA.inverse_transform`` to be seen as images.

Uses MNIST from ``GPUKMEANS_DATA`` or gpukmeans' cache when it is there
(``gpukmeans.datasets.load_mnist()`` downloads it); else the 6,000-image subset shipped in
``tests/data/mnist/``, so that it runs on a fresh clone with no network.

Run: ``python examples/pca_mnist.py [OUT_DIR]`` (default ``examples/output/``); writes
``pca_mnist.png``.
"""

import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline

from gpukmeans import KMeans
from gpukmeans.datasets import load_mnist

N_SAMPLES = 5000  # the notebook's
N_COMPONENTS = 50
BUNDLED_SUBSET = pathlib.Path(__file__).parents[1] / "tests" / "data" / "mnist"


def load_digits_images():
    try:
        X, y = load_mnist(n_samples=N_SAMPLES, download=False)
        source = "MNIST"
    except FileNotFoundError:
        X, y = load_mnist(BUNDLED_SUBSET, n_samples=N_SAMPLES, download=False)
        source = "MNIST subset in tests/data"
    return X / 255.0, y, source  # pixels in [0, 1]


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y, source = load_digits_images()
    print(f"{source}: {X.shape[0]} images of {X.shape[1]} pixels")

    start = time.perf_counter()
    raw = KMeans(n_clusters=10, random_state=0).fit(X)
    raw_seconds = time.perf_counter() - start
    start = time.perf_counter()
    # verbose: scikit-learn prints each step's time; PCA's SVD takes most of the pipeline's.
    pipeline = make_pipeline(
        PCA(n_components=N_COMPONENTS, random_state=0), KMeans(n_clusters=10, random_state=0),
        verbose=True,
    ).fit(X)
    pca_seconds = time.perf_counter() - start
    pca, kmeans = pipeline.named_steps["pca"], pipeline.named_steps["kmeans"]

    rows = [
        (f"KMeans(10) on {X.shape[1]} pixels", raw.labels_, raw.cluster_centers_, raw_seconds),
        (f"PCA({N_COMPONENTS}) + KMeans(10), {pca.explained_variance_ratio_.sum():.0%} of the variance",
         kmeans.labels_, pca.inverse_transform(kmeans.cluster_centers_), pca_seconds),
    ]
    fig = plt.figure(figsize=(10, 3.4), layout="constrained")
    fig.suptitle(f"k-means centroids of {X.shape[0]} digits ({source}), without and with PCA")
    for subfig, (title, labels, centers, seconds) in zip(fig.subfigures(2, 1), rows):
        ari = adjusted_rand_score(y, labels)
        print(f"{title}: ARI {ari:.3f}, {seconds:.2f} s")
        subfig.suptitle(f"{title}: ARI {ari:.2f}", fontsize=10)
        for ax, center in zip(subfig.subplots(1, len(centers)), centers):
            ax.imshow(center.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
    path = out_dir / "pca_mnist.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
