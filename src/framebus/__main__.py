"""``python -m framebus``: the command line."""

import sys

from framebus.cli import main

sys.exit(main())
