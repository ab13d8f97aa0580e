"""The shared-memory frame ring: one writer, any number of readers in any processes.

The protocol (argued in docs/design.md):

* The writer owns a slot only after marking it ``WRITING`` and then seeing, behind a full
  fence, that no reader has pinned it. In latest mode it never picks the slot of the newest
  frame; in every mode it only reuses a slot whose frame every reader has consumed.
* A reader owns a slot only after pinning it in its own record and then seeing, behind a full
  fence, that the slot still holds the frame it wants. Pin and check on one side, mark and check
  on the other (Dekker's pattern): at least one side sees the other, so a writer never writes
  a slot a reader is reading, and a reader never reads a slot a writer is writing.
* Frames are published by a release store of the slot's ``frame_seq`` and of ``latest``;
  sleeping readers are woken by a futex on a counter bumped after each publish.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import _platform as plat
from ..errors import (
    FramebusError,
    IncompatibleStream,
    PublisherLost,
    ReadTimeout,
    TooManyReaders,
)
from ._control import Control
from ._layout import (
    EMPTY,
    MAX_CHANNELS,
    NONE,
    WRITING,
    Hdr,
    Mode,
    Rdr,
    Slot,
    data_name,
    dtype_code,
    dtype_from_code,
    pack_clock,
    pack_latest,
    pack_media,
    slot_bytes,
    unpack_clock,
    unpack_latest,
    unpack_media,
)

__all__ = ["FrameMeta", "RingReader", "RingWriter"]

_LIVENESS_PERIOD = 0.2  # how often a waiting reader checks that its publisher still lives
_REAP_PERIOD = 0.5  # how often the writer frees the records of dead readers
_SLOT_WAIT = 0.0005  # writer back-off when every free slot is pinned (latest mode)


class RingWriter:
    """The single writer of a stream. Not thread-safe: one capture loop drives it."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.n = ctl.layout.n_slots
        self.seq, self.last_slot = unpack_latest(ctl.words.load(Hdr.LATEST))
        self.gen = ctl.get(Hdr.DATA_GEN)
        self.capacity = 0
        self.data: plat.Segment | None = None
        self.retired: dict[int, plat.Segment] = {}
        self.instance = ctl.get(Hdr.INSTANCE)
        self.captured = ctl.get(Hdr.CAPTURED)
        self._views: dict[tuple[int, tuple[int, ...], np.dtype[np.generic]], np.ndarray] = {}
        self._seq_offsets = [ctl.layout.slot(i, Slot.FRAME_SEQ) for i in range(self.n)]
        self._pins = ctl.readers[:, Rdr.PIN // 8]
        self._next_reap = 0.0
        ctl.allocating = 0  # whatever a previous writer was doing when it died
        self._forget_unpublished_frames()
        if self.gen:  # a restarted writer continues the current generation
            try:
                self.data = plat.Segment.open(
                    data_name(ctl.name, self.instance, self.gen), populate=True
                )
                self.capacity = self.data.size // self.n
            except FileNotFoundError:
                self.data = None
        self._drop_unreferenced_generations(self._generation_files())

    def _forget_unpublished_frames(self) -> None:
        """A previous writer killed mid-frame may have left a slot marked WRITING, or a frame
        stored in a slot but not yet in ``latest``: neither was ever published."""
        lay, w = self.ctl.layout, self.ctl.words
        for i in range(self.n):
            held = w.load(lay.slot(i, Slot.FRAME_SEQ))
            if held == WRITING or (held != EMPTY and held > self.seq):
                w.store(lay.slot(i, Slot.FRAME_SEQ), EMPTY)

    def _generation_files(self) -> dict[int, str]:
        prefix = data_name(self.ctl.name, self.instance, 0)[:-1]
        found = {}
        for seg in plat.list_segments(prefix):
            tail = seg[len(prefix) :]
            if tail.isascii() and tail.isdigit():  # int() also takes "²"; names are foreign
                found[int(tail)] = seg
        return found

    # -- choosing a slot -----------------------------------------------------------------------

    def acquire(self, stop: Callable[[], bool], deadline: float | None = None) -> int | None:
        """Return a slot index the writer now owns, or None if ``stop()`` became true or the
        ``time.monotonic()`` ``deadline`` passed with no slot free (a free slot is taken even
        when the deadline has passed already: a timeout of 0 means "only if free now")."""
        while True:
            self._housekeeping()
            if stop():
                return None
            slot = (
                self._acquire_every(stop, deadline)
                if self.ctl.mode is Mode.EVERY
                else self._acquire_latest()
            )
            if slot is not None:
                return slot
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _mark_and_check(self, slot: int) -> bool:
        w = self.ctl.words
        w.store_sc(self._seq_offsets[slot], WRITING)
        w.fence()  # pairs with the reader's fence between pin and check
        # free records always hold pin NONE, so the pin column alone tells
        pinned = bool((self._pins == slot).any())
        w.fence()  # acquire: our pixel writes come after the pin loads (and the reads they end)
        return not pinned

    def _acquire_latest(self) -> int | None:
        for k in range(1, self.n + 1):
            slot = (self.last_slot + k) % self.n
            if self.seq and slot == self.last_slot:
                continue  # never overwrite the newest frame
            if self._mark_and_check(slot):
                return slot
        time.sleep(_SLOT_WAIT)  # every other slot is pinned by a reader: rare, brief
        return None

    def _acquire_every(self, stop: Callable[[], bool], deadline: float | None) -> int | None:
        """Slot ``(seq+1) % n`` once every reader has consumed the frame it holds."""
        ctl, lay, w = self.ctl, self.ctl.layout, self.ctl.words
        slot = (self.seq + 1) % self.n
        futex = ctl.seg.address + Hdr.PROGRESS_FUTEX
        while not stop():
            token = w.load32(Hdr.PROGRESS_FUTEX)
            held = w.load(lay.slot(slot, Slot.FRAME_SEQ))
            w.fence()
            rows = ctl.readers
            active = ctl.taken(rows)
            cursors = rows[active, Rdr.CURSOR // 8]
            # NONE: a reader still registering; it may want this frame, so wait for it
            consumed = held in (EMPTY, WRITING) or bool(
                ((cursors != NONE) & (cursors >= held)).all()
            )
            if active.any() and consumed and self._mark_and_check(slot):
                return slot
            # wait for a reader to consume (or to appear: every mode holds frames for readers)
            wait = _REAP_PERIOD
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return None
            plat.futex_wait(futex, token, wait)
            self._housekeeping()
        return None

    def _housekeeping(self) -> None:
        """Every ``_REAP_PERIOD``: free dead readers' records, and beat the heart (the writer
        is not stuck inside its source)."""
        now = time.monotonic()
        if now >= self._next_reap:
            self._next_reap = now + _REAP_PERIOD
            self.ctl.reap_dead_readers()
            self.ctl.heartbeat()

    # -- writing and publishing ----------------------------------------------------------------

    def buffer(self, slot: int, shape: tuple[int, ...], dtype: np.dtype[np.generic]) -> np.ndarray:
        """A writable array of ``shape`` in ``slot`` (a new generation if it does not fit)."""
        key = (slot, shape, dtype)
        view = self._views.get(key)  # the hot path: same size as the last frames
        if view is not None:
            return view
        self.reserve(math.prod(shape) * np.dtype(dtype).itemsize)
        assert self.data is not None
        view = np.ndarray(shape, dtype, buffer=self.data.mm, offset=slot * self.capacity)
        if len(self._views) > 4 * self.n:
            self._views.clear()
        self._views[key] = view
        return view

    def reserve(self, nbytes: int) -> None:
        """Make the slots hold frames of ``nbytes`` bytes: a new generation if they do not.
        Raises SharedMemoryFull if there is no room for it."""
        if self.data is None or nbytes > self.capacity:
            self._new_generation(nbytes)

    def _new_generation(self, nbytes: int) -> None:
        capacity = slot_bytes(nbytes)
        gen = self.gen + 1
        name = data_name(self.ctl.name, self.instance, gen)
        # said in the header while it lasts: if the kernel kills this process for want of
        # memory meanwhile, the supervisor knows why (Control.capture_died)
        self.ctl.allocating = capacity * self.n
        try:
            try:
                seg = plat.Segment.create(name, capacity * self.n)
            except FileExistsError:  # left by a writer killed before it published the generation
                plat.unlink_segment(name)
                seg = plat.Segment.create(name, capacity * self.n)
        finally:
            self.ctl.allocating = 0
        if self.data is not None:
            self.retired[self.gen] = self.data
        self._views.clear()
        self.data, self.gen, self.capacity = seg, gen, capacity
        self.ctl.words.store(Hdr.SLOT_CAPACITY, capacity)
        self.ctl.words.store(Hdr.DATA_GEN, gen)

    def commit(
        self,
        slot: int,
        frame: np.ndarray,
        timestamp_ns: int,
        pos: int,
        media_ns: int | None = None,
        clock: tuple[str, int | None, int | None] | None = None,
    ) -> int:
        """Publish the frame written into ``slot`` (``frame`` gives its shape); returns its seq.
        ``media_ns``: the backend's own time of the frame (cv2's ``POS_MSEC``), if it has one.
        ``clock``: (whose clock ``timestamp_ns`` is — a :data:`CLOCKS` name —, this machine's
        clock minus the camera's and its jitter in ns, or None); None: the local clock."""
        ctl, w = self.ctl, self.ctl.words
        shape = frame.shape
        seq_at = self._seq_offsets[slot]
        base = seq_at // 8
        # descriptor words after frame_seq, in Slot order: gen, height, width, channels, dtype,
        # timestamp, pos, media time, clock, its offset and jitter (one numpy call: this runs
        # for every frame)
        ctl.u64[base + 1 : base + 12] = (
            self.gen,
            shape[0],
            shape[1],
            shape[2] if len(shape) == 3 else 0,
            dtype_code(frame.dtype),
            timestamp_ns,
            pos,
            pack_media(media_ns),
            *(pack_clock(*clock) if clock is not None else (0, 0, 0)),
        )
        self.seq += 1
        w.store(seq_at, self.seq)  # release: descriptor + pixels first
        w.store_sc(Hdr.LATEST, pack_latest(self.seq, slot))
        self.last_slot = slot
        self.captured += 1
        ctl.u64[Hdr.CAPTURED // 8] = self.captured
        ctl.u64[Hdr.LAST_FRAME_NS // 8] = timestamp_ns
        ctl.notify()
        if self.retired:
            self._drop_unreferenced_generations(dict.fromkeys(self.retired, ""))
        return self.seq

    def abandon(self, slot: int) -> None:
        self.ctl.words.store(self.ctl.layout.slot(slot, Slot.FRAME_SEQ), EMPTY)

    def _drop_unreferenced_generations(self, candidates: dict[int, str]) -> None:
        """Unlink older generations that no slot refers to any more."""
        lay, u64 = self.ctl.layout, self.ctl.u64
        in_use = {
            int(u64[lay.slot(i, Slot.GEN) // 8])
            for i in range(self.n)
            if int(u64[lay.slot(i, Slot.FRAME_SEQ) // 8]) not in (EMPTY, WRITING)
        }
        for gen in [g for g in candidates if g < self.gen and g not in in_use]:
            plat.unlink_segment(data_name(self.ctl.name, self.instance, gen))
            seg = self.retired.pop(gen, None)
            if seg is not None:
                seg.close()

    def close(self) -> None:
        self._views.clear()
        self._pins = np.empty(0, np.uint64)  # let go of the control mapping
        for seg in self.retired.values():
            seg.close()
        self.retired.clear()
        if self.data is not None:
            self.data.close()
            self.data = None


@dataclass(frozen=True)
class FrameMeta:
    """Where a pinned frame is and what it is."""

    slot: int
    seq: int
    timestamp_ns: int
    pos: int
    skipped: int
    media_ns: int | None = None
    """The backend's own time of the frame in nanoseconds (cv2's ``POS_MSEC`` x 1e6)."""
    clock: str = "local"
    """Whose clock ``timestamp_ns`` is (:data:`CLOCKS`)."""


class RingReader:
    """One reader record of a stream, in any process. Not thread-safe."""

    def __init__(self, ctl: Control, from_start: bool = False) -> None:
        self.ctl = ctl
        lay, w = ctl.layout, ctl.words
        me = self.pid = os.getpid()
        for i in range(lay.max_readers):
            if w.cas(lay.reader(i, Rdr.PID), 0, me):
                self.index = i
                break
        else:
            raise TooManyReaders(
                f"stream {ctl.name!r} has all {lay.max_readers} reader records taken"
            )
        self._f = {f: lay.reader(self.index, f) for f in Rdr}
        w.store(self._f[Rdr.START], plat.process_start_time(me) or 0)
        w.store(self._f[Rdr.PIN], NONE)
        w.store(self._f[Rdr.DELIVERED], 0)
        w.store(self._f[Rdr.SKIPPED], 0)
        w.store(self._f[Rdr.ATTACHED_NS], time.time_ns())
        # a new reader gets the newest frame first: it has not returned that one yet
        self.cursor = 0 if from_start else max(0, unpack_latest(w.load_sc(Hdr.LATEST))[0] - 1)
        w.store_sc(self._f[Rdr.CURSOR], self.cursor)
        self.delivered = 0
        self.skipped = 0
        self._jump = False
        self._gen = 0
        self._data: plat.Segment | None = None
        self._capacity = 0
        self._pinned: FrameMeta | None = None
        ctl.wake_writer()  # an every-mode writer may be holding frames for a first reader

    def acquire(self, timeout: float | None) -> FrameMeta:
        """Pin the next frame for this reader and return where it is.

        Raises StreamEnded when the stream ended (or was closed) and nothing is left,
        PublisherLost when the publisher died, ReadTimeout when ``timeout`` passed.
        """
        assert self._pinned is None, "release() the pinned frame first"
        if os.getpid() != self.pid:
            raise FramebusError(
                "this reader was created in another process (before a fork): attach again here"
            )
        ctl, lay, w = self.ctl, self.ctl.layout, self.ctl.words
        pin = self._f[Rdr.PIN]
        deadline = None if timeout is None else time.monotonic() + timeout
        futex = ctl.seg.address + Hdr.FRAME_FUTEX
        while True:
            token = w.load32(Hdr.FRAME_FUTEX)  # before the check: no lost wake-up
            latest = w.load_sc(Hdr.LATEST)
            seq, slot = unpack_latest(latest)
            if slot >= lay.n_slots:  # only a forged or corrupted header says so
                raise IncompatibleStream(f"stream {ctl.name!r}: latest slot {slot} out of range")
            if seq > self.cursor:
                target = seq
                if ctl.mode is Mode.EVERY and not self._jump:
                    target = self.cursor + 1
                    slot = target % lay.n_slots
                w.store_sc(pin, slot)
                w.fence()  # pairs with the writer's fence between mark and check
                if w.load(lay.slot(slot, Slot.FRAME_SEQ)) == target:
                    self._jump = False
                    meta = self._meta(slot, target)
                    if meta is not None:
                        self._pinned = meta
                        return meta
                    w.store(pin, NONE)  # its pixels are gone (the stream is being removed)
                else:
                    w.store(pin, NONE)
                    if target == seq and w.load_sc(Hdr.LATEST) == latest:
                        # the newest frame stays in its slot until a newer one is published:
                        # only a forged or corrupted header says otherwise (retrying would spin)
                        raise IncompatibleStream(
                            f"stream {ctl.name!r}: bad header: frame {seq} is not in slot {slot}"
                        )
                    # overwritten (a late join in every mode): go to the newest frame
                    self._jump = ctl.mode is Mode.EVERY
                    continue
            over = ctl.end_error()
            if over is not None:
                raise over
            wait = _LIVENESS_PERIOD
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise ReadTimeout(f"no new frame from {ctl.name!r} within {timeout} s")
            plat.futex_wait(futex, token, wait)
            if w.load32(Hdr.FRAME_FUTEX) == token and not ctl.publisher_alive():
                raise PublisherLost(f"the publisher of stream {ctl.name!r} died")

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until :meth:`acquire` would not wait: a frame newer than
        this reader's last is published, or the stream ended or lost its publisher (acquire
        then says so). Takes nothing. Safe to call from another thread than the one that
        acquires (it only reads: what a gatherer's waiting threads do)."""
        ctl, w = self.ctl, self.ctl.words
        deadline = time.monotonic() + timeout
        while True:
            token = ctl.change_token()
            pinned = self._pinned  # (the frame held counts as seen)
            seen = self.cursor if pinned is None else max(self.cursor, pinned.seq)
            if unpack_latest(w.load_sc(Hdr.LATEST))[0] > seen or ctl.end_error():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ctl.wait_change(token, min(left, _LIVENESS_PERIOD))
            if ctl.change_token() == token and not ctl.publisher_alive():
                return True

    def _meta(self, slot: int, seq: int) -> FrameMeta | None:
        desc = self.ctl.layout.slot(slot, Slot.FRAME_SEQ) // 8
        gen = int(self.ctl.u64[desc + Slot.GEN // 8])
        if not gen:  # generations start at 1: only a forged or corrupted descriptor says 0
            raise IncompatibleStream(f"stream {self.ctl.name!r}: slot {slot} names generation 0")
        if gen != self._gen and not self._map(gen):
            return None
        ts = int(self.ctl.u64[desc + Slot.TIMESTAMP_NS // 8])
        pos = int(self.ctl.u64[desc + Slot.POS // 8])
        media_ns = unpack_media(int(self.ctl.u64[desc + Slot.MEDIA_TIME // 8]))
        clock = unpack_clock(int(self.ctl.u64[desc + Slot.CLOCK // 8]), 0, 0)[0]
        return FrameMeta(slot, seq, ts, pos, max(0, seq - self.cursor - 1), media_ns, clock)

    def _map(self, gen: int) -> bool:
        try:
            seg = plat.Segment.open(data_name(self.ctl.name, self.ctl.get(Hdr.INSTANCE), gen))
        except FileNotFoundError:
            return False  # retired or removed already: the frame is gone
        except OSError as exc:  # refused (not this user's regular file), unreadable...
            raise IncompatibleStream(f"stream {self.ctl.name!r}: {exc}") from None
        if self._data is not None:
            self._data.close()
        self._data, self._gen = seg, gen
        self._capacity = seg.size // self.ctl.layout.n_slots
        return True

    def view(self, meta: FrameMeta) -> np.ndarray:
        """A read-only array over the pinned slot, valid until :meth:`release`."""
        assert self._data is not None
        desc = self.ctl.layout.slot(meta.slot, Slot.FRAME_SEQ) // 8
        d = self.ctl.u64[desc : desc + 8]
        h, wd, ch = int(d[Slot.HEIGHT // 8]), int(d[Slot.WIDTH // 8]), int(d[Slot.CHANNELS // 8])
        shape = (h, wd, ch) if ch else (h, wd)
        try:
            dtype = dtype_from_code(int(d[Slot.DTYPE // 8]))
        except ValueError as exc:
            raise IncompatibleStream(f"stream {self.ctl.name!r}: {exc}") from None
        nbytes = h * wd * max(ch, 1) * dtype.itemsize
        if not (h and wd and ch <= MAX_CHANNELS and nbytes <= self._capacity):
            raise IncompatibleStream(
                f"stream {self.ctl.name!r}: slot {meta.slot} describes a {shape} frame "
                f"that does not fit its {self._capacity}-byte slot"
            )
        arr = np.ndarray(shape, dtype, buffer=self._data.mm, offset=meta.slot * self._capacity)
        arr.flags.writeable = False
        return arr

    def release(self) -> None:
        """Mark the pinned frame consumed and unpin it."""
        meta = self._pinned
        if meta is None:
            return
        self._pinned = None
        w = self.ctl.words
        self.skipped += meta.skipped
        self.delivered += 1
        self.cursor = meta.seq
        w.store(self._f[Rdr.CURSOR], meta.seq)  # release: our reads of the slot come first
        w.store(self._f[Rdr.PIN], NONE)
        w.store(self._f[Rdr.DELIVERED], self.delivered)
        w.store(self._f[Rdr.SKIPPED], self.skipped)
        if self.ctl.mode is Mode.EVERY:
            self.ctl.wake_writer()

    def skip_to(self, seq: int) -> None:
        """Consume every frame before ``seq`` unread: the next frame is ``seq`` or newer (after
        a seek, the ring's frames from the old position are stale). Wakes an every-mode
        writer that waits for this reader."""
        assert self._pinned is None, "release() the pinned frame first"
        if seq - 1 <= self.cursor:
            return
        self.cursor = seq - 1
        self._jump = False
        self.ctl.words.store_sc(self._f[Rdr.CURSOR], self.cursor)
        self.ctl.wake_writer()

    def close(self) -> None:
        """Give the reader record back (idempotent)."""
        if self.index < 0:
            return
        w = self.ctl.words
        self._pinned = None
        if os.getpid() == self.pid:  # a forked copy must not free its parent's record
            w.store(self._f[Rdr.PIN], NONE)
            w.store(self._f[Rdr.CURSOR], NONE)
            w.store(self._f[Rdr.START], 0)
            w.store_sc(self._f[Rdr.PID], 0)
        self.index = -1
        self.ctl.wake_writer()
        if self._data is not None:
            self._data.close()
            self._data = None
