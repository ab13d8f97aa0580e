"""The rest of cv2's capture API: grab/retrieve, open, getBackendName, seeking files, and what
cv2 returns for what framebus cannot do. Real capture processes, real ffmpeg-made files."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from conftest import make_video
from framebus import TestPattern
from framebus.bus import Control, Mode, create_stream, remove_stream
from framebus.bus._layout import SEEK_VALUE_MAX, Hdr, Seek, SeekPhase, pack_seek, unpack_seek
from fuzzing import fuzz
from sampletools import opencv_frames

T = 20.0  # seconds a read may wait: a bug fails a test instead of hanging it


def counter(fps: float | None = 100, frames: int | None = None) -> TestPattern:
    return TestPattern(64, 48, fps=fps, frames=frames, pattern="counter")


# -- grab / retrieve ---------------------------------------------------------------------------


def test_grab_both_streams_then_retrieve_both(stream_name: str) -> None:
    with (
        framebus.publish(stream_name + "a", counter()),
        framebus.publish(stream_name + "b", TestPattern(32, 24, fps=100, pattern="counter")),
        framebus.attach(stream_name + "a", timeout=T) as a,
        framebus.attach(stream_name + "b", timeout=T) as b,
    ):
        before = time.time()
        assert a.grab() and b.grab()
        grabbed = a.info, b.info
        assert grabbed[0] is not None and grabbed[1] is not None
        time.sleep(0.1)  # the captures go on (~10 frames each) while both frames stay pinned
        (ok_a, fa), (ok_b, fb) = a.retrieve(), b.retrieve()
        assert ok_a and ok_b and fa is not None and fb is not None
        assert (a.info, b.info) == grabbed  # retrieve() returns what grab() took
        assert fa.shape == (48, 64, 3) and fb.shape == (24, 32, 3)
        # a counter frame n is n % 256 in every byte: these are the grabbed frames, not newer
        assert (fa == grabbed[0].pos % 256).all() and (fb == grabbed[1].pos % 256).all()
        for info in grabbed:
            assert info.seq >= 1 and before - 1 < info.timestamp <= time.time()
        assert a.grab() and a.info is not None and a.info.seq > grabbed[0].seq


def test_retrieve_without_grab_and_twice() -> None:
    with framebus.VideoCapture(counter(), timeout=T) as cap:
        assert cap.retrieve() == (False, None)
        assert cap.grab()
        ok, first = cap.retrieve()
        ok2, again = cap.retrieve()  # as cv2: the same frame again
        assert ok and ok2 and first is not None and again is not None
        assert again is not first and np.array_equal(first, again)
        assert cap.read()[0]  # read() after retrieve(): a newer frame; nothing to retrieve
        assert cap.retrieve() == (False, None)
    assert not cap.grab() and cap.retrieve() == (False, None)


def test_grab_in_every_mode_advances_one_frame() -> None:
    with framebus.VideoCapture(counter(fps=None, frames=10), timeout=T) as cap:
        assert cap.grab() and cap.grab()  # frame 0 is passed over, as cv2's grab() does
        ok, frame = cap.retrieve()
        assert ok and frame is not None and (frame == 1).all() and cap.info.pos == 1  # type: ignore[union-attr]
        ok, frame = cap.read()
        assert ok and frame is not None and (frame == 2).all()
        assert sum(1 for _ in iter(cap.grab, False)) == 7  # frames 3..9, then the end
        assert isinstance(cap.last_error, framebus.StreamEnded)


def test_grab_applies_process_image_at_retrieve() -> None:
    class Grey(framebus.VideoCapture):
        def process_image(self, frame: np.ndarray) -> np.ndarray:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    with Grey(counter(), timeout=T) as cap:
        assert cap.grab()
        ok, frame = cap.retrieve()
        assert ok and frame is not None and frame.shape == (48, 64)


# -- seeking -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A 40-frame 25 fps H.264 file (testsrc: a frame counter and moving parts) and cv2's own
    sequential decode of it."""
    path = tmp_path_factory.mktemp("seek") / "clip.mp4"
    make_video(path, frames=40, size="160x120", rate=25)
    frames = opencv_frames(path)
    assert len(frames) == 40
    return path, frames


def nearest(frame: np.ndarray, frames: list[np.ndarray]) -> int:
    """The index of the reference frame closest to ``frame``."""
    return int(np.argmin([np.abs(frame.astype(int) - f).mean() for f in frames]))


