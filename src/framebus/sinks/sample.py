"""Sampling frames to image files: ``framebus.sample()``, the library side of ``framebus sample``.

Two ways in, one way out (:class:`~framebus.sinks.disk.ImageWriter`: atomic files, a bounded
pool of encoders):

* **A video file** is decoded here, in the caller's process, tuned for throughput: PyAV with
  FFmpeg's frame and slice threads (``thread_type="AUTO"``; files need no low-latency
  settings), frames indexed from 0 in display order (the indexes ``cv2.VideoCapture.read()``
  gives them). One pass over the packets (no decoding; it stops once ``max`` or ``end`` is
  reached) maps each packet to its frame's index (:mod:`._frame_plan`); then the decoder
  skips every frame that is neither kept nor a reference (most B-frames: a third of libx264's
  frames) and every run of frames from one fresh-start keyframe to the next without a kept
  frame (:mod:`._keyframes`), and stops after the last kept one.
  The kept frames are exactly the frames a full decode gives (tested against OpenCV's decode
  of every frame, on H.264, HEVC, MPEG-2/4, VP9, MJPEG, open GOPs and edit lists). A file
  whose timestamps cannot index its frames (missing or repeated pts) is decoded frame by
  frame and counted. Colour conversion to BGR only for the kept frames, and that conversion,
  the encoding and the write done by the writer's pool while decoding goes on. PyAV's
  ``bgr24`` conversion gives the same bytes as OpenCV's for yuv420p H.264 (tested).
* **A named stream, or a live source** (URL, camera, test pattern, a :class:`framebus.Source`,
  which is published privately for the run) is read from the ring like any reader: one frame
  every ``interval`` seconds of capture (wall) time, through an :class:`ImageSink` that looks
  at frames without copying them and encodes only the chosen ones. On a latest-mode stream the
  ring skips for this reader as for any other: sampling never slows the capture or the other
  readers.

``every`` picks frames 0, N, 2N, … by frame index; ``interval`` the first frame of each
interval of media time [kT, (k+1)T), counted from the first frame's timestamp (files), or one
frame per T seconds of capture time (streams). ``start``/``end`` select a window of that same
set (seconds of media time from the first frame; for streams, seconds since the stream was
open), so a run with a window writes a subset of the files of a run without: indexes stay
absolute and ``resume`` works across both (a frame whose file is there is not decoded).
``max`` stops after that many files kept (written, or already there with ``resume``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

import framebus
from framebus import ReadTimeout, SourceNotFound, SourceOpenError, StreamEnded, StreamNotFound
from framebus._frames import bgr24
from framebus.errors import FrameTooLarge
from framebus.limits import check_pixels

from ._frame_plan import DECODE, SKIP, DecodePlan, PacketIndex, Selection
from ._keyframes import SENT_WHEN_SKIPPED, checks_keyframes, starts_fresh
from .base import Pick
from .disk import (
    DEFAULT_TEMPLATE,
    IMAGE_FORMATS,
    ImageFormat,
    ImageSink,
    ImageWriter,
    NameTemplate,
    check_quality,
    default_quality,
    prepare_dir,
)

__all__ = ["SampleOptions", "SampleSummary", "check_options", "sample"]

# how often progress() is called at most while frames flow (and once at the end)
_PROGRESS_PERIOD = 0.2
# how long one wait for a stream's next sample lasts before end/max are looked at again
_POLL = 0.2
_STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
_PATTERN = re.compile(r"(?:testpattern|pattern)(?::\d+x\d+(?:@\d+(?:\.\d+)?)?)?")  # publish's


@dataclass(frozen=True)
class SampleSummary:
    """What a sampling run did so far (progress) or in all (the result)."""

    source: str
    """The file, stream name or source sampled (credentials never appear)."""
    kind: Literal["file", "stream"]
    """A file decoded here, or a stream read from its ring (named, or published for the run)."""
    out: str
    decoded: int
    """Frames of a file the run went over (decoded, or passed over: see ``undecoded``), or
    frames looked at in the ring (streams)."""
    written: int
    """Image files written."""
    skipped_existing: int
    """Frames kept whose file was already there (``resume``)."""
    elapsed: float
    """Seconds since the run started."""
    total: int | None = None
    """Frames a file run will decode (an estimate from the container; None if unknown), or
    for a stream with ``max``, the files it will keep."""
    interrupted: bool = False
    """Ctrl-C (KeyboardInterrupt) stopped the run; the exception goes on after this record."""
    done: bool = False
    """The last record of the run."""
    undecoded: int = 0
    """Frames of a file the run went over without decoding them: neither kept nor referenced
    by a frame that is (``decoded`` counts them too)."""
    failed: int = 0
    """Kept frames of a file that did not decode (damaged packets): no file was written for
    them, and the run is a failure (the command line exits with status 1)."""

    @property
    def kept(self) -> int:
        return self.written + self.skipped_existing

    def line(self) -> str:
        """A one-line summary, for the end of a run."""
        rate = self.decoded / self.elapsed if self.elapsed > 0 else 0.0
        what = "interrupted" if self.interrupted else "done"
        skipped = f", {self.skipped_existing} already there" if self.skipped_existing else ""
        undecoded = f" ({self.undecoded} not needed, not decoded)" if self.undecoded else ""
        failed = (
            f"; {self.failed} kept frame(s) did not decode (damaged packets): no file for them"
            if self.failed
            else ""
        )
        return (
            f"{what}: {self.written} files written{skipped} into {self.out} from "
            f"{self.decoded} frames{undecoded} in {self.elapsed:.1f} s ({rate:.0f} frames/s)"
            f"{failed}"
        )


@dataclass(frozen=True)
class SampleOptions:
    """Checked options of one run (see :func:`check_options`)."""

    every: int | None
    interval: float | None
    format: ImageFormat
    quality: int
    max: int | None
    start: float | None
    end: float | None
    template: NameTemplate


def _positive(value: float | None, what: str, *, zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}")
    ok = value >= 0 if zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be {bound} seconds, not {value:g}")
    return float(value)


def check_options(
    *,
    every: int | None = None,
    interval: float | None = None,
    format: str = "jpg",
    quality: int | None = None,
    max: int | None = None,
    start: float | None = None,
    end: float | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> SampleOptions:
    """Check the options of :func:`sample` without touching any file: a one-line
    ``ValueError`` for the first wrong one."""
    if (every is None) == (interval is None):
        raise ValueError("give exactly one of every (frames) or interval (seconds)")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a whole number of frames >= 1, not {every!r}")
    interval = _positive(interval, "interval")
    if format == "jpeg":
        format = "jpg"
    if format not in IMAGE_FORMATS:
        raise ValueError(f"format must be jpg or png, not {format!r}")
    fmt: ImageFormat = "jpg" if format == "jpg" else "png"
    q = default_quality(fmt) if quality is None else quality
    check_quality(fmt, q)
    if max is not None and (isinstance(max, bool) or not isinstance(max, int) or max < 1):
        raise ValueError(f"max must be a whole number of files >= 1, not {max!r}")
    start = _positive(start, "start", zero=True)
    end = _positive(end, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end:g} s) must be after start ({start:g} s)")
    return SampleOptions(every, interval, fmt, q, max, start, end, NameTemplate(template, fmt))


# -- what to sample ----------------------------------------------------------------------------


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
    if _STREAM_NAME.fullmatch(source) and source in {s.name for s in framebus.list_streams()}:
        return _Named(source)
    if os.path.exists(source):
        return _file(source)
    if "://" in source or (source.isascii() and source.isdigit()) or _PATTERN.fullmatch(source):
        return _Live(source)
    if _STREAM_NAME.fullmatch(source):
        raise StreamNotFound(f"no stream named {source!r}, and no such file")
    return _file(source)


def _file(path: str) -> _File:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceNotFound(f"no such file: {path}") from None
    except OSError as exc:
        raise SourceOpenError(f"cannot open {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceOpenError(f"cannot open {path}: it is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise SourceOpenError(f"cannot open {path}: it is not a regular file")
    if st.st_size == 0:
        raise SourceOpenError(f"cannot open {path}: the file is empty")
    return _File(path)


# -- progress ----------------------------------------------------------------------------------


class _Run:
    """The counters of one run, and the rate-limited calls of ``progress``."""

    def __init__(
        self,
        label: str,
        kind: Literal["file", "stream"],
        out: Path,
        progress: Callable[[SampleSummary], None] | None,
    ) -> None:
        self.label = label
        self.kind: Literal["file", "stream"] = kind
        self.out = str(out)
        self.progress = progress
        self.t0 = time.monotonic()
        self.last_report = -math.inf
        self.decoded = 0
        self.skipped = 0
        self.undecoded = 0
        self.failed = 0
        self.total: int | None = None

    def summary(self, written: int, **kw: Any) -> SampleSummary:
        elapsed = time.monotonic() - self.t0
        return SampleSummary(
            self.label,
            self.kind,
            self.out,
            self.decoded,
            written,
            self.skipped,
            elapsed,
            self.total,
            undecoded=self.undecoded,
            failed=self.failed,
            **kw,
        )

    def tick(self, writer: ImageWriter) -> None:
        """Tell ``progress``, if the last time was long enough ago (cheap otherwise)."""
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last_report >= _PROGRESS_PERIOD:
            self.last_report = now
            self.progress(self.summary(writer.written))

    def finish(self, writer: ImageWriter, *, interrupted: bool = False) -> SampleSummary:
        summary = self.summary(writer.written, interrupted=interrupted, done=True)
        if self.progress is not None:
            self.progress(summary)
        return summary


# -- files -------------------------------------------------------------------------------------


def _open_video(path: str) -> tuple[Any, Any]:
    import av

    av.logging.set_level(None)  # PyAV's log callback can deadlock with threads
    try:
        container = av.open(path)
    except Exception as exc:
        name = type(exc).__name__
        raise SourceOpenError(
            f"cannot open {path}: not a video, or an unsupported format or codec ({name})"
        ) from None
    if not container.streams.video:
        container.close()
        raise SourceOpenError(f"cannot open {path}: it has no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context
    try:  # the size the file declares, before a frame is decoded
        check_pixels(codec.width, codec.height, f"{path}: video frames")
    except FrameTooLarge:
        container.close()
        raise
    stream.thread_type = "AUTO"  # frame threads: throughput, whatever the latency
    return container, stream


def _frame_total(container: Any, stream: Any, end: float | None) -> int | None:
    """How many frames the run will decode: the container's count (or duration x rate),
    capped at ``end``. Only for the progress bar of a file decoded without a plan."""
    rate = float(stream.average_rate or stream.base_rate or 0)
    total = int(stream.frames or 0)
    if not total and container.duration and rate:
        total = math.ceil(container.duration / 1_000_000 * rate)
    if end is not None and rate:
        total = min(total, math.ceil(end * rate)) if total else math.ceil(end * rate)
    return total or None


def _packets(container: Any, stream: Any) -> Iterator[Any]:
    """The stream's non-empty packets in decoding order. A demuxing error (a truncated file)
    ends the stream, as it ends ``cv2.VideoCapture.read()``."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError:
            return
        if packet.size:
            yield packet


