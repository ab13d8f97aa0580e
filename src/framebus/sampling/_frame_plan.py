"""Which frames of a video file a sampling run keeps, and which it must decode (no I/O).

A run keeps frames by display index (``every``) or by media time (one per ``interval``), inside
a window (``start``/``end``), up to a count (``max``): :class:`Selection`, offered frames one by
one in display order.

Decoding only what the kept frames need is most of the speed of sampling a file: a frame that
no other frame references (most B-frames) and that is not kept need not be decoded at all.
FFmpeg's decoders skip such frames when asked (``skip_frame = NONREF``), per packet; but a
skipped frame never leaves the decoder, so the frames that do cannot be counted to find their
index. The demuxer's timestamps give the indexes instead, before decoding: a frame's display
index is the rank of its packet's pts among all packets' pts — the order in which the decoder
returns frames, and in which ``cv2.VideoCapture.read()`` counts them. :class:`PacketIndex` makes
that map from one demuxing pass (packets only, no decoding: a few ms per minute of 1080p) and
says, per packet in decoding order, whether to decode it in full, decode it only if it is a
reference, or stop. Skipping a non-reference frame cannot change any other frame: the result is
exact by construction (and tested against OpenCV's decode of every frame).

Whole runs of packets no kept frame needs are skipped too: from a keyframe that is a fresh
start (:mod:`._keyframes`: an IDR picture, a VP9 key frame, any frame of an intra-only codec)
to the next, a *segment* decodes without anything before it; a segment without a kept frame is
not decoded at all. One exception: a segment whose first packets include frames shown before
its keyframe (open GOPs: MPEG-2's leading B-frames) may reference the segment before, which is
then decoded too. Codecs whose keyframes are not trusted form one segment.

A file whose timestamps cannot give the map (a packet without pts, two packets with the same
pts, more than :data:`MAX_PLANNED_FRAMES` frames) gets no plan: the caller decodes every frame
and counts them, as before.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

__all__ = [
    "DECODE",
    "MAX_PLANNED_FRAMES",
    "REFERENCE",
    "SKIP",
    "DecodePlan",
    "PacketIndex",
    "Selection",
    "Verdict",
]

MAX_PLANNED_FRAMES = 1 << 22
"""Frames a plan holds at most (18 bytes each: 75 MiB; 46 hours at 25 fps); longer files are
decoded frame by frame without one."""

# what to do with a packet: not decode it; decode it only if it is a reference; decode it
SKIP, REFERENCE, DECODE = 0, 1, 2

Verdict = Literal["skip", "keep", "keep_last", "stop"]
"""``stop``: the frame is past the run's end (not part of it); ``keep_last``: kept, and the
run ends after it (``max`` reached)."""


class Selection:
    """The frames one run keeps, decided frame by frame in display order (index 0, 1, …).

    ``every``: frames 0, N, 2N, …; ``interval``: the first frame of each interval [kT, (k+1)T)
    of media time, counted from the first frame's timestamp; ``start``/``end`` (seconds of
    media time) select a window of that same set; ``max``: the run ends with that many kept.
    A frame without a timestamp is given ``index / rate``.
    """

    def __init__(
        self,
        *,
        every: int | None,
        interval: Fraction | None,
        start: Fraction | None,
        end: Fraction | None,
        max: int | None,
        time_base: Fraction,
        rate: Fraction,
    ) -> None:
        if (every is None) == (interval is None):
            raise ValueError("give exactly one of every and interval")
        self.every = every
        self.interval = interval
        self.start = start
        self.end = end
        self.max = max
        self.time_base = time_base
        self.rate = rate
        self.origin: int | None = None
        self.last_bucket = -1
        self.kept = 0
        self.covered = 0
        """Frames that are part of the run so far (kept or not)."""
        self.done = False

    def offer(self, index: int, pts: int | None) -> Verdict:
        """Whether the frame of display ``index`` (and timestamp ``pts``) is kept."""
        if self.done:
            return "stop"
        if pts is None:
            t = Fraction(index) / self.rate
        else:
            if self.origin is None:
                self.origin = pts
            t = (pts - self.origin) * self.time_base
        if self.end is not None and t >= self.end:
            self.done = True
            return "stop"
        self.covered = index + 1
        if self.start is not None and t < self.start:
            return "skip"
        if self.every is not None:
            keep = index % self.every == 0
        else:
            assert self.interval is not None
            bucket = math.floor(t / self.interval)
            keep = bucket > self.last_bucket
            if keep:
                self.last_bucket = bucket
        if not keep:
            return "skip"
        self.kept += 1
        if self.max is not None and self.kept >= self.max:
            self.done = True
            return "keep_last"
        return "keep"


@dataclass(frozen=True)
class DecodePlan:
    """What to do with each packet of a file, in decoding order, for one run."""

    packet_pts: np.ndarray
    """int64, one per (non-empty) packet read, in decoding order: checked again while decoding."""
    display_pts: np.ndarray
    """int64, sorted: the pts of display index i is ``display_pts[i]`` (frames of the run)."""
    kept: np.ndarray
    """bool per display index: kept by the selection."""
    decode: np.ndarray
    """bool per display index: kept, and to be decoded (not ``already_done``)."""
    actions: np.ndarray
    """uint8 per packet in decoding order: SKIP, REFERENCE or DECODE."""
    covered: int
    """Frames that are part of the run (the progress total)."""
    last_packet: int
    """Decoding position of the last packet to send (-1: nothing to decode)."""

    def index_of(self, pts: int | None) -> int | None:
        """The display index of the frame with this pts (None: not a frame of the plan)."""
        if pts is None:
            return None
        i = int(np.searchsorted(self.display_pts, pts))
        if i < len(self.display_pts) and int(self.display_pts[i]) == pts:
            return i
        return None

    @property
    def kept_indexes(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.kept)]


class PacketIndex:
    """Packets fed in decoding order (:meth:`add`); each frame is offered to the selection as
    soon as its display index is certain, so the packets after the selection's last frame need
    not be read (``--max 10`` on a two-hour file reads its first seconds).

    A frame's index is certain once no packet still unread can have a smaller pts. Containers
    guarantee that a packet is decoded before it is shown (pts >= dts) and decoding times do not
    go back, so no later packet has a pts below the largest dts read so far: every pending pts
    below it is final. A packet that breaks this (a pts below what was already offered, the same
    pts twice, no pts) makes the timestamps unusable (:attr:`usable` False: the caller decodes
    every frame instead). Without dts, frames are offered at :meth:`finish`.
    """

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.packet_pts: list[int] = []
        self.discard: list[bool] = []
        self.fresh: list[bool] = []
        self.display_pts: list[int] = []  # offered frames inside the run, in display order
        self.kept: list[int] = []  # their display indexes that the selection keeps
        self.usable = True
        """False: these timestamps cannot index the frames."""
        self.done = False
        """True: the selection has decided; no later packet can change the plan."""
        self._pending: list[int] = []  # a heap of the pts of frames not offered yet
        self._final_below: int | None = None  # every frame with a smaller pts was offered
        self._last: int | None = None  # the pts offered last

    def add(self, pts: int | None, dts: int | None, discard: bool, fresh: bool) -> None:
        """One more packet (its timestamps, whether an edit list hides it, whether decoding
        can start at it). Ignored once :attr:`done` or not :attr:`usable`."""
        if self.done or not self.usable:
            return
        if pts is None or len(self.packet_pts) >= MAX_PLANNED_FRAMES:
            self.usable = False
            return
        if not discard and self._final_below is not None and pts < self._final_below:
            self.usable = False  # a frame shown before frames already counted
            return
        self.packet_pts.append(pts)
        self.discard.append(discard)
        self.fresh.append(fresh)
        if not discard:
            heapq.heappush(self._pending, pts)
        if dts is not None and (self._final_below is None or dts > self._final_below):
            self._final_below = dts
        if self._final_below is not None:
            self._offer(self._final_below)

    def finish(self) -> None:
        """The file has ended: offer the frames still pending."""
        if not self.done and self.usable:
            self._offer(None)

    def _offer(self, below: int | None) -> None:
        pending = self._pending
        while pending and (below is None or pending[0] < below):
            pts = heapq.heappop(pending)
            if pts == self._last:
                self.usable = False  # two frames with one timestamp: ranks are not indexes
                return
            self._last = pts
            index = len(self.display_pts)
            verdict = self.selection.offer(index, pts)
            if verdict == "stop":
                self.done = True
                return
            self.display_pts.append(pts)
            if verdict != "skip":
                self.kept.append(index)
            if verdict == "keep_last":
                self.done = True
                return

    def plan(self, already_done: Callable[[int], bool] = lambda index: False) -> DecodePlan | None:
        """The plan (None if the timestamps cannot index the frames). ``already_done(index)``:
        a kept frame that need not be decoded (its file exists)."""
        if not self.usable:
            return None
        order = np.asarray(self.packet_pts, dtype=np.int64)
        hidden = np.asarray(self.discard, dtype=bool)
        shown = np.asarray(self.display_pts, dtype=np.int64)
        kept = np.zeros(len(shown), dtype=bool)
        kept[self.kept] = True
        decode = kept.copy()
        for index in self.kept:
            if already_done(index):
                decode[index] = False
        wanted = np.isin(order, shown[decode]) & ~hidden
        positions = np.flatnonzero(wanted)
        last = int(positions[-1]) if len(positions) else -1
        actions = _actions(order, wanted, self.fresh)
        return DecodePlan(order, shown, kept, decode, actions, self.selection.covered, last)


def _actions(order: np.ndarray, wanted: np.ndarray, fresh: Sequence[bool]) -> np.ndarray:
    """SKIP, REFERENCE or DECODE per packet: the wanted packets decoded, the other packets of
    their segments decoded if references, the segments without a wanted packet skipped."""
    if not len(order):
        return np.zeros(0, dtype=np.uint8)
    starts = np.array(fresh, dtype=bool)
    starts[0] = True  # decoding starts at the first packet, whatever it is
    segment = np.cumsum(starts) - 1
    first_pts = order[starts]
    needed = np.zeros(len(first_pts), dtype=bool)
    needed[segment[wanted]] = True
    # frames shown before their segment's first one (open GOPs) may reference the segment before
    leading = np.zeros(len(first_pts), dtype=bool)
    leading[segment[order < first_pts[segment]]] = True
    pulled = np.flatnonzero(needed & leading)
    needed[pulled[pulled > 0] - 1] = True
    actions = np.where(needed[segment], REFERENCE, SKIP).astype(np.uint8)
    actions[wanted] = DECODE
    return actions
