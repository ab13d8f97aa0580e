"""What a push sends: the camera's access units as they are, or frames encoded once at a steady
rate, or a placeholder picture while the stream has nothing to send.

- **Passthrough** (a stream whose source hands out access units: framebus's RTSP client): each
  access unit of the packet ring (:func:`framebus.attach_encoded`) as it arrives, at the
  camera's own rate. After a (re)connection, the current group of pictures first (a player
  can start at once) — see :meth:`Units.restart`.
- **Encoded** (any other stream, or ``encode=True``): a tick every ``1/fps`` seconds
  (:class:`~framebus.mediaserver.pacing.Clock`) encodes the newest frame, or the last one again when
  the producer is slower (x264 makes a repeated picture a few bytes), so players never stall on
  a 1 fps detector; a keyframe every :data:`~framebus.sinks.h264.KEY_EVERY` seconds and when
  asked for.
- **Placeholder**: when the stream stalls (no frame for ``stall`` seconds, or 3 of the
  producer's intervals if longer), ends, loses its publisher or does not exist yet, the ticks
  go on with a "no signal" picture saying why, and the stream is looked for again every second;
  a camera's frames take over again at their next keyframe.

Buffers: none beyond the stream's own rings. Passthrough reads the packet ring in order (it
keeps the newest 8 MiB); encoded reads the newest frame at each tick and keeps one copy, the
frame it may have to repeat.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

import framebus
from framebus import (
    EncodedReader,
    FramebusError,
    NoEncodedFrames,
    ReadTimeout,
    StreamReader,
)
from framebus._h264 import AccessUnit
from framebus.sinks.h264 import KEY_EVERY, H264Encoder

from .pacing import Clock
from .placeholder import placeholder

__all__ = ["DEFAULT_SIZE", "STALL", "Unit", "Units"]

STALL = 2.0
"""Seconds without a frame after which a push sends its placeholder (at least 3 intervals of
the producer's own rate)."""
DEFAULT_SIZE = (1280, 720)
"""The placeholder's size while the stream's is not known."""
_LOOK_AGAIN = 1.0  # seconds between attempts to attach while the stream is missing


@dataclass(frozen=True)
class Unit:
    """One access unit to send."""

    data: bytes
    key: bool
    codec: str  # "h264" or "h265"
    wall: float  # the moment it stands for, seconds since the epoch (for sender reports)
    kind: str  # "camera", "encoded", "repeat" or "placeholder"
    mono: float  # the same moment on the monotonic clock: its RTP time (no clock steps)


def _camera_unit(frame: framebus.EncodedFrame) -> Unit:
    """A camera's access unit; its arrival time moved to the monotonic clock."""
    mono = time.monotonic() - max(0.0, time.time() - frame.timestamp)
    return Unit(frame.data, frame.key, frame.codec, frame.timestamp, "camera", mono)


class Units:
    """The access units a push of stream ``name`` sends (see the module's text). ``encode``:
    None chooses (passthrough where the stream has a packet ring), True always encodes, False
    refuses to (a stream without access units sends the placeholder). ``fps``: the rate of
    encoded output (None: the stream's own, else 25). Not thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        fps: float | None = None,
        encode: bool | None = None,
        size: tuple[int, int] = DEFAULT_SIZE,
        stall: float = STALL,
        crf: int = 23,
    ) -> None:
        self.name = name
        self.want_fps = fps
        self.encode = encode
        self.stall = stall
        self.crf = crf
        self.size = size
        self.mode = "placeholder"  # "passthrough", "encoded" or "placeholder"
        self.reason = "starting"  # why the placeholder is shown
        self._packets: EncodedReader | None = None
        self._frames: StreamReader | None = None
        self._encoder: H264Encoder | None = None
        self._clock: Clock | None = None
        self._seen_size: tuple[int, int] | None = None  # of the stream's last frame
        self._shown: np.ndarray | None = None  # the placeholder picture encoded last
        self._picture: tuple[tuple[int, int], str, np.ndarray] | None = None  # the placeholder's
        self._last_new = time.monotonic()  # when the producer last gave a frame
        self._producer_gap = 0.0  # its mean interval (exponential average)
        self._key_wanted = True
        self._last_key = -math.inf  # monotonic time of the last encoded keyframe
        self._next_look = 0.0
        self._skip_to_key = False  # passthrough: a gap, start again at a keyframe
        self.fps = fps or 25.0
        self._attach()

    # -- choosing the input -------------------------------------------------------------------

    def _attach(self) -> None:
        """Attach to the stream: its packets, else its frames, else keep the placeholder."""
        self._next_look = time.monotonic() + _LOOK_AGAIN
        if self.encode is not True:
            try:
                self._packets = framebus.attach_encoded(self.name)
            except NoEncodedFrames:
                pass
            except FramebusError as exc:
                self._to_placeholder(_why(exc))
                return
            else:
                self.mode, self._skip_to_key = "passthrough", True
                self._fps_from_stream()
                self._last_new = time.monotonic()
                return
        if self.encode is False:
            self._to_placeholder("the stream has no encoded frames to pass through")
            return
        try:
            self._frames = framebus.attach(self.name)
        except FramebusError as exc:
            self._to_placeholder(_why(exc))
            return
        self.mode = "encoded"
        self._fps_from_stream()
        self._last_new = time.monotonic()
        self._key_wanted = True

    def _fps_from_stream(self) -> None:
        if self.want_fps:
            return
        try:
            stats = framebus.list_streams()
        except FramebusError:
            return
        for s in stats:
            if s.name == self.name:
                rate = s.source_fps or s.capture_fps
                if rate and 1 <= rate <= 240:
                    self.fps = float(rate)
                if s.width and s.height:
                    self.size = (s.width, s.height)

    def _to_placeholder(self, reason: str, *, detach: bool = True) -> None:
        """Show the placeholder; ``detach``: the stream is gone (else it only stalled, and its
        next frame — a camera's next keyframe — ends the placeholder)."""
        if self._frames is not None and self._seen_size is not None:
            self.size = self._seen_size
        elif self._packets is not None:
            width, height = self._packets.frame_size()
            if width and height:
                self.size = (width, height)
        if detach:
            self._close_frames()
        if self.mode != "placeholder":
            self._key_wanted = True
        self.mode, self.reason = "placeholder", reason
        self._next_look = time.monotonic() + _LOOK_AGAIN

    def _close_frames(self) -> None:
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.release()

    def _close_packets(self) -> None:
        packets, self._packets = self._packets, None
        if packets is not None:
            packets.release()

    # -- units --------------------------------------------------------------------------------

    def restart(self) -> list[Unit]:
        """Units to begin a new session with: passthrough, the camera's current group of
        pictures (from its newest keyframe); otherwise none, and the next tick a keyframe."""
        self._key_wanted = True
        if self.mode != "passthrough" or self._packets is None:
            return []
        gop = self._packets.gop()
        self._skip_to_key = not gop
        return [_camera_unit(f) for f in gop]

    def skip_to_key(self) -> None:
        """Frames were dropped: go on at the next keyframe (encoded: the scheduled one)."""
        if self.mode == "passthrough":
            self._skip_to_key = True

    def next(self, timeout: float) -> Unit | None:
        """The next unit to send, or None if there is none within ``timeout`` seconds."""
        if self.mode == "passthrough":
            return self._next_packet(timeout)
        return self._next_tick(timeout)

    def _next_packet(self, timeout: float) -> Unit | None:
        packets = self._packets
        assert packets is not None
        now = time.monotonic()
        left = self._last_new + self._stall_after() - now
        try:
            frame = packets.read(timeout=max(0.0, min(timeout, left)))
        except ReadTimeout:
            if time.monotonic() - self._last_new >= self._stall_after():
                self._to_placeholder(f"no frame for {self._stall_after():.0f} s", detach=False)
            return None
        except NoEncodedFrames:
            self._close_packets()
            self._attach()  # (frames, encoded)
            return None
        except FramebusError as exc:
            self._close_packets()
            self._to_placeholder(_why(exc))
            return None
        self._note_new(time.monotonic())
        if self._skip_to_key and not frame.key:
            return None
        self._skip_to_key = False
        return _camera_unit(frame)

    def _note_new(self, now: float) -> None:
        gap = now - self._last_new
        self._producer_gap = gap if not self._producer_gap else 0.9 * self._producer_gap + 0.1 * gap
        self._last_new = now

    def _stall_after(self) -> float:
        return max(self.stall, 3 * self._producer_gap)

    def _next_tick(self, timeout: float) -> Unit | None:
        now = time.monotonic()
        clock = self._clock
        if clock is None or abs(clock.fps - self.fps) > 1e-6:
            clock = self._clock = Clock(self.fps, now)
        if clock.next_tick > now:
            wait = min(timeout, clock.next_tick - now)
            if self._packets is not None and self.mode == "placeholder":
                return self._camera_back(wait)
            time.sleep(wait)
            if time.monotonic() < clock.next_tick:
                return None
        gone = self._packets is None and self._frames is None
        if gone and time.monotonic() >= self._next_look:  # (a stalled stream is kept: its
            self._attach()  # next frame ends the placeholder, not a new attach)
            if self.mode == "passthrough":
                return None
        now = time.monotonic()
        key = self._key_wanted or now - self._last_key >= KEY_EVERY
        waited, unit = None, None
        if self._frames is not None:
            waited, unit = self._newest(key)
            if unit is not None:
                self.mode = "encoded"
            elif self.mode == "encoded" and now - self._last_new >= self._stall_after():
                self._to_placeholder(f"no new frame for {self._stall_after():.0f} s",
                                     detach=False)  # fmt: skip
            elif self.mode == "encoded" and self._encoder is not None:
                au = self._encoder.repeat(key=key)
                if au is not None:
                    unit = self._unit(au, "repeat")
        if unit is None:
            unit = self._placeholder(key)
        clock.tick(now, waited)
        return unit

    def _camera_back(self, wait: float) -> Unit | None:
        """Placeholder over a camera that stalled: its next keyframe ends the placeholder."""
        assert self._packets is not None
        try:
            frame = self._packets.read(timeout=wait)
        except ReadTimeout:
            return None
        except FramebusError:
            self._close_packets()
            return None
        self._note_new(time.monotonic())
        if not frame.key:
            return None
        self.mode, self._skip_to_key = "passthrough", False
        return _camera_unit(frame)

    def _newest(self, key: bool) -> tuple[float | None, Unit | None]:
        """(how long it waited, its access unit) of the stream's newest frame if it is new:
        encoded from the ring's slot, no copy."""
        reader = self._frames
        assert reader is not None
        try:
            with reader.view(timeout=0) as view:
                info = reader.info
                au = self._encoder_now().encode(view, key=key)
        except ReadTimeout:
            return None, None
        except FramebusError as exc:
            self._to_placeholder(_why(exc))
            return None, None
        self._note_new(time.monotonic())
        self._shown = None
        height, width = view.shape[:2]
        self._seen_size = (width, height)
        waited = max(0.0, time.time() - info.timestamp) if info is not None else None
        return waited, self._unit(au, "encoded")

    def _placeholder(self, key: bool) -> Unit:
        """The placeholder's access unit (encoded once; then repeated)."""
        picture = self._placeholder_picture()
        encoder = self._encoder_now()
        if self._shown is picture:
            au = encoder.repeat(key=key)
            if au is not None:
                return self._unit(au, "placeholder")
        self._shown = picture
        return self._unit(encoder.encode(picture, key=key), "placeholder")

    def _placeholder_picture(self) -> np.ndarray:
        key = (self.size, self.reason)
        if self._picture is None or self._picture[:2] != key:
            picture = placeholder(self.size[0], self.size[1], self.name, self.reason)
            self._picture = (self.size, self.reason, picture)
        return self._picture[2]

    def _encoder_now(self) -> H264Encoder:
        encoder = self._encoder
        if encoder is None or abs(encoder.fps - self.fps) > 1e-6:
            encoder = self._encoder = H264Encoder(self.fps, crf=self.crf)
        return encoder

    def _unit(self, au: AccessUnit, kind: str) -> Unit:
        if au.key:
            self._last_key, self._key_wanted = time.monotonic(), False
        return Unit(au.data, au.key, "h264", time.time(), kind, time.monotonic())

    def close(self) -> None:
        """Detach from the stream (idempotent)."""
        self._close_frames()
        self._close_packets()
        self._encoder = None


def _why(exc: FramebusError) -> str:
    """A short reason for the placeholder."""
    kind = type(exc).__name__
    return {
        "StreamNotFound": "waiting for the stream",
        "StreamEnded": "the stream ended",
        "PublisherLost": "its publisher stopped",
    }.get(kind, str(exc)[:80])
