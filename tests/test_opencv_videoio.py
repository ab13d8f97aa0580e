"""OpenCV's own VideoCapture file tests, adapted to Python and run on framebus.

From OpenCV's ``modules/videoio/test/test_video_io.cpp`` (``videoio_bunny``: ``read_position``
and ``frame_count``; ``videoio_synthetic``: ``write_read_position``) and
``modules/videoio/misc/python/test/test_videoio.py`` (the context manager). OpenCV's data
files are rebuilt with ffmpeg at their sizes and rates (Big Buck Bunny: 672x384, 24 fps, 125
frames, in each container OpenCV tests); the synthetic files are written by
``cv2.VideoWriter`` as OpenCV's test writes them. Each case runs first on ``cv2.VideoCapture``
(it must pass there; cases cv2 cannot open here are skipped) and then on
``framebus.VideoCapture`` with the same arguments, which must pass the same checks and return
the same frames, byte for byte.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import framebus

Capture = Any  # cv2.VideoCapture or framebus.VideoCapture: the same calls
Opener = Callable[[str, int], Capture]

OPENERS: dict[str, Opener] = {
    "cv2": lambda path, api: cv2.VideoCapture(path, api),
    "framebus": lambda path, api: framebus.VideoCapture(path, api),
}

# -- videoio_bunny ------------------------------------------------------------------------------

BUNNY_W, BUNNY_H, BUNNY_FPS, BUNNY_COUNT = 672, 384, 24, 125
_X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "24"]
BUNNY_ENCODE = {
    "wmv": ["-c:v", "wmv2", "-q:v", "4"],
    "mov": _X264,
    "mp4": _X264,
    "mpg": ["-c:v", "mpeg1video", "-q:v", "4", "-f", "mpeg"],
    "avi": ["-c:v", "mpeg4", "-q:v", "4"],
    "h264": [*_X264, "-f", "h264"],
    "h265": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error",
             "-f", "hevc"],
    "mjpg.avi": ["-c:v", "mjpeg", "-q:v", "4"],
}  # fmt: skip


@pytest.fixture(scope="module")
def bunny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bunny")


def bunny(folder: Path, ext: str) -> str:
    path = folder / f"big_buck_bunny.{ext}"
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={BUNNY_W}x{BUNNY_H}:rate={BUNNY_FPS}", "-frames:v",
             str(BUNNY_COUNT), *BUNNY_ENCODE[ext], str(path)],
            check=True, timeout=120,
        )  # fmt: skip
    return str(path)


class Record:
    """What a run of a test saw: every frame read, in order, and every check's values."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.values: list[object] = []


def check_frame_read(cap: Capture, idx: int, rec: Record) -> None:
    ok, img = cap.read()
    assert ok and img is not None and img.size, f"idx={idx}"
    rec.frames.append(img)


def check_frame_seek(cap: Capture, idx: int, rec: Record) -> None:
    assert cap.set(cv2.CAP_PROP_POS_FRAMES, idx), f"seek to {idx}"
    assert int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == idx
    rec.values.append(("seek", idx, cap.get(cv2.CAP_PROP_POS_FRAMES)))
    check_frame_read(cap, idx, rec)


def do_test(cap: Capture, ext: str, count: int | None = None) -> Record:
    """``Videoio_Test_Base::doTest``: frame count, consecutive reads, progressive and random
    seeks (the same pseudo-random positions for every capture)."""
    rec = Record()
    assert cap.isOpened()
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    # a raw H.264/H.265 file does not say its length: cv2 gives a meaningless negative number
    # there (-192153584101141), framebus -1; both mean "unknown", as OpenCV's test reads them
    rec.values.append(("count", n_frames if n_frames > 0 else "unknown"))
    if n_frames > 0 and count is not None:
        assert n_frames == count
    elif n_frames <= 0:
        n_frames = 50  # as OpenCV: "not supported by backend, assume 50 frames"
    for k in range(n_frames):
        check_frame_read(cap, k, rec)
    if not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
        return rec  # seeking not supported: OpenCV skips the rest
    if ext not in ("wmv", "h264", "h265"):
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        for k in range(0, n_frames, 20):
            check_frame_seek(cap, k, rec)
    if ext not in ("mpg", "wmv", "h264", "h265"):
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        rng = random.Random(n_frames)
        for _ in range(10):
            check_frame_seek(cap, rng.randrange(n_frames), rec)
    return rec


