"""The capture loop: decode frames from a source into the ring, until it ends or is stopped.

It runs in a capture process (:mod:`framebus.capture.__main__`) or in a thread of the
publisher (for user :class:`~framebus.Source` objects); see :mod:`framebus.capture._host`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from ..bus import (
    CLOCKS,
    SEEK_VALUE_MAX,
    Control,
    PacketCodec,
    PacketRingWriter,
    RingWriter,
    State,
    media_ns,
)
from ..errors import FramebusError, SourceOpenError
from ..sources import Source, redact_text

__all__ = ["capture_loop", "record_failure"]

log = logging.getLogger("framebus.capture")


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (
        a.shape == b.shape and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def capture_loop(
    ctl: Control,
    source: Source,
    *,
    realtime: bool,
    stop: Callable[[], bool],
    secrets: tuple[str, ...] = (),
) -> bool:
    """Open ``source`` and publish its frames until it ends, fails or ``stop()`` is true.

    The stream goes live with the first frame, once the shared memory for it is allocated:
    ``publish()`` then raises for a source whose frames do not fit (SharedMemoryFull) as it does
    for one that does not open, and ``live`` after a reconnect means frames flow again.
    Returns False if it failed (the reason is in the header), True otherwise. At the end of
    a source that can seek (a file) the stream ends, but the loop waits for a reader's seek
    until ``stop()``. ``secrets``: the source URL's credentials, kept out of error messages.
    """
    writer = RingWriter(ctl)
    packets: PacketRingWriter | None = None
    try:
        try:
            source.open()
        except Exception as exc:  # the error travels to the publisher through the header
            record_failure(ctl, exc, secrets)
            return False
        packets = _packet_ring(ctl, source)
        fps = source.fps
        ctl.source_fps = fps
        ctl.frame_count = source.frame_count
        backend = _report_backend(ctl, source)
        ctl.seekable = source.seekable
        ctl.heartbeat()
        first = source.read_into(None)  # read before a slot is taken: every mode holds it
        if first is None:
            return _no_frame(ctl, source)
        first_stamp = _stamp(source.frame_time_ns())
        first_media = _media_ns(source)
        writer.reserve(first.nbytes)
        # before the stream is live: whoever opened it knows its frames' size at once
        ctl.set_frame_format(first.shape, first.dtype)
        ctl.heartbeat()
        if ctl.set_state(State.LIVE):  # refused once closed: stop() then ends the loop
            ctl.record_error(None, "")  # live (again): an earlier capture's error is history
        pos, t0, last, rate = 0, time.monotonic(), 0.0, 0.0
        shape: tuple[int, ...] | None = None
        dtype: np.dtype[np.generic] = np.dtype(np.uint8)

        sought = False

        def stop_or_seek() -> bool:
            """``stop()``, which the writer also asks while it waits for a slot: a reader's
            ``set(POS_FRAMES, k)`` is served then too, so an every-mode capture held up by
            another reader still answers it. One load of the seek word per call."""
            nonlocal pos, t0, first, sought
            want = ctl.seek_request()
            if want is not None:
                got = _seek(source, want)
                if got is not None:
                    pos, first, sought = got, None, True
                    t0 = time.monotonic() - pos / fps if fps else t0
                    if ctl.state is State.ENDED:
                        ctl.heartbeat()
                        ctl.revive()  # before the answer: the requester reads on at once
                # the next frame published, whichever slot it gets, is frame `got`; the
                # position and media time the source now reports are what cv2 answers
                if got is None:
                    ctl.answer_seek(want, None)
                else:
                    ctl.answer_seek(want, writer.seq + 1, got, _media_ns(source))
            return stop()

        def await_seek() -> bool:
            """The stream has ended for its readers; a file that can seek waits for a seek
            (cv2 users loop a video with ``set(POS_FRAMES, 0)`` at its end) until the stream is
            closed. True if a seek brought it back."""
            nonlocal sought
            if not source.seekable:
                return False
            sought = False
            while True:
                token = ctl.progress_token()  # a seek request wakes it (Control.seek)
                if stop_or_seek():
                    return False
                if sought:  # and revived, unless closed meanwhile (stop() then ends the loop)
                    return True
                ctl.heartbeat()
                ctl.wait_progress(token, 0.5)

        while True:
            slot = writer.acquire(stop_or_seek)
            if slot is None:
                return True
            if first is not None:
                frame, stamp, media, first = first, first_stamp, first_media, None
                np.copyto(writer.buffer(slot, frame.shape, frame.dtype), frame)
                shape, dtype = frame.shape, frame.dtype
            else:
                if realtime and fps:
                    delay = t0 + pos / fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                hint = writer.buffer(slot, shape, dtype) if shape else None
                read = source.read_into(hint)
                if read is None:
                    writer.abandon(slot)
                    if not _no_frame(ctl, source):
                        return False  # a live source failed
                    if await_seek():
                        continue
                    return True
                frame, stamp = read, _stamp(source.frame_time_ns())
                media = _media_ns(source)
                if hint is None or not _same_buffer(frame, hint):
                    np.copyto(writer.buffer(slot, frame.shape, frame.dtype), frame)
                    shape, dtype = frame.shape, frame.dtype
            index = _position(source.frame_index())  # a user source's: anything
            clock = source.frame_clock()  # a user source's: anything
            clock = clock if _clock_ok(clock) else None
            writer.commit(slot, frame, stamp, pos if index is None else index, media, clock)
            if source.backend_name != backend:  # an RTSP client handed over to FFmpeg
                backend = _report_backend(ctl, source)
                if packets is not None and source.encoded_codec() is None:
                    ctl.packet_segment_size = 0  # its readers stop (the segment stays)
                    source.access_units = None
                    packets.close()
                    packets = None
            pos += 1
            now = time.monotonic()
            if last:
                inst = 1.0 / max(now - last, 1e-6)
                rate = inst if not rate else rate + 0.1 * (inst - rate)
                ctl.capture_fps = rate
            last = now
    except Exception as exc:
        record_failure(ctl, exc, secrets)
        return False
    finally:
        try:
            ctl.end_seeking()  # a request now is refused, not left waiting
            source.access_units = None
            source.close()
        finally:
            writer.close()
            if packets is not None:
                packets.close()


def _packet_ring(ctl: Control, source: Source) -> PacketRingWriter | None:
    """The stream's packet ring, fed by ``source`` as it reads, if it hands out access units
    (made by the first capture of the stream, reused after a reconnect). A ring that cannot
    be made (no room in /dev/shm) only costs the passthrough: the capture goes on."""
    codec = source.encoded_codec()
    if codec not in ("H264", "H265"):
        ctl.packet_segment_size = 0  # a reconnect through FFmpeg: an earlier ring is over
        return None
    try:
        ring = PacketRingWriter.create(ctl.name, ctl.instance, PacketCodec[codec])
    except (OSError, ValueError, FramebusError) as exc:
        log.warning("stream %r: no packet ring for its encoded frames: %s", ctl.name, exc)
        ctl.packet_segment_size = 0  # readers of an earlier ring stop
        return None
    ctl.packet_segment_size = ring.seg.size  # after the ring is ready: readers may map it

    def write(unit: bytes, key: bool) -> None:
        try:
            ring.write(unit, key)
        except (
            Exception
        ):  # the ring is anyone's bytes: it may cost the passthrough, not the capture
            log.exception("stream %r: the packet ring failed; no more encoded frames", ctl.name)
            ctl.packet_segment_size = 0
            source.access_units = None

    source.access_units = write
    return ring


def _stamp(given: int | None) -> int:
    """A source's capture time for a frame if it is a time (ns since the epoch, before 2500),
    else now (a user source's or a camera's number may be anything)."""
    if type(given) is int and 0 < given < 16_725_225_600 * 10**9:
        return given
    return time.time_ns()


def _clock_ok(clock: object) -> bool:
    """Whether a source's :meth:`~framebus.Source.frame_clock` is one the ring can hold."""
    return (
        isinstance(clock, tuple)
        and len(clock) == 3
        and clock[0] in CLOCKS
        and all(v is None or (type(v) is int) for v in clock[1:])
    )


