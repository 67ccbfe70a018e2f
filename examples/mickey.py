"""The "Mickey mouse" data set: where k-means splits a large round cluster wrongly.

One big head and two small ears, points spread evenly over each. Asked for three clusters,
k-means does not return head and ears: it prefers clusters of similar extent, so each ear
takes a slice of the head with it. The true clusters are not what minimises the inertia.

Run: ``python examples/mickey.py [OUT_DIR]`` (default ``examples/output/``); writes
``mickey.png``.
"""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt
from sklearn.metrics import adjusted_rand_score

from gpukmeans import KMeans
from gpukmeans.datasets import make_mickey


def main(out_dir=pathlib.Path(__file__).parent / "output"):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    X, y = make_mickey(1500, random_state=0)
    model = KMeans(n_clusters=3, random_state=0).fit(X)
    ari = adjusted_rand_score(y, model.labels_)
    print(f"k-means on Mickey: inertia {model.inertia_:.1f}, ARI {ari:.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    panels = [("the true head and ears", y, None), (f"KMeans(3): ARI {ari:.2f}", model.labels_, model.cluster_centers_)]
    for ax, (title, labels, centers) in zip(axes, panels):
        ax.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=5)
        if centers is not None:
            ax.scatter(*centers.T, marker="X", s=120, c="black", edgecolors="white")
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
    fig.suptitle("k-means slices the head to even out the clusters")
    fig.tight_layout()
    path = out_dir / "mickey.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