def _decode(codec: Any, packet: Any) -> list[Any]:
    """The frames the decoder gives for ``packet`` (None: the frames it still holds). A packet
    the decoder rejects gives none (as FFmpeg's own tools and OpenCV skip it)."""
    import av

    try:
        frames: list[Any] = codec.decode(packet)
    except (av.InvalidDataError, av.EOFError):
        return []
    return frames


def _selection(opts: SampleOptions, stream: Any) -> Selection:
    return Selection(
        every=opts.every,
        interval=None if opts.interval is None else Fraction(repr(opts.interval)),
        start=None if opts.start is None else Fraction(repr(opts.start)),
        end=None if opts.end is None else Fraction(repr(opts.end)),
        max=opts.max,
        time_base=stream.time_base or Fraction(1, 1),
        rate=Fraction(stream.average_rate or stream.base_rate or 25),
    )


def _sample_file(
    path: str, opts: SampleOptions, writer: ImageWriter, run: _Run, resume: bool
) -> None:
    plan = _plan_file(path, opts, writer if resume else None)
    if plan is None:
        _decode_every_frame(path, opts, writer, run, resume)
    else:
        _decode_planned(path, plan, writer, run)


def _plan_file(path: str, opts: SampleOptions, existing: ImageWriter | None) -> DecodePlan | None:
    """The decoding plan of the run, from one pass over the file's packets (no decoding)."""
    container, stream = _open_video(path)
    try:
        codec = stream.codec_context
        name, extradata, intra = codec.name, codec.extradata, bool(codec.codec.intra_only)
        checked = checks_keyframes(name, intra)
        index = PacketIndex(_selection(opts, stream))
        for packet in _packets(container, stream):
            fresh = (
                checked
                and bool(packet.is_keyframe)
                and starts_fresh(name, extradata, bytes(packet), intra_only=intra)
            )
            index.add(packet.pts, packet.dts, bool(packet.is_discard), fresh)
            if index.done or not index.usable:
                break  # the rest of the file cannot change the plan
        else:
            index.finish()
        return index.plan((lambda i: False) if existing is None else existing.exists)
    finally:
        container.close()


