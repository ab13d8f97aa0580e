"""``framebus keys generate DIR``: CURVE keys for the ZeroMQ transport."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="make CURVE keys for --zmq exports (framebus[zmq])",
        description="keys generate DIR: write DIR/server.key (public: give it to receivers), "
        "DIR/server.key_secret (the exporter's), DIR/client.key_secret (a receiver's pair) "
        "and DIR/clients/ (the public keys the exporter admits; add more receivers' .key "
        "files there). Existing keys are kept.",
    )
    p.add_argument("action", choices=("generate",))
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--clients", type=int, default=1, help="receiver key pairs (default 1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from .. import net

    written = net.generate_keys(args.directory, clients=max(1, args.clients))
    for path in written:
        print(path, file=out)
    if not written:
        print(f"keys already in {args.directory}", file=out)
    return 0
