"""The GOP-aware mailbox: in order from a keyframe, bounded, a consumer behind restarts at the
next keyframe; checked on its own and as a property over any put/get sequence."""

from __future__ import annotations

import itertools
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framebus import FrameInfo, ReadTimeout, SinkClosed, StreamEnded
from framebus._h264 import AccessUnit
from framebus.sinks import Encoded
from framebus.sinks.gop import MAX_LAG, MAX_PENDING, GopSlot
from fuzzing import fuzz

FPS = 25.0


def item(seq: int, key: bool = False, fps: float = FPS) -> Encoded[AccessUnit]:
    info = FrameInfo(seq=seq, timestamp=1000 + seq / fps, pos=seq, skipped=0, width=2, height=2)
    return Encoded(AccessUnit(b"%d" % seq, key, "avc1.42C01E", 2, 2), info)


class Clock:
    """A clock the test moves: one frame interval per put (a consumer that takes nothing)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(slot: GopSlot) -> list[int]:
    out = []
    while True:
        try:
            out.append(slot.get(0).info.seq)
        except ReadTimeout:
            return out


def test_a_new_consumer_waits_for_a_keyframe() -> None:
    slot = GopSlot()
    for seq in range(3):
        slot.put(item(seq))
    assert drain(slot) == []
    slot.put(item(3, key=True))
    slot.put(item(4))
    assert drain(slot) == [3, 4]
    assert slot.stats().dropped == 3 and slot.stats().delivered == 2


def test_frames_come_in_order_while_the_consumer_keeps_up() -> None:
    slot = GopSlot()
    slot.put(item(0, key=True))
    got = []
    for seq in range(1, 100):
        slot.put(item(seq))
        got += drain(slot)
    assert got == list(range(100))
    assert slot.stats().behind == 0


def test_a_consumer_behind_drops_to_the_next_keyframe() -> None:
    clock = Clock()
    slot = GopSlot(clock=clock)
    slot.put(item(0, key=True))
    lag = int(MAX_LAG * FPS)  # frames that fit in the lag bound
    for seq in range(1, lag + 2):
        clock.now += 1 / FPS
        slot.put(item(seq))
    assert slot.stats().behind == 1
    assert drain(slot) == []  # everything held was dropped at once
    slot.put(item(lag + 2))
    assert drain(slot) == []  # not a keyframe
    slot.put(item(lag + 3, key=True))
    assert drain(slot) == [lag + 3]


def test_the_count_bounds_a_high_frame_rate() -> None:
    slot = GopSlot()
    slot.put(item(0, key=True, fps=10_000))
    for seq in range(1, MAX_PENDING + 1):
        slot.put(item(seq, fps=10_000))
    assert slot.stats().behind == 1 and slot.pending == 0


def test_a_prefill_starts_at_once_and_is_not_a_lag() -> None:
    clock = Clock()
    slot = GopSlot(clock=clock)
    gop = [item(0, key=True)] + [item(seq) for seq in range(1, 300)]  # 12 s of frames
    slot.prefill(gop)
    slot.put(item(300))
    assert slot.stats().behind == 0  # more than MAX_PENDING, captured long ago: not a lag
    assert drain(slot) == list(range(301))


def test_a_prefill_must_start_at_a_keyframe() -> None:
    slot = GopSlot()
    slot.prefill([item(1), item(2)])
    assert slot.pending == 0


def test_skip_to_key_restarts_the_consumer() -> None:
    slot = GopSlot()
    slot.put(item(0, key=True))
    assert drain(slot) == [0]
    slot.put(item(1))
    slot.skip_to_key()  # no keyframe held: the next one
    slot.put(item(2))
    slot.put(item(3, key=True))
    assert drain(slot) == [3]


def test_close_wakes_a_waiter_and_close_with_an_error_keeps_what_is_held() -> None:
    slot = GopSlot()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            slot.get(10)
        except SinkClosed as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    slot.close()
    waiter.join(5)
    assert len(errors) == 1 and not slot.put(item(0, key=True))

    ended = GopSlot()
    ended.put(item(0, key=True))
    ended.close(StreamEnded("over"))
    assert ended.get(0).info.seq == 0
    with pytest.raises(StreamEnded):
        ended.get(0)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.booleans(), st.floats(0, 0.3)),
            st.tuples(st.just("get"), st.integers(0, 5), st.just(0.0)),
        ),
        max_size=300,
    )
)
@fuzz(200)
def test_what_a_consumer_gets_always_decodes(ops: list[tuple[str, object, float]]) -> None:
    """Whatever the producer and the consumer do: every run of frames the consumer gets starts
    at a keyframe and has no gap, frames come in order, and the mailbox stays within bounds."""
    clock = Clock()
    slot = GopSlot(clock=clock)
    seq, now = 0, 1000.0
    got: list[Encoded[AccessUnit]] = []
    for op, arg, gap in ops:
        if op == "put":
            now += gap
            clock.now += gap
            info = FrameInfo(seq=seq, timestamp=now, pos=seq, skipped=0, width=2, height=2)
            slot.put(Encoded(AccessUnit(b"", bool(arg), "", 2, 2), info))
            seq += 1
            assert slot.pending <= MAX_PENDING
        else:
            for _ in range(int(arg)):  # type: ignore[call-overload]
                try:
                    got.append(slot.get(0))
                except ReadTimeout:
                    break
    seqs = [g.info.seq for g in got]
    assert seqs == sorted(set(seqs))
    for prev, cur in itertools.pairwise(got):
        if cur.info.seq != prev.info.seq + 1:
            assert cur.data.key, "a gap not followed by a keyframe: the decoder would break"
    if got:
        assert got[0].data.key
    s = slot.stats()
    assert s.delivered == len(got) and s.delivered + s.dropped + slot.pending == seq


def test_catching_up_has_no_time_budget_but_live_frames_behind_it_do() -> None:
    clock = Clock()
    slot = GopSlot(clock=clock)
    slot.prefill([item(0, key=True)] + [item(seq) for seq in range(1, 300)])
    clock.now += 2.0  # a slow start: the catching-up frames waited, nothing live yet
    slot.put(item(300))
    assert slot.stats().behind == 0
    clock.now += MAX_LAG + 0.01  # the live frame waited too long behind them
    slot.put(item(301))
    assert slot.stats().behind == 1


def test_a_keyframe_that_finds_the_consumer_behind_is_kept() -> None:
    clock = Clock()
    slot = GopSlot(clock=clock)
    slot.put(item(0, key=True))
    clock.now += MAX_LAG + 0.01
    slot.put(item(1, key=True))
    assert slot.stats().behind == 1 and drain(slot) == [1]


def test_skip_to_key_keeps_a_keyframe_already_held() -> None:
    slot = GopSlot()
    for seq in range(6):
        slot.put(item(seq, key=seq in (0, 3)))
    slot.skip_to_key()
    assert drain(slot) == [3, 4, 5]
