"""Frozen records that describe frames and streams."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .bus import Control, State

__all__ = ["FrameInfo", "StreamStats", "WriterStats", "read_stats", "unreadable_stats"]


@dataclass(frozen=True)
class FrameInfo:
    """The frame last returned by a reader."""

    seq: int
    """Sequence number of the frame in its stream (1 for the first frame published)."""
    timestamp: float
    """``time.time()`` when the capture process received the frame from its source."""
    pos: int
    """Index of the frame in its source (for files: the frame number)."""
    skipped: int
    """Frames this reader skipped between the previous frame it returned and this one."""
    width: int
    height: int
    media_time: float | None = None
    """The frame's time in its source, in seconds, as its backend gives it (a file's
    presentation time from its start: cv2's ``CAP_PROP_POS_MSEC`` / 1000); None where the
    source has none (cameras read by framebus's RTSP client, test patterns, remote streams)."""
    clock: str = "local"
    """Whose clock :attr:`timestamp` is: ``local`` (the capturing machine's, when it had the
    frame), ``camera`` (the camera's capture time, from its RTCP sender reports: comparable
    across cameras whose clocks are synchronised), or ``untrusted`` (the local clock, because
    the camera's is more than 2 s from it)."""

    @property
    def age(self) -> float:
        """Seconds since capture, now."""
        return time.time() - self.timestamp


@dataclass(frozen=True)
class StreamStats:
    """A snapshot of a stream's counters.

    ``delivered`` and ``skipped`` are this reader's own counts when taken from a reader, and the
    sums over the attached readers when taken from a publisher or ``list_streams()``.
    """

    name: str
    state: str
    """``connecting``, ``live``, ``stalled``, ``reconnecting``, ``ended``, ``failed``,
    ``closed``, ``dead`` (publisher gone) or ``unreadable`` (not a stream this framebus reads:
    ``error`` says why)."""
    mode: str
    source: str
    captured: int
    delivered: int
    skipped: int
    readers: int
    capture_fps: float
    source_fps: float | None
    width: int
    height: int
    last_frame_age: float | None
    """Seconds since the newest frame was captured; None before the first frame."""
    reconnects: int
    error: str
    publisher_pid: int
    clock: str
    """Whose clock the newest frame's timestamp is (see :attr:`FrameInfo.clock`)."""
    clock_offset: float | None
    """Seconds this machine's clock is ahead of the camera's, as the frames show it (their
    arrival minus their capture time: the network's and the camera's delay included); None
    without RTCP sender reports."""
    clock_jitter: float | None
    """How much that offset varies from frame to frame (standard deviation, seconds)."""


@dataclass(frozen=True)
class WriterStats(StreamStats):
    """A :class:`~framebus.VideoWriter`'s stream counters, with its processing delay: for each
    frame written with ``like=info``, the seconds from that frame's capture (by the camera's
    stream) to its ``write()``. None until such a frame was written."""

    delay: float | None
    """The newest such frame's delay."""
    delay_mean: float | None
    """Mean over every such frame written."""
    delay_max: float | None
    """The largest delay seen."""


def read_stats(ctl: Control, own: tuple[int, int] | None = None) -> StreamStats:
    """Stats of the stream behind ``ctl``; ``own`` = (delivered, skipped) of a reader."""
    state = ctl.state
    label = state.name.lower() if ctl.publisher_alive() else "dead"
    if state is State.CLOSED:
        label = "closed"
    readers, delivered, skipped = ctl.reader_totals()
    if own is not None:
        delivered, skipped = own
    width, height = ctl.newest_size()
    clock, offset_ns, jitter_ns = ctl.newest_clock()
    last = ctl.last_frame_ns
    return StreamStats(
        name=ctl.name,
        state=label,
        mode=ctl.mode.name.lower(),
        source=ctl.source_desc,
        captured=ctl.captured,
        delivered=delivered,
        skipped=skipped,
        readers=readers,
        capture_fps=ctl.capture_fps,
        source_fps=ctl.source_fps,
        width=width,
        height=height,
        last_frame_age=max(0.0, (time.time_ns() - last) / 1e9) if last else None,
        reconnects=ctl.reconnects,
        error=ctl.error_message,
        publisher_pid=ctl.owner[0],
        clock=clock,
        clock_offset=None if offset_ns is None else offset_ns / 1e9,
        clock_jitter=None if jitter_ns is None else jitter_ns / 1e9,
    )


def unreadable_stats(name: str, why: str) -> StreamStats:
    """The entry ``list_streams()`` gives a segment it cannot read as a stream."""
    return StreamStats(
        name=name,
        state="unreadable",
        mode="-",
        source="",
        captured=0,
        delivered=0,
        skipped=0,
        readers=0,
        capture_fps=0.0,
        source_fps=None,
        width=0,
        height=0,
        last_frame_age=None,
        reconnects=0,
        error=why,
        publisher_pid=0,
        clock="local",
        clock_offset=None,
        clock_jitter=None,
    )
