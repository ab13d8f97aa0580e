"""``framebus prune``: remove what publishers that died left in /dev/shm."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from ..registry import prune

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("prune", help="remove streams whose publisher died")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    removed = prune()
    print(
        f"removed {len(removed)} stream(s)" + (f": {', '.join(removed)}" if removed else ""),
        file=out,
    )
    return 0
