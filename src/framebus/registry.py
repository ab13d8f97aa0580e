"""Streams on this machine: :func:`list_streams` and :func:`prune`."""

from __future__ import annotations

from . import _platform as plat
from .bus import Control, dead_stream, orphaned_data_streams, remove_stream, stream_names
from .errors import FramebusError, StreamNotFound
from .outputs import prune_outputs
from .stats import StreamStats, read_stats, unreadable_stats

__all__ = ["list_streams", "prune"]


def list_streams() -> list[StreamStats]:
    """Every stream of this user's on this machine, its state included (``dead`` if its
    publisher died, ``unreadable`` if its segment is not a stream this framebus can read)."""
    out = []
    for name in stream_names():
        try:
            ctl = Control.open(name)
        except StreamNotFound:
            continue  # vanished meanwhile
        except (FramebusError, OSError) as exc:
            out.append(unreadable_stats(name, str(exc)))  # one bad file must not hide the rest
            continue
        try:
            out.append(read_stats(ctl))
        except FramebusError as exc:  # its header changed into garbage since it was opened
            out.append(unreadable_stats(name, str(exc)))
        finally:
            ctl.close()
    return out


def prune() -> list[str]:
    """Remove the streams whose publisher died (kill -9, power loss of a container...).

    Stops their orphaned capture processes too, and removes the status files of pushes and
    recorders whose process is gone. Returns the names removed.
    """
    prune_outputs()
    removed = []
    for name in stream_names():
        if dead_stream(name):
            remove_stream(name)
            removed.append(name)
    for stream, segments in orphaned_data_streams().items():
        for seg in segments:  # data segments whose control segment is gone
            plat.unlink_segment(seg)
        if stream not in removed:
            removed.append(stream)
    return removed
