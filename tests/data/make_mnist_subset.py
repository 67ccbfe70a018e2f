"""Write the MNIST subset in ``tests/data/mnist/`` from the full MNIST files.

The first 5,000 training images and the first 1,000 test images, with their labels, in the
original IDX format, gzip-compressed (``mtime=0`` so the output is byte-for-byte reproducible).
Run from the repository root::

    python tests/data/make_mnist_subset.py ../shared/data/mnist
"""

import gzip
import pathlib
import struct
import sys

N_TRAIN = 5000
N_TEST = 1000


def _subset(src, dst, name, n):
    raw = gzip.decompress((src / f"{name}.gz").read_bytes())
    n_dims = raw[3]
    dims = list(struct.unpack(f">{n_dims}I", raw[4 : 4 + 4 * n_dims]))
    item_size = 1
    for d in dims[1:]:
        item_size *= d
    header_size = 4 + 4 * n_dims
    dims[0] = n
    header = raw[:4] + struct.pack(f">{n_dims}I", *dims)
    body = raw[header_size : header_size + n * item_size]
    with open(dst / f"{name}.gz", "wb") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
            gz.write(header + body)


def main(src):
    src = pathlib.Path(src)
    dst = pathlib.Path(__file__).parent / "mnist"
    dst.mkdir(exist_ok=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        _subset(src, dst, f"{prefix}-images-idx3-ubyte", n)
        _subset(src, dst, f"{prefix}-labels-idx1-ubyte", n)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist")