def _media_ns(source: Source) -> int | None:
    """The source's own time of the frame it returned last, in nanoseconds."""
    return media_ns(source.frame_media_time())  # a user source's: anything


def _report_backend(ctl: Control, source: Source) -> str:
    """Say which backend reads the source (``getBackendName()``); a name the header cannot
    hold is shown as "PYTHON"."""
    name = source.backend_name
    try:
        ctl.backend = name
    except ValueError:
        ctl.backend = "PYTHON"
    return name


def _seek(source: Source, frame: int) -> int | None:
    if not source.seekable:
        return None
    try:
        return _position(source.seek(frame))
    except Exception:  # a source that fails to seek refuses; the stream goes on
        return None


def _position(value: object) -> int | None:
    """A frame position a source gave (a user source's: anything), if it is one the seek word
    and a slot's word can hold."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= SEEK_VALUE_MAX else None


def _no_frame(ctl: Control, source: Source) -> bool:
    """The source returned no frame: a finite one ended, a live one failed."""
    if source.live:
        ctl.record_error(SourceOpenError("the source stopped delivering frames"))
        return False
    ctl.set_state(State.ENDED)
    return True


def record_failure(ctl: Control, exc: BaseException, secrets: tuple[str, ...] = ()) -> None:
    """Leave ``exc`` in the header for the publisher and readers, credentials and URLs
    redacted: a backend's message (OpenCV's, FFmpeg's, a user source's) may quote the URL with
    its password, and the header is read by every reader and printed."""
    text = str(exc) if isinstance(exc, FramebusError) else f"{type(exc).__name__}: {exc}"
    ctl.record_error(exc, redact_text(text, secrets))
