"""The ``framebus`` command line: ``serve``, ``ls``, ``prune``.

Errors a user can fix are printed as one line (``framebus: error: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TextIO

from . import __version__
from .errors import FramebusError
from .publisher import Publisher
from .registry import list_streams, prune
from .stats import StreamStats

__all__ = ["main"]

DEFAULT_SOURCE = "test=testpattern:1280x720@30"


def _parse_stream(arg: str) -> tuple[str, str]:
    name, sep, source = arg.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE, got {arg!r}")
    return name, source


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="framebus",
        description="Capture once, fresh frames everywhere: publish and inspect video streams.",
    )
    p.add_argument("--version", action="version", version=f"framebus {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="publish streams until Ctrl-C, with a live status table",
        description="Publish each NAME=SOURCE as a named stream until Ctrl-C. SOURCE is a camera "
        "index, a file, a URL or testpattern[:WxH[@FPS]]. With no stream: "
        f"{DEFAULT_SOURCE}.",
    )
    serve.add_argument("streams", nargs="*", type=_parse_stream, metavar="NAME=SOURCE")
    serve.add_argument(
        "--mode",
        choices=("latest", "every"),
        help="delivery mode (default: latest for live sources, every for files)",
    )
    serve.add_argument("--realtime", action="store_true", help="pace files at their frame rate")
    serve.add_argument("--slots", type=int, default=4, help="frames kept in shared memory")
    serve.add_argument("--max-readers", type=int, default=64)
    serve.add_argument("--interval", type=float, default=1.0, help="status refresh, seconds")
    serve.add_argument("--duration", type=float, help="stop after this many seconds")
    serve.add_argument("--quiet", action="store_true", help="no status output")

    ls = sub.add_parser("ls", help="list the streams on this machine")
    ls.add_argument("--json", action="store_true", help="one JSON object per stream")

    sub.add_parser("prune", help="remove streams whose publisher died")
    return p


def _fmt_age(age: float | None) -> str:
    return "-" if age is None else f"{age * 1000:.0f}ms" if age < 10 else f"{age:.0f}s"


def _table(stats: list[StreamStats]) -> list[str]:
    head = (
        "NAME",
        "STATE",
        "MODE",
        "FPS",
        "SIZE",
        "READERS",
        "CAPTURED",
        "SKIPPED",
        "AGE",
        "SOURCE",
    )
    rows = [head] + [
        (
            s.name,
            s.state,
            s.mode,
            f"{s.capture_fps:.1f}",
            f"{s.width}x{s.height}" if s.width else "-",
            str(s.readers),
            str(s.captured),
            str(s.skipped),
            _fmt_age(s.last_frame_age if s.state == "live" else None),
            s.source + (f"  ({s.error})" if s.error else ""),
        )
        for s in stats
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    streams = args.streams or [_parse_stream(DEFAULT_SOURCE)]
    pubs: list[Publisher] = []
    try:
        for name, source in streams:
            pubs.append(
                Publisher(
                    name,
                    source,
                    mode=args.mode,
                    slots=args.slots,
                    max_readers=args.max_readers,
                    realtime=args.realtime,
                )
            )
        if not args.quiet:
            names = ", ".join(p.name for p in pubs)
            print(
                f"framebus: serving {names}; attach with framebus.attach(NAME); Ctrl-C stops",
                file=out,
                flush=True,
            )
        tty = out.isatty()
        drawn = 0
        end = None if args.duration is None else time.monotonic() + args.duration
        while True:
            stats = [p.stats() for p in pubs]
            if not args.quiet:
                lines = _table(stats)
                if tty:
                    if drawn:
                        out.write(f"\x1b[{drawn}F")
                    out.write("".join(line + "\x1b[K\n" for line in lines))
                    drawn = len(lines)
                else:
                    out.write("\n".join(lines[1:]) + "\n")
                out.flush()
            if all(s.state in ("ended", "failed", "closed") for s in stats):
                break
            wait = args.interval
            if end is not None:
                wait = min(wait, end - time.monotonic())
                if wait <= 0:
                    break
            time.sleep(wait)
    except KeyboardInterrupt:
        pass
    finally:
        for p in pubs:
            p.close()
    return 0


def _ls(args: argparse.Namespace, out: TextIO) -> int:
    stats = list_streams()
    if args.json:
        for s in stats:
            print(json.dumps(asdict(s)), file=out)
    elif stats:
        print("\n".join(_table(stats)), file=out)
    else:
        print("no streams", file=out)
    return 0


def _prune(out: TextIO) -> int:
    removed = prune()
    print(
        f"removed {len(removed)} stream(s)" + (f": {', '.join(removed)}" if removed else ""),
        file=out,
    )
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args, out)
        if args.command == "ls":
            return _ls(args, out)
        return _prune(out)
    except (FramebusError, ValueError) as exc:
        print(f"framebus: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
