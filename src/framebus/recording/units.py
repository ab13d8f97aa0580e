"""What a recording records: a stream's access units in order, with their capture times — the
camera's own H.264 copied (framebus's RTSP client hands them out), or every new frame of any
other stream encoded once — and the pre-roll cache clips start from.

Buffers: passthrough reads the packet ring in order (its newest 8 MiB); encoded takes the
newest frame each time (frames the encoder has no time for are skipped, as a reader's are);
:class:`PreRoll` holds the last ``seconds`` from a keyframe, at most :data:`PRE_ROLL_BYTES`.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

import framebus
from framebus import EncodedReader, FramebusError, NoEncodedFrames, ReadTimeout, StreamReader
from framebus.sinks.h264 import KEY_EVERY, H264Encoder

__all__ = ["GAP", "PRE_ROLL_BYTES", "PreRoll", "Unit", "Units"]

PRE_ROLL_BYTES = 64 * 1024 * 1024
"""The most a pre-roll cache holds (bytes of access units): 5 s of a 100 Mbit/s stream."""
_LOOK_AGAIN = 1.0  # seconds between attempts to attach while the stream is missing


@dataclass(frozen=True)
class Unit:
    """One access unit (Annex-B H.264) captured at ``wall`` (seconds since the epoch)."""

    data: bytes
    key: bool
    wall: float


GAP = Unit(b"", False, math.nan)
"""Returned by :meth:`Units.next` when the stream ended or lost its publisher: the recording
so far is complete; the next unit starts a new one (at a keyframe)."""


class Units:
    """The H.264 access units of stream ``name`` (see the module's text). ``encode``: None
    chooses (copy the camera's H.264 where the stream has it), True always encodes, False
    never does (a stream without H.264 access units records nothing). Not thread-safe."""

    def __init__(self, name: str, *, encode: bool | None = None, crf: int = 23) -> None:
        self.name, self.encode, self.crf = name, encode, crf
        self.mode = "waiting"  # "passthrough", "encoded" or "waiting"
        self.reason = "starting"
        self._packets: EncodedReader | None = None
        self._frames: StreamReader | None = None
        self._encoder: H264Encoder | None = None
        self._next_look = 0.0
        self._key_wanted = True
        self._last_key = -math.inf
        self._skip_to_key = True

    def _attach(self) -> None:
        self._next_look = time.monotonic() + _LOOK_AGAIN
        if self.encode is not True:
            try:
                packets = framebus.attach_encoded(self.name)
            except NoEncodedFrames:
                pass
            except FramebusError as exc:
                self.reason = _why(exc)
                return
            else:
                if packets.codec == "h264":
                    self._packets, self.mode, self._skip_to_key = packets, "passthrough", True
                    return
                packets.release()  # H.265: MP4 here is H.264 (avc1): encoded once
        if self.encode is False:
            self.reason = "the stream has no H.264 of its own to copy"
            return
        try:
            self._frames = framebus.attach(self.name)
        except FramebusError as exc:
            self.reason = _why(exc)
            return
        self.mode, self._key_wanted = "encoded", True

    def want_key(self) -> None:
        """Make the next encoded frame a keyframe (a segment is due); the camera's come when
        the camera sends them."""
        self._key_wanted = True

    def next(self, timeout: float) -> Unit | None:
        """The next access unit, :data:`GAP`, or None if none came within ``timeout``."""
        if self.mode == "waiting":
            if time.monotonic() < self._next_look:
                time.sleep(min(timeout, self._next_look - time.monotonic()))
                return None
            self._attach()
            if self.mode == "waiting":
                return None
        try:
            if self._packets is not None:
                frame = self._packets.read(timeout=timeout)
                if self._skip_to_key and not frame.key:
                    return None
                self._skip_to_key = False
                return Unit(frame.data, frame.key, frame.timestamp)
            return self._encoded(timeout)
        except ReadTimeout:
            return None
        except NoEncodedFrames:  # the capture gave the stream to FFmpeg: encode from now on
            self._detach("the stream changed")
            return GAP
        except FramebusError as exc:
            self._detach(_why(exc))
            return GAP

    def _encoded(self, timeout: float) -> Unit:
        reader = self._frames
        assert reader is not None
        with reader.view(timeout=timeout) as view:
            info = reader.info
            assert info is not None
            if self._encoder is None:
                stats = reader.stats()
                fps = stats.source_fps or stats.capture_fps or 30.0
                self._encoder = H264Encoder(fps, crf=self.crf)
            key = self._key_wanted or info.timestamp - self._last_key >= KEY_EVERY
            au = self._encoder.encode(view, key=key)
        if au.key:
            self._key_wanted, self._last_key = False, info.timestamp
        return Unit(au.data, au.key, info.timestamp)

    def _detach(self, reason: str) -> None:
        self.close()
        self.mode, self.reason = "waiting", reason
        self._next_look = time.monotonic() + _LOOK_AGAIN

    def close(self) -> None:
        """Detach from the stream (idempotent)."""
        packets, self._packets = self._packets, None
        if packets is not None:
            packets.release()
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.release()
        self._encoder = None


def _why(exc: FramebusError) -> str:
    return {
        "StreamNotFound": "waiting for the stream",
        "StreamEnded": "the stream ended",
        "PublisherLost": "its publisher stopped",
    }.get(type(exc).__name__, str(exc)[:80])


class PreRoll:
    """The last ``seconds`` of access units, from a keyframe: what a clip's "before" is made
    of, without decoding. Holds at most ``max_bytes`` (older groups of pictures go first)."""

    def __init__(self, seconds: float, max_bytes: int = PRE_ROLL_BYTES) -> None:
        self.seconds, self.max_bytes = seconds, max_bytes
        self._units: collections.deque[Unit] = collections.deque()
        self._bytes = 0

    def add(self, unit: Unit) -> None:
        if unit is GAP:
            self._units.clear()
            self._bytes = 0
            return
        if not self._units and not unit.key:
            return  # a cache starts at a keyframe
        self._units.append(unit)
        self._bytes += len(unit.data)
        while self._second_key_before(unit.wall - self.seconds) or (
            self._bytes > self.max_bytes and self._drop_group()
        ):
            pass
        if self._bytes > self.max_bytes:  # one group larger than the cache (a camera's keyframe
            self._units.clear()  # interval of minutes): it goes, the next keyframe starts again
            self._bytes = 0

    def _second_key_before(self, when: float) -> bool:
        """Drop the oldest group if the next one already starts at or before ``when``."""
        units = self._units
        for i in range(1, len(units)):
            if units[i].key:
                if units[i].wall <= when:
                    self._drop(i)
                    return True
                return False
        return False

    def _drop_group(self) -> bool:
        units = self._units
        for i in range(1, len(units)):
            if units[i].key:
                self._drop(i)
                return True
        return False

    def _drop(self, n: int) -> None:
        for _ in range(n):
            self._bytes -= len(self._units.popleft().data)

    def since(self, when: float) -> list[Unit]:
        """The units from the newest keyframe at or before ``when`` (the oldest held if none
        is that old) to the newest."""
        units = list(self._units)
        start = 0
        for i, u in enumerate(units):
            if u.key and u.wall <= when:
                start = i
        return units[start:]

    @property
    def bytes(self) -> int:
        return self._bytes
