"""One reading API over every feed: each test runs on a local stream (the ring) and on the same
kind of stream read from another "machine" (a ZeroMQ exporter on loopback), and expects the
same answers, except where a feed cannot do something: then it says so the cv2 way.

The pattern of trio's shared stream tests: write the contract once, run it on each feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.net import Exporter, export

W, H, FPS = 320, 240, 30

Open = Callable[..., framebus.StreamReader]


@pytest.fixture(scope="module", params=["ring", "zmq"])
def feed(request: pytest.FixtureRequest) -> Iterator[Exporter | None]:
    """The feed under test: None for the ring; for ZeroMQ, one exporter for the module serving
    every local stream as raw pixels (exact bytes). Module-wide, so it is older than each test
    and no test counts its process as left behind."""
    if request.param == "ring":
        yield None
    else:
        with export("tcp://127.0.0.1:0", codec="raw") as ex:
            yield ex


@pytest.fixture
def open_reader(feed: Exporter | None) -> Iterator[Open]:
    """``open_reader(name, **kw)``: attach to local stream ``name`` through the feed under
    test; every reader made is released after the test."""
    made: list[framebus.StreamReader] = []

    def make(name: str, **kw: object) -> framebus.StreamReader:
        reader = framebus.attach(name if feed is None else feed.url(name), **kw)  # type: ignore[arg-type]
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.release()


@pytest.fixture
def counter(stream_name: str) -> Iterator[framebus.Publisher]:
    """320x240 counter frames at 30 fps: every byte of frame n is (n - 1) % 256."""
    pattern = framebus.TestPattern(W, H, fps=FPS, pattern="counter")
    with framebus.publish(stream_name, pattern) as pub:
        yield pub


def is_frame(frame: np.ndarray | None, seq: int) -> bool:
    return frame is not None and frame.shape == (H, W, 3) and bool((frame == (seq - 1) % 256).all())


class Paced(framebus.Source):
    """Frames only when the test says: ``go`` lets one more out; ``stop`` ends the source."""

    def __init__(self) -> None:
        self.n = 0
        self.go = threading.Semaphore(0)
        self.stop = threading.Event()

    def read(self) -> np.ndarray | None:
        while not self.go.acquire(timeout=0.05):
            if self.stop.is_set():
                return None
        self.n += 1
        return np.full((48, 64, 3), self.n % 256, np.uint8)


@pytest.fixture
def paced() -> Iterator[Paced]:
    """A Paced source whose capture thread ends with the test (its read() returns None)."""
    source = Paced()
    source.go.release()  # the first frame: publish() waits for it
    yield source
    source.stop.set()


# -- reading ------------------------------------------------------------------------------------


def test_read_read_frame_iteration_and_view(counter: framebus.Publisher, open_reader: Open) -> None:
    reader = open_reader(counter.name, timeout=5)
    ok, frame = reader.read()
    info = reader.info
    assert ok and info is not None and is_frame(frame, info.seq)
    assert (info.width, info.height) == (W, H) and 0 <= info.age < 60
    frame = reader.read_frame(timeout=5)
    assert reader.info is not None and reader.info.seq > info.seq
    assert is_frame(frame, reader.info.seq)
    seqs = []
    for frame in reader:
        assert reader.info is not None and is_frame(frame, reader.info.seq)
        seqs.append(reader.info.seq)
        if len(seqs) == 3:
            break
    assert seqs == sorted(set(seqs)) and seqs[0] > info.seq
    with reader.view() as view:
        assert not view.flags.writeable
        assert reader.info is not None and is_frame(view, reader.info.seq)
    out = np.empty((H, W, 3), np.uint8)
    ok, got = reader.read(out)
    assert ok and got is out and reader.info is not None and is_frame(out, reader.info.seq)
    assert reader.stats().delivered == 7


def test_transform_is_applied_to_read_and_iteration_not_to_view(
    counter: framebus.Publisher, open_reader: Open
) -> None:
    reader = open_reader(counter.name, timeout=5, transform=lambda f: f[:10, :20].copy())
    assert reader.read_frame().shape == (10, 20, 3)
    assert next(iter(reader)).shape == (10, 20, 3)
    with reader.view() as view:
        assert view.shape == (H, W, 3)


def test_grab_then_retrieve(counter: framebus.Publisher, open_reader: Open) -> None:
    reader = open_reader(counter.name, timeout=5)
    assert reader.retrieve() == (False, None)  # nothing grabbed yet
    assert reader.grab()
    info = reader.info
    assert info is not None
    ok, frame = reader.retrieve()
    assert ok and is_frame(frame, info.seq)
    ok, again = reader.retrieve()  # as cv2: the same frame again
    assert ok and again is not frame and is_frame(again, info.seq)
    assert reader.grab() and reader.grab()  # a grab not retrieved is passed over
    assert reader.info is not None and reader.info.seq > info.seq
    ok, frame = reader.retrieve()
    assert ok and is_frame(frame, reader.info.seq)


def test_read_timeout_then_frames_again(stream_name: str, open_reader: Open, paced: Paced) -> None:
    source = paced
    with framebus.publish(stream_name, source):
        reader = open_reader(stream_name, timeout=10)
        assert reader.read_frame() is not None
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.3)
        source.go.release()
        frame = reader.read_frame()
        assert reader.info is not None and (frame == reader.info.seq % 256).all()


def test_the_end_of_a_stream_ends_iteration(
    stream_name: str, open_reader: Open, paced: Paced
) -> None:
    source = paced
    with framebus.publish(stream_name, source) as pub:
        reader = open_reader(stream_name, timeout=10)
        assert reader.read_frame() is not None
        pub.close()  # the stream ends for its readers, here and remote
        assert list(reader) == []
        ok, frame = reader.read()
        assert not ok and frame is None
        assert isinstance(reader.last_error, framebus.StreamEnded)
        assert not reader.grab()
        assert not reader.isOpened()


# -- what the stream is: get, set, backend, stats -------------------------------------------------


def test_get_answers_the_same_on_every_feed(
    counter: framebus.Publisher, open_reader: Open, feed: Exporter | None
) -> None:
    assert wait_until(lambda: counter.stats().captured > 0)
    reader = open_reader(counter.name, timeout=5)
    # known before the first read, as cv2 knows them when it opens
    assert (reader.get(3), reader.get(4)) == (W, H)
    assert reader.get(5) == FPS
    assert reader.get(1) == 0.0  # POS_FRAMES: nothing read yet
    reader.read()
    assert reader.info is not None
    assert reader.get(1) == reader.info.pos + 1
    assert reader.get(7) == -1.0  # FRAME_COUNT of a live stream, as cv2 says for a camera
    assert reader.get(10_000) == 0.0  # a property no stream has


def test_set_is_refused_where_the_feed_cannot_seek(
    counter: framebus.Publisher, open_reader: Open
) -> None:
    reader = open_reader(counter.name, timeout=5)
    reader.read()
    assert reader.set(1, 0) is False  # a live stream: no seeking
    assert reader.set(0, 1000.0) is False
    assert reader.set(3, 640) is False  # a stream's size is not a reader's to change
    assert reader.read()[0]  # still reading


def test_backend_name_and_stats(
    counter: framebus.Publisher, open_reader: Open, feed: Exporter | None
) -> None:
    reader = open_reader(counter.name, timeout=5)
    assert reader.getBackendName() == ("TESTPATTERN" if feed is None else "ZMQ")
    assert reader.name == counter.name
    for _ in range(3):
        reader.read()
    stats = reader.stats()
    assert stats.state == "live" and stats.delivered == 3 and stats.mode == "latest"
    assert (stats.width, stats.height) == (W, H)
    assert stats.captured >= 3
    assert reader.isOpened()


# -- release ---------------------------------------------------------------------------------------


def test_release_is_idempotent_and_every_call_after_it_says_so(
    counter: framebus.Publisher, open_reader: Open
) -> None:
    reader = open_reader(counter.name, timeout=5)
    assert reader.grab()  # a grabbed frame is let go by release too
    reader.release()
    reader.release()
    assert not reader.isOpened()
    assert reader.read() == (False, None)
    assert isinstance(reader.last_error, framebus.StreamEnded)
    assert not reader.grab() and reader.retrieve() == (False, None)
    assert list(reader) == []
    for call in (reader.getBackendName, reader.stats):
        with pytest.raises(framebus.StreamEnded):
            call()  # cv2's getBackendName() raises too once nothing is open
    assert [reader.get(p) for p in (0, 1, 3, 4, 5, 7, 999)] == [0.0] * 7  # as cv2: never raises
    assert reader.set(1, 0) is False


def test_with_block_releases_and_open_attaches_again(
    counter: framebus.Publisher, open_reader: Open
) -> None:
    with open_reader(counter.name, timeout=5) as reader:
        assert reader.read()[0]
    assert not reader.isOpened()
    target = reader.url if isinstance(reader, framebus.RemoteReader) else counter.name
    assert reader.open(target)
    assert reader.isOpened() and reader.read()[0]
    assert not reader.open("no-such-stream-here")
    assert isinstance(reader.last_error, framebus.StreamNotFound)
