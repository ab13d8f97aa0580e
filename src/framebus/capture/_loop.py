"""The capture loop: decode frames from a source into the ring, until it ends or is stopped.

It runs in a capture process (:mod:`framebus.capture.__main__`) or in a thread of the
publisher (for user :class:`~framebus.Source` objects); see :mod:`framebus.capture._host`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..bus import Control, RingWriter, State
from ..errors import SourceOpenError
from ..sources import Source

__all__ = ["capture_loop"]


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (
        a.shape == b.shape and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def capture_loop(ctl: Control, source: Source, *, realtime: bool, stop: Callable[[], bool]) -> bool:
    """Open ``source`` and publish its frames until it ends, fails or ``stop()`` is true.

    Returns False if it failed (the reason is in the header), True otherwise.
    """
    writer = RingWriter(ctl)
    try:
        try:
            source.open()
        except Exception as exc:  # the error travels to the publisher through the header
            ctl.record_error(exc)
            return False
        fps = source.fps
        ctl.source_fps = fps
        ctl.frame_count = source.frame_count
        ctl.heartbeat()
        ctl.set_state(State.LIVE)
        pos, t0, last, rate = 0, time.monotonic(), 0.0, 0.0
        shape: tuple[int, ...] | None = None
        dtype: np.dtype[np.generic] = np.dtype(np.uint8)
        while True:
            slot = writer.acquire(stop)
            if slot is None:
                return True
            if realtime and fps:
                delay = t0 + pos / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            hint = writer.buffer(slot, shape, dtype) if shape else None
            frame = source.read_into(hint)
            if frame is None:
                writer.abandon(slot)
                if source.live:
                    ctl.record_error(SourceOpenError("the source stopped delivering frames"))
                    return False
                ctl.set_state(State.ENDED)
                return True
            stamp = time.time_ns()
            if hint is None or not _same_buffer(frame, hint):
                np.copyto(writer.buffer(slot, frame.shape, frame.dtype), frame)
                shape, dtype = frame.shape, frame.dtype
            writer.commit(slot, frame, stamp, pos)
            pos += 1
            now = time.monotonic()
            if last:
                inst = 1.0 / max(now - last, 1e-6)
                rate = inst if not rate else rate + 0.1 * (inst - rate)
                ctl.capture_fps = rate
            last = now
    except Exception as exc:
        ctl.record_error(exc)
        return False
    finally:
        try:
            source.close()
        finally:
            writer.close()
