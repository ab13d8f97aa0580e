"""The feed of a stream of this machine: its shared-memory ring, read in place."""

from __future__ import annotations

import numpy as np

from ..bus import Control, RingReader, State
from ..stats import FrameInfo, StreamStats, read_stats
from .base import Landing

__all__ = ["SEEK_TIMEOUT", "RingFeed"]

SEEK_TIMEOUT = 10.0  # seconds a seek waits for the capture process to seek


class RingFeed:
    """Frames straight from the ring: :meth:`acquire` pins the frame's slot (the capture does
    not write it) and lends a read-only view of it until :meth:`release`. Owns ``ctl``."""

    def __init__(self, ctl: Control, *, from_start: bool = False) -> None:
        self.ctl = ctl
        self.ring = RingReader(ctl, from_start=from_start)
        self._closed = False

    @property
    def name(self) -> str:
        return self.ctl.name

    def acquire(self, timeout: float | None) -> tuple[np.ndarray, FrameInfo]:
        ring = self.ring
        meta = ring.acquire(timeout)
        try:
            view = ring.view(meta)
        except BaseException:
            ring.release()
            raise
        height, width = view.shape[:2]
        media = None if meta.media_ns is None else meta.media_ns / 1e9
        info = FrameInfo(
            meta.seq, meta.timestamp_ns / 1e9, meta.pos, meta.skipped, width, height, media,
            meta.clock,
        )  # fmt: skip
        return view, info

    def release(self) -> None:
        self.ring.release()

    def wait(self, timeout: float) -> bool:
        return self.ring.wait_ready(timeout)

    def counters(self) -> tuple[int, int]:
        return self.ring.delivered, self.ring.skipped

    def alive(self) -> bool:
        """The publisher lives and has not closed the stream (a file at its end stays open,
        as in cv2: it can be sought back)."""
        return self.ctl.publisher_alive() and self.ctl.state is not State.CLOSED

    def backend(self) -> str:
        return self.ctl.backend

    def fps(self) -> float:
        return self.ctl.source_fps or self.ctl.capture_fps

    def nominal_fps(self) -> float | None:
        return self.ctl.source_fps

    def frame_count(self) -> int | None:
        return self.ctl.frame_count

    def size(self) -> tuple[int, int]:
        return self.ctl.newest_size()

    def seek(self, frame: int) -> Landing | None:
        """The capture process seeks; the next frame acquired comes from ``frame``, for this
        reader at once (frames it had in the ring are passed over)."""
        if not self.ctl.seekable:
            return None
        first = self.ctl.seek(frame, SEEK_TIMEOUT, self.ring.skip_to)
        if first is None:
            return None
        self.ring.skip_to(first)
        return Landing(*self.ctl.seek_landing(self.ctl.seek_serial))

    def stats(self) -> StreamStats:
        return read_stats(self.ctl, self.counters())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.ring.close()
            self.ctl.close()
