"""A camera's clock (no I/O): RTCP sender reports map its RTP times to its wall clock, so a
frame's time is when the camera took it, not when it arrived here.

Untrusted input, bounded:

- the first sender report sets the mapping; a later one that moves it by more than
  :data:`MAX_STEP` is taken only when the next report agrees with it (a camera whose clock was
  set), so one bogus report moves nothing;
- the offset (arrival minus capture time, over the last :data:`WINDOW` frames: the network's
  and the camera's delay, plus the difference of the clocks) must stay within
  :data:`MAX_OFFSET`, else the camera's clock is ``untrusted`` and frames keep their arrival
  times (a camera whose clock was never set, minutes off);
- whatever the reports, a frame's camera time is never more than :data:`MAX_OFFSET` from its
  arrival (else the frame keeps its arrival time, ``untrusted``), and never goes back (each
  is at least the previous one's by the same clock: a frame says whose clock its time is).
"""

from __future__ import annotations

import collections
import math

__all__ = ["MAX_OFFSET", "MAX_STEP", "MIN_RATE", "WINDOW", "CameraClock"]

MAX_OFFSET = 2.0
"""Seconds the camera's clock may be from this machine's (delay included) to be trusted."""
MAX_STEP = 0.5
"""Seconds a sender report may move the mapping by before a second one must confirm it."""
WINDOW = 50
"""Frames over which the offset and its jitter are measured."""
_AGREE = 0.05  # seconds: two reports that agree on a new mapping
MIN_RATE = 1000
"""An RTP clock slower than this (Hz) is not a video clock (RTP video: 90 kHz): not mapped."""


class CameraClock:
    """The capture times of one RTP stream's frames (clock rate ``rate`` Hz)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate if rate >= MIN_RATE else 0  # (0: no report is taken)
        self._base: tuple[float, int] | None = None  # (wall, extended RTP) of the mapping
        self._candidate: tuple[float, int] | None = None  # a step waiting for confirmation
        self._last32: int | None = None
        self._ext = 0  # the extended (unwrapped) RTP time of the last one seen
        self._offsets: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._last_out = 0.0
        self._last_kind = ""
        self.ignored = 0
        """Sender reports not taken (a step nobody confirmed)."""

    def extend(self, rtp32: int, *, keep: bool = True) -> int:
        """A 32-bit RTP time unwrapped, near the last frame's (RFC 3550's wrap); ``keep``:
        it is a frame's, the next ones are unwrapped near it (a report's is not kept: a bogus
        one must not move where the frames are)."""
        rtp32 &= 0xFFFFFFFF
        if self._last32 is None:
            ext = rtp32
        else:
            delta = (rtp32 - self._last32) & 0xFFFFFFFF
            ext = self._ext + (delta - (1 << 32) if delta >= 1 << 31 else delta)
        if keep or self._last32 is None:
            self._ext, self._last32 = ext, rtp32
        return ext

    def _at(self, base: tuple[float, int], rtp: int) -> float:
        return base[0] + (rtp - base[1]) / self.rate

    def report(self, wall: float, rtp32: int) -> None:
        """A sender report: RTP time ``rtp32`` was ``wall`` by the camera's clock."""
        if not (0 < wall < 1e10) or self.rate <= 0:
            self.ignored += 1
            return
        rtp = self.extend(rtp32, keep=False)
        base = self._base
        if base is None or abs(self._at(base, rtp) - wall) <= MAX_STEP:
            self._base, self._candidate = (wall, rtp), None
            return
        candidate = self._candidate
        if candidate is not None and abs(self._at(candidate, rtp) - wall) <= _AGREE:
            self._base, self._candidate = (wall, rtp), None  # confirmed: the clock was set
            self._offsets.clear()
            self._last_kind = ""  # (its times start again)
            return
        self._candidate = (wall, rtp)
        self.ignored += 1

    def frame(self, rtp32: int, arrival: float) -> tuple[float, str]:
        """(the frame's time, whose clock: ``camera``, ``untrusted`` or ``local``) for the
        frame of RTP time ``rtp32`` that arrived at ``arrival`` (this machine's clock)."""
        rtp = self.extend(rtp32)
        base = self._base
        if base is None:
            return self._monotonic(arrival, "local"), "local"
        taken = self._at(base, rtp)
        self._offsets.append(arrival - taken)
        if not self.trusted or abs(arrival - taken) > MAX_OFFSET:  # (this frame's too: one
            return self._monotonic(arrival, "untrusted"), "untrusted"  # far off takes none)
        return self._monotonic(taken, "camera"), "camera"

    def _monotonic(self, t: float, kind: str) -> float:
        """``t``, but never before the last time of the same clock (a change of clock starts
        again: its times are another clock's, and the frame says which)."""
        if kind == self._last_kind and self._last_out:
            t = max(t, self._last_out + 1e-6)
        self._last_out, self._last_kind = t, kind
        return t

    # (read for every frame: plain floats, not the statistics module's exact fractions)
    @property
    def offset(self) -> float | None:
        """Arrival minus capture time (median of the window), None before a report."""
        n = len(self._offsets)
        if not n:
            return None
        ordered = sorted(self._offsets)
        return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2

    @property
    def jitter(self) -> float | None:
        """The offset's standard deviation over the window."""
        n = len(self._offsets)
        if n < 2:
            return None
        mean = math.fsum(self._offsets) / n
        return math.sqrt(math.fsum((x - mean) ** 2 for x in self._offsets) / n)

    @property
    def trusted(self) -> bool:
        offset = self.offset
        return offset is not None and abs(offset) <= MAX_OFFSET