@pytest.mark.parametrize("backend", ["opencv", "av"])
def test_seek_a_file_by_frame_and_by_time(
    clip: tuple[Path, list[np.ndarray]], backend: str
) -> None:
    path, ref = clip
    with framebus.VideoCapture(framebus.Media(path, backend=backend), timeout=T) as cap:  # type: ignore[arg-type]
        assert cap.read()[0] and cap.info is not None and cap.info.pos == 0
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 25)
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == 25
        ok, frame = cap.read()
        assert ok and frame is not None and cap.info.pos == 25
        assert nearest(frame, ref) == 25
        if backend == "opencv":  # the same decoder as the reference: the same pixels
            assert np.array_equal(frame, ref[25])
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == 26
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 3)  # backwards
        ok, frame = cap.read()
        assert ok and frame is not None and cap.info.pos == 3 and nearest(frame, ref) == 3
        assert cap.set(cv2.CAP_PROP_POS_MSEC, 400)  # 25 fps: frame 10
        ok, frame = cap.read()
        assert ok and frame is not None and cap.info.pos == 10 and nearest(frame, ref) == 10
        assert cap.get(cv2.CAP_PROP_POS_MSEC) == pytest.approx(400)
        assert [cap.read()[0] for _ in range(3)] == [True] * 3 and cap.info.pos == 13
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 10**6)  # clamped to the end, as cv2 does
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == 40
        assert cap.read() == (False, None)
        assert cap.stats().state == "ended"
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # at the end, as cv2 users loop a video
        ok, frame = cap.read()
        assert ok and frame is not None and cap.info.pos == 0 and nearest(frame, ref) == 0
        assert cap.stats().state == "live"


def test_loop_a_file_at_its_end(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, ref = clip
    with framebus.VideoCapture(path, timeout=T) as cap:
        for _ in range(2):  # the seeds' habit: at the end, back to frame 0
            frames = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
            assert len(frames) == 40 and np.array_equal(frames[-1], ref[39]), cap.last_error
            assert isinstance(cap.last_error, framebus.StreamEnded)
            assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        assert cap.publisher.capture_pid  # the capture waits for a seek until release()
    assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0) is False  # released


def test_an_attached_reader_seeks_a_served_file(
    clip: tuple[Path, list[np.ndarray]], stream_name: str
) -> None:
    path, ref = clip
    with framebus.publish(stream_name, path), framebus.attach(stream_name, timeout=T) as r:
        assert r.read()[0]
        assert r.set(cv2.CAP_PROP_POS_FRAMES, 30)
        ok, frame = r.read()
        assert ok and frame is not None and r.info is not None and r.info.pos == 30
        assert np.array_equal(frame, ref[30])


def test_a_seek_moves_the_other_readers_after_their_frames(stream_name: str) -> None:
    # every mode, 4 slots: b does not read while a seeks, so the capture waits for b meanwhile;
    # one thread reads both, so b reads first (a's frame 150 waits in the ring for a)
    src = counter(fps=None, frames=200)
    with (
        framebus.publish(stream_name, src, slots=4),
        framebus.attach(stream_name, timeout=T) as a,
        framebus.attach(stream_name, timeout=T) as b,
    ):
        assert a.read()[0] and b.read()[0]
        assert a.set(cv2.CAP_PROP_POS_FRAMES, 150)  # answered although b holds the capture up
        positions = []
        while not positions or positions[-1] < 150:
            assert b.read()[0] and b.info is not None
            positions.append(b.info.pos)
        old, jump = positions[:-1], positions[-1]  # b's frames from the ring, then the jump
        assert jump == 150 and len(old) <= 4
        assert old == list(range(old[0], old[0] + len(old))) if old else True
        ok, frame = a.read()  # (every mode: frames flow as b consumes them)
        assert ok and frame is not None and (frame == 150).all()


def test_seek_a_finite_pattern_and_pixels_say_where() -> None:
    with framebus.VideoCapture(counter(fps=None, frames=300), timeout=T) as cap:
        assert not cap.set(cv2.CAP_PROP_POS_FRAMES, float("inf"))
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 200)
        ok, frame = cap.read()
        assert ok and frame is not None and (frame == 200).all()
        assert cap.getBackendName() == "TESTPATTERN"


