"""The hub every wing's encoders live in (framebus.sinks.hub): one sink per (stream, variant)
shared by its consumers, and the idle policy stated once — checked on real streams."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.sinks import FrameSink
from framebus.sinks import hub as hub_module
from framebus.sinks.hub import SinkHub, TooManyVariants


class Shape(FrameSink[tuple[int, ...]]):
    """The smallest sink: a frame's shape."""

    def encode(self, frame: np.ndarray, info: framebus.FrameInfo) -> tuple[int, ...]:
        return tuple(frame.shape)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[SinkHub[Shape]]:
    monkeypatch.setattr(hub_module, "IDLE_CLOSE", 1.0)  # the policy, on a test's time scale
    monkeypatch.setattr(hub_module, "SWEEP_EVERY", 0.1)
    made = SinkHub[Shape](max_variants=2, thread_name="framebus-test-hub")
    yield made
    made.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("framebus-test-hub")]


def test_one_sink_per_variant_shared_by_its_consumers(
    hub: SinkHub[Shape], pattern_stream: framebus.Publisher
) -> None:
    name = pattern_stream.name
    sink, first = hub.subscribe(name, "a", lambda: Shape(name))
    again, second = hub.subscribe(name, "a", lambda: Shape(name))
    assert again is sink and hub.sinks(name) == [sink]
    assert first.get(10).data == second.get(10).data == (240, 320, 3)
    other, third = hub.subscribe(name, "b", lambda: Shape(name))
    assert other is not sink
    with pytest.raises(TooManyVariants):  # two variants, both with consumers
        hub.subscribe(name, "c", lambda: Shape(name))
    third.close()
    newest, _ = hub.subscribe(name, "c", lambda: Shape(name))  # takes the idle one's place
    assert {id(s) for s in hub.sinks(name)} == {id(sink), id(newest)}


def test_an_idle_sink_is_closed_by_time_alone_and_its_reader_goes(
    hub: SinkHub[Shape], pattern_stream: framebus.Publisher
) -> None:
    name = pattern_stream.name
    sink, sub = hub.subscribe(name, None, lambda: Shape(name))
    sub.get(10)
    sub.close()
    assert hub.sinks(name) == [sink]  # kept a moment: coming back costs nothing
    assert wait_until(lambda: pattern_stream.stats().readers == 0, timeout=10)
    assert hub.sinks(name) == [] and hub.closed_encodes(name) >= 1


def test_an_idle_sink_of_an_every_mode_stream_is_closed_at_once(
    hub: SinkHub[Shape], stream_name: str, video_file: Path
) -> None:
    with framebus.publish(stream_name, str(video_file), mode="every") as pub:
        sink, sub = hub.subscribe(stream_name, None, lambda: Shape(stream_name))
        assert sink.every_mode
        sub.get(10)
        sub.close()  # the capture waits for this reader: it must not stay
        assert wait_until(lambda: hub.sinks(stream_name) == [], timeout=5)
        assert wait_until(lambda: pub.stats().readers == 0, timeout=10)


def test_a_stream_published_again_gets_a_fresh_sink(hub: SinkHub[Shape], stream_name: str) -> None:
    pattern = framebus.TestPattern(64, 48, fps=30)
    with framebus.publish(stream_name, pattern):
        old, sub = hub.subscribe(stream_name, None, lambda: Shape(stream_name))
        sub.get(10)
    assert wait_until(lambda: old.stats().error is not None, timeout=10)
    with framebus.publish(stream_name, pattern):
        new, sub = hub.subscribe(stream_name, None, lambda: Shape(stream_name))
        assert new is not old
        assert sub.get(10).data == (48, 64, 3)
        sub.close()
