"""``python -m drillbook``: the same command line as the ``drillbook`` script."""

import sys

from .cli import main

sys.exit(main())
