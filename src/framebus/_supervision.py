"""How a live stream recovers: the reconnect policy and its backoff (pure, no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "Reconnect"]


@dataclass(frozen=True)
class Reconnect:
    """Reconnect policy of a live stream (``publish(..., reconnect=Reconnect(...))``).

    The capture is restarted when its process dies, when its source fails, and when no frame
    arrived for ``stall_timeout`` seconds (a capture hung inside native code is killed, not
    waited on). Restarts wait ``backoff_initial * backoff_factor**n`` seconds, at most
    ``backoff_max``, each spread by ``±jitter`` (a fraction) so that many cameras behind one
    switch do not reconnect in lockstep. ``max_attempts=None`` retries for as long as the
    publisher runs; readers stay attached and simply wait for frames meanwhile.
    """

    stall_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    jitter: float = 0.25
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.stall_timeout <= 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("stall_timeout must be > 0 and backoff times >= 0")
        if self.backoff_factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff_factor must be >= 1 and jitter in [0, 1)")


class Backoff:
    """The delays before successive restarts; :meth:`reset` once frames flow again."""

    def __init__(self, policy: Reconnect, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when attempts are exhausted."""
        p = self.policy
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return None
        base = min(p.backoff_max, p.backoff_initial * p.backoff_factor**self.attempts)
        self.attempts += 1
        return max(0.0, base * (1 + self._rng.uniform(-p.jitter, p.jitter)))

    def reset(self) -> None:
        self.attempts = 0
