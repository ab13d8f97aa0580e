"""``python -m framebus._capture_process`` (spec as JSON on stdin): the capture process.

A module of its own, imported by nothing, so that running it does not import it twice.
"""

import sys

from framebus._worker import main

if __name__ == "__main__":
    sys.exit(main())
