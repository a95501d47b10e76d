"""``python -m tl_embspace``: the command line (see :mod:`tl_embspace.cli`)."""

import sys

from .cli import main

sys.exit(main())
