"""Exercise: the notebook's blobs with a larger ``cluster_std``.

As the blobs spread out they overlap, and k-means, which cuts the plane into the convex
cells nearest each centre, gives the points in the overlap to whichever centre is closer:
the adjusted Rand index (ARI) against the true blobs falls as ``cluster_std`` grows.

Run: ``python examples/cluster_std.py [OUT_DIR]`` (default ``examples/output/``); writes
``cluster_std.png``.
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from gpukmeans import KMeans

CLUSTER_STDS = (0.5, 1.0, 1.5, 2.5)  # 0.5 is the notebook's


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(CLUSTER_STDS), figsize=(3.2 * len(CLUSTER_STDS), 3.4))
    for ax, cluster_std in zip(axes, CLUSTER_STDS):
        X, y = make_blobs(centers=4, cluster_std=cluster_std, random_state=0)
        model = KMeans(n_clusters=4, random_state=8).fit(X)
        ari = adjusted_rand_score(y, model.labels_)
        print(f"cluster_std={cluster_std}: inertia {model.inertia_:.1f}, ARI {ari:.3f}")
        ax.scatter(X[:, 0], X[:, 1], c=model.labels_, cmap="tab10", vmin=0, vmax=9, s=6)
        ax.scatter(*model.cluster_centers_.T, marker="X", s=120, c="black", edgecolors="white")
        ax.set_title(f"cluster_std={cluster_std}, ARI {ari:.2f}", fontsize=10)
    fig.suptitle("k-means (k=4) on blobs that spread out: overlapping points go to the nearest centre")
    fig.tight_layout()
    path = out_dir / "cluster_std.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
