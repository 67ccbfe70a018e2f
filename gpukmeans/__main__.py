"""``python -m gpukmeans``: the ``gpukmeans`` command (see :mod:`gpukmeans._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
