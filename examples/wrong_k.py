"""Exercise: the wrong number of clusters, in both directions.

The notebook's four blobs clustered with k=2 (too few: whole blobs are merged), k=4 (right)
and k=6 (too many: blobs are cut in pieces). The inertia always goes down as k grows, so it
cannot choose k by itself: k-means finds exactly as many clusters as it is asked for.

Run: ``python examples/wrong_k.py [OUT_DIR]`` (default ``examples/output/``); writes
``wrong_k.png``.
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from gpukmeans import KMeans

N_CLUSTERS = (2, 4, 6)  # too few, right, too many


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = make_blobs(centers=4, cluster_std=0.5, random_state=0)  # the notebook's blobs
    fig, axes = plt.subplots(1, len(N_CLUSTERS), figsize=(3.4 * len(N_CLUSTERS), 3.5))
    for ax, n_clusters in zip(axes, N_CLUSTERS):
        model = KMeans(n_clusters=n_clusters, random_state=8).fit(X)
        ari = adjusted_rand_score(y, model.labels_)
        print(f"k={n_clusters}: inertia {model.inertia_:.1f}, ARI {ari:.3f}")
        ax.scatter(X[:, 0], X[:, 1], c=model.labels_, cmap="tab10", vmin=0, vmax=9, s=6)
        ax.scatter(*model.cluster_centers_.T, marker="X", s=120, c="black", edgecolors="white")
        verdict = {2: "too few", 4: "right", 6: "too many"}[n_clusters]
        ax.set_title(f"k={n_clusters} ({verdict}): inertia {model.inertia_:.0f}, ARI {ari:.2f}", fontsize=10)
    fig.suptitle("Four blobs, k-means asked for 2, 4 and 6 clusters")
    fig.tight_layout()
    path = out_dir / "wrong_k.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