class Frames(framebus.Source):
    """A finite user source that can seek: runs in a capture thread, not a process."""

    live, fps, seekable = False, 25.0, True

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> np.ndarray | None:
        self.n += 1
        return np.full((8, 8), self.n - 1, np.uint8) if self.n <= 100 else None

    def seek(self, frame: int) -> int | None:
        self.n = min(frame, 100)
        return self.n


def test_a_user_source_seeks() -> None:
    with framebus.VideoCapture(Frames(), timeout=T) as cap:
        assert cap.set(cv2.CAP_PROP_POS_MSEC, 2000)  # 25 fps: frame 50
        ok, frame = cap.read()
        assert ok and frame is not None and (frame == 50).all() and cap.info.pos == 50  # type: ignore[union-attr]
        assert cap.getBackendName() == "PYTHON"


def test_live_streams_and_other_properties_are_unsupported() -> None:
    with framebus.VideoCapture(counter(), timeout=T) as cap:  # a live source: a camera cannot seek
        assert cap.read()[0]
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0) is False
        assert cap.set(cv2.CAP_PROP_POS_MSEC, 0) is False
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, float("nan")) is False
        # what cv2 returns for a property the backend does not support (checked against a
        # file read by cv2 itself in test_unsupported_values_are_cv2s)
        assert cap.set(cv2.CAP_PROP_FPS, 5) is False
        assert cap.set(cv2.CAP_PROP_FRAME_WIDTH, 32) is False
        assert cap.get(cv2.CAP_PROP_BRIGHTNESS) == 0.0
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == -1.0
        assert cap.read()[0]  # the stream goes on


