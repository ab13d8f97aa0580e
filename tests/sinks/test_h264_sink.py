"""The H.264 sink on real streams: what it encodes decodes (PyAV's decoder, as a browser's
would) to the published pixels; keyframes by time, on a viewer's arrival and on request, at
most once a second; a late joiner starts at a keyframe; size changes start a new encoder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest

import framebus
from framebus._h264 import AccessUnit, is_keyframe
from framebus.sinks import Encoded, Subscription
from framebus.sinks.h264 import KEY_EVERY, KEY_MIN_GAP, H264Sink

Item = Encoded[AccessUnit]


def bars(width: int, height: int) -> np.ndarray:
    """Eight vertical colour bars, flat enough for an encoder to keep within a few levels."""
    colours = np.array(
        [
            [255, 255, 255],
            [0, 255, 255],
            [255, 255, 0],
            [0, 255, 0],
            [255, 0, 255],
            [0, 0, 255],
            [255, 0, 0],
            [16, 16, 16],
        ],
        np.uint8,
    )
    index = np.arange(width) * 8 // width
    return np.ascontiguousarray(np.broadcast_to(colours[index], (height, width, 3)))


class Feeder:
    """A VideoWriter stream written at 25 fps from a thread: ``frame`` is what it writes."""

    def __init__(self, name: str, frame: np.ndarray) -> None:
        self.frame = frame
        self.writer = framebus.VideoWriter(name, fps=25)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.04):
            self.writer.write(self.frame)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.writer.release()


@pytest.fixture
def feeder(stream_name: str) -> Iterator[Feeder]:
    f = Feeder(stream_name, bars(320, 240))
    yield f
    f.close()


def take(sub: Subscription[AccessUnit], n: int) -> list[Item]:
    return [sub.get(10) for _ in range(n)]


def decode(items: list[Item]) -> list[np.ndarray]:
    decoder: Any = av.CodecContext.create("h264", "r")
    out = []
    for it in items:
        for frame in decoder.decode(av.Packet(it.data.data)):
            out.append(frame.to_ndarray(format="bgr24"))
    return out


def test_what_it_encodes_decodes_to_the_published_pixels(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name) as sink:
        sub = sink.subscribe()
        items = take(sub, 10)
        first = items[0].data
        assert (
            first.key
            and first.codec.startswith("avc1.42")
            and (first.width, first.height) == (320, 240)
        )
        assert not any(it.data.key for it in items[1:])  # no keyframe storm
        assert all(is_keyframe(it.data.data) == it.data.key for it in items)
        pictures = decode(items)
        assert len(pictures) == 10
        diff = np.abs(pictures[-1].astype(int) - feeder.frame.astype(int))
        assert diff.mean() < 4 and np.percentile(diff, 99) < 40


def test_frames_of_odd_grey_and_16_bit_streams_encode(stream_name: str) -> None:
    grey16 = (np.arange(241 * 321, dtype=np.uint16).reshape(241, 321) * 7) | 0x8000
    feeder = Feeder(stream_name, grey16)
    try:
        with H264Sink(stream_name) as sink:
            items = take(sink.subscribe(), 3)
            assert (items[0].data.width, items[0].data.height) == (320, 240)  # even for 4:2:0
            assert decode(items)[-1].shape == (240, 320, 3)
    finally:
        feeder.close()


def test_a_width_variant_is_scaled(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name, width=160) as sink:
        au = sink.subscribe().get(10).data
        assert (au.width, au.height) == (160, 120) and au.key


def test_nothing_is_encoded_without_a_viewer(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name) as sink:
        sub = sink.subscribe()
        take(sub, 2)
        sub.close()
        time.sleep(0.5)  # the worker notices within 0.2 s
        before = sink.stats().frames_encoded
        time.sleep(0.5)
        assert sink.stats().frames_encoded == before


def test_a_late_joiner_starts_at_a_keyframe_at_once(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name) as sink:
        first = sink.subscribe()
        take(first, 5)
        # the last keyframe is under KEY_MIN_GAP old: the newcomer starts from the cached group
        keys = sink.keyframes
        late = sink.subscribe()
        got = late.get(0)  # already there: no wait for an encode
        assert got.data.key
        assert decode([got, *take(late, 3)])
        assert sink.keyframes == keys  # no keyframe made for it
        first.close()  # (viewers that stop reading fall behind and ask for keyframes)
        late.close()
        # once the last keyframe is older, a newcomer gets a fresh one instead
        time.sleep(KEY_MIN_GAP + 0.2)
        keys = sink.keyframes
        later = sink.subscribe()
        assert later.get(10).data.key and sink.keyframes == keys + 1


def test_keyframes_come_by_time_and_on_request_at_most_once_a_second(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name) as sink:
        sub = sink.subscribe()
        stop = time.monotonic() + 5.0
        items: list[Item] = []
        while time.monotonic() < stop:
            items.append(sub.get(10))
        key_times = [it.info.timestamp for it in items if it.data.key]
        gaps = np.diff(key_times)
        assert len(key_times) >= 2 and gaps.max() <= KEY_EVERY + 0.1  # at least every 2 s

        items = []
        stop = time.monotonic() + 3.5
        while time.monotonic() < stop:
            sink.request_key()  # a flood of requests
            items.append(sub.get(10))
        key_times = [it.info.timestamp for it in items if it.data.key]
        assert len(key_times) >= 3
        assert np.diff(key_times).min() >= KEY_MIN_GAP - 0.1  # never more than one a second


def test_a_size_change_starts_a_new_encoder_at_a_keyframe(feeder: Feeder) -> None:
    with H264Sink(feeder.writer.name) as sink:
        sub = sink.subscribe()
        take(sub, 3)
        feeder.frame = bars(640, 360)
        item = sub.get(10)
        while item.data.width != 640:
            item = sub.get(10)
        # the first frame of the new size is a keyframe carrying its own parameter sets
        assert item.data.key and item.data.height == 360
        pictures = decode([item, *take(sub, 3)])
        assert [p.shape for p in pictures] == [(360, 640, 3)] * 4
        diff = np.abs(pictures[-1].astype(int) - feeder.frame.astype(int))
        assert diff.mean() < 4
