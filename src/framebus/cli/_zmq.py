"""The ``--zmq`` options that ``serve`` and ``share`` share, and starting the exporter."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from ..errors import FramebusError

__all__ = ["add_zmq_options", "curve_source", "start_exporter"]


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality 1..100, got {text!r}")
    return value


def add_zmq_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--zmq",
        metavar="tcp://HOST:PORT",
        required=required,
        help="export the streams over ZeroMQ (framebus[zmq]); HOST * for every interface",
    )
    p.add_argument(
        "--zmq-codec", choices=("jpeg", "raw"), default="jpeg", help="payload (default jpeg)"
    )
    p.add_argument("--zmq-quality", type=_quality, default=80, help="JPEG quality (default 80)")
    p.add_argument(
        "--curve",
        metavar="DIR",
        help="CURVE keys (framebus keys generate DIR): encrypt the export, admit only "
        "DIR/clients/; zmq:// sources use DIR/server.key and DIR/client.key_secret",
    )


def _net() -> Any:
    try:
        from .. import net
    except ImportError as exc:  # pragma: no cover - the extra brings pyzmq
        raise FramebusError(
            f"ZeroMQ needs framebus[zmq] (pip install 'framebus[zmq]'): {exc}"
        ) from None
    return net


def start_exporter(names: list[str] | None, args: argparse.Namespace, out: TextIO) -> Any:
    """The exporter of ``--zmq`` (None without it), started; prints where it listens."""
    if not args.zmq:
        return None
    net = _net()
    exporter = net.Exporter(
        args.zmq,
        names,
        codec=args.zmq_codec,
        quality=args.zmq_quality,
        curve=args.curve,
        max_connections=args.max_connections,
    )
    if exporter.insecure:
        print(
            f"framebus: warning: exporting on {exporter.endpoint} without --curve: anyone who "
            "can reach the port receives the streams",
            file=sys.stderr,
        )
    if not getattr(args, "quiet", False):
        what = ", ".join(names) if names else "every stream of this machine"
        print(
            f"framebus: exporting {what} on {exporter.endpoint} ({args.zmq_codec}); read with "
            f"framebus.attach('{exporter.url('NAME')}')",
            file=out,
            flush=True,
        )
    return exporter


def curve_source(source: str, args: argparse.Namespace) -> Any:
    """A ``zmq://`` SOURCE with ``--curve``'s client keys (other sources unchanged)."""
    curve = getattr(args, "curve", None)
    if curve and source.startswith("zmq://"):
        from ..sources import Remote

        return Remote(source, curve=curve)
    return source
