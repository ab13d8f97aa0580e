"""The life of a stream's segments: create (taking over a dead name), find, remove.

A name is taken over only when its publisher provably died; a pid is signalled only when it
provably is that stream's own capture; only this user's regular files are ever removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time

from .. import _platform as plat
from ..errors import PublisherLost, StreamExists
from ._control import Control, create_control
from ._layout import (
    CONTROL_PREFIX,
    MAGIC,
    MAX_CONTROL_SIZE,
    MIN_CONTROL_SIZE,
    Hdr,
    Mode,
    State,
    control_name,
    data_name,
)

__all__ = [
    "CAPTURE_MODULE",
    "create_stream",
    "dead_stream",
    "orphaned_data_streams",
    "remove_orphaned",
    "remove_stream",
    "stream_names",
]

CAPTURE_MODULE = "framebus.capture"  # the capture process runs `python -m` this
_CREATION_GRACE = 5.0  # a control segment this young without a header is still being created


def create_stream(name: str, slots: int, max_readers: int, mode: Mode, desc: str) -> Control:
    """Create stream ``name``, taking the name over from a publisher that died."""
    for _ in range(2):
        try:
            return create_control(name, slots, max_readers, mode, desc)
        except FileExistsError:
            pass
        if not dead_stream(name):
            raise StreamExists(f"stream {name!r} is already published by a running process")
        remove_stream(name)  # left by a publisher that was killed: take the name over
    raise StreamExists(f"stream {name!r} is being published by another process")


def dead_stream(name: str) -> bool:
    """True if stream ``name`` exists, is this user's, and its publisher died.

    Stops its orphaned capture process too, but only one that provably is that stream's
    capture (see :func:`framebus._platform.is_process`): the pids in a segment are anyone's
    bytes. A file that is not this user's regular file is never judged dead (nor removed).
    """
    path = os.path.join(plat.SHM_DIR, control_name(name))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return False  # a symlink or another user's file: not ours to remove
    old = not 0 <= time.time() - st.st_mtime <= _CREATION_GRACE  # a future mtime is not young
    if st.st_size < MIN_CONTROL_SIZE:  # empty or truncated: a publisher killed while creating
        return old
    try:
        seg = plat.Segment.open(control_name(name), max_size=MAX_CONTROL_SIZE)
    except plat.SegmentRefused:
        return old  # e.g. oversized: not a stream framebus made
    except OSError:
        return False  # gone meanwhile
    try:
        w = seg.words
        if w.load(Hdr.MAGIC) != MAGIC:  # being created, or garbage left by a crash then
            return old
        if plat.process_alive(w.load(Hdr.OWNER_PID), w.load(Hdr.OWNER_START)):
            return False
        writer, start = w.load(Hdr.WRITER_PID), w.load(Hdr.WRITER_START)
        if plat.is_process(writer, start, seg.uid, ["-m", CAPTURE_MODULE]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)  # an orphaned capture, hung in its source
        return True
    finally:
        seg.close()


def remove_stream(name: str, inode: int | None = None, instance: int | None = None) -> None:
    """Unlink the segments of stream ``name``.

    With ``inode`` and ``instance``: only that stream instance's (a publisher closing its own
    stream); without: everything of the name (removing what a dead publisher left).
    """
    prefix = f"{CONTROL_PREFIX}{name}."
    if instance is not None:
        prefix = data_name(name, instance, 0)[:-1]
    for seg in plat.list_segments(prefix):
        plat.unlink_segment(seg)
    if inode is None:
        plat.unlink_segment(control_name(name))
    else:
        plat.unlink_if_same(control_name(name), inode)


def remove_orphaned(ctl: Control) -> None:
    """A capture whose publisher died removes the stream for it: this instance's segments
    only, since the name may have been taken over already.

    The stream fails with :class:`PublisherLost`, which its readers raise: ``closed`` (and so
    :class:`StreamEnded`) is what a publisher's own ``close()`` says. A stream that had
    already ended or failed keeps its state.
    """
    if ctl.state not in (State.ENDED, State.FAILED, State.CLOSED):
        ctl.record_error(PublisherLost(f"the publisher of stream {ctl.name!r} died"))
        ctl.set_state(State.FAILED)
    if plat.unlink_if_same(ctl.seg.name, ctl.seg.inode):
        prefix = data_name(ctl.name, ctl.instance, 0)[:-1]
        for seg in plat.list_segments(prefix):
            plat.unlink_segment(seg)


def stream_names() -> list[str]:
    """Names of this user's control segments."""
    return [
        n[len(CONTROL_PREFIX) :]
        for n in plat.list_segments(CONTROL_PREFIX)
        if "." not in n[len(CONTROL_PREFIX) :]
    ]


def orphaned_data_streams() -> dict[str, list[str]]:
    """Data segments whose control segment is gone, by stream name."""
    live = set(stream_names())
    out: dict[str, list[str]] = {}
    for seg in plat.list_segments(CONTROL_PREFIX):
        stream, dot, _ = seg[len(CONTROL_PREFIX) :].partition(".")
        if dot and stream not in live:
            out.setdefault(stream, []).append(seg)
    return out
