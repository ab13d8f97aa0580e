"""The encoders of a process: one sink per stream and variant — a :class:`JpegSink` for MJPEG
viewers, an :class:`H264Sink` for H.264 ones — shared by every viewer of the process (ASGI tasks
and WSGI threads alike), in the hub every wing shares (:class:`~framebus.sinks.hub.SinkHub`: its
idle policy is this one).

Bounds: at most :data:`MAX_VARIANTS` variants (width, quality) per stream, since each is a
reader of the stream and an encoder; a new variant at the cap takes the place of the longest
idle encoder of its stream; only when every variant has viewers is it refused
(TooManyVariants). The hub's threads are ``framebus-web-sweep`` and ``framebus-web-close``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from framebus import NoEncodedFrames
from framebus.sinks import FrameSink, Subscription
from framebus.sinks.h264 import H264Sink
from framebus.sinks.hub import IDLE_CLOSE, SWEEP_EVERY, SinkHub, TooManyVariants
from framebus.sinks.jpeg import JpegSink
from framebus.sinks.passthrough import PassthroughSink

__all__ = ["CODECS", "DEFAULT_QUALITY", "IDLE_CLOSE", "MAX_VARIANTS", "SWEEP_EVERY", "Codec",
           "CodecStats", "EncoderHub", "TooManyVariants", "Variant", "WebStats",
           "default_hub"]  # fmt: skip

Codec = Literal["mjpeg", "h264"]
CODECS: tuple[Codec, ...] = ("mjpeg", "h264")

DEFAULT_QUALITY = 80
MAX_VARIANTS = 4


@dataclass(frozen=True)
class Variant:
    """How a viewer wants a stream: as ``codec``, scaled to ``width`` (None: as captured), at
    ``quality`` (JPEG only)."""

    width: int | None = None
    quality: int = DEFAULT_QUALITY
    codec: Codec = "mjpeg"


@dataclass(frozen=True)
class CodecStats:
    """A stream's viewers of one codec."""

    viewers: int = 0
    encodes: int = 0
    encode_seconds: float = 0.0
    bytes_sent: int = 0
    skipped: int = 0
    """Frames the current viewers skipped (MJPEG: newer ones came first; H.264: frames dropped
    while a viewer waited for a keyframe after falling behind)."""
    behind: int = 0
    """Times a current H.264 viewer fell behind and skipped to the next keyframe."""


@dataclass(frozen=True)
class WebStats:
    """What the web layer adds to a stream's stats."""

    viewers: int
    encodes: int
    encode_seconds: float
    bytes_sent: int
    viewer_skipped: tuple[int, ...]
    """Frames each current viewer skipped (encoded while it was still sending an older one)."""
    codecs: dict[str, CodecStats] = field(default_factory=dict)
    """The same by codec (``"mjpeg"``, ``"h264"``)."""


class EncoderHub:
    """Encoders by (stream, variant), created on demand. Thread-safe."""

    def __init__(self) -> None:
        self._hub: SinkHub[FrameSink[Any]] = SinkHub(
            max_variants=MAX_VARIANTS, thread_name="framebus-web", kind=_kind
        )
        self._lock = threading.Lock()
        self._bytes: dict[tuple[str, Codec], int] = {}

    @property
    def _closed(self) -> bool:
        return self._hub.closed

    def subscribe(
        self, name: str, variant: Variant, notify: Callable[[], None] | None = None
    ) -> Subscription[Any]:
        """A viewer of ``name`` as ``variant``: items are JPEG bytes, or
        :class:`~framebus._h264.AccessUnit` for H.264. Raises StreamNotFound, TooManyVariants.

        Never blocks on an encoder's shutdown (it may be called on an event loop)."""
        return self.subscribe_sink(name, variant, notify)[1]

    def subscribe_sink(
        self, name: str, variant: Variant, notify: Callable[[], None] | None = None
    ) -> tuple[FrameSink[Any], Subscription[Any]]:
        """:meth:`subscribe`, with the sink (an H.264 viewer asks it for keyframes)."""

        def make() -> FrameSink[Any]:
            if variant.codec == "h264":
                if variant.width is None:  # the camera's own H.264 where the stream has it
                    with contextlib.suppress(NoEncodedFrames):
                        return PassthroughSink(name)
                return H264Sink(name, width=variant.width)  # else encoded once, here
            return JpegSink(name, width=variant.width, quality=variant.quality)

        return self._hub.subscribe(name, variant, make, notify)

    def note_sent(self, name: str, nbytes: int, codec: Codec = "mjpeg") -> None:
        with self._lock:
            key = (name, codec)
            self._bytes[key] = self._bytes.get(key, 0) + nbytes

    def sweep(self) -> None:
        """Close the encoders the idle policy says to (:mod:`framebus.sinks.hub`)."""
        self._hub.sweep()

    def stats(self, name: str) -> WebStats:
        sinks = self._hub.sinks(name)
        with self._lock:
            sent = {codec: self._bytes.get((name, codec), 0) for codec in CODECS}
        stats = [(_codec_of(sink), sink.stats()) for sink in sinks]
        codecs: dict[str, CodecStats] = {}
        for codec in CODECS:
            mine = [s for c, s in stats if c == codec]
            consumers = [c for s in mine for c in s.per_consumer]
            codecs[codec] = CodecStats(
                viewers=sum(s.consumers for s in mine),
                encodes=self._hub.closed_encodes(name, codec) + sum(s.frames_encoded for s in mine),
                encode_seconds=sum(s.encode_seconds for s in mine),
                bytes_sent=sent[codec],
                skipped=sum(c.dropped for c in consumers),
                behind=sum(c.behind for c in consumers),
            )
        return WebStats(
            viewers=sum(c.viewers for c in codecs.values()),
            encodes=sum(c.encodes for c in codecs.values()),
            encode_seconds=sum(c.encode_seconds for c in codecs.values()),
            bytes_sent=sum(sent.values()),
            viewer_skipped=tuple(c.dropped for _, s in stats for c in s.per_consumer),
            codecs=codecs,
        )

    def close(self) -> None:
        """Close every encoder (their viewers' responses end) and wait for them."""
        self._hub.close()


def _kind(variant: Any) -> str:
    return str(getattr(variant, "codec", ""))


def _codec_of(sink: FrameSink[Any]) -> Codec:
    return "h264" if isinstance(sink, (H264Sink, PassthroughSink)) else "mjpeg"


_default: EncoderHub | None = None
_default_lock = threading.Lock()


def default_hub() -> EncoderHub:
    """The process's hub: ASGI apps and WSGI views of one process share its encoders."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = EncoderHub()
        return _default
