"""Exercise: one axis multiplied by 100, and the fix with ``StandardScaler`` in a ``Pipeline``.

k-means measures plain euclidean distance, so a feature on a 100 times larger scale decides
the clustering alone: the blobs are cut into vertical bands. Standardising every feature
first, ``make_pipeline(StandardScaler(), KMeans(4))``, gives both axes their say back.

Run: ``python examples/scaled_axis.py [OUT_DIR]`` (default ``examples/output/``); writes
``scaled_axis.png``.
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gpukmeans import KMeans


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = make_blobs(centers=4, cluster_std=0.5, random_state=0)  # the notebook's blobs
    X[:, 0] *= 100  # the first feature now in centimetres, say, the second in metres

    raw = KMeans(n_clusters=4, random_state=8).fit(X)
    pipeline = make_pipeline(StandardScaler(), KMeans(n_clusters=4, random_state=8)).fit(X)
    scaler, kmeans = pipeline.named_steps["standardscaler"], pipeline.named_steps["kmeans"]
    fixes = [
        ("KMeans(4) on the raw features", raw.labels_, raw.cluster_centers_),
        ("make_pipeline(StandardScaler(), KMeans(4))", kmeans.labels_,
         scaler.inverse_transform(kmeans.cluster_centers_)),  # centres back in raw units
    ]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (title, labels, centers) in zip(axes, fixes):
        ari = adjusted_rand_score(y, labels)
        print(f"{title}: ARI {ari:.3f}")
        ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=6)
        ax.scatter(*centers.T, marker="X", s=120, c="black", edgecolors="white")
        ax.set_title(f"{title}\nARI {ari:.2f}", fontsize=10)
        ax.set_xlabel("feature 0 (x100)")
        ax.set_ylabel("feature 1")
    fig.suptitle("One feature on a 100x larger scale: it alone decides, until the features are standardised")
    fig.tight_layout()
    path = out_dir / "scaled_axis.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
