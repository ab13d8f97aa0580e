"""``framebus ls``: the streams on this machine."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from ..registry import list_streams
from ._table import table

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ls", help="list the streams on this machine")
    p.add_argument("--json", action="store_true", help="one JSON object per stream")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    stats = list_streams()
    if args.json:
        for s in stats:
            print(json.dumps(asdict(s)), file=out)
    elif stats:
        print("\n".join(table(stats)), file=out)
    else:
        print("no streams", file=out)
    return 0
