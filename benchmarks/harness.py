#!/usr/bin/env python
"""The full benchmark harness (issue 5): gpukmeans against every importable peer.

The implementation is the package ``gpukmeans/bench/``, shared with ``gpukmeans bench``
(which runs its quick profile); this script runs the full profile from a source checkout:

- MNIST (70,000 x 784) at k = 10, 20, 256, and the notebook's case (5,000 images, k=20,
  with the libraries' own defaults over five seeds); k-means++ timed at k=20 and 256;
- synthetic blobs sweeps: n = 10^4..10^6 (10^7 on GPU) at d=32, k=32; k = 8..4096 at
  n=10^5, d=32; d = 2..1024 at n=10^5, k=32;
- on a GPU, the published anchor shapes (1M x 256, k=20,000, 25 iterations; 100k x 256,
  k=1,024, 15 iterations).

Every contestant that imports runs: gpukmeans (CPU, GPU), scikit-learn (lloyd, elkan),
scikit-learn-intelex, faiss (CPU, GPU), a plain PyTorch Lloyd (CPU, CUDA),
fast-pytorch-kmeans (CPU, CUDA), a plain NumPy/CuPy Lloyd. ``--list`` shows which.

Usage, from the repository root (about 20 minutes on 2 quiet CPU cores; the budget
``--max-seconds`` skips what is left once it is spent)::

    .venv/bin/python benchmarks/harness.py                      # writes benchmarks/results/harness-full.*
    .venv/bin/python benchmarks/harness.py --device cpu --name harness-full-cpu
    .venv/bin/python benchmarks/harness.py --profile quick      # what `gpukmeans bench` runs
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from gpukmeans import bench  # noqa: E402


def main(argv=None):
    return bench.main(argv, prog="benchmarks/harness.py", profile="full", max_seconds=1500.0,
                       out=str(REPO / "benchmarks" / "results"), repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
