"""The ``framebus`` command line: one module per command.

Each command module has ``add_parser(subparsers)``, which registers its arguments and sets
``run(args, out) -> exit status`` as the parser's default ``run``. Errors a user can fix are
printed as one line (``framebus: error: ...``), never a traceback; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .. import __version__
from ..errors import FramebusError
from . import cat, keys, ls, prune, push, record, sample, serve, share, web
from ._args import raise_fd_limit

__all__ = ["main"]

COMMANDS = (serve, ls, prune, web, share, push, record, keys, sample, cat)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="framebus",
        description="Capture once, fresh frames everywhere: publish and inspect video streams.",
    )
    p.add_argument("--version", action="version", version=f"framebus {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    raise_fd_limit()
    try:
        status: int = args.run(args, out)
        return status
    except (FramebusError, ValueError) as exc:
        print(f"framebus: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
