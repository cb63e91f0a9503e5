"""``python -m ranvier demo``: the same as the ``ranvier`` command."""

import sys

from .cli import main

sys.exit(main())
