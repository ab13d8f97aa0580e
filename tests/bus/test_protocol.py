"""The ring protocol in one process, on real shared memory: no capture process, no publisher.

A test drives a :class:`RingWriter` and one or more :class:`RingReader` s step by step, so each
rule of docs/design.md (section 3) is checked at the point where it matters.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import framebus
from framebus.bus import Control, Mode, RingReader, RingWriter, remove_stream
from framebus.bus._control import create_control
from framebus.bus._layout import NONE, REAPING, Rdr, Slot

SHAPE = (4, 6, 3)


class Ring:
    """A stream's control segment, its writer, and helpers to publish numbered frames."""

    def __init__(self, name: str, slots: int, mode: Mode, max_readers: int = 4) -> None:
        self.ctl = create_control(name, slots, max_readers, mode, "test")
        self.writer = RingWriter(self.ctl)
        self.readers: list[RingReader] = []

    def reader(self, from_start: bool = False) -> RingReader:
        r = RingReader(Control.open(self.ctl.name), from_start=from_start)
        self.readers.append(r)
        return r

    def try_publish(self, value: int, shape: tuple[int, ...] = SHAPE) -> int | None:
        """Publish a frame filled with ``value``; None if no slot could be taken (every slot
        the writer may use is pinned, or an every-mode writer waits for its readers)."""
        deadline = time.monotonic() + 0.3
        slot = self.writer.acquire(stop=lambda: time.monotonic() > deadline)
        if slot is None:
            return None
        buf = self.writer.buffer(slot, shape, np.dtype(np.uint8))
        buf.fill(value)
        self.writer.commit(slot, buf, time.time_ns(), value)
        return slot

    def publish(self, value: int, shape: tuple[int, ...] = SHAPE) -> int:
        slot = self.try_publish(value, shape)
        assert slot is not None, "the writer found no slot"
        return slot

    def close(self) -> None:
        for r in self.readers:
            ctl = r.ctl
            r.close()
            ctl.close()
        self.writer.close()
        remove_stream(self.ctl.name)
        self.ctl.close()


@pytest.fixture
def ring(stream_name: str) -> Iterator[Callable[..., Ring]]:
    made: list[Ring] = []

    def make(slots: int = 3, mode: Mode = Mode.LATEST, max_readers: int = 4) -> Ring:
        made.append(Ring(stream_name, slots, mode, max_readers))
        return made[-1]

    yield make
    for r in made:
        r.close()


def read(reader: RingReader, timeout: float = 1.0) -> tuple[int, int]:
    """(value of the frame, skipped) of the next frame, released again."""
    meta = reader.acquire(timeout)
    try:
        view = reader.view(meta)
        assert (view == view.flat[0]).all(), "torn frame"
        return int(view.flat[0]), meta.skipped
    finally:
        reader.release()


def test_publish_then_read_then_wait(ring: Callable[..., Ring]) -> None:
    r = ring()
    reader = r.reader()
    r.publish(7)
    assert read(reader) == (7, 0)
    with pytest.raises(framebus.ReadTimeout):
        reader.acquire(0.05)  # nothing newer than what it returned


def test_latest_reader_gets_the_newest_and_counts_what_it_skipped(
    ring: Callable[..., Ring],
) -> None:
    r = ring(slots=3)
    reader = r.reader()
    for v in range(1, 11):  # laps the 3-slot ring three times between two reads
        r.publish(v)
    assert read(reader) == (10, 9)
    r.publish(11)
    assert read(reader) == (11, 0)
    assert (reader.delivered, reader.skipped) == (2, 9)


def test_writer_never_takes_a_pinned_slot_nor_the_newest(ring: Callable[..., Ring]) -> None:
    r = ring(slots=3)
    reader = r.reader()
    pinned_slot = r.publish(1)
    meta = reader.acquire(1.0)
    assert meta.slot == pinned_slot
    used = {r.publish(v) for v in range(2, 20)}
    assert pinned_slot not in used  # the pinned frame is never written under the reader
    assert (reader.view(meta) == 1).all()
    reader.release()
    newest = r.publish(20)
    assert r.publish(21) != newest  # the newest frame stays readable


def test_writer_waits_when_every_usable_slot_is_pinned(ring: Callable[..., Ring]) -> None:
    r = ring(slots=2)
    a, b = r.reader(), r.reader()
    r.publish(1)
    a_meta = a.acquire(1.0)  # pins frame 1
    r.publish(2)
    b.acquire(1.0)  # pins frame 2, now the newest
    assert r.try_publish(3) is None  # slot of 1 pinned, slot of 2 is the newest
    a.release()
    assert r.try_publish(3) == a_meta.slot
    b.release()


