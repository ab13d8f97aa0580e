"""``framebus share``: export streams other processes publish on this machine, over ZeroMQ."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from ._args import add_max_connections, seconds
from ._zmq import add_zmq_options, start_exporter

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "share",
        help="export this machine's streams to other machines over ZeroMQ until Ctrl-C",
        description="Export streams published on this machine over ZeroMQ (framebus[zmq]): "
        "other machines read them with framebus.attach('zmq://HOST:PORT/NAME') or relay "
        "them with framebus serve NAME=zmq://HOST:PORT/NAME. With no NAME, every stream, as "
        "streams come and go.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="streams to export (default: all)")
    add_zmq_options(p, required=True)
    add_max_connections(p)
    p.add_argument("--duration", type=seconds, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no status output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    exporter = start_exporter(args.names or None, args, out)
    end = None if args.duration is None else time.monotonic() + args.duration
    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.5 if end is None else max(0.0, min(0.5, end - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        exporter.close()
    return 0
