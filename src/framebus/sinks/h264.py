"""The H.264 sink: one libx264 encoder (PyAV) per stream and variant, for every viewer at once.

Low-latency settings, as a live view needs them: no B-frames and no look-ahead (``zerolatency``:
each frame leaves the encoder as it goes in), ``ultrafast`` (3.4 ms of CPU per 720p frame here),
a keyframe at least every :data:`KEY_EVERY` seconds of capture time, and sooner when a viewer
joins (or its decoder asks) — at most once per :data:`KEY_MIN_GAP` seconds, since a keyframe
costs about ten times the bytes of another frame. A viewer that fell behind waits for the next
scheduled keyframe instead: a viewer on a link too slow for the stream would otherwise make
every viewer's stream a keyframe a second, which it could then follow even less. The parameter
sets go in front of every keyframe (a decoder may start at any of them), and the colour is
signalled as BT.601 limited range, which is what :func:`framebus._frames.i420` converts to.

Buffering: each consumer has a :class:`~framebus.sinks.gop.GopSlot` (frames in order; a
consumer that falls behind skips to the next keyframe). The sink keeps the current group of
pictures (a :class:`~framebus.sinks.gop.GopCache`) so that a viewer joining less than
:data:`KEY_MIN_GAP` seconds after the last keyframe starts from it instead of waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

from framebus import FrameInfo
from framebus._frames import i420
from framebus._h264 import AccessUnit, codec_string

from .base import Encoded, FrameSink, Mailbox
from .gop import GopCache, GopSlot
from .jpeg import MAX_WIDTH, MIN_WIDTH, resize

__all__ = ["DEFAULT_CRF", "KEY_EVERY", "KEY_MIN_GAP", "H264Encoder", "H264Sink"]

DEFAULT_CRF = 23
"""x264's constant rate factor: 23 is its default quality (lower is better and larger)."""
KEY_EVERY = 2.0
"""A keyframe at least this often (seconds of capture time)."""
KEY_MIN_GAP = 1.0
"""Keyframes asked for (a viewer joined or fell behind) come at most this often."""

_X264_PARAMS = ":".join(
    [
        "keyint=infinite",  # keyframes come when this sink asks (by time, not frame count)
        "scenecut=0",
        "bframes=0",
        "repeat-headers=1",  # SPS and PPS before every keyframe
        "colorprim=smpte170m",
        "transfer=smpte170m",
        "colormatrix=smpte170m",
        "fullrange=off",
    ]
)


