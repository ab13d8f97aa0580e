"""One hub for the encoders every wing shares: the sinks of a process by (stream, variant),
made on demand, shared by every consumer, closed when nobody needs them.

The idle policy, stated once for every wing (the web's JPEG encoders, the exporter's wire
encoders, and the next):

* a sink stops encoding the moment its last consumer unsubscribes (:class:`FrameSink`);
* a sink nobody subscribed to for :data:`IDLE_CLOSE` seconds is closed (closing frees its
  reader record), so that coming back within that time costs nothing;
* at once, a sink of an every-mode stream nobody subscribes to (its capture waits for every
  reader: an idle one would hold the stream up for everyone), and a sink whose stream ended
  (a stream published again under the same name gets a fresh one);
* at most ``max_variants`` sinks per stream: a new variant at the cap takes the place of the
  longest idle one; only when every variant has consumers is it refused (TooManyVariants).

Idle sinks are closed by time alone: a thread of the hub (from the first subscription until
:meth:`SinkHub.close`) looks every :data:`SWEEP_EVERY` seconds. Closing a sink waits for its
worker, so it happens in a thread of its own: no call of the hub blocks on it (the web calls
it from an event loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from framebus.errors import FramebusError

from .base import FrameSink, Subscription

__all__ = ["IDLE_CLOSE", "SWEEP_EVERY", "SinkHub", "TooManyVariants"]

IDLE_CLOSE = 10.0
"""Seconds a sink nobody subscribes to is kept, ready to serve again."""
SWEEP_EVERY = 1.0

S = TypeVar("S", bound="FrameSink[Any]")


class TooManyVariants(FramebusError):
    """A stream already has its maximum of encoders (sizes, qualities), each with consumers."""


class _Entry(Generic[S]):
    def __init__(self, sink: S) -> None:
        self.sink = sink
        self.idle_since: float | None = None


class SinkHub(Generic[S]):
    """Sinks by (stream name, variant), made by ``make`` on first demand. Thread-safe.

    ``max_variants``: sinks per stream at most (None: no cap). ``thread_name`` names the
    sweeping and closing threads (``framebus-web``: ``framebus-web-sweep``, ...). ``kind``:
    the few kinds of variant whose lifetime encodes are counted apart (e.g. by codec; a
    variant's other fields come from requests: counting by them would grow without bound)."""

    def __init__(
        self,
        *,
        max_variants: int | None = None,
        thread_name: str,
        kind: Callable[[Hashable], str] | None = None,
    ) -> None:
        self.max_variants = max_variants
        self.thread_name = thread_name
        self._kind = kind or (lambda variant: "")
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, Hashable], _Entry[S]] = {}
        # frames encoded by the sinks closed already, by stream and kind
        self._encodes: dict[tuple[str, str], int] = {}
        self._closers: list[threading.Thread] = []
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(
        self,
        name: str,
        variant: Hashable,
        make: Callable[[], S],
        notify: Callable[[], None] | None = None,
    ) -> tuple[S, Subscription[Any]]:
        """A consumer of ``name`` as ``variant``: the sink (made by ``make()`` if there is
        none, or none alive) and a new subscription to it. Raises what ``make`` raises
        (StreamNotFound, ...), TooManyVariants."""
        stale: list[S] = []
        try:
            with self._lock:
                if self._closed:
                    raise FramebusError(f"the {self.thread_name} hub is closing")
                key = (name, variant)
                entry = self._entries.get(key)
                if entry is not None and entry.sink.stats().error is not None:
                    stale.append(entry.sink)  # its stream ended: the name may be published again
                    self._retire(key, entry)
                    entry = None
                if entry is None:
                    self._make_room(name, stale)
                    entry = self._entries[key] = _Entry(make())
                entry.idle_since = None
                sub = entry.sink.subscribe(notify)
                if self._sweeper is None:
                    self._sweeper = threading.Thread(
                        target=self._sweep_forever, name=f"{self.thread_name}-sweep", daemon=True
                    )
                    self._sweeper.start()
                return entry.sink, sub
        finally:
            for sink in stale:
                self._close_later(sink)

    def _make_room(self, name: str, stale: list[S]) -> None:
        """Under the lock: retire the longest idle variant of ``name`` if it is at the cap."""
        if self.max_variants is None:
            return
        mine = [(k, e) for k, e in self._entries.items() if k[0] == name]
        if len(mine) < self.max_variants:
            return
        idle = [(k, e) for k, e in mine if not e.sink.stats().consumers]
        if not idle:
            raise TooManyVariants(
                f"stream {name!r} has {self.max_variants} sizes/qualities being watched already"
            )
        key, oldest = min(idle, key=lambda ke: ke[1].idle_since or time.monotonic())
        stale.append(oldest.sink)  # nobody uses it: the new variant takes its place
        self._retire(key, oldest)

    def sinks(self, name: str) -> list[S]:
        """The sinks of stream ``name`` now."""
        with self._lock:
            return [e.sink for (n, _), e in self._entries.items() if n == name]

    def closed_encodes(self, name: str, kind: str | None = None) -> int:
        """Frames encoded for ``name`` by sinks closed already (for lifetime totals), of
        variants of ``kind`` (None: every kind)."""
        with self._lock:
            return sum(n for (s, k), n in self._encodes.items() if s == name and kind in (None, k))

    def _sweep_forever(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            self.sweep()

    def _retire(self, key: tuple[str, Hashable], entry: _Entry[S]) -> None:
        """Forget a sink (under the lock), keeping its count of encodes."""
        count = (key[0], self._kind(key[1]))
        self._encodes[count] = self._encodes.get(count, 0) + entry.sink.stats().frames_encoded
        del self._entries[key]

    def _close_later(self, sink: S) -> None:
        """Close ``sink`` in a thread of the hub's: closing waits for its worker to stop."""
        thread = threading.Thread(target=sink.close, name=f"{self.thread_name}-close", daemon=True)
        with self._lock:
            self._closers = [t for t in self._closers if t.is_alive()] + [thread]
        thread.start()

    def sweep(self) -> None:
        """Close the sinks the idle policy (module docstring) says to. Never blocks on a sink's
        shutdown."""
        now = time.monotonic()
        done: list[S] = []
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

    def close(self) -> None:
        """Close every sink (their consumers' ``get()`` end) and wait for them. Idempotent."""
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
