"""The output clock of an encoded push (no I/O): a frame every ``1/fps`` seconds whatever the
producer does, its phase pulled towards the producer's frames.

A media server's players expect a steady rate: a detector's 1 fps output pushed as 1 fps stalls
them (vidgear #306), so each tick sends the newest frame, or the last one again. When the
producer runs at about the output rate, the ticks move (by at most :data:`STEP` of an interval
each) until its frames wait between :data:`LOW` and :data:`HIGH` of an interval: late enough
that jitter does not make a frame miss its tick, early enough that sampling adds little age.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HIGH", "LOW", "STEP", "Clock"]

LOW, HIGH = 0.1, 0.4  # the wait of a frame before its tick, in intervals
STEP = 0.05  # the most a tick moves at once, in intervals (2 ms at 25 fps)
_LOCK_SHARE = 0.8  # the producer counts as "at the output rate" if this share of ticks has news
_WINDOW = 25  # ticks over which that share is measured


@dataclass
class Clock:
    """Ticks at ``fps`` from ``start`` (monotonic seconds)."""

    fps: float
    start: float
    next_tick: float = field(init=False)
    _news: list[bool] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not 0.1 <= self.fps <= 240:
            raise ValueError(f"fps must be 0.1..240, not {self.fps}")
        self.next_tick = self.start

    @property
    def interval(self) -> float:
        return 1.0 / self.fps

    def tick(self, now: float, waited: float | None) -> None:
        """A tick was served at ``now``; ``waited``: how long its frame had waited (None: no
        new frame, a repeat). Schedules the next one; a tick missed by more than an interval
        (the thread was held up) is not caught up with: the clock starts again from ``now``."""
        interval = self.interval
        news = self._news
        news.append(waited is not None)
        if len(news) > _WINDOW:
            del news[0]
        step = 0.0
        locked = len(news) == _WINDOW and sum(news) >= _LOCK_SHARE * _WINDOW
        if waited is not None and locked:
            wait = waited / interval
            if wait > HIGH:
                step = -min(STEP, wait - HIGH)
            elif wait < LOW:
                step = min(STEP, LOW - wait)
        self.next_tick += interval * (1.0 + step)
        if now - self.next_tick > interval:
            self.next_tick = now + interval
