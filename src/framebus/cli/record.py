"""``framebus record``: record a stream to MP4 segments (and clips on SIGUSR1) until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any, TextIO

from ..config import parse_keep
from ._args import quiet_library_logs, seconds

__all__ = ["add_parser", "run"]


def _keep(arg: str) -> tuple[str, float]:
    try:
        kind, amount = parse_keep(arg)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--keep: {exc}") from None
    if amount <= 0:
        raise argparse.ArgumentTypeError(f"--keep {arg}: that would remove every recording")
    return kind, amount


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "record",
        help="record a stream to MP4 segments until Ctrl-C (clips with pre-roll on SIGUSR1)",
        description="Record stream NAME into DIR as fragmented MP4 segments named by their "
        "start time (UTC): the camera's H.264 copied, other streams encoded once. A file is "
        "NAME-...Z.mp4.part until it is whole. With --pre, each SIGUSR1 (kill -USR1 PID) saves "
        "a clip of the last --pre seconds and the next --clip-after seconds. Stops on Ctrl-C or "
        "SIGTERM with the current segment finished.",
    )
    p.add_argument("name", metavar="NAME", help="the local stream to record")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
    p.add_argument(
        "--segment",
        type=seconds,
        default=60.0,
        help="seconds per segment (default 60; each starts at a keyframe)",
    )
    p.add_argument(
        "--no-segments", action="store_true", help="record no segments, only clips (needs --pre)"
    )
    p.add_argument(
        "--pre",
        type=seconds,
        default=0.0,
        help="seconds of pre-roll kept for clips (default 0: no clips)",
    )
    p.add_argument(
        "--clip-after",
        type=seconds,
        default=10.0,
        help="seconds a clip goes on after its SIGUSR1 (default 10)",
    )
    p.add_argument("--keep", type=_keep, action="append", default=[],
                   help="remove older segments past an age (7d, 12h) or total size (50G); "
                   "may be given twice")  # fmt: skip
    p.add_argument(
        "--encode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="always encode, or never (default: copy the camera's H.264)",
    )
    p.add_argument("--duration", type=seconds, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no status output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..recording import record

    quiet_library_logs()
    if not 0 <= args.clip_after <= 86400:
        raise ValueError(f"--clip-after must be 0..86400 seconds, not {args.clip_after:g}")
    if args.no_segments and not args.pre:
        raise ValueError("--no-segments records only clips: give --pre SECONDS too")
    keep = dict(args.keep)
    rec = record(
        args.name, args.out, segment=None if args.no_segments else args.segment, pre=args.pre,
        keep_seconds=keep.get("seconds"), keep_bytes=int(keep["bytes"]) if "bytes" in keep
        else None, encode=args.encode,
    )  # fmt: skip
    clips: list[Any] = []
    asked: list[int] = []  # SIGUSR1s not yet turned into clips (the handler only counts: it may
    if args.pre:  # run inside rec.stats(), under the lock rec.clip() takes)
        signal.signal(signal.SIGUSR1, lambda *_: asked.append(1))
    end = None if args.duration is None else time.monotonic() + args.duration
    said = ""

    def saved() -> None:
        for clip in [c for c in clips if c.done]:
            clips.remove(clip)
            if clip.path is not None and clip.error is None and not args.quiet:
                print(f"clip saved: {clip.path}", file=out, flush=True)

    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.1)
            while asked:
                asked.pop()
                clips.append(rec.clip(args.pre, args.clip_after))
            s = rec.stats()
            line = f"{s.state}: {s.source}"
            if line != said and not args.quiet:
                print(f"record {s.name} -> {args.out}: {line}", file=out, flush=True)
                said = line
            saved()
            if s.state == "failed" and rec.failure is not None:
                raise rec.failure
    except KeyboardInterrupt:
        pass
    finally:
        rec.close()
        saved()
    return 0
