"""The sink base: pick frames, encode each once, one latest slot per consumer, clean shutdown."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

import framebus
import framebus.sinks as sinks
import framebus.sinks.base as base
from conftest import Procs, wait_until
from framebus import FrameInfo, PublisherLost, ReadTimeout, StreamEnded
from framebus.sinks import Encoded, FrameSink, LatestSlot, Pick, SinkClosed, Subscription

Item = tuple[int, int]  # (the counter value of the frame, its seq)


class Probe(FrameSink[Item]):
    """Encodes a frame to (its counter value, seq), counting calls; optionally slow or failing."""

    def __init__(self, name: str, *, fail_odd: bool = False, **kw: object) -> None:
        self.calls = 0
        self.fail_odd = fail_odd
        super().__init__(name, **kw)  # type: ignore[arg-type]

    def encode(self, frame: np.ndarray, info: FrameInfo) -> Item:
        self.calls += 1
        value = int(frame[0, 0, 0])
        assert (frame == value).all(), "torn frame"
        if self.fail_odd and value % 2:
            raise ValueError(f"odd frame {value}")
        return value, info.seq


def counter(fps: float | None, frames: int | None = None) -> framebus.TestPattern:
    return framebus.TestPattern(64, 48, fps=fps, frames=frames, pattern="counter")


def sink_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("framebus-sink-")]


def drain(sub: Subscription[Item], timeout: float = 5) -> list[Encoded[Item]]:
    """Every item until the stream ends (iteration stops at StreamEnded)."""
    out = []
    while True:
        try:
            out.append(sub.get(timeout))
        except StreamEnded:
            return out


# -- Pick and LatestSlot on their own ---------------------------------------------------------


def test_pick_validates_seconds() -> None:
    assert Pick.newest().kind == "newest" and Pick.every().kind == "every"
    assert Pick.interval(0.5) == Pick("interval", 0.5)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Pick.interval(bad)
    with pytest.raises(ValueError):
        Pick("newest", 1.0)
    with pytest.raises(ValueError):
        Pick("sometimes")  # type: ignore[arg-type]


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        assert slot.put(i)
    assert slot.get(0) == 4
    with pytest.raises(ReadTimeout):
        slot.get(0.05)
    assert slot.stats() == base.ConsumerStats(delivered=1, dropped=4)

    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(slot.get(5)))
    waiter.start()
    time.sleep(0.05)
    slot.put(7)  # wakes the waiting get
    waiter.join(5)
    assert got == [7]


def test_latest_slot_close_and_close_with_error() -> None:
    closed: LatestSlot[int] = LatestSlot()
    closed.put(1)
    closed.close()  # discards the pending item
    with pytest.raises(SinkClosed):
        closed.get(0)
    assert not closed.put(2)
    assert closed.stats().dropped == 1

    ended: LatestSlot[int] = LatestSlot()
    ended.put(1)
    ended.close(StreamEnded("done"))
    ended.close()  # the first close wins
    assert ended.get(0) == 1  # the last item is still delivered
    for _ in range(2):
        with pytest.raises(StreamEnded, match="done"):
            ended.get(0)

    waiting: LatestSlot[int] = LatestSlot()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiting.get()
        except SinkClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.05)
    waiting.close()
    t.join(5)
    assert not t.is_alive() and len(errors) == 1


def test_exports_are_complete() -> None:
    assert set(sinks.__all__) == set(base.__all__)
    for name in sinks.__all__:
        assert getattr(sinks, name) is getattr(base, name)
    assert issubclass(SinkClosed, framebus.FramebusError)


# -- sinks over real streams ------------------------------------------------------------------


def test_encode_once_for_three_consumers(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=50)), Probe(stream_name) as sink:
        subs = [sink.subscribe() for _ in range(3)]
        got: list[list[Encoded[Item]]] = [[], [], []]
        for _ in range(25):
            for sub, items in zip(subs, got, strict=True):
                items.append(sub.get(timeout=5))
        stats = sink.stats()
        calls = sink.calls
    everything = [e for items in got for e in items]
    # one object per frame: the same Encoded (and the same data) went to every consumer
    by_seq: dict[int, Encoded[Item]] = {}
    for e in everything:
        assert by_seq.setdefault(e.info.seq, e) is e
        assert e.data == (e.info.pos % 256, e.info.seq)
    common = set.intersection(*({e.info.seq for e in items} for items in got))
    assert len(common) >= 10
    assert stats.frames_encoded == calls >= len(by_seq)
    assert len(everything) == 75 > calls  # fewer encodes than deliveries
    assert stats.consumers == 3 and [c.delivered for c in stats.per_consumer] == [25] * 3
    assert stats.name == stream_name and stats.encode_errors == 0


def test_no_encoding_while_nobody_watches(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=50)), Probe(stream_name) as sink:
        time.sleep(0.3)
        assert sink.calls == 0 and sink.stats().frames_read == 0 and not sink.stats().running
        with sink.subscribe() as sub:
            for _ in range(3):
                sub.get(timeout=5)
        assert sink.stats().consumers == 0
        time.sleep(0.4)  # an encode in flight at unsubscribe time may still finish
        idle = sink.calls
        read = sink.stats().frames_read
        time.sleep(0.6)
        assert sink.calls == idle and sink.stats().frames_read == read
        assert sink.stats().running  # asleep, not gone
        with sink.subscribe() as again:  # watching again: encoding resumes, fresh frames
            item = again.get(timeout=5)
        assert sink.calls > idle and item.info.age < 1.0


def test_slow_consumer_does_not_slow_a_fast_one(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=50)), Probe(stream_name) as sink:
        slow = sink.subscribe()  # first: the worker puts into its slot before the fast one's
        fast = sink.subscribe()
        first = slow.get(timeout=5)
        fast_items = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the slow consumer "sleeps" meanwhile
            fast_items.append(fast.get(timeout=5))
        late = slow.get(timeout=5)
        assert len(fast_items) >= 20
        assert slow.stats().dropped >= 10
        # the slow one's next item is the newest, not the one after its previous
        assert late.info.seq >= fast_items[-1].info.seq
        assert late.info.seq - first.info.seq >= 20
        assert fast.stats().dropped <= len(fast_items)  # the fast one loses little
        slow.close()
        fast.close()


def test_lossless_every_delivers_every_frame_in_order(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, counter(fps=None, frames=30), mode="every"),
        Probe(stream_name, pick=Pick.every(), lossless=True) as sink,
        sink.subscribe() as sub,
    ):
        items = []
        for item in sub:  # iteration ends with the stream
            items.append(item)
            time.sleep(0.01)  # slower than the worker: it must wait for us, not drop
        assert [e.data[0] for e in items] == list(range(30))
        assert [e.info.seq for e in items] == list(range(1, 31))
        assert sub.stats() == base.ConsumerStats(delivered=30, dropped=0)
        with pytest.raises(StreamEnded):
            sub.get(timeout=1)


def test_every_without_lossless_reads_all_but_a_slow_consumer_skips(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, counter(fps=None, frames=30), mode="every"),
        Probe(stream_name, pick=Pick.every()) as sink,
        sink.subscribe() as sub,
    ):
        values = []
        for item in sub:
            values.append(item.data[0])
            time.sleep(0.05)
        assert values == sorted(set(values)) and values[-1] == 29  # in order, ends with the last
        assert len(values) < 30 and sub.stats().dropped == 30 - len(values)
        assert sink.stats().frames_read == 30 == sink.calls


def test_interval_pick(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, counter(fps=50)),
        Probe(stream_name, pick=Pick.interval(0.25)) as sink,
        sink.subscribe() as sub,
    ):
        items = []
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            try:
                items.append(sub.get(timeout=left))
            except ReadTimeout:
                break
        stats = sink.stats()
    assert 2 <= len(items) <= 6
    stamps = [e.info.timestamp for e in items]
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(stamps))
    assert stats.frames_read > 2 * stats.frames_encoded  # the frames between were not encoded


def test_stream_end_reaches_every_consumer_after_the_last_frame(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, counter(fps=200, frames=20), mode="every"),
        Probe(stream_name) as sink,
    ):
        a, b = sink.subscribe(), sink.subscribe()
        for sub in (a, b):
            items = drain(sub)
            assert items and items[-1].data[0] == 19  # the last frame, then StreamEnded
            with pytest.raises(StreamEnded):
                sub.get(timeout=1)
        assert wait_until(lambda: not sink.stats().running, timeout=5)
        assert "StreamEnded" in (sink.stats().error or "")
        with pytest.raises(StreamEnded):  # a late consumer learns it at once
            sink.subscribe().get(timeout=1)
    assert not sink_threads()


def test_publisher_lost_reaches_consumers(stream_name: str, procs: Procs) -> None:
    pub = procs.python("publisher.py", stream_name, "--fps", "50", start_new_session=True)
    assert pub.stdout is not None
    line = pub.stdout.readline()
    assert line.startswith("ready"), pub.stderr.read() if pub.stderr else line
    try:
        with Probe(stream_name) as sink, sink.subscribe() as sub:
            sub.get(timeout=5)
            os.killpg(pub.pid, signal.SIGKILL)  # publisher and capture, mid-stream
            pub.wait()
            with pytest.raises(PublisherLost):
                while True:  # a few frames may still be in the ring
                    sub.get(timeout=10)
    finally:
        framebus.prune()  # the killed publisher's segments


def test_encode_errors_skip_the_frame_and_are_logged_once(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="framebus.sinks")
    with (
        framebus.publish(stream_name, counter(fps=None, frames=20), mode="every"),
        Probe(stream_name, pick=Pick.every(), lossless=True, fail_odd=True) as sink,
        sink.subscribe() as sub,
    ):
        values = [e.data[0] for e in drain(sub)]
        stats = sink.stats()
    assert values == list(range(0, 20, 2))
    assert stats.encode_errors == 10 and stats.frames_encoded == 10
    assert len([r for r in caplog.records if "encode failed" in r.getMessage()]) == 1


def test_close_is_prompt_and_leaves_no_thread(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=2)):
        sink = Probe(stream_name)
        sub = sink.subscribe()
        sub.get(timeout=5)  # now the worker waits in a read for the next frame (0.5 s away)
        errors: list[BaseException] = []

        def blocked() -> None:
            try:
                sub.get()
            except SinkClosed as exc:
                errors.append(exc)

        consumer = threading.Thread(target=blocked)
        consumer.start()
        assert sink_threads() == [f"framebus-sink-{stream_name}"]
        t0 = time.monotonic()
        sink.close()
        assert time.monotonic() - t0 < 1.0
        consumer.join(5)
        assert len(errors) == 1 and sub.closed
        assert not sink_threads()
        sink.close()  # idempotent
        with pytest.raises(SinkClosed):
            sink.subscribe()
        assert not sink.stats().running and sink.stats().consumers == 0


def test_close_without_any_subscriber_releases_the_reader(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=50)) as pub:
        with Probe(stream_name):
            assert wait_until(lambda: pub.stats().readers == 1, timeout=5)
        assert wait_until(lambda: pub.stats().readers == 0, timeout=5)
        assert not sink_threads()
