"""``framebus ls``: the streams on this machine."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from ..outputs import list_outputs
from ..registry import list_streams
from ._args import seconds
from ._table import table

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ls", help="list the streams on this machine, or those zmq://HOST:PORT exports"
    )
    p.add_argument("where", nargs="?", metavar="zmq://HOST:PORT", help="another machine")
    p.add_argument("--json", action="store_true", help="one JSON object per stream")
    p.add_argument("--curve", metavar="DIR", help="CURVE keys for zmq:// (DIR/server.key ...)")
    p.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait for zmq://")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.where:
        return _remote(args, out)
    stats = list_streams()
    outputs = list_outputs()
    if args.json:
        for s in stats:
            mine = [asdict(o) for o in outputs if o.stream == s.name]
            print(json.dumps({**asdict(s), "outputs": mine}), file=out)
        names = {s.name for s in stats}
        for o in outputs:  # a push or recorder waiting for a stream that is not there
            if o.stream not in names:
                print(json.dumps({"output": asdict(o)}), file=out)
    elif stats:
        print("\n".join(table(stats)), file=out)
    else:
        print("no streams", file=out)
    if outputs and not args.json:
        print(file=out)
        for o in outputs:
            counts = " ".join(f"{k}={v}" for k, v in o.counts.items() if v)
            line = f"{o.kind} {o.stream} -> {o.target}: {o.state} {o.detail}".rstrip()
            if o.error and o.state != "live":
                line += f" ({o.error})"
            print(f"{line}  [pid {o.pid}] {counts}".rstrip(), file=out)
    return 0


def _remote(args: argparse.Namespace, out: TextIO) -> int:
    if not args.where.startswith("zmq://"):
        raise ValueError(f"expected zmq://HOST:PORT, got {args.where!r}")
    from ..net import list_exports

    rows = list_exports(args.where, curve=args.curve, timeout=args.timeout)
    if args.json:
        for row in rows:
            print(json.dumps(row), file=out)
        return 0
    if not rows:
        print(f"{args.where} exports no streams", file=out)
        return 0
    head = ("NAME", "STATE", "MODE", "SIZE", "FPS", "CODEC", "RECEIVERS")
    lines = [head] + [
        (
            r["name"],
            r["state"],
            r["mode"],
            f"{r['width']}x{r['height']}",
            f"{r['fps']:.1f}",
            r["codec"],
            str(r["receivers"]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)
    return 0