def _decode_planned(path: str, plan: DecodePlan, writer: ImageWriter, run: _Run) -> None:
    """Decode what the plan needs: kept frames in full, other reference frames (the kept ones
    may depend on them), no frame that nothing kept references; stop after the last kept."""
    run.total = plan.covered
    run.skipped = int(np.count_nonzero(plan.kept)) - int(np.count_nonzero(plan.decode))
    if plan.last_packet < 0:
        run.decoded = plan.covered
        return
    taken = np.zeros(len(plan.decode), dtype=bool)
    decoded = 0  # frames that left the decoder, inside the run

    def take(frames: list[Any]) -> None:
        nonlocal decoded
        for frame in frames:
            index = plan.index_of(frame.pts)
            if index is None:  # not a frame of the run
                continue
            decoded += 1
            if plan.decode[index] and not taken[index]:
                taken[index] = True
                # converted in the pool, not here: the conversion releases the GIL
                writer.submit(index, _bgr(frame))

    container, stream = _open_video(path)
    codec = stream.codec_context
    send_skipped = codec.name in SENT_WHEN_SKIPPED
    mode = ""
    try:
        for position, packet in enumerate(_packets(container, stream)):
            if position > plan.last_packet:
                break
            if packet.pts != int(plan.packet_pts[position]):
                raise SourceOpenError(f"cannot sample {path}: the file changed while it was read")
            index = plan.index_of(packet.pts)
            action = int(plan.actions[position])
            if action == SKIP and not send_skipped:
                continue
            # NONREF: the decoder drops this frame if no other frame references it; ALL: drops it
            want = "DEFAULT" if action == DECODE else "NONREF" if action != SKIP else "ALL"
            if want != mode:
                codec.skip_frame = mode = want
            take(_decode(codec, packet))
            if index is not None:
                run.decoded = min(plan.covered, max(run.decoded, index + 1))
            run.tick(writer)
        take(_decode(codec, None))
    finally:
        # frames still queued in the writer stay valid: FFmpeg's frame buffers are reference
        # counted and outlive the decoder that made them
        container.close()
    run.decoded = plan.covered
    # kept frames the decoder refused failed; they are not "not needed"
    run.failed = int(np.count_nonzero(plan.decode & ~taken))
    run.undecoded = max(0, plan.covered - decoded - run.failed)