class H264Encoder:
    """libx264 through PyAV with the settings above: one frame in, one access unit out, at
    once. ``fps`` sets the level x264 signals (not a pace); ``width`` scales each frame (None:
    as given). A frame of another size opens a new encoder, whose first frame is a keyframe.
    Not thread-safe."""

    def __init__(self, fps: float, *, width: int | None = None, crf: int = DEFAULT_CRF) -> None:
        self.fps = fps
        self.width = width
        self.crf = crf
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None
        self._codec = ""
        self._pts = 0
        self._index = 0  # access units made so far
        self._picture: Any = None  # the last picture encoded, for repeat()

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the pictures encoded now (None before the first)."""
        return self._size

    def _open(self, width: int, height: int) -> None:
        import av

        encoder: Any = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        rate = Fraction(max(1, min(240, round(self.fps))))
        encoder.framerate, encoder.time_base = rate, 1 / rate
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": str(self.crf),
            "forced-idr": "1",
            "threads": "1",  # one core per encoder: the machine serves other streams too
            "x264-params": _X264_PARAMS,
        }
        encoder.open()
        self._encoder, self._size, self._pts, self._codec = encoder, (width, height), 0, ""

    def encode(self, frame: np.ndarray, *, key: bool = False) -> AccessUnit:
        """The access unit of ``frame``: a keyframe if ``key`` or the size changed."""
        import av

        if self.width is not None:
            frame = resize(frame, self.width)
        yuv = i420(frame)
        height, width = yuv.shape[0] * 2 // 3, yuv.shape[1]
        fresh = self._size != (width, height)
        if fresh:
            self._open(width, height)
        picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        self._picture = picture
        return self._encode(picture, key and not fresh, width, height)

    def repeat(self, *, key: bool = False) -> AccessUnit | None:
        """The last picture encoded again (a few bytes unless ``key``), or None before the
        first: for an output that must keep its rate when its producer does not."""
        picture = self._picture
        if picture is None or self._size is None:
            return None
        return self._encode(picture, key, *self._size)

    def _encode(self, picture: Any, key: bool, width: int, height: int) -> AccessUnit:
        import av

        picture.pts = self._pts
        self._pts += 1
        picture.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        packets = self._encoder.encode(picture)
        if len(packets) != 1:  # zerolatency: one frame in, one out
            raise ValueError(f"libx264 gave {len(packets)} packets for one frame")
        data = bytes(packets[0])
        is_key = bool(packets[0].is_keyframe)  # an IDR, parameter sets in front (repeat-headers)
        if is_key:
            self._codec = codec_string(data) or self._codec
        self._index += 1
        return AccessUnit(data, is_key, self._codec, width, height, self._index)


class H264Sink(FrameSink[AccessUnit]):
    """One H.264 encoder for one stream, scaled to ``width`` (None: as captured), at ``crf``.

    Encodes in the sink's worker thread, once per frame whatever the number of consumers, and
    only while someone is subscribed (a new encoder, starting with a keyframe, when the frame
    size changes). Items are :class:`~framebus._h264.AccessUnit`.
    """

    def __init__(self, name: str, *, width: int | None = None, crf: int = DEFAULT_CRF) -> None:
        if width is not None and not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be {MIN_WIDTH}..{MAX_WIDTH}, not {width}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be 0..51, not {crf}")
        self.width = width
        self.crf = crf
        self._encoder: H264Encoder | None = None
        self._key_lock = threading.Lock()  # guards the three below (viewers ask from anywhere)
        self._key_wanted = False
        self._key_at = -math.inf  # monotonic time of the last keyframe
        self._last_key_ts = -math.inf  # capture time of the last keyframe
        self._gop = GopCache()  # for late joiners: guarded by the sink's lock
        self._keys = 0
        super().__init__(name)

    # -- keyframes -----------------------------------------------------------------------------

    def request_key(self) -> None:
        """Make the next frame a keyframe, unless the last one is less than
        :data:`KEY_MIN_GAP` seconds old (then the first frame after that gap)."""
        with self._key_lock:
            self._key_wanted = True

    def _force_now(self, info: FrameInfo) -> bool:
        now = time.monotonic()
        with self._key_lock:
            due = info.timestamp - self._last_key_ts >= KEY_EVERY
            return due or (self._key_wanted and now - self._key_at >= KEY_MIN_GAP)

    @property
    def keyframes(self) -> int:
        """Keyframes encoded so far."""
        return self._keys

    # -- consumers -----------------------------------------------------------------------------

    def _mailbox(self, notify: Callable[[], None] | None) -> Mailbox[Encoded[AccessUnit]]:
        slot = GopSlot(notify)
        with self._key_lock:
            recent = time.monotonic() - self._key_at < KEY_MIN_GAP
        if recent and self._gop.items:
            slot.prefill(self._gop.items)  # the last keyframe is recent: start from it
        else:
            self.request_key()  # the next frame: a fresh start for this viewer
        return slot

    def _delivering(self, item: Encoded[AccessUnit]) -> None:
        self._gop.add(item)

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, frame: np.ndarray, info: FrameInfo) -> AccessUnit:
        encoder = self._encoder
        if encoder is None:
            # x264 derives the level from the frame rate: the stream's, else 30
            assert self._reader is not None
            stats = self._reader.stats()
            fps = stats.source_fps or stats.capture_fps or 30.0
            encoder = self._encoder = H264Encoder(fps, width=self.width, crf=self.crf)
        au = encoder.encode(frame, key=self._force_now(info))
        if au.key:
            self._keys += 1
            with self._key_lock:
                self._last_key_ts, self._key_at = info.timestamp, time.monotonic()
                self._key_wanted = False
        return au

    def close(self) -> None:
        super().close()
        self._encoder = None  # the worker has stopped: PyAV frees the encoder
