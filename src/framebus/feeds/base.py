"""The narrow interface between a reader and where its frames come from."""

from __future__ import annotations

import os
from typing import NamedTuple, Protocol, TypedDict

import numpy as np

from ..stats import FrameInfo, StreamStats

__all__ = ["Feed", "Landing", "RemoteOptions"]


class Landing(NamedTuple):
    """Where a seek landed, as the source says (what cv2 reports before the next read)."""

    pos: int | None
    """The frame index (``CAP_PROP_POS_FRAMES``); None: the one asked for."""
    media_time: float | None
    """The media time in seconds (``CAP_PROP_POS_MSEC`` / 1000); None: not known."""


class RemoteOptions(TypedDict, total=False):
    """How to reach a stream of another machine (``attach("zmq://...", **options)``)."""

    connect_timeout: float
    """Seconds to wait for the exporter's first answer (default 5)."""
    curve: str | os.PathLike[str] | None
    """A key directory: its ``server.key`` and ``client.key_secret``."""
    server_key: str | os.PathLike[str] | None
    """The exporter's public key file (with ``client_key``)."""
    client_key: str | os.PathLike[str] | None
    """This receiver's key pair file."""
    max_message: int | None
    """Bytes of one message at most."""


class Feed(Protocol):
    """One reader's source of frames. Not thread-safe: its reader drives it from one thread.

    At most one frame is acquired at a time: :meth:`acquire` lends it (read-only, valid until
    :meth:`release`), and the reader releases it before acquiring the next.
    """

    @property
    def name(self) -> str:
        """The stream's name (for a remote stream, the last part of its URL)."""
        ...

    def acquire(self, timeout: float | None) -> tuple[np.ndarray, FrameInfo]:
        """The next frame (the newest unseen; in ``every`` mode the next in order), waiting up
        to ``timeout`` s (None: as long as the stream lives). Raises ReadTimeout, StreamEnded,
        PublisherLost, or the feed's own FramebusError."""
        ...

    def release(self) -> None:
        """Give back the frame :meth:`acquire` lent."""
        ...

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until :meth:`acquire` would not wait (a new frame, or an
        end it would raise); True if so. Takes nothing, and may be called from another thread
        than the one that acquires (never concurrently with :meth:`close`)."""
        ...

    def counters(self) -> tuple[int, int]:
        """(delivered, skipped): frames this feed handed out, and frames it passed over."""
        ...

    def alive(self) -> bool:
        """Whether frames may still come (``isOpened()``)."""
        ...

    def backend(self) -> str:
        """What reads the source (``getBackendName()``)."""
        ...

    def fps(self) -> float:
        """The stream's frame rate: nominal if the source says, else measured; 0.0 unknown."""
        ...

    def nominal_fps(self) -> float | None:
        """The source's own frame rate (a file's), for positions in milliseconds; None if it
        has none (a live camera) or it is not known here."""
        ...

    def frame_count(self) -> int | None:
        """Frames in the source (a file), None for a live stream."""
        ...

    def size(self) -> tuple[int, int]:
        """(width, height) of the newest frame known, (0, 0) before any."""
        ...

    def seek(self, frame: int) -> Landing | None:
        """Make ``frame`` (already clamped to the source) the next frame acquired; None if this
        feed cannot seek, else where the source says it landed."""
        ...

    def stats(self) -> StreamStats:
        """The stream's counters, with this feed's own ``delivered`` and ``skipped``."""
        ...

    def close(self) -> None:
        """Let go of everything (idempotent); a frame still lent is released."""
        ...
