"""The capture loop: decode frames from a source into the ring.

It runs either in its own process (``python -m framebus._capture_process SPEC_JSON``, started by the
publisher for built-in sources: a fresh interpreter, so no fork hazards and no re-import of the
user's ``__main__``) or in a thread of the publisher (for user :class:`Source` objects).
The spec arrives as JSON on the command line; nothing is unpickled.
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
from ._layout import Hdr, State, data_name
from ._ring import Control, RingWriter
from .errors import FramebusError, SourceOpenError, error_code
from .sources import Source, open_spec

__all__ = ["capture_loop", "main"]

log = logging.getLogger("framebus.capture")


def _fail(ctl: Control, exc: BaseException) -> None:
    msg = str(exc) if isinstance(exc, FramebusError) else f"{type(exc).__name__}: {exc}"
    ctl.put(Hdr.ERROR_KIND, error_code(exc))
    ctl.set_text(Hdr.ERROR_MSG, msg)
    ctl.set_state(State.FAILED)


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (
        a.shape == b.shape and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def capture_loop(ctl: Control, source: Source, *, realtime: bool, stop: Callable[[], bool]) -> None:
    """Open ``source`` and publish its frames until it ends, fails or ``stop()`` is true."""
    writer = RingWriter(ctl)
    try:
        try:
            source.open()
        except Exception as exc:  # the error travels to the publisher through the header
            _fail(ctl, exc)
            return
        fps = source.fps
        ctl.put(Hdr.SOURCE_FPS_MILLI, int((fps or 0) * 1000))
        ctl.put(Hdr.FRAME_COUNT, (source.frame_count or -1) + 1)
        ctl.set_state(State.LIVE)
        pos, t0, last, rate = 0, time.monotonic(), 0.0, 0.0
        shape: tuple[int, ...] | None = None
        dtype: np.dtype[np.generic] = np.dtype(np.uint8)
        while True:
            slot = writer.acquire(stop)
            if slot is None:
                return
            if realtime and fps:
                delay = t0 + pos / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            hint = writer.buffer(slot, shape, dtype) if shape else None
            frame = source.read_into(hint)
            if frame is None:
                writer.abandon(slot)
                if source.live:
                    _fail(ctl, SourceOpenError("the source stopped delivering frames"))
                else:
                    ctl.set_state(State.ENDED)
                return
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
        log.exception("capture of %r failed", ctl.name)
        _fail(ctl, exc)
    finally:
        try:
            source.close()
        finally:
            writer.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the capture process."""
    args = json.loads((argv or sys.argv[1:])[0])
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

    try:
        capture_loop(ctl, open_spec(args["spec"]), realtime=bool(args["realtime"]), stop=stop)
    finally:
        if os.getppid() != parent:  # the publisher died without closing: clean up for it
            _remove_orphaned(ctl)
        ctl.close()
    return 0


def _remove_orphaned(ctl: Control) -> None:
    ctl.set_state(State.CLOSED)
    if plat.unlink_if_same(ctl.seg.name, ctl.seg.inode):
        for g in range(1, ctl.get(Hdr.DATA_GEN) + 1):
            plat.unlink_segment(data_name(ctl.name, g))
