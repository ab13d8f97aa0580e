"""The capture loop: decode frames from a source into the ring.

It runs either in its own process (``python -m framebus._capture_process``, started by the
publisher for built-in sources: a fresh interpreter, so no fork hazards and no re-import of the
user's ``__main__``) or in a thread of the publisher (for user :class:`Source` objects).
The spec arrives as JSON on stdin (argv is readable by every user, and URLs may hold
credentials); nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import numpy as np

from . import _platform as plat
from .bus._layout import Hdr, State, data_name
from .bus._protocol import Control, RingWriter
from .errors import FramebusError, SourceOpenError, error_code
from .sources import Source, open_spec

__all__ = ["capture_loop", "main", "record_error"]

log = logging.getLogger("framebus.capture")


def record_error(ctl: Control, exc: BaseException) -> None:
    """Leave the reason in the header; the publisher decides what follows (raise, reconnect)."""
    msg = str(exc) if isinstance(exc, FramebusError) else f"{type(exc).__name__}: {exc}"
    ctl.put(Hdr.ERROR_KIND, error_code(exc))
    ctl.set_text(Hdr.ERROR_MSG, msg)


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
            record_error(ctl, exc)
            return False
        fps = source.fps
        ctl.put(Hdr.SOURCE_FPS_MILLI, int((fps or 0) * 1000))
        ctl.put(Hdr.FRAME_COUNT, (source.frame_count or -1) + 1)
        ctl.put(Hdr.HEARTBEAT_NS, time.monotonic_ns())
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
                    record_error(ctl, SourceOpenError("the source stopped delivering frames"))
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
                ctl.put(Hdr.FPS_MILLI, int(rate * 1000))
            last = now
    except Exception as exc:
        record_error(ctl, exc)
        return False
    finally:
        try:
            source.close()
        finally:
            writer.close()


def main() -> int:
    """Entry point of the capture process."""
    args = json.loads(sys.stdin.read())  # from the publisher, through a pipe: not in argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the publisher's to handle
    logging.basicConfig(level=logging.WARNING, format="framebus capture: %(message)s")
    name: str = args["name"]
    parent = os.getppid()
    ctl = Control.open(name)
    me = os.getpid()
    ctl.put(Hdr.WRITER_START, plat.process_start_time(me) or 0)
    ctl.put(Hdr.WRITER_PID, me)

    def stop() -> bool:
        return os.getppid() != parent or ctl.state in (State.CLOSED, State.FAILED)

    # FFmpeg and OpenCV logs can print URLs with credentials: keep them quiet unless asked
    if not os.environ.get("FRAMEBUS_DEBUG"):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

    # one frame at a time: OpenCV's thread pool would cost more CPU than the latency it saves
    # (cvtColor of 720p: 0.5 ms on one thread; two threads used 0.7 ms more CPU per frame)
    import cv2

    cv2.setNumThreads(1)
    ok = False
    try:
        ok = capture_loop(ctl, open_spec(args["spec"]), realtime=bool(args["realtime"]), stop=stop)
    except Exception as exc:  # e.g. a backend that cannot be imported
        record_error(ctl, exc)
    finally:
        if os.getppid() != parent:  # the publisher died without closing: clean up for it
            _remove_orphaned(ctl)
        ctl.close()
    return 0 if ok else 3


def _remove_orphaned(ctl: Control) -> None:
    ctl.set_state(State.CLOSED)
    if plat.unlink_if_same(ctl.seg.name, ctl.seg.inode):
        # this instance's data segments only: the name may be taken over already
        prefix = data_name(ctl.name, ctl.get(Hdr.INSTANCE), 0)[:-1]
        for seg in plat.list_segments(prefix):
            plat.unlink_segment(seg)
