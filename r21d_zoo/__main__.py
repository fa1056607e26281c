"""``python -m r21d_zoo <command>``: the same as ``r21d-zoo <command>`` (``torchrun -m r21d_zoo ...`` too)."""

import sys

from .cli import main

sys.exit(main())