def frame_count_test(cap: Capture, ext: str) -> Record:
    """``videoio_bunny::doFrameCountTest``."""
    rec = Record()
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert size == (BUNNY_W, BUNNY_H)
    fps = cap.get(cv2.CAP_PROP_FPS)
    if fps > 0:
        assert abs(fps - BUNNY_FPS) <= 1
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if ext != "mpg" and count > 0:  # (OpenCV: mpg's duration gives 122, not 125)
        assert count == BUNNY_COUNT
    actual = 0
    while cap.isOpened():
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape[:2] == (BUNNY_H, BUNNY_W)
        rec.frames.append(frame)
        actual += 1
    if count > 0:
        assert abs(actual - BUNNY_COUNT) <= 1
    known = count if count > 0 else "unknown"
    rec.values += [("size", size), ("fps", fps), ("count", known), ("actual", actual)]
    return rec


def on_both(test: Callable[[Capture], Record], path: str) -> None:
    """``test`` on cv2's capture (it must pass: else the case is skipped), then on framebus's:
    it must pass too, with the same frames and the same values."""
    theirs = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not theirs.isOpened():
            pytest.skip(f"cv2 cannot open {Path(path).name} here")
        expected = test(theirs)
    finally:
        theirs.release()
    with framebus.VideoCapture(path, cv2.CAP_FFMPEG) as ours:
        got = test(ours)
    assert got.values == expected.values
    assert len(got.frames) == len(expected.frames)
    for n, (a, b) in enumerate(zip(got.frames, expected.frames, strict=True)):
        assert np.array_equal(a, b), f"frame {n} differs"


@pytest.mark.parametrize("ext", list(BUNNY_ENCODE))
def test_videoio_bunny_read_position(bunny_dir: Path, ext: str) -> None:
    path = bunny(bunny_dir, ext)
    on_both(lambda cap: do_test(cap, ext), path)


@pytest.mark.parametrize("ext", list(BUNNY_ENCODE))
def test_videoio_bunny_frame_count(bunny_dir: Path, ext: str) -> None:
    path = bunny(bunny_dir, ext)
    on_both(lambda cap: frame_count_test(cap, ext), path)


# -- videoio_synthetic ----------------------------------------------------------------------------

SYNTHETIC = [("avi", "XVID"), ("avi", "MPEG"), ("avi", "IYUV"), ("avi", "MJPG"),
             ("mkv", "XVID"), ("mkv", "MPEG"), ("mkv", "MJPG")]  # fmt: skip
SIZES = [(640, 480), (976, 768)]
SYNTH_FRAMES, SYNTH_FPS, PSNR_MIN = 100, 25.0, 30.0


def generate_frame(i: int, n: int, size: tuple[int, int]) -> np.ndarray:
    """A picture that changes from frame to frame, with edges and flat areas (in the spirit
    of OpenCV's ``generateFrame``: its exact drawing is not the point, PSNR against it is)."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(255, 0, h, dtype=np.uint8)[:, None]
    img[:, :, 2] = 255 * i // n
    x = (w - 100) * i // n
    cv2.rectangle(img, (x, h // 3), (x + 100, h // 3 + 100), (255, 255, 255), -1)
    cv2.putText(img, str(i), (20, h - 40), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 0), 4)
    return img


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(("ext", "fourcc"), SYNTHETIC, ids=lambda v: str(v))
def test_videoio_synthetic_write_read_position(
    tmp_path: Path, ext: str, fourcc: str, size: tuple[int, int]
) -> None:
    path = str(tmp_path / f"{fourcc}.{ext}")
    writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), SYNTH_FPS, size)
    if not writer.isOpened():
        pytest.skip(f"cv2 cannot write {fourcc} in .{ext} here")
    for i in range(SYNTH_FRAMES):
        writer.write(generate_frame(i, SYNTH_FRAMES, size))
    writer.release()

    def test(cap: Capture) -> Record:
        rec = do_test(cap, ext)
        for k, img in enumerate(rec.frames[:SYNTH_FRAMES]):  # the consecutive reads
            psnr = cv2.PSNR(img, generate_frame(k, SYNTH_FRAMES, size))
            assert psnr > PSNR_MIN, f"frame {k}: PSNR {psnr:.1f}"
        return rec

    on_both(test, path)


# -- test_videoio.py ------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", list(OPENERS))
def test_context_manager(bunny_dir: Path, opener: str) -> None:
    path = bunny(bunny_dir, "avi")
    if not hasattr(cv2.VideoCapture, "__enter__") and opener == "cv2":
        pytest.skip(f"this cv2 ({cv2.__version__}) has no context manager (a newer OpenCV has)")
    with OPENERS[opener](path, cv2.CAP_ANY) as cap:
        assert cap.isOpened()
    assert not cap.isOpened()
    with pytest.raises(RuntimeError), OPENERS[opener](path, cv2.CAP_ANY) as cap:
        assert cap.isOpened()
        raise RuntimeError("context manager exception safety")
    assert not cap.isOpened()
