"""The packet ring: a stream's encoded access units (the camera's own H.264 or H.265), beside
its frame ring, for any number of readers in any processes.

One segment per stream instance, ``framebus.<name>.<instance>-pkt``, made by the capture when
its source hands out access units (framebus's RTSP client), announced in the control header
(``Hdr.PACKETS``: the segment's size, 0 for none). Layout: a 128-byte header of 64-bit words,
then ``capacity`` bytes of records at monotonic 64-bit byte *positions* (a record at position
``p`` lies at ``p % capacity``). A record is a 32-byte header and the access unit, padded to 32
bytes (so that whatever room is left before the end holds at least a header); it never wraps:
where one would not fit before the end, a padding record fills the rest.

Protocol (one writer, readers that never write, so a reader cannot hold the writer up):

* the writer stores ``VALID_FROM`` (positions below it may be overwritten: the new record's end
  minus the capacity), fences, writes the record, then stores ``HEAD`` (the end of the newest
  record) and ``LAST_KEY`` (where the newest keyframe starts) and bumps the futex word;
* a reader copies a record between ``cursor`` and ``HEAD``, fences, and then checks that
  ``VALID_FROM`` has not passed its cursor: if it has, the copy may be torn, so it is thrown
  away and the reader starts again at the newest keyframe (``lost`` counts the frames skipped).

Drop policy, stated once: the ring holds the newest ``capacity`` bytes of access units (8 MiB:
tens of seconds of a camera's stream); it never waits for a reader. A reader that falls more
than that behind loses what was overwritten and resumes at the newest keyframe. An access unit
over a quarter of the capacity is not written (counted in ``TOO_LARGE``; the next readers see
the gap in the indexes and wait for a keyframe).

Every word and byte of the segment is anyone's: lengths, positions and flags are checked
before use, and a garbled record is skipped, never trusted to size an allocation.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from .. import _platform as plat
from ._layout import CONTROL_PREFIX

__all__ = [
    "DEFAULT_CAPACITY",
    "PACKET_HEADER",
    "PacketCodec",
    "PacketRecord",
    "PacketRingReader",
    "PacketRingWriter",
    "PktHdr",
    "packet_name",
    "segment_size",
]

MAGIC = int.from_bytes(b"FBPKTS01", "little")
DEFAULT_CAPACITY = 8 * 1024 * 1024
MIN_CAPACITY = 64 * 1024
MAX_CAPACITY = 256 * 1024 * 1024
PACKET_HEADER = 128
RECORD_HEADER = 32
NONE = (1 << 64) - 1


class PacketCodec(enum.IntEnum):
    H264 = 1
    H265 = 2


class PktHdr(enum.IntEnum):
    """Word offsets in the packet segment's header."""

    MAGIC = 0
    CAPACITY = 8
    HEAD = 16  # position after the newest record
    VALID_FROM = 24  # positions below this may be overwritten
    LAST_KEY = 32  # position of the newest keyframe record, NONE if none
    COUNT = 40  # access units written (the next one's index)
    CODEC = 48
    FUTEX = 56  # 32-bit, bumped after each record
    TOO_LARGE = 64  # access units not written: over a quarter of the capacity


class _Flag(enum.IntFlag):
    KEY = 1
    PAD = 2


def packet_name(name: str, instance: int) -> str:
    """The packet segment of stream ``name``'s instance ``instance``: a data segment of that
    instance (removed with it)."""
    return f"{CONTROL_PREFIX}{name}.{instance:08x}-pkt"


def segment_size(capacity: int) -> int:
    return PACKET_HEADER + capacity


ALIGN = 32  # = RECORD_HEADER: the room left before the end is 0 or holds a header


def _record_size(length: int) -> int:
    return RECORD_HEADER + (length + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True)
class PacketRecord:
    """One access unit as the ring holds it."""

    data: bytes
    key: bool
    index: int
    """The access unit's number in this stream: consecutive unless some were lost."""
    timestamp_ns: int
    """``time.time_ns()`` when its last packet arrived."""


