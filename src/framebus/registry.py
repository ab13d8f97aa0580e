"""Streams on this machine: :func:`list_streams` and :func:`prune`."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from . import _platform as plat
from ._layout import CONTROL_PREFIX, MAGIC, Hdr, control_name
from ._ring import Control
from .errors import FramebusError
from .publisher import remove_stream
from .stats import StreamStats, read_stats

__all__ = ["list_streams", "prune"]

_CREATION_GRACE = 5.0  # a control segment this young without a header is still being created


def _stream_names() -> list[str]:
    return [
        n[len(CONTROL_PREFIX) :]
        for n in plat.list_segments(CONTROL_PREFIX)
        if "." not in n[len(CONTROL_PREFIX) :]
    ]


def list_streams() -> list[StreamStats]:
    """Every stream on this machine, its state included (``dead`` if its publisher died)."""
    out = []
    for name in _stream_names():
        try:
            ctl = Control.open(name)
        except (FramebusError, OSError):
            continue  # vanished, or not readable by this user
        try:
            out.append(read_stats(ctl))
        finally:
            ctl.close()
    return out


def prune() -> list[str]:
    """Remove the streams whose publisher died (kill -9, power loss of a container...).

    Stops their orphaned capture processes too. Returns the names removed.
    """
    removed = []
    for name in _stream_names():
        if _is_dead(name):
            remove_stream(name)
            removed.append(name)
    # data segments whose control segment is gone
    live = set(_stream_names())
    for seg in plat.list_segments(CONTROL_PREFIX):
        stream = seg[len(CONTROL_PREFIX) :].split(".", 1)[0]
        if "." in seg[len(CONTROL_PREFIX) :] and stream not in live:
            plat.unlink_segment(seg)
            if stream not in removed:
                removed.append(stream)
    return removed


def _is_dead(name: str) -> bool:
    try:
        seg = plat.Segment.open(control_name(name))
    except FileNotFoundError:
        return False
    except OSError:
        return False
    try:
        w = seg.words
        if seg.size < 256 or w.load(Hdr.MAGIC) != MAGIC:
            path = os.path.join(plat.SHM_DIR, seg.name)
            return time.time() - os.stat(path).st_mtime > _CREATION_GRACE
        if plat.process_alive(w.load(Hdr.OWNER_PID), w.load(Hdr.OWNER_START)):
            return False
        writer, start = w.load(Hdr.WRITER_PID), w.load(Hdr.WRITER_START)
        if writer and plat.process_alive(writer, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)  # an orphaned capture process
        return True
    finally:
        seg.close()
