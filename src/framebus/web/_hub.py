"""The encoders of a process: one :class:`JpegSink` per stream and variant, shared by every
viewer of the process (ASGI tasks and WSGI threads alike).

Bounds: at most :data:`MAX_VARIANTS` variants (width, quality) per stream, since each is a
reader of the stream and an encoder; an encoder nobody subscribed to for :data:`IDLE_CLOSE`
seconds is closed (it stopped encoding at once when its last viewer left; closing frees its
reader record), at once on an every-mode stream (whose capture waits for every reader), and
so is one whose stream ended, so that a stream published again under the same name gets a
fresh one. Idle encoders are closed by time alone: a thread of the hub
(``framebus-web-sweep``, from the first viewer until :meth:`EncoderHub.close`) looks every
:data:`SWEEP_EVERY` seconds. A new variant at the cap takes the place of the longest idle
encoder of its stream; only when every variant has viewers is it refused (TooManyVariants).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from framebus.errors import FramebusError
from framebus.sinks import Subscription
from framebus.sinks.jpeg import JpegSink

__all__ = ["DEFAULT_QUALITY", "IDLE_CLOSE", "MAX_VARIANTS", "SWEEP_EVERY", "EncoderHub",
           "TooManyVariants", "Variant", "WebStats", "default_hub"]  # fmt: skip

DEFAULT_QUALITY = 80
MAX_VARIANTS = 4
IDLE_CLOSE = 10.0
SWEEP_EVERY = 1.0


class TooManyVariants(FramebusError):
    """A stream already has :data:`MAX_VARIANTS` encoders (widths x qualities) running."""


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


class _Entry:
    def __init__(self, sink: JpegSink) -> None:
        self.sink = sink
        self.idle_since: float | None = None


class EncoderHub:
    """Encoders by (stream, variant), created on demand. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, Variant], _Entry] = {}
        self._bytes: dict[str, int] = {}
        self._encodes: dict[str, int] = {}  # of encoders closed already
        self._closers: list[threading.Thread] = []
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def subscribe(
        self, name: str, variant: Variant, notify: Callable[[], None] | None = None
    ) -> Subscription[bytes]:
        """A viewer of ``name`` as ``variant``. Raises StreamNotFound, TooManyVariants.

        Never blocks on an encoder's shutdown (it may be called on an event loop)."""
        stale: list[JpegSink] = []
        with self._lock:
            if self._closed:
                raise FramebusError("the web server is closing")
            entry = self._entries.get((name, variant))
            if entry is not None and entry.sink.stats().error is not None:
                stale.append(entry.sink)  # its stream ended: the name may be published again
                self._retire((name, variant), entry)
                entry = None
            if entry is None:
                mine = [(k, e) for k, e in self._entries.items() if k[0] == name]
                if len(mine) >= MAX_VARIANTS:
                    idle = [(k, e) for k, e in mine if not e.sink.stats().consumers]
                    if not idle:
                        raise TooManyVariants(
                            f"stream {name!r} has {MAX_VARIANTS} sizes/qualities being "
                            "watched already"
                        )
                    key, oldest = min(idle, key=lambda ke: ke[1].idle_since or time.monotonic())
                    stale.append(oldest.sink)  # nobody watches it: this variant takes its place
                    self._retire(key, oldest)
                sink = JpegSink(name, width=variant.width, quality=variant.quality)
                entry = self._entries[(name, variant)] = _Entry(sink)
            entry.idle_since = None
            sub = entry.sink.subscribe(notify)
            if self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=self._sweep_forever, name="framebus-web-sweep", daemon=True
                )
                self._sweeper.start()
        for sink in stale:
            self._close_later(sink)
        return sub

    def _sweep_forever(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            self.sweep()

    def _retire(self, key: tuple[str, Variant], entry: _Entry) -> None:
        """Forget an encoder (under the lock), keeping its count of encodes."""
        self._encodes[key[0]] = self._encodes.get(key[0], 0) + entry.sink.stats().frames_encoded
        del self._entries[key]

    def _close_later(self, sink: JpegSink) -> None:
        """Close ``sink`` in a thread of the hub's: closing waits for its worker to stop."""
        thread = threading.Thread(target=sink.close, name="framebus-web-close", daemon=True)
        with self._lock:
            self._closers = [t for t in self._closers if t.is_alive()] + [thread]
        thread.start()

    def note_sent(self, name: str, nbytes: int) -> None:
        with self._lock:
            self._bytes[name] = self._bytes.get(name, 0) + nbytes

    def sweep(self) -> None:
        """Close encoders whose stream ended, those of every-mode streams nobody watches (an
        idle reader would hold such a stream up for everyone), and others idle for
        :data:`IDLE_CLOSE` seconds. Never blocks on an encoder's shutdown."""
        now = time.monotonic()
        done: list[JpegSink] = []
        with self._lock:
            for key, entry in list(self._entries.items()):
                st = entry.sink.stats()
                if st.consumers:
                    entry.idle_since = None
                    continue
                if entry.idle_since is None:
                    entry.idle_since = now
                idle = now - entry.idle_since
                if st.error is not None or entry.sink.every_mode or idle >= IDLE_CLOSE:
                    done.append(entry.sink)
                    self._retire(key, entry)
        for sink in done:
            self._close_later(sink)

    def stats(self, name: str) -> WebStats:
        with self._lock:
            sinks = [e.sink for (n, _), e in self._entries.items() if n == name]
            sent, closed_encodes = self._bytes.get(name, 0), self._encodes.get(name, 0)
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
        with self._lock:
            self._closed = True
            entries, self._entries = list(self._entries.values()), {}
            closers, self._closers = self._closers, []
            sweeper, self._sweeper = self._sweeper, None
        self._stop.set()
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join()
        for entry in entries:
            entry.sink.close()
        for thread in closers:
            thread.join(10)


_default: EncoderHub | None = None
_default_lock = threading.Lock()


def default_hub() -> EncoderHub:
    """The process's hub: ASGI apps and WSGI views of one process share its encoders."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = EncoderHub()
        return _default