class PacketRingWriter:
    """The capture's side: appends access units. Not thread-safe (one capture thread)."""

    def __init__(self, seg: plat.Segment, codec: PacketCodec) -> None:
        self.seg = seg
        w = seg.words
        self.capacity = seg.size - PACKET_HEADER
        if not MIN_CAPACITY <= self.capacity <= MAX_CAPACITY or self.capacity % ALIGN:
            raise ValueError(f"a packet segment of {seg.size} bytes")
        if w.load(PktHdr.MAGIC) != MAGIC:  # a fresh segment; a reconnect reuses its ring
            w.store(PktHdr.CAPACITY, self.capacity)
            w.store(PktHdr.LAST_KEY, NONE)
            w.store(PktHdr.MAGIC, MAGIC)
        w.store(PktHdr.CODEC, int(codec))
        # an earlier capture's ring goes on (readers see no jump); its words are anyone's, so
        # the head is aligned and the counts bounded before they are used
        self._head = -(-w.load(PktHdr.HEAD) // ALIGN) * ALIGN % (1 << 62)
        self._count = w.load(PktHdr.COUNT) % (1 << 62)

    @classmethod
    def create(
        cls, name: str, instance: int, codec: PacketCodec, capacity: int = DEFAULT_CAPACITY
    ) -> PacketRingWriter:
        """Create the segment (or reuse the one an earlier capture of this instance made)."""
        if not MIN_CAPACITY <= capacity <= MAX_CAPACITY or capacity % ALIGN:
            raise ValueError(f"a packet ring of {capacity} bytes")
        seg_name = packet_name(name, instance)
        try:
            seg = plat.Segment.create(seg_name, segment_size(capacity))
        except FileExistsError:  # an earlier capture's: reused if it is one, else made anew
            seg = plat.Segment.open(seg_name, max_size=segment_size(MAX_CAPACITY))
            if seg.size != segment_size(capacity) or seg.words.load(PktHdr.CAPACITY) != capacity:
                seg.close()
                plat.unlink_segment(seg_name)
                seg = plat.Segment.create(seg_name, segment_size(capacity))
        try:
            return cls(seg, codec)
        except BaseException:
            seg.close()
            raise

    def write(self, data: bytes, key: bool, timestamp_ns: int | None = None) -> bool:
        """Append one access unit; False if it is too large to keep (counted)."""
        w = self.seg.words
        if len(data) > self.capacity // 4:
            w.store(PktHdr.TOO_LARGE, w.load(PktHdr.TOO_LARGE) + 1)
            self._count += 1  # its index is used: readers see the gap
            w.store(PktHdr.COUNT, self._count)
            return False
        size = _record_size(len(data))
        at = self._head % self.capacity
        if at + size > self.capacity:  # no wrap inside a record: pad to the end first
            self._put(self._head, self.capacity - at, b"", _Flag.PAD, 0, 0)
            self._head += self.capacity - at
        stamp = time.time_ns() if timestamp_ns is None else timestamp_ns
        self._put(self._head, size, data, _Flag.KEY if key else _Flag(0), self._count, stamp)
        start, self._head = self._head, self._head + size
        self._count += 1
        w.store(PktHdr.COUNT, self._count)
        w.store(PktHdr.HEAD, self._head)
        if key:
            w.store(PktHdr.LAST_KEY, start)
        w.bump32(PktHdr.FUTEX)
        plat.futex_wake(self.seg.address + PktHdr.FUTEX)
        return True

    def _put(self, pos: int, size: int, data: bytes, flags: int, index: int, stamp: int) -> None:
        w = self.seg.words
        w.store(PktHdr.VALID_FROM, max(0, pos + size - self.capacity))
        w.fence()  # the overwrite is announced before any byte of it is written
        at = PACKET_HEADER + pos % self.capacity
        mm = self.seg.mm
        head = (
            len(data).to_bytes(4, "little")
            + int(flags).to_bytes(4, "little")
            + index.to_bytes(8, "little")
            + stamp.to_bytes(8, "little")
            + (size - RECORD_HEADER).to_bytes(8, "little")
        )
        mm[at : at + RECORD_HEADER] = head
        if data:
            mm[at + RECORD_HEADER : at + RECORD_HEADER + len(data)] = data

    def close(self) -> None:
        self.seg.close()


class PacketRingReader:
    """A reader's side: the records after its cursor, checked against overwrites. One thread
    per reader. ``lost``: access units skipped (overwritten before this reader got to them, or
    never written)."""

    def __init__(self, seg: plat.Segment) -> None:
        w = seg.words
        if w.load(PktHdr.MAGIC) != MAGIC:
            raise ValueError("not a framebus packet ring")
        capacity = w.load(PktHdr.CAPACITY)
        if (
            capacity != seg.size - PACKET_HEADER
            or not MIN_CAPACITY <= capacity <= MAX_CAPACITY
            or capacity % ALIGN
        ):
            raise ValueError(f"a packet ring of {capacity} bytes in a {seg.size}-byte segment")
        self.seg = seg
        self.capacity = capacity
        self.cursor = w.load(PktHdr.HEAD)  # from now on
        self.lost = 0
        self._last_index: int | None = None

    @classmethod
    def open(cls, name: str, instance: int, size: int) -> PacketRingReader:
        """Map the packet segment of a stream whose header announces ``size`` bytes."""
        if not segment_size(MIN_CAPACITY) <= size <= segment_size(MAX_CAPACITY):
            raise ValueError(f"a packet segment of {size} bytes")
        seg = plat.Segment.open(packet_name(name, instance), max_size=size)
        try:
            return cls(seg)
        except BaseException:
            seg.close()
            raise

    @property
    def codec(self) -> PacketCodec | None:
        try:
            return PacketCodec(self.seg.words.load(PktHdr.CODEC))
        except ValueError:
            return None

    def futex_token(self) -> int:
        return self.seg.words.load32(PktHdr.FUTEX)

    def wait(self, token: int, timeout: float) -> None:
        """Sleep until a record is written after ``token`` was read, or ``timeout``."""
        plat.futex_wait(self.seg.address + PktHdr.FUTEX, token, timeout)

    def seek_key(self) -> bool:
        """Move the cursor to the newest keyframe; False if there is none (cursor unchanged)."""
        w = self.seg.words
        key, head = w.load(PktHdr.LAST_KEY), w.load(PktHdr.HEAD)
        if key == NONE or not max(head - self.capacity, w.load(PktHdr.VALID_FROM)) <= key < head:
            return False
        self.cursor = key
        return True

    def next(self) -> PacketRecord | None:
        """The record at the cursor, moving past it; None when there is none yet. After an
        overwrite (or a garbled record) the cursor moves to the newest keyframe, or to the
        head if that is not ahead of it."""
        w = self.seg.words
        while True:
            head = w.load(PktHdr.HEAD)
            if self.cursor >= head:
                self.cursor = head  # (a garbled HEAD may have gone back)
                return None
            if head - self.cursor > self.capacity or w.load(PktHdr.VALID_FROM) > self.cursor:
                self._resync()
                continue
            record = self._copy(self.cursor)
            w.fence()  # the copy is done before VALID_FROM is read again
            if w.load(PktHdr.VALID_FROM) > self.cursor or record is None:
                self._resync()  # overwritten while copied, or garbled
                continue
            size, rec = record
            self.cursor += size
            if rec is None:
                continue  # padding
            if self._last_index is not None and rec.index > self._last_index + 1:
                self.lost += rec.index - self._last_index - 1
            self._last_index = rec.index
            return rec

    def _resync(self) -> None:
        """Jump to the newest keyframe if it is ahead of the cursor, else to the head."""
        old = self.cursor
        if not self.seek_key() or self.cursor <= old:
            self.cursor = self.seg.words.load(PktHdr.HEAD)

    def _copy(self, pos: int) -> tuple[int, PacketRecord | None] | None:
        """(record size, the record or None for padding), or None if its header is garbled."""
        at = pos % self.capacity
        room = self.capacity - at
        if room < RECORD_HEADER or pos % ALIGN:
            return None
        base = PACKET_HEADER + at
        head = bytes(self.seg.mm[base : base + RECORD_HEADER])
        length = int.from_bytes(head[0:4], "little")
        flags = int.from_bytes(head[4:8], "little")
        index = int.from_bytes(head[8:16], "little")
        stamp = int.from_bytes(head[16:24], "little")
        body = int.from_bytes(head[24:32], "little")
        if body > room - RECORD_HEADER or body % ALIGN or length > body:
            return None
        size = RECORD_HEADER + body
        if flags & _Flag.PAD:
            return size, None
        data = bytes(self.seg.mm[base + RECORD_HEADER : base + RECORD_HEADER + length])
        return size, PacketRecord(data, bool(flags & _Flag.KEY), index, stamp)

    def close(self) -> None:
        self.seg.close()
