"""framebus.sample(): exact frame indexes and pixels against OpenCV, on real ffmpeg output."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from framebus.sinks.disk import DEFAULT_TEMPLATE, ImageWriter, NameTemplate
from fuzzing import fuzz
from sampletools import make_h264, opencv_frames

FRAMES = 120
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264(tmp_path_factory.mktemp("sample") / "in.mp4", FRAMES)


@pytest.fixture(scope="module")
def cv2_frames(video: Path) -> list[np.ndarray]:
    """Every frame as cv2.VideoCapture.read() gives them, in order: the reference."""
    frames = opencv_frames(video)
    assert len(frames) == FRAMES
    return frames


def indexes(folder: Path) -> list[int]:
    assert not [p for p in os.listdir(folder) if p.startswith(".")], "temporary files left"
    return sorted(int(p.split(".")[0]) for p in os.listdir(folder))


def test_every_n_gives_exact_indexes_and_opencvs_pixels(
    video: Path, cv2_frames: list[np.ndarray], tmp_path: Path
) -> None:
    s = framebus.sample(video, tmp_path, every=7, format="png")
    want = list(range(0, FRAMES, 7))
    assert indexes(tmp_path) == want
    assert (s.decoded, s.written, s.skipped_existing, s.done) == (FRAMES, len(want), 0, True)
    assert 0 < s.undecoded < FRAMES - len(want)  # B-frames nothing kept needs: not decoded
    for i in want:
        img = cv2.imread(str(tmp_path / f"{i:08d}.png"))
        # PyAV's bgr24 conversion and OpenCV's are the same swscale call: no tolerance
        assert np.array_equal(img, cv2_frames[i]), f"frame {i} differs from OpenCV's"


def test_jpeg_files_are_the_frames(
    video: Path, cv2_frames: list[np.ndarray], tmp_path: Path
) -> None:
    framebus.sample(framebus.Media(str(video)), tmp_path, every=50, quality=90)
    assert indexes(tmp_path) == [0, 50, 100]
    img = cv2.imread(str(tmp_path / "00000050.jpg"))
    error = np.abs(img.astype(int) - cv2_frames[50].astype(int)).mean()
    assert img.shape == (240, 320, 3) and error < 4  # lossy, but that frame and no other
    assert np.abs(img.astype(int) - cv2_frames[0].astype(int)).mean() > 2 * error


def test_interval_takes_the_first_frame_of_each_interval(video: Path, tmp_path: Path) -> None:
    framebus.sample(video, tmp_path, interval=0.5, format="png")
    # 25 fps: frame i is at i/25 s; [0.5k, 0.5k+0.5) starts at frame ceil(12.5 k)
    assert indexes(tmp_path) == [0, 13, 25, 38, 50, 63, 75, 88, 100, 113]


def test_start_end_and_max_select_from_the_same_set(video: Path, tmp_path: Path) -> None:
    s = framebus.sample(video, tmp_path / "a", every=10, start=1.0, end=3.0)
    assert indexes(tmp_path / "a") == [30, 40, 50, 60, 70]  # frames 25..74
    assert s.decoded == 75  # the frame at 3.0 s ends the window and is not counted
    s = framebus.sample(video, tmp_path / "b", every=10, start=1.0, max=2)
    assert indexes(tmp_path / "b") == [30, 40] and s.decoded == 41


def test_resume_keeps_existing_files_and_completes_the_set(video: Path, tmp_path: Path) -> None:
    framebus.sample(video, tmp_path, every=10, max=3)
    first = tmp_path / "00000010.jpg"
    os.utime(first, (1, 1))  # a file resume must not touch
    s = framebus.sample(video, tmp_path, every=10, resume=True)
    assert indexes(tmp_path) == list(range(0, FRAMES, 10))
    assert (s.skipped_existing, s.written) == (3, 9)
    assert first.stat().st_mtime == 1


def test_stale_temporary_files_of_dead_writers_are_removed(video: Path, tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / f".00000000.jpg.framebus-{dead}.tmp").write_bytes(b"half an image")
    # not framebus's: another program's temporary files of a dead pid are left alone
    # (before: any ".X.PID.tmp" of a dead pid was deleted)
    foreign = [f".notes.txt.{dead}.tmp", f".00000000.jpg.{dead}.tmp", f".x.framebus-{dead}.tmp"]
    for name in foreign:
        (tmp_path / name).write_bytes(b"someone else's")
    if os.geteuid() == 0:  # one of our own pattern, but another user's file
        other = tmp_path / f".00000001.jpg.framebus-{dead}.tmp"
        other.write_bytes(b"another user's")
        os.chown(other, 65534, 65534)
        foreign.append(other.name)
    framebus.sample(video, tmp_path, every=100)
    assert sorted(os.listdir(tmp_path)) == sorted(["00000000.jpg", "00000100.jpg", *foreign])


def test_template(video: Path, tmp_path: Path) -> None:
    framebus.sample(video, tmp_path, every=60, template="frame_{index:05d}.{ext}", fsync=True)
    assert sorted(os.listdir(tmp_path)) == ["frame_00000.jpg", "frame_00060.jpg"]
    bad = ["{index}/x.jpg", "x.jpg", "{foo}{index}.jpg", "{index:s}.jpg", ".{index}", "{index",
           "{index:.0}{ext}"]  # fmt: skip
    for template in bad:
        with pytest.raises(ValueError, match="invalid template"):
            NameTemplate(template, "jpg")


def test_bad_arguments_fail_before_any_work(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for kw in [
        {"every": 0},
        {"interval": -1.0},
        {"every": 2, "interval": 1.0},
        {},
        {"every": 2, "quality": 0},
        {"every": 2, "format": "gif"},
        {"every": 2, "start": 2.0, "end": 1.0},
        {"every": 2, "max": 0},
    ]:
        with pytest.raises(ValueError):
            framebus.sample(video, out, **kw)  # type: ignore[arg-type]
    with pytest.raises(framebus.SourceNotFound, match="no such file"):
        framebus.sample(tmp_path / "missing.mp4", out, every=2)
    with pytest.raises(ValueError, match="cannot write"):
        framebus.sample(video, video / "out", every=2)  # under a file
    with pytest.raises(framebus.StreamNotFound):
        framebus.sample("nosuchstream", out, interval=1.0)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(framebus.SourceOpenError):
        framebus.sample(tmp_path / "text.mp4", out, every=2)
    assert not out.exists() or not os.listdir(out)


def test_named_stream_one_frame_per_interval(
    pattern_stream: framebus.Publisher, tmp_path: Path
) -> None:
    s = framebus.sample(pattern_stream.name, tmp_path, interval=0.2, max=3, format="png")
    seqs = indexes(tmp_path)
    assert len(seqs) == 3 == s.written and s.kind == "stream"
    assert seqs[0] < seqs[1] < seqs[2]
    assert cv2.imread(str(tmp_path / f"{seqs[0]:08d}.png")).shape == (240, 320, 3)
    with pytest.raises(ValueError, match="interval"):
        framebus.sample(pattern_stream.name, tmp_path, every=5)


def test_live_source_is_published_privately_for_the_run(tmp_path: Path) -> None:
    s = framebus.sample("testpattern:160x120@25", tmp_path, interval=0.25, end=1.0)
    # bounds, not timing: at most one per 0.25 s of 1 s (+ the first), at least the first
    assert 1 <= s.written == len(indexes(tmp_path)) <= 5
    assert not [x for x in framebus.list_streams() if x.name.startswith("sample-")]


def test_example_runs(video: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sample_every_nth.py"), str(video),
         str(tmp_path), "40"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert indexes(tmp_path) == [0, 40, 80]


def test_writer_pool_is_bounded_and_reports_worker_errors(tmp_path: Path) -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    go = threading.Event()

    def slow() -> np.ndarray:
        go.wait(10)
        return frame

    writer = ImageWriter(tmp_path, NameTemplate(DEFAULT_TEMPLATE, "png"), "png", 1, workers=2)
    for i in range(4):  # 2 running + 2 waiting: the bound
        writer.submit(i, slow)
    fifth = threading.Thread(target=writer.submit, args=(4, frame))
    fifth.start()
    fifth.join(0.3)
    assert fifth.is_alive(), "submit() did not wait for a free place"
    go.set()
    fifth.join(10)

    def broken() -> np.ndarray:
        raise OSError(28, "No space left on device")

    writer.submit(5, broken)
    with pytest.raises(OSError, match="No space"):
        writer.close()
    assert sorted(os.listdir(tmp_path)) == [f"{i:08d}.png" for i in range(5)]


def test_a_truncated_file_gives_what_opencv_reads(tmp_path: Path) -> None:
    whole = make_h264(tmp_path / "whole.mkv", 100).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: len(whole) // 2])
    frames = opencv_frames(cut)
    s = framebus.sample(cut, tmp_path / "o", every=1, format="png")
    assert 10 < s.written == len(frames) < 100
    assert all(
        np.array_equal(cv2.imread(str(tmp_path / "o" / f"{i:08d}.png")), f)
        for i, f in enumerate(frames)
    )


_TOKENS = [
    *("{index", "{ext", "}", "{", ":", "!r", "!s", "08d", "x", "e", "c", ".", "2", ">", "_"),
    *(",", "/", "frame", "\x00", "\ud800", "é", "{index}", "{ext}", "%", "{0}"),
]


@fuzz(300)
@given(tokens=st.lists(st.sampled_from(_TOKENS), max_size=8), ext=st.sampled_from(["jpg", "png"]))
def test_templates_are_valid_or_refused(tokens: list[str], ext: str) -> None:
    """Any template either raises ValueError or gives every index its own plain file name."""
    template = "".join(tokens)
    try:
        t = NameTemplate(template, ext)  # type: ignore[arg-type]
    except ValueError:
        return
    indexes = [*range(300), 10**6, 10**6 + 1, 10**9, 10**9 + 7]
    names = [t.name(i) for i in indexes]
    assert len(set(names)) == len(names), template
    for n in names:
        assert "/" not in n and "\x00" not in n and not n.startswith(".") and n
        os.fsencode(n)