def test_unsupported_values_are_cv2s(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = clip
    real = cv2.VideoCapture(str(path))
    ours = framebus.VideoCapture(path)
    try:
        for prop in (cv2.CAP_PROP_BRIGHTNESS, cv2.CAP_PROP_GAIN, cv2.CAP_PROP_EXPOSURE):
            assert ours.get(prop) == real.get(prop) == 0.0
        for prop, value in ((cv2.CAP_PROP_FPS, 5), (cv2.CAP_PROP_BRIGHTNESS, 1)):
            assert ours.set(prop, value) is real.set(prop, value) is False
        assert ours.get(cv2.CAP_PROP_FRAME_COUNT) == real.get(cv2.CAP_PROP_FRAME_COUNT) == 40
        assert ours.getBackendName() == real.getBackendName() == "FFMPEG"
    finally:
        real.release()
        ours.release()


# -- open / getBackendName ---------------------------------------------------------------------


def test_open_releases_then_opens(clip: tuple[Path, list[np.ndarray]]) -> None:
    path, ref = clip
    cap = framebus.VideoCapture(counter(), timeout=T)
    try:
        first = cap.publisher.name
        assert cap.open(path)
        assert cap.isOpened() and cap.getBackendName() == "FFMPEG"
        assert first not in {s.name for s in framebus.list_streams()}  # the old one is gone
        ok, frame = cap.read()
        assert ok and np.array_equal(frame, ref[0])  # a file: every mode from frame 0
        assert cap.open("/nonexistent/clip.mp4") is False
        assert not cap.isOpened() and isinstance(cap.last_error, framebus.SourceNotFound)
        assert cap.read() == (False, None)
        assert cap.open(counter(), mode="every")
        assert cap.stats().mode == "every" and cap.read()[0]
    finally:
        cap.release()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((cv2.CAP_FFMPEG,), {}),
        ((cv2.CAP_ANY,), {}),
        ((), {"apiPreference": cv2.CAP_FFMPEG}),
        ((cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000]), {}),
        ((cv2.CAP_ANY, (cv2.CAP_PROP_READ_TIMEOUT_MSEC, 4000, cv2.CAP_PROP_N_THREADS, 2)), {}),
        ((cv2.CAP_GSTREAMER,), {}),  # no framebus backend for it: ignored, as cv2 ignores
    ],
    ids=["ffmpeg", "any", "keyword", "params", "timeouts-threads", "other-api"],
)
def test_cv2s_constructor_forms(
    clip: tuple[Path, list[np.ndarray]], args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Libraries pass cv2.CAP_FFMPEG or cv2.CAP_ANY routinely (before: TypeError)."""
    path, ref = clip
    with framebus.VideoCapture(str(path), *args, **kwargs) as cap:  # type: ignore[arg-type]
        assert cap.isOpened() and cap.getBackendName() == "FFMPEG"
        ok, frame = cap.read()
        assert ok and np.array_equal(frame, ref[0])


def test_cv2s_params_become_the_sources_settings() -> None:
    from framebus.videocapture import with_api

    media = with_api(
        "clip.mp4",
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2500, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 1500,
         cv2.CAP_PROP_N_THREADS, 3, cv2.CAP_PROP_HW_ACCELERATION, 1],
    )  # fmt: skip
    assert media == framebus.Media(
        "clip.mp4", backend="opencv", open_timeout=2.5, read_timeout=1.5, decoder_threads=3,
        cv2_params=(cv2.CAP_PROP_HW_ACCELERATION, 1),
    )  # fmt: skip
    assert with_api("clip.mp4", None, None) == "clip.mp4"
    assert with_api(0, cv2.CAP_V4L2, None) == framebus.Media(0, backend="opencv")
    pattern = counter()
    assert with_api(pattern, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 2]) is pattern
    for bad in ([cv2.CAP_PROP_N_THREADS], [1.5, 2], ["a", 1], [True, 1]):
        with pytest.raises(ValueError, match="pairs of ints"):
            with_api("clip.mp4", cv2.CAP_ANY, bad)  # type: ignore[arg-type]


def test_cv2s_open_forms(clip: tuple[Path, list[np.ndarray]]) -> None:
    """VideoCapture() then open(path), open(path, api), open(index, api) (before: TypeError)."""
    path, ref = clip
    cap = framebus.VideoCapture()
    try:
        assert not cap.isOpened() and cap.read() == (False, None)
        assert cap.open(str(path))
        assert cap.isOpened() and np.array_equal(cap.read()[1], ref[0])
        assert cap.open(str(path), cv2.CAP_FFMPEG) and cap.getBackendName() == "FFMPEG"
        assert cap.open(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000])
        assert cap.read()[0]
        assert cap.open(97, cv2.CAP_V4L2) is False  # no such camera here
        assert isinstance(cap.last_error, framebus.SourceError) and not cap.isOpened()
    finally:
        cap.release()
    cap.release()  # twice, and on a capture never opened
    assert [cap.get(p) for p in (0, 1, 3, 4, 5, 7, 999)] == [0.0] * 7  # as cv2 after release
    never = framebus.VideoCapture()
    assert [never.get(p) for p in (0, 3, 5, 7)] == [0.0] * 4 and never.set(1, 0) is False
    assert never.grab() is False and never.retrieve() == (False, None)
    never.release()


def test_a_file_object_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """cv2 5 reads from a Python stream object; framebus says what to give instead."""
    with open(tmp_path / "x.mp4", "wb") as f, pytest.raises(TypeError, match="source must be"):
        framebus.VideoCapture(f)  # type: ignore[arg-type]


def test_reader_open_reattaches(stream_name: str) -> None:
    with framebus.publish(stream_name, counter()):
        r = framebus.attach(stream_name, timeout=T)
        try:
            assert r.read()[0]
            assert r.open(stream_name) and r.read()[0]
            assert r.open(stream_name + "x") is False
            assert isinstance(r.last_error, framebus.StreamNotFound) and not r.isOpened()
        finally:
            r.release()


class Noise(framebus.Source):
    fps = 100.0

    def read(self) -> np.ndarray:
        time.sleep(0.01)
        return np.zeros((8, 8), np.uint8)


class Named(Noise):
    backend_name = "MYCAM"


@pytest.mark.parametrize(
    ("source", "name"),
    [
        (counter(), "TESTPATTERN"),
        ("clip", "FFMPEG"),
        ("clip-av", "PYAV"),
        (Noise(), "PYTHON"),
        (Named(), "MYCAM"),
    ],
    ids=["pattern", "opencv", "av", "source", "named-source"],
)
def test_backend_names(
    clip: tuple[Path, list[np.ndarray]], source: framebus.sources.SourceLike, name: str
) -> None:
    if source == "clip":
        source = clip[0]
    elif source == "clip-av":
        source = framebus.Media(clip[0], backend="av")  # type: ignore[arg-type]
    with framebus.VideoCapture(source) as cap:
        assert cap.getBackendName() == name
    with pytest.raises(framebus.StreamEnded):
        cap.getBackendName()  # as cv2, which raises once nothing is open


def test_rtsp_backend_names() -> None:
    from framebus.testing import RTSPServer, rtsp_server_available

    if not rtsp_server_available():
        pytest.skip("GStreamer RTSP server not installed (make test does)")
    with RTSPServer(size="160x120", fps=25) as srv:
        with framebus.VideoCapture(srv.url()) as cap:
            assert cap.getBackendName() == "FRAMEBUS_RTSP"
            assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0) is False
        with framebus.VideoCapture(framebus.Media(srv.url(), backend="opencv")) as cap:
            assert cap.getBackendName() == "FFMPEG"
    with RTSPServer(size="160x120", codec="jpeg") as srv, framebus.VideoCapture(srv.url()) as cap:
        assert cap.read()[0] and cap.getBackendName() == "FFMPEG"  # JPEG: handed to FFmpeg


# -- the header words: anyone's bytes ----------------------------------------------------------


@fuzz(300)
@given(word=st.integers(0, 2**64 - 1))
def test_any_seek_word_unpacks(word: int) -> None:
    seek = unpack_seek(word)
    assert isinstance(seek.phase, SeekPhase) and 0 <= seek.value <= SEEK_VALUE_MAX
    assert unpack_seek(pack_seek(seek)) == seek


def test_the_backend_name_travels_in_the_header(stream_name: str) -> None:
    with framebus.publish(stream_name, counter()):
        ctl = Control.open(stream_name)
        try:
            assert ctl.backend == "TESTPATTERN"
        finally:
            ctl.close()


@pytest.fixture
def control(stream_name: str) -> Iterator[Control]:
    """A bare control segment (no capture), removed afterwards."""
    ctl = create_stream(stream_name, 2, 1, Mode.LATEST, "test")
    try:
        yield ctl
    finally:
        ctl.close()
        remove_stream(stream_name)


@fuzz(300)
@given(raw=st.binary(min_size=16, max_size=16))
def test_any_backend_bytes_read_as_a_name_or_nothing(control: Control, raw: bytes) -> None:
    control.seg.mm[Hdr.BACKEND : Hdr.BACKEND + 16] = raw
    name = control.backend
    assert name == "" or (re.fullmatch(r"[A-Z0-9_]{1,16}", name) and raw.startswith(name.encode()))


@fuzz(100)
@given(word=st.integers(0, 2**64 - 1))
def test_a_reader_facing_any_seek_word_gives_up_in_time(control: Control, word: int) -> None:
    control.put(Hdr.SEEK, word)
    t0 = time.monotonic()
    first = control.seek(5, 0.05, lambda seq: None)
    assert first is None  # no capture answers: forged bytes never pass for an answer
    assert time.monotonic() - t0 < 2


def test_a_seek_landing_is_read_only_by_the_request_it_answers(control: Control) -> None:
    serial = 7
    control.put(Hdr.SEEK, pack_seek(Seek(True, serial, SeekPhase.REQUESTED, 13)))
    control.answer_seek(13, 42, landed=12, media_ns=480_000_000)
    assert control.seek_landing(serial) == (12, 0.48)
    assert control.seek_landing(serial + 1) == (None, None)  # another reader's request
    control.put(Hdr.SEEK, pack_seek(Seek(True, serial + 1, SeekPhase.REQUESTED, 5)))
    control.answer_seek(5, 50, landed=2**60, media_ns=10**30)  # beyond what the words hold
    assert control.seek_landing(serial + 1) == (None, None)


@fuzz(100)
@given(landed=st.integers(0, 2**64 - 1), media=st.integers(0, 2**64 - 1))
def test_any_landing_words_read_as_a_position_or_nothing(
    control: Control, landed: int, media: int
) -> None:
    control.put(Hdr.SEEK_LANDED, landed)
    control.put(Hdr.SEEK_MEDIA, media)
    pos, seconds = control.seek_landing(landed >> 48)
    assert pos is None or 0 <= pos <= SEEK_VALUE_MAX
    assert seconds is None or abs(seconds) <= 1e9


def test_one_capture_per_launch_ticket(control: Control) -> None:
    ticket = control.offer_launch()
    assert ticket >> 63 == 1  # never a pid
    assert control.claim_launch(ticket) and not control.claim_launch(ticket)
    assert control.withdraw_launch(ticket) == os.getpid()  # claimed: adopt, not replace
    again = control.offer_launch()
    assert again != ticket and control.withdraw_launch(again) is None
    assert not control.claim_launch(again)  # withdrawn: a late capture exits
