"""framebus.VideoCapture as a drop-in for cv2.VideoCapture, in one process (capture in a child)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import framebus
from framebus import TestPattern


def test_read_returns_fresh_frames_with_info() -> None:
    with framebus.VideoCapture(TestPattern(320, 240, 60)) as cap:
        assert cap.isOpened()
        ok, frame = cap.read()
        assert ok and frame is not None
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
        assert frame.flags.writeable  # a copy the caller owns
        first = cap.info
        assert first is not None and first.width == 320 and first.height == 240
        ok, _ = cap.read()
        assert ok and cap.info is not None and cap.info.seq > first.seq
        assert cap.info.timestamp >= first.timestamp
        assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
        assert cap.get(cv2.CAP_PROP_FRAME_HEIGHT) == 240
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(60)
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == cap.info.pos + 1
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0) is False
    assert not cap.isOpened()
    assert cap.read() == (False, None)


def test_latest_mode_skips_to_newest_frame() -> None:
    with framebus.VideoCapture(TestPattern(160, 120, 100)) as cap:
        cap.read()
        time.sleep(0.3)  # a slow consumer: ~30 frames are captured meanwhile
        ok, _ = cap.read()
        assert ok and cap.info is not None
        assert cap.info.skipped > 0
        stats = cap.stats()
        assert stats.mode == "latest" and stats.skipped >= cap.info.skipped
        assert stats.captured >= cap.info.seq
        assert stats.delivered == 2


def test_read_into_callers_array() -> None:
    with framebus.VideoCapture(TestPattern(64, 48, 100)) as cap:
        buf = np.zeros((48, 64, 3), np.uint8)
        ok, frame = cap.read(buf)
        assert ok and frame is buf
        assert buf.any()


def test_every_mode_delivers_every_frame_of_finite_source_in_order() -> None:
    src = TestPattern(64, 48, fps=None, frames=50, pattern="counter")
    with framebus.VideoCapture(src) as cap:
        assert cap.stats().mode == "every"
        frames = list(cap)
        pos = [int(f[0, 0, 0]) for f in frames]
    assert pos == list(range(50))


def test_transform_and_process_image() -> None:
    src = TestPattern(64, 48, fps=None, frames=3, pattern="counter")
    with framebus.VideoCapture(src, transform=lambda f: f[:, :, 0] + 1) as cap:
        assert [int(f[0, 0]) for f in cap] == [1, 2, 3]

    class Grey(framebus.VideoCapture):
        def process_image(self, frame: np.ndarray) -> np.ndarray:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    with Grey(TestPattern(64, 48, fps=None, frames=2)) as cap:
        ok, frame = cap.read()
        assert ok and frame is not None and frame.shape == (48, 64)


def test_zero_copy_view_is_stable_while_lent() -> None:
    # capture as fast as possible; the lent slot must not change under the reader
    with framebus.VideoCapture(TestPattern(320, 240, fps=None, pattern="counter")) as cap:
        with cap.view() as frame:
            assert not frame.flags.writeable
            want = int(frame[0, 0, 0])
            seq = cap.info.seq if cap.info else 0
            time.sleep(0.3)
            assert cap.stats().captured > seq + 10  # the writer went on around the ring
            assert int(frame.min()) == want == int(frame.max())
        ok, _ = cap.read()
        assert ok


def test_video_file_every_frame_and_realtime(video_file: Path) -> None:
    with framebus.VideoCapture(video_file) as cap:
        assert cap.stats().mode == "every"
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 48
        frames = list(cap)
        assert len(frames) == 48 and frames[0].shape == (240, 320, 3)
        assert cap.info is not None and cap.info.pos == 47
        assert cap.read() == (False, None)
        assert isinstance(cap.last_error, framebus.StreamEnded)
    t0 = time.monotonic()
    with framebus.VideoCapture(str(video_file), realtime=True) as cap:
        n = sum(1 for _ in cap)
    assert n == 48
    assert time.monotonic() - t0 >= 47 / 25 * 0.9  # paced at 25 fps: never faster


@pytest.mark.parametrize(("codec", "size"), [("mjpeg", "250x142"), ("mpeg4", "176x144")])
def test_other_codecs_and_sizes(tmp_path: Path, codec: str, size: str) -> None:
    from conftest import make_video

    path = tmp_path / f"clip.{'avi' if codec == 'mjpeg' else 'mp4'}"
    make_video(path, frames=20, size=size, rate=10, codec=codec, pix_fmt="yuvj420p"
               if codec == "mjpeg" else "yuv420p")  # fmt: skip
    w, h = (int(v) for v in size.split("x"))
    for backend in ("opencv", "av"):
        with framebus.VideoCapture(framebus.Media(path, backend=backend)) as cap:  # type: ignore[arg-type]
            frames = list(cap)
        assert len(frames) == 20, backend
        assert frames[0].shape == (h, w, 3)


def test_missing_file_fails_fast(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(framebus.SourceNotFound, match="no such file"):
        framebus.VideoCapture(tmp_path / "nope.mp4")
    assert time.monotonic() - t0 < 1


def test_not_a_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    with pytest.raises(framebus.SourceOpenError, match="cannot open"):
        framebus.VideoCapture(bad)


def test_missing_camera_fails_fast() -> None:
    with pytest.raises(framebus.SourceNotFound, match="camera 97"):
        framebus.VideoCapture(97)


class Resizing(framebus.Source):
    """A finite custom source whose frame size grows, then shrinks."""

    live = False
    sizes = [(48, 64)] * 3 + [(480, 640)] * 3 + [(24, 32)] * 3

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> np.ndarray | None:
        if self.n >= len(self.sizes):
            return None
        h, w = self.sizes[self.n]
        frame = np.full((h, w, 3), self.n, np.uint8)
        self.n += 1
        return frame


def test_resolution_changes_reach_the_reader() -> None:
    with framebus.VideoCapture(Resizing()) as cap:
        got = [(f.shape[:2], int(f[0, 0, 0])) for f in cap]
    assert got == [(s, i) for i, s in enumerate(Resizing.sizes)]


def test_custom_source_errors_propagate() -> None:
    class Broken(framebus.Source):
        def open(self) -> None:
            raise framebus.SourceOpenError("device busy")

        def read(self) -> np.ndarray | None:
            return None

    with pytest.raises(framebus.SourceOpenError, match="device busy"):
        framebus.VideoCapture(Broken())


def test_frame_too_large_for_shared_memory() -> None:
    class Huge(framebus.Source):
        def read(self) -> np.ndarray | None:
            # a 10 GB frame that costs no memory: 4 slots of it do not fit in /dev/shm
            return np.broadcast_to(np.uint8(0), (60000, 60000, 3))

    # the stream goes live with its first frame: its ring must fit first
    with pytest.raises(framebus.SharedMemoryFull, match="not enough shared memory"):
        framebus.VideoCapture(Huge(), timeout=10)