def _decode_every_frame(
    path: str, opts: SampleOptions, writer: ImageWriter, run: _Run, resume: bool
) -> None:
    """Without a plan (timestamps missing or repeated): decode every frame and count them in
    the order they leave the decoder, as ``cv2.VideoCapture.read()`` does."""
    container, stream = _open_video(path)
    codec = stream.codec_context
    try:
        selection = _selection(opts, stream)
        run.total = _frame_total(container, stream, opts.end)
        index = 0
        for packet in itertools.chain(_packets(container, stream), [None]):
            for frame in _decode(codec, packet):
                verdict = selection.offer(index, frame.pts)
                if verdict == "stop":
                    return
                run.decoded = index + 1
                if verdict != "skip":
                    if resume and writer.exists(index):
                        run.skipped += 1
                    else:
                        writer.submit(index, _bgr(frame))
                if verdict == "keep_last":
                    return
                index += 1
                run.tick(writer)
    finally:
        container.close()


def _bgr(frame: Any) -> Callable[[], np.ndarray]:
    """A function converting ``frame`` to BGR in the writer's thread that calls it
    (:func:`framebus._frames.bgr24`: one single-threaded swscale context per thread)."""

    def convert() -> np.ndarray:
        return np.ascontiguousarray(bgr24(frame))

    return convert


# -- streams -----------------------------------------------------------------------------------


def _sample_stream(
    name: str, opts: SampleOptions, writer: ImageWriter, run: _Run, resume: bool
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
    run = _Run(label, "file" if isinstance(what, _File) else "stream", folder, progress)
    writer = ImageWriter(
        folder, opts.template, opts.format, opts.quality, workers=workers, fsync=fsync
    )
    try:
        if isinstance(what, _File):
            _sample_file(what.path, opts, writer, run, resume)
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
    if isinstance(source, str) and _PATTERN.fullmatch(source):
        return source
    return framebus.Media(source).label
