"""``framebus sample``: save every Nth frame of a file, or one frame every T seconds of a stream,
as image files, with a progress bar (tqdm) on a terminal and plain lines elsewhere."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from ..errors import FramebusError
from ..sampling import SampleSummary, check_options, sample
from ..sinks.disk import DEFAULT_TEMPLATE

__all__ = ["PLAIN_PERIOD", "Progress", "add_parser", "run"]

PLAIN_PERIOD = 5.0
"""Seconds between two plain progress lines when stderr is not a terminal."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="save frames of a file or a stream as JPEG/PNG files",
        description="Save frames 0, N, 2N, ... of a video file (--every N), or one frame per "
        "SECONDS of media time (files) or of wall time (named streams and live sources: a URL, "
        "a camera index, testpattern[:WxH[@FPS]]) (--interval SECONDS), as image files in DIR. "
        "File names carry the frame index. Each file is written atomically: Ctrl-C leaves only "
        "complete files.",
    )
    p.add_argument("source", metavar="SOURCE|NAME", help="a video file, stream name or source")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the images")
    p.add_argument("--every", type=int, metavar="N", help="frames 0, N, 2N, ... (files)")
    p.add_argument("--interval", type=float, metavar="SECONDS", help="one frame per SECONDS")
    p.add_argument("--format", choices=("jpg", "png"), default="jpg", help="default jpg")
    p.add_argument(
        "--quality",
        type=int,
        metavar="Q",
        help="JPEG quality 1..100 (default 95), or PNG compression 0..9 (default 1)",
    )
    p.add_argument("--max", type=int, metavar="N", help="stop after N files")
    p.add_argument(
        "--start", type=float, metavar="T", help="from T seconds (media time; streams: from now)"
    )
    p.add_argument("--end", type=float, metavar="T", help="until T seconds (same clock)")
    p.add_argument("--resume", action="store_true", help="keep the files already in DIR")
    p.add_argument(
        "--template",
        default=DEFAULT_TEMPLATE,
        help="file name: {index} (frame index) and {ext}; default %(default)s",
    )
    p.add_argument("--fsync", action="store_true", help="flush each file to disk (slower)")
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    p.set_defaults(run=run)


class Progress:
    """Shows :class:`SampleSummary` records: a tqdm bar on a terminal (frames done / total,
    frames/s, ETA, files written), else a plain line every :data:`PLAIN_PERIOD` seconds."""

    def __init__(self, stream: TextIO, *, bar: bool | None = None) -> None:
        self.stream = stream
        self.bar: Any = None
        self.use_bar = stream.isatty() if bar is None else bar
        self.last_line = time.monotonic()

    def __call__(self, s: SampleSummary) -> None:
        if self.use_bar:
            self._bar(s)
        elif s.done or time.monotonic() - self.last_line >= PLAIN_PERIOD:
            self.last_line = time.monotonic()
            if not s.done:
                print(f"framebus: {self._plain(s)}", file=self.stream, flush=True)

    def _bar(self, s: SampleSummary) -> None:
        stream = s.kind == "stream"  # a stream's bar counts files (of --max), a file's frames
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:  # plain lines then
                self.use_bar = False
                return
            self.bar = tqdm(
                total=s.total,
                unit="file" if stream else "frame",
                desc="sample",
                file=self.stream,
                dynamic_ncols=True,
            )
        if self.bar.total != s.total:
            self.bar.total = s.total
        self.bar.update((s.kept if stream else s.decoded) - self.bar.n)
        if not stream:
            self.bar.set_postfix_str(f"{s.written} files", refresh=False)
        if s.done:
            self.bar.close()

    @staticmethod
    def _plain(s: SampleSummary) -> str:
        rate = s.decoded / s.elapsed if s.elapsed > 0 else 0.0
        if s.kind == "stream":
            of = f"/{s.total}" if s.total else ""
            return f"sample: {s.kept}{of} files, {s.decoded} frames looked at"
        done = f"{s.decoded}"
        eta = ""
        if s.total:
            done += f"/{s.total} frames ({100 * s.decoded / s.total:.0f} %)"
            if rate > 0:
                eta = f", ETA {max(0.0, (s.total - s.decoded) / rate):.0f} s"
        else:
            done += " frames"
        return f"sample: {done}, {rate:.0f} frames/s, {s.written} files written{eta}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        check_options(
            every=args.every,
            interval=args.interval,
            format=args.format,
            quality=args.quality,
            max=args.max,
            start=args.start,
            end=args.end,
            template=args.template,
        )
    except ValueError as exc:  # a usage error: one line, status 2 (as argparse's)
        print(f"framebus: error: {exc}", file=sys.stderr)
        return 2
    progress = None if args.quiet else Progress(sys.stderr)
    last: list[SampleSummary] = []

    def report(s: SampleSummary) -> None:
        if s.done:
            last.append(s)
        if progress is not None:
            progress(s)

    try:
        summary = sample(
            args.source,
            args.out,
            every=args.every,
            interval=args.interval,
            format=args.format,
            quality=args.quality,
            max=args.max,
            start=args.start,
            end=args.end,
            resume=args.resume,
            template=args.template,
            progress=report,
            fsync=args.fsync,
        )
    except KeyboardInterrupt:
        if not last:
            raise
        print(f"framebus: {last[-1].line()}", file=out, flush=True)
        # Ctrl-C is how a stream's sampling ends; a file's was cut short
        return 130 if last[-1].kind == "file" else 0
    except FramebusError:
        raise  # main() prints it (SourceNotFound and others are OSErrors too)
    except OSError as exc:  # writing an image failed (a full disk, a folder removed)
        print(
            f"framebus: error: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    finally:
        if progress is not None:
            progress.close()
    print(f"framebus: {summary.line()}", file=out, flush=True)
    if summary.failed:
        print(
            f"framebus: error: {summary.failed} kept frame(s) of {args.source} did not decode "
            "(damaged packets)",
            file=sys.stderr,
        )
        return 1
    return 0
