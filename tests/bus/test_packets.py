"""The packet ring (framebus.bus._packets): records in order, wrap-around with padding, a reader
that falls behind resumes at the newest keyframe, a writer in another process never hands a
reader a torn record, and a segment of anyone's bytes never crashes or hangs a reader."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Procs
from framebus import _platform as plat
from framebus.bus import PacketCodec, PacketRingReader, PacketRingWriter
from framebus.bus._packets import MIN_CAPACITY, PACKET_HEADER, packet_name, segment_size
from fuzzing import fuzz
from helpers.packet_writer import payload

INSTANCE = 0x1234ABCD
_names = itertools.count()


@contextmanager
def ring(
    name: str, capacity: int = MIN_CAPACITY
) -> Iterator[tuple[PacketRingWriter, PacketRingReader]]:
    writer = PacketRingWriter.create(name, INSTANCE, PacketCodec.H264, capacity)
    reader = PacketRingReader.open(name, INSTANCE, writer.seg.size)
    try:
        yield writer, reader
    finally:
        reader.close()
        writer.close()
        plat.unlink_segment(packet_name(name, INSTANCE))


def test_records_come_in_order_across_the_wrap(stream_name: str) -> None:
    with ring(stream_name) as (writer, reader):
        assert reader.codec is PacketCodec.H264
        got = []
        for index in range(40):  # 40 x ~10 KB through a 64 KiB ring: several laps, with padding
            data = payload(index)[: 9000 + index * 37]
            assert writer.write(data, index % 5 == 0, timestamp_ns=1000 + index)
            rec = reader.next()
            assert rec is not None and reader.next() is None
            got.append(rec)
            assert rec.data == data and rec.key == (index % 5 == 0)
            assert rec.index == index and rec.timestamp_ns == 1000 + index
        assert reader.lost == 0


def test_a_reader_behind_resumes_at_the_newest_keyframe(stream_name: str) -> None:
    with ring(stream_name) as (writer, reader):
        for index in range(30):  # ~300 KB into 64 KiB: the reader's place is overwritten
            writer.write(payload(index)[:10000], index % 4 == 0)
        rec = reader.next()
        assert rec is not None and rec.key and rec.index == 28  # the newest keyframe
        rest = reader.next()
        assert rest is not None and rest.index == 29 and reader.next() is None


def test_a_new_reader_starts_now_and_can_seek_the_newest_keyframe(stream_name: str) -> None:
    with ring(stream_name) as (writer, _):
        for index in range(6):
            writer.write(payload(index)[:100], index == 3)
        late = PacketRingReader.open(stream_name, INSTANCE, writer.seg.size)
        try:
            assert late.next() is None  # from now on
            assert late.seek_key()
            assert [r.index for r in iter(late.next, None)] == [3, 4, 5]
        finally:
            late.close()


def test_an_access_unit_too_large_is_left_out_and_shows_as_lost(stream_name: str) -> None:
    with ring(stream_name) as (writer, reader):
        writer.write(b"a" * 100, True)
        assert not writer.write(b"b" * (MIN_CAPACITY // 4 + 1), False)
        writer.write(b"c" * 100, True)
        assert [r.index for r in iter(reader.next, None)] == [0, 2] and reader.lost == 1


def test_a_reconnect_continues_the_ring(stream_name: str) -> None:
    with ring(stream_name) as (writer, reader):
        writer.write(b"x" * 64, True)
        again = PacketRingWriter.create(stream_name, INSTANCE, PacketCodec.H264, MIN_CAPACITY)
        again.write(b"y" * 64, True)
        again.close()
        assert [r.index for r in iter(reader.next, None)] == [0, 1]


def test_a_writer_in_another_process_never_hands_out_a_torn_record(
    stream_name: str, procs: Procs
) -> None:
    proc = procs.python("packet_writer.py", stream_name, str(INSTANCE), "3")
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "READY"
        reader = PacketRingReader.open(stream_name, INSTANCE, segment_size(256 * 1024))
        try:
            seen = checked = 0
            while proc.poll() is None:
                rec = reader.next()
                if rec is None:
                    continue
                assert rec.data == payload(rec.index), f"record {rec.index} torn"
                checked += 1
                seen = rec.index
            assert checked > 100 and seen > checked  # the reader lagged: overwrites happened
        finally:
            reader.close()
        out, err = proc.communicate(timeout=30)
        assert out.startswith("DONE"), err
    finally:
        plat.unlink_segment(packet_name(stream_name, INSTANCE))


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


@given(
    st.lists(
        st.tuples(
            st.integers(0, segment_size(MIN_CAPACITY) - 8), st.binary(min_size=1, max_size=16)
        ),
        max_size=12,
    ),
    st.integers(0, 12),
)
@fuzz(150)
def test_a_segment_of_anyones_bytes_never_crashes_or_hangs_a_reader(
    writes: list[tuple[int, bytes]], records: int
) -> None:
    name = f"fz{os.getpid()}-{next(_names)}"
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        with ring(name) as (writer, reader):
            for index in range(records):
                writer.write(payload(index)[: 3000 + 997 * index], index % 3 == 0)
            size = writer.seg.size
            for at, data in writes:  # anyone may write into the segment
                data = data[: size - at]
                writer.seg.mm[at : at + len(data)] = data
            for _ in range(2 * records + 4):
                rec = reader.next()
                if rec is None:
                    break
                assert len(rec.data) <= MIN_CAPACITY
            reader.seek_key()
            reader.next()
            try:
                again = PacketRingReader.open(name, INSTANCE, writer.seg.size)
            except ValueError:
                pass  # a garbled magic or capacity: refused
            else:
                again.close()
    except Hang:
        pytest.fail("a reader hung on a garbled segment")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_the_header_size_is_checked_before_mapping(stream_name: str) -> None:
    with pytest.raises(ValueError):
        PacketRingReader.open(stream_name, INSTANCE, PACKET_HEADER)
    with pytest.raises(ValueError):
        PacketRingReader.open(stream_name, INSTANCE, 1 << 40)
