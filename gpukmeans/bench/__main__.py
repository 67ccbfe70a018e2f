"""``python -m gpukmeans.bench``: the same as ``gpukmeans bench``."""

import sys

from . import main

sys.exit(main())
