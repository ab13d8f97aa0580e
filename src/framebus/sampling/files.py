"""A video file sampled in the caller's process, tuned for throughput (see
:mod:`framebus.sampling`): one pass over the packets makes a decoding plan
(:mod:`._frame_plan`, :mod:`._keyframes`); the decoder then skips what no kept frame needs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from .._frames import bgr24
from ..errors import FrameTooLarge, SourceOpenError
from ..limits import check_pixels
from ..sinks.disk import ImageWriter
from ._frame_plan import DECODE, SKIP, DecodePlan, PacketIndex, Selection
from ._keyframes import SENT_WHEN_SKIPPED, checks_keyframes, starts_fresh
from .run import Run, SampleOptions

__all__ = ["sample_file"]


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


def sample_file(
    path: str, opts: SampleOptions, writer: ImageWriter, run: Run, resume: bool
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


def _decode_planned(path: str, plan: DecodePlan, writer: ImageWriter, run: Run) -> None:
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
    path: str, opts: SampleOptions, writer: ImageWriter, run: Run, resume: bool
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
