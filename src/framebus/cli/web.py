"""``framebus web``: serve the streams other processes publish on this machine to browsers."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any, TextIO

from ._args import add_max_connections
from ._http import add_http_options, make_server

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "web",
        help="serve the machine's streams to browsers until Ctrl-C",
        description="Serve streams published on this machine to browsers: a page with a live "
        "tile per stream, MJPEG, snapshots, JSON stats and Prometheus metrics. With no NAME, "
        "every stream, as streams come and go.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="streams to serve (default: all)")
    add_http_options(p, default="127.0.0.1:8080")
    add_max_connections(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    # a Ctrl-C while the server is being made is noted, not raised (a KeyboardInterrupt can
    # land in a weakref callback and be lost); the server then stops as soon as it runs
    asked = threading.Event()
    before = signal.signal(signal.SIGINT, lambda *_: asked.set())
    try:
        server = make_server(args.names or None, args, out)
    finally:
        signal.signal(signal.SIGINT, before)
    if asked.is_set():
        server.stop()
        return 130
    server.run(asked)  # until Ctrl-C (KeyboardInterrupt: 130) or SIGTERM
    return 0
