"""The mailbox of a consumer of frames that depend on each other (H.264): it skips whole groups
of pictures, never single frames, and never queues without a bound.

A decoder needs every frame from a keyframe on: the newest-wins :class:`~framebus.sinks.LatestSlot`
would hand it a P-frame whose reference it never saw. :class:`GopSlot` keeps the frames in order
instead, and a consumer that falls behind drops to the next keyframe.

Buffering policy of a :class:`GopSlot`, stated once for every consumer of encoded video:

* it holds the frames put since the consumer last took one, in order, while the oldest has
  waited at most :data:`MAX_LAG` seconds and they number at most :data:`MAX_PENDING`;
* one more would break either bound: the consumer is *behind*. Every frame it holds is dropped
  (counted), it takes no frame until the next keyframe (counted in ``behind``; a keyframe that
  found it behind is that next keyframe);
* a new consumer starts waiting for a keyframe, or with the frames of the current group of
  pictures from its keyframe (:meth:`prefill`, the sink's bounded cache): a picture at once
  without waiting for the next keyframe. Those catching-up frames do not count towards the
  number (they are the past the consumer asked for), only towards the wait;
* a consumer may ask to restart at a keyframe itself (:meth:`skip_to_key`: its decoder failed):
  the newest one it holds, else the next one.

Memory: references to frames the sink made once for every consumer; per consumer at most
:data:`MAX_PENDING` plus the prefill.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from framebus._h264 import AccessUnit

from .base import ConsumerStats, Encoded, MailboxBase

__all__ = ["MAX_GOP_BYTES", "MAX_GOP_FRAMES", "MAX_LAG", "MAX_PENDING", "GopCache", "GopSlot"]

MAX_LAG = 0.5
"""Seconds the oldest frame a consumer holds may have waited before it is behind."""
MAX_PENDING = 256
"""Frames a consumer may hold untaken before it is behind (bounds a burst at a high rate)."""
MAX_GOP_FRAMES = 600
MAX_GOP_BYTES = 32 * 1024 * 1024


class GopCache:
    """A sink's current group of pictures, from its keyframe, for consumers that join: at most
    :data:`MAX_GOP_FRAMES` frames and :data:`MAX_GOP_BYTES` bytes (a longer group is not kept:
    joiners then wait for the next keyframe). Not thread-safe: the sink's lock guards it."""

    def __init__(self) -> None:
        self.items: list[Encoded[AccessUnit]] = []
        self._bytes = 0

    def add(self, item: Encoded[AccessUnit]) -> None:
        if item.data.key:
            self.items, self._bytes = [], 0
        elif not self.items:
            return  # it overflowed: nothing until the next keyframe
        self.items.append(item)
        self._bytes += len(item.data.data)
        if len(self.items) > MAX_GOP_FRAMES or self._bytes > MAX_GOP_BYTES:
            self.clear()

    def clear(self) -> None:
        self.items, self._bytes = [], 0


class GopSlot(MailboxBase[Encoded[AccessUnit]]):
    """An in-order mailbox of encoded frames for one consumer; see the module docstring for what
    it drops. Thread-safe; getting, closing and the counts are every mailbox's
    (:class:`~framebus.sinks.base.MailboxBase`)."""

    def __init__(
        self,
        notify: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(notify)
        self._clock = clock
        self._items: deque[Encoded[AccessUnit]] = deque()
        self._since: deque[float] = deque()  # when each held frame was put
        self._catching_up = 0  # prefilled frames still held: outside the bounds
        self._want_key = True
        self._behind = 0

    def prefill(self, items: Iterable[Encoded[AccessUnit]]) -> None:
        """Start with ``items`` (a group of pictures from its keyframe), taken before anything
        put later; ignored unless the first is a keyframe."""
        items = list(items)
        if not items or not items[0].data.key:
            return
        with self._cond:
            if self._closed or self._items:
                return
            self._items.extend(items)
            self._since.extend([self._clock()] * len(items))
            self._catching_up = len(items)
            self._want_key = False
            self._cond.notify_all()
        if self._notify is not None:
            self._notify()

    def put(self, item: Encoded[AccessUnit]) -> bool:
        """Append ``item``; see the module docstring. False (and ignored) once closed."""
        with self._cond:
            if self._closed:
                return False
            if self._want_key:
                if not item.data.key:
                    self._dropped += 1
                    return True
                self._want_key = False
            now = self._clock()
            self._items.append(item)
            self._since.append(now)
            live = len(self._items) - self._catching_up
            # catching-up frames have no time budget of their own: the first live frame
            # behind them waits for them, and its wait is what counts
            if live > MAX_PENDING or now - self._since[self._catching_up] > MAX_LAG:
                self._drop_all()
                self._behind += 1
                if item.data.key:  # it starts the next group itself: keep it
                    self._dropped -= 1
                    self._items.append(item)
                    self._since.append(now)
                    self._want_key = False
            self._cond.notify_all()
        if self._notify is not None:
            self._notify()
        return True

    def _drop_all(self) -> None:
        """Under the lock: drop what is held and wait for the next keyframe."""
        self._dropped += self._discard()
        self._catching_up = 0
        self._want_key = True

    def skip_to_key(self) -> None:
        """Restart at a keyframe (the consumer's decoder lost its footing): at the newest one
        held, else at the next one put; what comes before it is dropped."""
        with self._cond:
            if self._closed:
                return
            keys = [i for i, it in enumerate(self._items) if it.data.key]
            if not keys:
                self._drop_all()
                return
            first = keys[-1]
            self._dropped += first
            for _ in range(first):
                self._items.popleft()
                self._since.popleft()
            self._catching_up = max(0, self._catching_up - first)

    def _has(self) -> bool:
        return bool(self._items)

    def _take(self) -> Encoded[AccessUnit]:
        self._since.popleft()
        self._catching_up = max(0, self._catching_up - 1)
        return self._items.popleft()

    def _discard(self) -> int:
        held = len(self._items)
        self._items.clear()
        self._since.clear()
        return held

    @property
    def pending(self) -> int:
        """Frames held now."""
        with self._cond:
            return len(self._items)

    def stats(self) -> ConsumerStats:
        with self._cond:
            return ConsumerStats(self._delivered, self._dropped, self._behind)
