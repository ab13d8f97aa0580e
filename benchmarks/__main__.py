"""``python -m benchmarks``: run the benchmarks and write the report."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":  # spawned helper processes import this module too: run only once
    sys.exit(main())
