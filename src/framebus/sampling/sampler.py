"""``framebus.sample()``: what to sample (a file, a named stream, a live source), and a
stream's sampling through an :class:`~framebus.sinks.disk.ImageSink`."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import framebus
from framebus import ReadTimeout, SourceOpenError, StreamEnded, StreamNotFound

from ..bus import valid_name
from ..sinks.base import Pick
from ..sinks.disk import DEFAULT_TEMPLATE, ImageSink, ImageWriter, prepare_dir
from ..sources.spec import check_file, is_test_pattern
from .files import sample_file
from .run import Run, SampleOptions, SampleSummary, check_options

__all__ = ["sample"]

# how long one wait for a stream's next sample lasts before end/max are looked at again
_POLL = 0.2


@dataclass(frozen=True)
class _File:
    path: str


@dataclass(frozen=True)
class _Named:
    name: str


@dataclass(frozen=True)
class _Live:
    source: Any  # what framebus.publish takes


def _classify(source: Any) -> _File | _Named | _Live:
    """A file to decode here, a stream to attach to, or a live source to publish privately.

    Strings: a stream of that name wins (``framebus sample cam``), then an existing file, then
    ``testpattern...``, URLs and camera indexes; a string that could be a stream name is one
    (StreamNotFound), anything else a missing file (SourceNotFound).
    """
    if isinstance(source, (framebus.TestPattern, framebus.Source)):
        return _Live(source)
    if isinstance(source, framebus.Media):
        if isinstance(source.target, str) and not source.is_url and not source.is_live:
            return _file(source.target)
        return _Live(source)
    if isinstance(source, int) and not isinstance(source, bool):
        return _Live(source)
    if isinstance(source, os.PathLike):
        return _file(os.fspath(source))
    if not isinstance(source, str):
        raise TypeError(f"cannot sample {source!r}: give a file, a stream name or a source")
    if valid_name(source) and source in {s.name for s in framebus.list_streams()}:
        return _Named(source)
    if os.path.exists(source):
        return _file(source)
    if "://" in source or (source.isascii() and source.isdigit()) or is_test_pattern(source):
        return _Live(source)
    if valid_name(source):
        raise StreamNotFound(f"no stream named {source!r}, and no such file")
    return _file(source)


def _file(path: str) -> _File:
    check_file(path)  # a regular file, as publish() checks one
    if os.stat(path).st_size == 0:
        raise SourceOpenError(f"cannot open {path}: the file is empty")
    return _File(path)


# -- streams -----------------------------------------------------------------------------------


def _sample_stream(
    name: str, opts: SampleOptions, writer: ImageWriter, run: Run, resume: bool
) -> None:
    assert opts.interval is not None  # sample() refuses every= for streams
    sink = ImageSink(name, pick=Pick.interval(opts.interval), fmt=opts.format, quality=opts.quality)
    run.total = opts.max
    try:
        began = time.monotonic()  # the window's clock starts once the stream delivers
        if opts.start is not None:
            while (left := began + opts.start - time.monotonic()) > 0:
                time.sleep(min(_POLL, left))
        deadline = None if opts.end is None else began + opts.end
        kept = 0
        with sink.subscribe() as sub:
            while deadline is None or time.monotonic() < deadline:
                wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                try:
                    item = sub.get(timeout=max(wait, 0.001))
                except ReadTimeout:
                    run.decoded = sink.stats().frames_read
                    run.tick(writer)
                    continue
                except StreamEnded:
                    break
                index = item.info.seq
                kept += 1
                if resume and writer.exists(index):
                    run.skipped += 1
                else:
                    writer.write_encoded(index, item.data)
                run.decoded = sink.stats().frames_read
                run.tick(writer)
                if opts.max is not None and kept >= opts.max:
                    break
    finally:
        run.decoded = sink.stats().frames_read
        sink.close()


# -- the function ------------------------------------------------------------------------------


def sample(
    source_or_name: Any,
    out: str | os.PathLike[str],
    *,
    every: int | None = None,
    interval: float | None = None,
    format: str = "jpg",
    quality: int | None = None,
    max: int | None = None,
    start: float | None = None,
    end: float | None = None,
    resume: bool = False,
    template: str = DEFAULT_TEMPLATE,
    progress: Callable[[SampleSummary], None] | None = None,
    fsync: bool = False,
    workers: int = 2,
) -> SampleSummary:
    """Save frames of a video file, a named stream or a live source as image files in ``out``.

    * ``every=N``: frames 0, N, 2N, … of a file, by frame index (as ``cv2.VideoCapture.read()``
      counts them); ``interval=T``: the first frame of each T seconds of media time (files) or
      one frame every T seconds of wall time (named streams and live sources). Exactly one.
    * ``format``: ``"jpg"`` or ``"png"``; ``quality``: JPEG quality 1..100 (default 95) or PNG
      compression level 0..9 (default 1), cv2.imwrite's defaults.
    * ``max``: stop after that many files kept; ``start``/``end``: a window in seconds (media
      time from the first frame of a file; for streams, time since the stream was open: a
      private stream delivers its first frame when ``publish`` returns).
    * ``resume``: keep files already there (not decoded again, not rewritten).
    * ``template``: the file name, ``str.format`` fields ``{index}`` (the frame index, or the
      stream's frame number) and ``{ext}``; default ``{index:08d}.{ext}``.
    * ``progress``: called with a :class:`SampleSummary` at most every 0.2 s and once at the
      end (``done=True``; ``interrupted=True`` when Ctrl-C stopped the run; not after an
      error, which is raised instead).
    * ``fsync``: flush each file to disk before its rename (survives a power cut; slower).
    * ``workers``: threads converting, encoding and writing (at most ``2 * workers`` frames in
      flight).

    Every file is written atomically (temporary name, then rename): an interrupted run leaves
    only complete files, and removes its temporary ones. Ctrl-C during a run waits for the
    files being written, then raises KeyboardInterrupt (``progress`` has been told).

    Raises ``ValueError`` for a wrong option or an unwritable ``out`` (before any work),
    :class:`framebus.SourceNotFound`, :class:`framebus.SourceOpenError`,
    :class:`framebus.StreamNotFound`, or what reading a stream raises (PublisherLost).
    """
    opts = check_options(
        every=every,
        interval=interval,
        format=format,
        quality=quality,
        max=max,
        start=start,
        end=end,
        template=template,
    )
    what = _classify(source_or_name)
    if not isinstance(what, _File) and opts.every is not None:
        raise ValueError(
            "live sources and named streams are sampled by time: give interval, not every"
        )
    folder = prepare_dir(out)
    label = (
        what.path
        if isinstance(what, _File)
        else what.name
        if isinstance(what, _Named)
        else _label(what.source)
    )
    run = Run(label, "file" if isinstance(what, _File) else "stream", folder, progress)
    writer = ImageWriter(
        folder, opts.template, opts.format, opts.quality, workers=workers, fsync=fsync
    )
    try:
        if isinstance(what, _File):
            sample_file(what.path, opts, writer, run, resume)
        elif isinstance(what, _Named):
            _sample_stream(what.name, opts, writer, run, resume)
        else:
            name = f"sample-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            with framebus.publish(name, what.source):
                _sample_stream(name, opts, writer, run, resume)
        writer.close()  # waits for the last files; raises a worker's error
    except KeyboardInterrupt:
        writer.close(cancel=True)  # the files being written are finished, no others
        run.finish(writer, interrupted=True)
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close(cancel=True)
        raise
    return run.finish(writer)


def _label(source: Any) -> str:
    """A name for the source, credentials removed."""
    if isinstance(source, (framebus.TestPattern, framebus.Media)):
        return source.label
    if isinstance(source, framebus.Source):
        return type(source).__name__
    if isinstance(source, str) and is_test_pattern(source):
        return source
    return framebus.Media(source).label
