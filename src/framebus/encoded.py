"""A stream's encoded frames as the camera sent them: the access units of its packet ring, for
whoever passes them on without decoding (the web's H.264 passthrough, a recorder).

Only streams whose source hands out access units have one: framebus's RTSP client (the default
for ``rtsp://`` H.264 and H.265). Buffering: the ring keeps the newest 8 MiB of access units and
never waits for a reader; a reader that falls further behind skips to the newest keyframe, and
:attr:`EncodedReader.lost` counts what it missed (see :mod:`framebus.bus._packets`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from .bus import Control, PacketRecord, PacketRingReader, validate_name
from .errors import NoEncodedFrames, PublisherLost, ReadTimeout, StreamNotFound

__all__ = ["EncodedFrame", "EncodedReader", "attach_encoded"]

_LIVENESS_PERIOD = 0.5  # seconds between looks at the publisher while no frame comes


@dataclass(frozen=True)
class EncodedFrame:
    """One access unit of a stream, as the camera encoded it."""

    data: bytes
    """The access unit, Annex-B (NAL units behind start codes); a keyframe carries its
    parameter sets in front."""
    key: bool
    """A decoder can start here."""
    codec: str
    """``"h264"`` or ``"h265"``."""
    index: int
    """Its number in the stream: consecutive unless frames were lost in between."""
    timestamp: float
    """When its last packet arrived, seconds since the epoch."""


class EncodedReader:
    """Reads the encoded frames of a local stream, from now on (:meth:`gop` first for a
    picture at once). One thread per reader. :meth:`release` (or ``with``) frees it."""

    def __init__(self, name: str) -> None:
        ctl = Control.open(validate_name(name))
        try:
            if not ctl.publisher_alive():
                raise StreamNotFound(f"stream {name!r} was left by a publisher that died")
            size = ctl.packet_segment_size
            if not size:
                raise NoEncodedFrames(
                    f"stream {name!r} has no encoded frames: only framebus's RTSP client hands "
                    "them out"
                )
            try:
                ring = PacketRingReader.open(name, ctl.instance, size)
            except (OSError, ValueError) as exc:
                raise NoEncodedFrames(
                    f"stream {name!r}: its packet ring is not usable: {exc}"
                ) from None
        except BaseException:
            ctl.close()
            raise
        self.name = name
        self._ctl, self._ring, self._size = ctl, ring, size
        codec = self._codec = ring.codec
        self.codec = "h265" if codec is not None and codec.name == "H265" else "h264"

    @property
    def lost(self) -> int:
        """Frames this reader skipped: overwritten before it read them, or never written."""
        return self._ring.lost

    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the stream's decoded frames now ((0, 0) if not known yet)."""
        return self._ctl.newest_size()

    def _frame(self, rec: PacketRecord) -> EncodedFrame:
        return EncodedFrame(rec.data, rec.key, self.codec, rec.index, rec.timestamp_ns / 1e9)

    def gop(self) -> list[EncodedFrame]:
        """The current group of pictures: from the newest keyframe to the newest frame (empty
        if the ring holds no keyframe); :meth:`read` goes on after it."""
        if not self._ring.seek_key():
            return []
        out: list[EncodedFrame] = []
        while (rec := self._ring.next()) is not None:
            frame = self._frame(rec)
            if out and frame.index == out[-1].index + 1:
                out.append(frame)
            else:  # the start, or a gap (overwritten meanwhile): only a keyframe starts it
                out = [frame] if frame.key else []
        return out

    def read(self, timeout: float | None = None) -> EncodedFrame:
        """The next encoded frame, waiting up to ``timeout`` seconds (None: forever). Raises
        ReadTimeout, StreamEnded (closed or ended), PublisherLost, the stream's error, or
        NoEncodedFrames once the capture stopped handing them out (its RTSP client gave the
        stream to FFmpeg, or a reconnect opened it with FFmpeg)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ring, ctl = self._ring, self._ctl
        while True:
            token = ring.futex_token()
            rec = ring.next()
            if rec is not None:
                return self._frame(rec)
            over = ctl.end_error()
            if over is not None:
                raise over
            if ctl.packet_segment_size != self._size or ring.codec != self._codec:
                raise NoEncodedFrames(
                    f"stream {self.name!r} no longer hands out {self.codec} encoded frames"
                )
            wait = _LIVENESS_PERIOD
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise ReadTimeout(f"no new encoded frame from {self.name!r} within {timeout} s")
            ring.wait(token, wait)
            if ring.futex_token() == token and not ctl.publisher_alive():
                raise PublisherLost(f"the publisher of stream {self.name!r} died")

    def release(self) -> None:
        """Unmap the rings (idempotent)."""
        ring, self._ring = self._ring, None  # type: ignore[assignment]
        if ring is not None:
            ring.close()
            self._ctl.close()

    def __enter__(self) -> EncodedReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def attach_encoded(name: str) -> EncodedReader:
    """The encoded frames of local stream ``name`` (see :class:`EncodedReader`). Raises
    StreamNotFound, NoEncodedFrames."""
    return EncodedReader(name)
