"""Standard input as a source (``"-"``): fed by real ffmpeg and framebus processes, and by bad
bytes; the capture process reads a duplicate of the publisher's stdin."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from sampletools import opencv_frames

HELPER = Path(__file__).resolve().parent.parent / "helpers" / "pipe_capture.py"
LAVFI = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25"]


def capture(stdin: bytes | int, tmp_path: Path) -> tuple[dict[str, object], np.ndarray | None]:
    """Run VideoCapture("-") in a fresh process with ``stdin`` (bytes, or a readable fd)."""
    out = tmp_path / "frames.npy"
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(out)],
        input=stdin if isinstance(stdin, bytes) else None,
        stdin=None if isinstance(stdin, bytes) else stdin,
        capture_output=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result, (np.load(out) if out.exists() else None)


def ffmpeg_bytes(*args: str) -> bytes:
    return subprocess.run([*LAVFI, *args], capture_output=True, check=True, timeout=60).stdout


def test_y4m_from_ffmpeg(tmp_path: Path) -> None:
    y4m = ffmpeg_bytes("-frames:v", "12", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-")
    reference = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        input=y4m,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    ref = np.frombuffer(reference, np.uint8).reshape(-1, 120, 160, 3)
    # fed through a real pipe from a running ffmpeg, as `ffmpeg ... | python app.py` does
    ff = subprocess.Popen(
        [*LAVFI, "-frames:v", "12", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"],
        stdout=subprocess.PIPE,
    )
    try:
        assert ff.stdout is not None
        result, frames = capture(ff.stdout.fileno(), tmp_path)
    finally:
        assert ff.stdout is not None
        ff.stdout.close()
        ff.wait(30)
    assert result["frames"] == 12 and result["fps"] == 25.0, result
    assert result["error"] is not None and "StreamEnded" in str(result["error"])
    assert frames is not None and frames.shape == ref.shape
    diff = np.abs(frames.astype(int) - ref)  # OpenCV's and swscale's YUV->BGR differ slightly
    assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6


def test_grey_and_odd_sized_y4m(tmp_path: Path) -> None:
    grey = ffmpeg_bytes("-frames:v", "3", "-pix_fmt", "gray", "-f", "yuv4mpegpipe", "-")
    result, frames = capture(grey, tmp_path)
    assert result["frames"] == 3 and frames is not None and frames.shape == (3, 120, 160)
    odd = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=161x121:rate=25",
         "-frames:v", "2", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    result, frames = capture(odd, tmp_path)
    assert result["frames"] == 2 and frames is not None and frames.shape == (2, 121, 161, 3)


def test_mjpeg_from_ffmpeg_decodes_like_the_jpeg_files(tmp_path: Path) -> None:
    mjpeg = ffmpeg_bytes("-frames:v", "8", "-q:v", "3", "-f", "mjpeg", "-")
    subprocess.run(
        [*LAVFI, "-frames:v", "8", "-q:v", "3", str(tmp_path / "f%02d.jpg")],
        check=True,
        timeout=60,
    )
    result, frames = capture(mjpeg, tmp_path)
    assert result["frames"] == 8, result
    assert frames is not None
    for i, frame in enumerate(frames):
        assert np.array_equal(frame, cv2.imread(str(tmp_path / f"f{i + 1:02d}.jpg")))


def test_framebus_wire_from_framebus_cat_is_exact(tmp_path: Path, video_file: Path) -> None:
    cat = subprocess.Popen(
        [sys.executable, "-m", "framebus", "cat", str(video_file)], stdout=subprocess.PIPE
    )
    try:
        assert cat.stdout is not None
        result, frames = capture(cat.stdout.fileno(), tmp_path)
    finally:
        assert cat.stdout is not None
        cat.stdout.close()
        cat.wait(30)
    assert cat.returncode == 0
    expected = opencv_frames(video_file)
    assert result["frames"] == 48 and frames is not None
    assert np.array_equal(frames, np.stack(expected))


def _wire_frame() -> bytes:
    import io

    import framebus

    buf = io.BytesIO()
    framebus.pipe.write(buf, np.zeros((8, 8, 3), np.uint8))
    return buf.getvalue()


def _bad_inputs() -> list[tuple[str, bytes, str]]:
    y4m_head = b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\n"
    return [
        ("empty", b"", "the input is empty at byte offset 0"),
        ("garbage", b"GIF89a" + bytes(100), "unknown input at byte offset 0"),
        ("y4m 444", b"YUV4MPEG2 W16 H16 F25:1 C444\nFRAME\n" + bytes(768), "colour space C444"),
        ("y4m endless", b"YUV4MPEG2 W16 H16" + b" Xx" * 200, "longer than 256 bytes"),
        ("y4m truncated", y4m_head + b"FRAME\n" + bytes(100), "truncated y4m frame at byte"),
        ("y4m bad frame", y4m_head + b"FRAMX\n" + bytes(384), "expected FRAME"),
        ("wire truncated", _wire_frame()[:-5], "truncated frame at byte offset 0"),
        ("jpeg truncated", b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated JPEG at byte offset 0"),
    ]


@pytest.mark.parametrize(("data", "needle"), [c[1:] for c in _bad_inputs()],
                         ids=[c[0] for c in _bad_inputs()])  # fmt: skip
def test_bad_input_is_a_pipe_format_error(data: bytes, needle: str, tmp_path: Path) -> None:
    result, _ = capture(data, tmp_path)
    assert "PipeFormatError" in str(result.get("open_error")), result
    assert needle in str(result["open_error"])


def test_bad_input_on_the_command_line_is_one_line() -> None:
    for _, data, needle in _bad_inputs()[:4]:
        out = subprocess.run(
            [sys.executable, "-m", "framebus", "serve", "x=-", "--quiet"],
            input=data,
            capture_output=True,
            timeout=60,
        )
        lines = out.stderr.decode().strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1, out.stderr
        assert lines[0].startswith("framebus: error: pipe:") and needle in lines[0]


def test_a_truncated_frame_mid_stream_fails_the_stream(tmp_path: Path) -> None:
    y4m = ffmpeg_bytes("-frames:v", "3", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-")
    result, frames = capture(y4m[:-1000], tmp_path)
    assert result["frames"] == 2, result  # the frames before the cut are delivered
    assert frames is not None and frames.shape == (2, 120, 160, 3)
    assert "truncated y4m frame" in str(result["error"])


def test_a_terminal_is_refused() -> None:
    leader, follower = pty.openpty()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "framebus", "serve", "x=-"],
            stdin=follower,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert out.returncode == 1
    assert "stdin: it is a terminal" in out.stderr.decode()


def test_any_readable_descriptor_and_no_descriptor_leaks() -> None:
    import framebus
    from framebus.sources import Pipe

    y4m = b"YUV4MPEG2 W8 H8 F10:1 Cmono\n" + b"".join(
        b"FRAME\n" + bytes([i]) * 64 for i in range(5)
    )
    from framebus.capture._forkserver import fork_server

    fork_server() or fork_server()  # its socket is the process's, for good: opened before
    r, w = os.pipe()
    os.write(w, y4m)
    os.close(w)
    before = set(os.listdir("/proc/self/fd"))
    try:
        with framebus.VideoCapture(Pipe(fd=r), timeout=20) as cap:
            got = [int(frame[0, 0]) for frame in cap]
            assert cap.publisher.stats().source == f"fd:{r}"
    finally:
        os.close(r)
    assert got == [0, 1, 2, 3, 4]
    assert set(os.listdir("/proc/self/fd")) <= before  # the duplicate went to the child only


def test_ffmpeg_into_framebus_serve(stream_name: str) -> None:
    """`ffmpeg ... -f yuv4mpegpipe - | framebus serve NAME=-`, read by another process."""
    import framebus
    from conftest import wait_until

    shell = (
        f"{' '.join(LAVFI)} -frames:v 20 -pix_fmt yuv420p -f yuv4mpegpipe - | "
        f"{sys.executable} -m framebus serve {stream_name}=- --quiet"
    )
    serve = subprocess.Popen(["bash", "-o", "pipefail", "-c", shell], stderr=subprocess.PIPE)
    try:
        names = lambda: [s.name for s in framebus.list_streams()]  # noqa: E731
        assert wait_until(lambda: stream_name in names(), timeout=30)
        with framebus.attach(stream_name, timeout=20) as reader:
            shapes = [frame.shape for frame in reader]  # every mode: held for the first reader
            assert reader.stats().source == "stdin"
        _, err = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert shapes == [(120, 160, 3)] * 20
    assert serve.returncode == 0 and not err, err