def test_every_mode_writer_waits_for_the_slowest_reader(ring: Callable[..., Ring]) -> None:
    r = ring(slots=3, mode=Mode.EVERY)
    assert r.try_publish(1) is None  # every mode holds frames until a first reader attaches
    fast, slow = r.reader(from_start=True), r.reader(from_start=True)
    for v in (1, 2, 3):
        r.publish(v)
    assert [read(fast)[0] for _ in range(3)] == [1, 2, 3]
    assert r.try_publish(4) is None  # slot of frame 1 is not consumed by the slow reader
    assert read(slow) == (1, 0)
    r.publish(4)  # now it is
    assert [read(slow)[0] for _ in range(3)] == [2, 3, 4]
    assert read(fast) == (4, 0)


def test_every_mode_late_reader_jumps_to_the_newest_when_its_frame_is_gone(
    ring: Callable[..., Ring],
) -> None:
    r = ring(slots=2, mode=Mode.EVERY)
    first = r.reader(from_start=True)
    r.publish(1)
    assert read(first)[0] == 1
    late = r.reader()  # registered after frame 1: its first target is frame 1 (the newest)
    r.publish(2)
    assert read(first)[0] == 2
    assert read(late)[0] == 1  # frame 1 was held for it (its cursor was 0)
    r.publish(3)  # reuses frame 1's slot: every reader consumed frame 1
    late.cursor = 0  # as if late had registered before frame 1 and then lost it
    value, skipped = read(late)
    assert value == 3 and skipped == 2


def test_a_larger_frame_starts_a_new_generation_and_the_old_one_goes(
    ring: Callable[..., Ring], stream_name: str
) -> None:
    r = ring(slots=2)
    reader = r.reader()
    r.publish(1, shape=(4, 4))
    assert read(reader) == (1, 0)
    r.publish(2, shape=(200, 300, 3))  # does not fit the 4 KiB slots
    assert r.ctl.get(int(framebus.bus._layout.Hdr.DATA_GEN)) == 2
    meta = reader.acquire(1.0)
    assert reader.view(meta).shape == (200, 300, 3)
    reader.release()
    r.publish(3, shape=(200, 300, 3))
    r.publish(4, shape=(200, 300, 3))  # no slot refers to generation 1 any more
    data = [s for s in framebus._platform.list_segments(f"framebus.{stream_name}.")]
    assert data == [f"framebus.{stream_name}.{r.ctl.instance:08x}-2"]


def test_a_dead_readers_record_and_pin_are_freed(ring: Callable[..., Ring]) -> None:
    r = ring(slots=2, max_readers=2)
    live = r.reader()
    # a pid that no longer runs
    dead_pid = int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True).stdout)
    lay, w = r.ctl.layout, r.ctl.words
    slot = r.publish(1)
    dead = 1 - live.index
    w.store(lay.reader(dead, Rdr.PID), dead_pid)  # as a reader killed mid-read leaves it
    w.store(lay.reader(dead, Rdr.START), 12345)
    w.store(lay.reader(dead, Rdr.PIN), slot)
    w.store(lay.reader(dead, Rdr.CURSOR), 0)
    with pytest.raises(framebus.TooManyReaders):
        RingReader(r.ctl)
    r.writer._next_reap = 0.0  # reap at the next acquire
    r.publish(2)
    assert w.load(lay.reader(dead, Rdr.PID)) == 0
    assert w.load(lay.reader(dead, Rdr.PIN)) == NONE
    assert w.load(lay.reader(dead, Rdr.PID)) != REAPING
    assert read(live)[0] == 2
    r.publish(3)
    assert r.publish(4) == slot or r.publish(5) == slot  # the dead reader's slot is usable


def test_a_restarted_writer_forgets_frames_it_never_published(ring: Callable[..., Ring]) -> None:
    r = ring(slots=3, mode=Mode.EVERY)
    reader = r.reader(from_start=True)
    r.publish(1)
    deadline = time.monotonic() + 0.3
    slot = r.writer.acquire(stop=lambda: time.monotonic() > deadline)  # then "killed"
    assert slot is not None
    lay, w = r.ctl.layout, r.ctl.words
    assert w.load(lay.slot(slot, Slot.FRAME_SEQ)) == (1 << 64) - 1  # WRITING
    r.writer.close()
    r.writer = RingWriter(r.ctl)  # the next capture after a reconnect
    assert w.load(lay.slot(slot, Slot.FRAME_SEQ)) == 0  # EMPTY: no reader waits for it
    r.publish(2)
    assert [read(reader)[0] for _ in range(2)] == [1, 2]
