"""``framebus cat``: frames to standard output for real ffmpeg, ffprobe, head and framebus.pipe
readers; a stopped reader does not slow the camera; a closed pipe ends quietly."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import framebus
from conftest import wait_until
from sampletools import opencv_frames

FFMPEG = ["ffmpeg", "-v", "error"]


def cat_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "framebus", "cat", *args]


def decode_file(path: Path) -> np.ndarray:
    return np.stack(opencv_frames(path))


def cat_into(cat_args: list[str], consumer: list[str]) -> tuple[bytes, int]:
    """``framebus cat ARGS | CONSUMER``: the consumer's stdout and cat's status."""
    cat = subprocess.Popen(cat_cmd(*cat_args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = subprocess.run(consumer, stdin=cat.stdout, capture_output=True, timeout=60)
    finally:
        assert cat.stdout is not None
        cat.stdout.close()
        _, err = cat.communicate(timeout=30)
    assert out.returncode == 0, out.stderr
    assert not err, err
    return out.stdout, cat.returncode


def test_y4m_into_ffmpeg(video_file: Path) -> None:
    raw, status = cat_into(
        [str(video_file), "--format", "y4m"],
        [*FFMPEG, "-i", "-", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
    )
    assert status == 0
    expected = decode_file(video_file)
    got = np.frombuffer(raw, np.uint8).reshape(-1, 240, 320, 3)
    assert got.shape == expected.shape  # every frame of the file, in order
    diff = np.abs(got.astype(int) - expected)  # BGR -> 4:2:0 -> BGR
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6


def test_y4m_header_says_what_ffprobe_reads(video_file: Path) -> None:
    out, status = cat_into(
        [str(video_file), "--format", "y4m", "--frames", "5"],
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=width,height,r_frame_rate,nb_read_frames,pix_fmt", "-of", "csv=p=0", "-i", "-"],
    )  # fmt: skip
    assert status == 0
    assert out.decode().strip() == "320,240,yuv420p,25/1,5"  # limited range, as written


def test_framebus_format_is_exact(video_file: Path) -> None:
    reader = (
        "import sys, numpy as np, framebus\n"
        "np.save(sys.argv[1], np.stack([f for f, _ in framebus.pipe.frames(sys.stdin.buffer)]))\n"
    )
    out = video_file.parent / "cat.npy"
    _, status = cat_into([str(video_file)], [sys.executable, "-c", reader, str(out)])
    assert status == 0
    assert np.array_equal(np.load(out), decode_file(video_file))


def test_mjpeg_and_raw_into_ffmpeg(video_file: Path) -> None:
    count = ["-count_frames", "-show_entries", "stream=nb_read_frames,width", "-of", "csv=p=0"]
    out, _ = cat_into(
        [str(video_file), "--format", "mjpeg", "--quality", "90"],
        ["ffprobe", "-v", "error", "-f", "mjpeg", *count, "-i", "-"],
    )
    assert out.decode().strip() == "320,48"
    raw, _ = cat_into(
        [str(video_file), "--format", "raw"],
        [*FFMPEG, "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "320x240", "-i", "-",
         "-f", "rawvideo", "-"],
    )  # fmt: skip
    assert np.array_equal(
        np.frombuffer(raw, np.uint8).reshape(-1, 240, 320, 3), decode_file(video_file)
    )


@pytest.mark.parametrize("fmt", ["framebus", "y4m", "mjpeg"])
def test_a_closed_pipe_ends_quietly(pattern_stream: framebus.Publisher, fmt: str) -> None:
    shell = f"{' '.join(cat_cmd(pattern_stream.name, '--format', fmt))} | head -c 1000"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr  # pipefail: cat's own status
    assert len(out.stdout) == 1000
    assert out.stderr == b""


def test_a_closed_pipe_with_a_private_source_ends_quietly() -> None:
    shell = f"{' '.join(cat_cmd('testpattern:320x240@30'))} | head -c 1000"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stderr == b"", out.stderr


@pytest.fixture
def fast_stream(stream_name: str) -> Iterator[framebus.Publisher]:
    with framebus.publish(stream_name, framebus.TestPattern(320, 240, fps=200)) as pub:
        yield pub


def test_a_stopped_reader_does_not_slow_the_camera(fast_stream: framebus.Publisher) -> None:
    cat = subprocess.Popen(cat_cmd(fast_stream.name), stdout=subprocess.PIPE)
    try:
        assert cat.stdout is not None
        frames = framebus.pipe.frames(cat.stdout)
        first = next(frames)[1].seq  # cat writes; from now on nobody reads the pipe
        # the pipe and cat's slot fill up and cat's writes block: the camera goes on
        start = fast_stream.stats().captured
        assert wait_until(lambda: fast_stream.stats().captured >= start + 100, timeout=30)
        with framebus.attach(fast_stream.name, timeout=10) as other:
            ok, _ = other.read()  # another reader still gets fresh frames meanwhile
            assert ok and other.info is not None and other.info.seq >= start + 100
        resume = fast_stream.stats().captured
        seqs = [next(frames)[1].seq for _ in range(5)]
    finally:
        cat.kill()
        cat.wait(30)
        assert cat.stdout is not None
        cat.stdout.close()
    # what waited in the kernel pipe and cat's slot is old; then the newest frames come
    assert seqs[0] < resume - 50
    assert max(seqs) >= resume - 2, (first, resume, seqs)


class SizeChanger(framebus.Source):
    """320x240 frames until ``shrink`` is set, then 160x120."""

    fps = 50.0

    def __init__(self) -> None:
        self.shrink = threading.Event()

    def read(self) -> np.ndarray:
        time.sleep(0.02)
        size = (120, 160, 3) if self.shrink.is_set() else (240, 320, 3)
        return np.full(size, 128, np.uint8)


@pytest.mark.parametrize("fmt", ["y4m", "raw"])
def test_a_size_change_ends_y4m_and_raw_with_one_line(stream_name: str, fmt: str) -> None:
    source = SizeChanger()
    with framebus.publish(stream_name, source):
        cat = subprocess.Popen(
            cat_cmd(stream_name, "--format", fmt), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert cat.stdout is not None
        cat.stdout.read(1000)  # it is writing
        source.shrink.set()
        threading.Thread(target=cat.stdout.read, daemon=True).start()  # drain
        _, err = cat.communicate(timeout=30)
    lines = err.decode().strip().splitlines()
    assert cat.returncode == 1 and len(lines) == 1, err
    assert "changed from 320x240x3 to 160x120x3" in lines[0]
    assert f"{fmt} cannot change size" in lines[0]


def test_mjpeg_and_framebus_follow_a_size_change(stream_name: str) -> None:
    source = SizeChanger()
    with framebus.publish(stream_name, source):
        cat = subprocess.Popen(cat_cmd(stream_name), stdout=subprocess.PIPE)
        try:
            assert cat.stdout is not None
            frames = framebus.pipe.frames(cat.stdout)
            assert next(frames)[0].shape == (240, 320, 3)
            source.shrink.set()
            assert any(next(frames)[0].shape == (120, 160, 3) for _ in range(20))
        finally:
            cat.kill()
            cat.wait(30)
            assert cat.stdout is not None
            cat.stdout.close()


def test_errors_are_one_line(tmp_path: Path) -> None:
    for args, needle in [
        (("nosuchstream",), "no stream 'nosuchstream'"),
        ((str(tmp_path / "missing.mp4"),), "no such file"),
        (("testpattern", "--format", "gif"), "invalid choice"),
        (("testpattern", "--frames", "0"), "positive number of frames"),
    ]:
        out = subprocess.run(
            cat_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=60,
        )  # fmt: skip
        lines = out.stderr.strip().splitlines()
        assert out.returncode in (1, 2) and needle in out.stderr, out.stderr
        assert len(lines) == 1 or out.returncode == 2


def test_a_terminal_on_stdout_is_refused() -> None:
    leader, follower = pty.openpty()
    try:
        out = subprocess.run(
            cat_cmd("testpattern"), stdout=follower, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert out.returncode == 1
    assert b"standard output is a terminal" in out.stderr


class FloatFrames(framebus.Source):
    fps = 50.0

    def read(self) -> np.ndarray:
        time.sleep(0.02)
        return np.zeros((24, 32, 3), np.float64)


def test_a_frame_the_format_cannot_carry_is_one_line(stream_name: str) -> None:
    with framebus.publish(stream_name, FloatFrames()):
        out = subprocess.run(
            cat_cmd(stream_name, "--format", "y4m"), capture_output=True, timeout=60
        )
    lines = out.stderr.decode().strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "y4m needs 8-bit or 16-bit frames, not float64" in lines[0]
    assert out.stdout == b""


class Flat(framebus.Source):
    fps = 50.0

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def read(self) -> np.ndarray:
        time.sleep(0.02)
        frame = np.empty(self.shape, np.uint8)
        frame[...] = (40, 120, 200) if len(self.shape) == 3 else 90
        return frame


@pytest.mark.parametrize(
    ("shape", "pix_fmt"), [((121, 161, 3), "yuv420p"), ((120, 160), "gray")], ids=["odd", "grey"]
)
def test_odd_sizes_and_grey_frames_as_y4m(
    stream_name: str, shape: tuple[int, ...], pix_fmt: str
) -> None:
    with framebus.publish(stream_name, Flat(shape)):
        out, status = cat_into(
            [stream_name, "--format", "y4m", "--frames", "3"],
            [*FFMPEG, "-i", "-", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        )
        probe, _ = cat_into(
            [stream_name, "--format", "y4m", "--frames", "1"],
            ["ffprobe", "-v", "error", "-show_entries", "stream=width,height,pix_fmt",
             "-of", "csv=p=0", "-i", "-"],
        )  # fmt: skip
    assert status == 0
    h, w = shape[:2]
    assert probe.decode().strip() == f"{w},{h},{pix_fmt}"
    got = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
    expected = (40, 120, 200) if len(shape) == 3 else (90, 90, 90)
    assert len(got) == 3 and np.abs(got.astype(int) - expected).max() <= 3


@pytest.mark.parametrize("where", ["/dev/full", "closed"])
def test_an_unwritable_stdout_is_one_line_and_a_failure(
    pattern_stream: framebus.Publisher, where: str
) -> None:
    """Before: a traceback (OSError ENOSPC; AttributeError on a closed stdout), status 1."""
    if where == "closed":
        out = subprocess.run(
            ["sh", "-c", '"$0" -m framebus cat "$1" >&-', sys.executable, pattern_stream.name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    else:
        with open(where, "wb") as full:
            out = subprocess.run(
                cat_cmd(pattern_stream.name), stdout=full, stderr=subprocess.PIPE, text=True,
                timeout=60,
            )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("framebus: error:") and "standard output" in lines[0]
