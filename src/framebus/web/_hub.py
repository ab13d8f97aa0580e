"""The encoders of a process: one :class:`JpegSink` per stream and variant, shared by every
viewer of the process (ASGI tasks and WSGI threads alike), in the hub every wing shares
(:class:`~framebus.sinks.hub.SinkHub`: its idle policy is this one).

Bounds: at most :data:`MAX_VARIANTS` variants (width, quality) per stream, since each is a
reader of the stream and an encoder; a new variant at the cap takes the place of the longest
idle encoder of its stream; only when every variant has viewers is it refused
(TooManyVariants). The hub's threads are ``framebus-web-sweep`` and ``framebus-web-close``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from framebus.sinks import Subscription
from framebus.sinks.hub import IDLE_CLOSE, SWEEP_EVERY, SinkHub, TooManyVariants
from framebus.sinks.jpeg import JpegSink

__all__ = ["DEFAULT_QUALITY", "IDLE_CLOSE", "MAX_VARIANTS", "SWEEP_EVERY", "EncoderHub",
           "TooManyVariants", "Variant", "WebStats", "default_hub"]  # fmt: skip

DEFAULT_QUALITY = 80
MAX_VARIANTS = 4


@dataclass(frozen=True)
class Variant:
    """How a viewer wants a stream: scaled to ``width`` (None: as captured), at ``quality``."""

    width: int | None = None
    quality: int = DEFAULT_QUALITY


@dataclass(frozen=True)
class WebStats:
    """What the web layer adds to a stream's stats."""

    viewers: int
    encodes: int
    encode_seconds: float
    bytes_sent: int
    viewer_skipped: tuple[int, ...]
    """Frames each current viewer skipped (encoded while it was still sending an older one)."""


class EncoderHub:
    """JPEG encoders by (stream, variant), created on demand. Thread-safe."""

    def __init__(self) -> None:
        self._hub: SinkHub[JpegSink] = SinkHub(
            max_variants=MAX_VARIANTS, thread_name="framebus-web"
        )
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = {}

    @property
    def _closed(self) -> bool:
        return self._hub.closed

    def subscribe(
        self, name: str, variant: Variant, notify: Callable[[], None] | None = None
    ) -> Subscription[bytes]:
        """A viewer of ``name`` as ``variant``. Raises StreamNotFound, TooManyVariants.

        Never blocks on an encoder's shutdown (it may be called on an event loop)."""

        def make() -> JpegSink:
            return JpegSink(name, width=variant.width, quality=variant.quality)

        return self._hub.subscribe(name, variant, make, notify)[1]

    def note_sent(self, name: str, nbytes: int) -> None:
        with self._lock:
            self._bytes[name] = self._bytes.get(name, 0) + nbytes

    def sweep(self) -> None:
        """Close the encoders the idle policy says to (:mod:`framebus.sinks.hub`)."""
        self._hub.sweep()

    def stats(self, name: str) -> WebStats:
        sinks = self._hub.sinks(name)
        closed_encodes = self._hub.closed_encodes(name)
        with self._lock:
            sent = self._bytes.get(name, 0)
        stats = [s.stats() for s in sinks]
        return WebStats(
            viewers=sum(s.consumers for s in stats),
            encodes=closed_encodes + sum(s.frames_encoded for s in stats),
            encode_seconds=sum(s.encode_seconds for s in stats),
            bytes_sent=sent,
            viewer_skipped=tuple(c.dropped for s in stats for c in s.per_consumer),
        )

    def close(self) -> None:
        """Close every encoder (their viewers' responses end) and wait for them."""
        self._hub.close()


_default: EncoderHub | None = None
_default_lock = threading.Lock()


def default_hub() -> EncoderHub:
    """The process's hub: ASGI apps and WSGI views of one process share its encoders."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = EncoderHub()
        return _default
