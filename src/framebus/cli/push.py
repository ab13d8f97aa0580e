"""``framebus push``: publish a stream to an RTSP media server (MediaMTX, go2rtc) until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, TextIO

from ._args import quiet_library_logs, seconds

__all__ = ["add_parser", "run"]


def _fps(arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a frame rate: {arg!r}") from None
    if not 0.1 <= value <= 240:
        raise argparse.ArgumentTypeError(f"fps must be 0.1..240, not {arg}")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="publish a stream to an RTSP server (MediaMTX, go2rtc) until Ctrl-C",
        description="Publish stream NAME to an RTSP server by ANNOUNCE/RECORD: the camera's "
        "H.264/H.265 as it came when the stream has it, other streams encoded once at a steady "
        "rate; a 'no signal' picture while the stream stalls; reconnects whenever the server "
        "goes away. Stops on Ctrl-C or SIGTERM.",
    )
    p.add_argument("name", metavar="NAME", help="the local stream to push")
    p.add_argument("url", metavar="URL",
                   help="rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH, or env:VAR to read it from "
                   "the environment (a password then stays out of the process list)")  # fmt: skip
    p.add_argument("--fps", type=_fps, help="rate of encoded output (default: the stream's)")
    p.add_argument(
        "--transport",
        choices=("auto", "tcp", "udp"),
        default="auto",
        help="RTP over the RTSP connection (tcp), udp, or tcp then udp (default)",
    )
    p.add_argument("--encode", action=argparse.BooleanOptionalAction, default=None,
                   help="always encode (--encode), or never (--no-encode; default: pass the "
                   "camera's own through when the stream has it)")  # fmt: skip
    p.add_argument(
        "--stall",
        type=seconds,
        default=2.0,
        help="seconds without a frame before the placeholder (default 2)",
    )
    p.add_argument("--duration", type=seconds, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no status output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..mediaserver import push

    quiet_library_logs()
    url = args.url
    if url.startswith("env:"):
        url = os.environ.get(url[4:], "")
        if not url:
            raise ValueError(f"the environment variable {args.url[4:]!r} is not set")
    p = push(args.name, url, fps=args.fps, transport=args.transport, encode=args.encode,
             stall=args.stall)  # fmt: skip
    end = None if args.duration is None else time.monotonic() + args.duration
    said = ""
    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.25)
            s = p.stats()
            line = f"{s.state} {s.transport} {s.source}".replace("  ", " ")
            if s.state == "retrying":
                line = f"retrying: {s.error}"
            if line != said and not args.quiet:
                print(f"push {s.name} -> {s.url}: {line}", file=out, flush=True)
                said = line
            if s.state == "stopped":
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        p.close()
    return 0
