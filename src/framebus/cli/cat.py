"""``framebus cat``: a stream's frames to standard output, for ffmpeg, ffplay, GStreamer or a
script (:func:`framebus.pipe.frames`).

``NAME`` attaches to a stream another process publishes. Anything else is a source
(``SOURCE`` as ``framebus serve`` takes it: a camera index, a file, a URL, ``testpattern``,
``-``), which this command publishes as a private stream ``cat-<pid>`` for as long as it runs:
the capture runs in its own process and the writer reads that stream, exactly as for a named
one (and other programs may attach to it meanwhile). A name that is not a live stream is
tried as a source.

A closed pipe (``framebus cat cam | head -c 1000``) ends the command quietly with status 0, as
``cat`` does. See :mod:`framebus.pipe.sink` for the formats and the buffer policy.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from ..errors import FramebusError, InvalidStreamName, SourceNotFound, StreamNotFound
from ..pipe.sink import FORMATS, PipeSink, pipe_out
from ..publisher import Publisher

__all__ = ["add_parser", "run"]


def _count(arg: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of frames, got {arg!r}")
    return value


def _quality(arg: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality 1..100, got {arg!r}")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cat",
        help="write a stream's frames to standard output (framebus, y4m, mjpeg or raw)",
        description="Write the frames of stream NAME, or of a SOURCE this command opens, to "
        "standard output. Formats: framebus (the wire format, lossless; framebus.pipe.frames "
        "and `framebus serve cam=-` read it), y4m (ffmpeg -i -, ffplay -i -), mjpeg "
        "(ffplay -f mjpeg -i -), raw (bare pixels: ffmpeg -f rawvideo -pix_fmt bgr24 -s WxH "
        "-i -). A slow reader gets the newest frame whenever it is ready and never slows the "
        "capture (every-mode streams, such as files: every frame, in order).",
    )
    p.add_argument(
        "source",
        metavar="NAME|SOURCE",
        help="a stream name, or a source: camera index, file, URL, testpattern[:WxH[@FPS]], "
        "or - (standard input)",
    )
    p.add_argument("--format", choices=FORMATS, default="framebus", help="default: framebus")
    p.add_argument("--frames", type=_count, metavar="N", help="stop after N frames")
    p.add_argument(
        "--quality",
        type=_quality,
        default=80,
        metavar="Q",
        help="JPEG quality of --format mjpeg, 1..100 (80)",
    )
    p.add_argument(
        "--mode",
        choices=("latest", "every"),
        help="SOURCE only: the private stream's mode (default: latest for live sources, "
        "every for files)",
    )
    p.add_argument("--realtime", action="store_true", help="SOURCE only: pace files at their rate")
    p.set_defaults(run=run)


def _stdout_closed() -> None:
    """The reader went away: point fd 1 at /dev/null, so that nothing flushed at exit (by
    Python or a library) meets EPIPE and prints 'Exception ignored ... BrokenPipeError'."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def run(args: argparse.Namespace, out: TextIO) -> int:
    if sys.stdout is None:  # started with fd 1 closed (`>&-`)
        raise ValueError("standard output is closed: redirect it to a pipe or a file")
    fd = sys.stdout.fileno()
    if os.isatty(fd):
        raise ValueError(
            "standard output is a terminal: pipe it into a program, e.g. "
            f"framebus cat {args.source} --format y4m | ffplay -i -"
        )
    publisher: Publisher | None = None
    sink: PipeSink | None = None
    try:
        try:
            sink = PipeSink(args.source, format=args.format, quality=args.quality)
        except (StreamNotFound, InvalidStreamName) as not_a_stream:
            try:
                publisher = Publisher(
                    f"cat-{os.getpid()}",
                    args.source,
                    mode=args.mode,
                    realtime=args.realtime,
                    start=False,
                )
            except SourceNotFound as exc:
                if isinstance(not_a_stream, StreamNotFound):
                    raise StreamNotFound(
                        f"no stream {args.source!r} (`framebus ls` lists them), and {exc}"
                    ) from None
                raise
            # the sink's reader is registered before the capture starts: an every-mode
            # stream (a file) is written from its first frame
            sink = PipeSink(publisher.name, format=args.format, quality=args.quality)
            publisher.start()
        pipe_out(sink, fd, limit=args.frames)
    except BrokenPipeError:
        _stdout_closed()
    except OSError as exc:
        if isinstance(exc, FramebusError):
            raise  # SourceNotFound and others are OSErrors too: main() prints them
        _stdout_closed()  # a full disk, /dev/full: nothing more is flushed there at exit
        print(
            f"framebus: error: cannot write to standard output: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        if sink is not None:
            sink.close()
        if publisher is not None:
            publisher.close()
    return 0
