"""Run a command and write its peak resident set size (KiB) to the file named first.

Why a launcher: Linux counts a child's peak RSS from *before* its exec, when it is still a copy
of the process that forked it, so ``wait4`` in a pytest that has grown to 440 MB reports at least
440 MB for any child. Forked from this small process instead, the child starts from a few MB.

    python peak_rss.py OUT_FILE PROGRAM [ARGS...]

stdin, stdout and stderr pass through; the exit status is the program's.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    out_file, argv = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(out_file, "w") as out:
        out.write(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
