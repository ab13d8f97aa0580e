"""The :class:`Source` base: anything a stream can capture from."""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np

__all__ = ["Source"]


class Source(abc.ABC):
    """A frame producer that framebus can capture from (the ``002`` "override write" idea).

    Subclasses implement :meth:`read`; :meth:`open` and :meth:`close` are optional. A source
    object passed to :func:`framebus.publish` or :class:`framebus.VideoCapture` runs in a capture
    thread of the publishing process; frames are copied into the shared ring as they come.

    Class attributes a subclass may set:

    * ``live`` -- True for sources that produce frames in real time (cameras): streams default to
      ``mode="latest"``. False for finite sources (recordings): ``mode="every"``.
    * ``fps`` -- the nominal frame rate, reported by ``get(CAP_PROP_FPS)``; None if unknown.
    * ``backend_name`` -- what ``getBackendName()`` reports for streams of this source
      (1-16 of ``A-Z 0-9 _``).

    A finite source that can seek sets ``seekable`` (read once it is open) and implements
    :meth:`seek`; readers' ``set(cv2.CAP_PROP_POS_FRAMES, k)`` then calls it in the capture.
    """

    live: bool = True
    fps: float | None = None
    backend_name: str = "PYTHON"
    seekable: bool = False
    access_units: Callable[[bytes, bool], object] | None = None
    """Set by the capture, before the first read, on a source whose :meth:`encoded_codec`
    names a codec: called with each encoded access unit (Annex-B) and whether it is a keyframe,
    as it arrives, before it is decoded (the stream's packet ring)."""

    def encoded_codec(self) -> str | None:
        """``"H264"`` or ``"H265"`` if this source, once open, hands its encoded access units
        to :attr:`access_units` (framebus's RTSP client); None otherwise."""
        return None

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device or file. Raise :class:`framebus.SourceError` if impossible."""

    @abc.abstractmethod
    def read(self) -> np.ndarray | None:
        """Return the next frame (H x W or H x W x C array), or None at the end of the source."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        """Like :meth:`read`, but may decode into ``out`` (the previous frame's slot) and return it.

        The default ignores ``out``; built-in sources override it to save a copy.
        """
        return self.read()

    def frame_time_ns(self) -> int | None:
        """``time.time_ns()`` when the frame last read was captured, if the source knows
        better than "now" (a relay of a remote stream: the remote capture time). None: the
        capture stamps each frame when :meth:`read` returns it."""
        return None

    def frame_clock(self) -> tuple[str, int | None, int | None] | None:
        """Whose clock :meth:`frame_time_ns` is for the frame last read — ``"camera"`` (its
        capture time by the camera's clock), ``"untrusted"`` (the camera's clock is too far
        off: the local time), ``"local"`` — with this machine's clock minus the camera's and
        that offset's jitter, in ns (None where unknown); None: the local clock, nothing known
        of a camera's."""
        return None

    def frame_media_time(self) -> float | None:
        """The time of the frame last read in the source's own clock, in seconds from its
        start (a file's presentation time: what cv2 reports as ``CAP_PROP_POS_MSEC`` / 1000),
        or None if the source has none: readers then compute it from the position and fps."""
        return None

    def frame_index(self) -> int | None:
        """The index of the frame last read as the source counts (cv2's ``POS_FRAMES`` - 1),
        or None to let the capture count the frames it reads (from a seek's position)."""
        return None

    def seek(self, frame: int) -> int | None:
        """Make the next :meth:`read` return frame index ``frame``; return the index it will
        return (the source may land elsewhere, e.g. clamped to its length), None if it cannot."""
        return None

    @property
    def frame_count(self) -> int | None:
        """Number of frames of a finite source, if known."""
        return None
