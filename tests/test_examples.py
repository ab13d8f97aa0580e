"""Every program in examples/ runs, on the built-in test pattern, with bounded durations."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import framebus
from conftest import wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM (the publisher removes its stream), then collect the output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def streams() -> set[str]:
    return {s.name for s in framebus.list_streams()}


def test_manager_stack(stream_name: str) -> None:
    out = run(
        "manager_stack.py", "testpattern:320x240@100", "--seconds", "1", "--name", stream_name
    )
    frames = re.findall(r"frame (\d+) \(240, 320, 3\): skipped (\d+)", out)
    assert len(frames) >= 3, out
    assert sum(int(skipped) for _, skipped in frames) > 0  # the slow reader got newest frames
    assert "Process to write" in out and "Process to read" in out


def test_process_image() -> None:
    out = run("process_image.py", "testpattern:320x240@60", "--frames", "5")
    assert len(re.findall(r"^classic: frame \d+, \d+ edge pixels$", out, re.M)) == 5, out
    assert len(re.findall(r"^iterator: \(240, 320\)$", out, re.M)) == 5, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_flask_mjpeg(stream_name: str) -> None:
    pytest.importorskip("flask")
    port = free_port()
    proc = start(
        "flask_mjpeg.py", "testpattern:320x240@30", "--port", str(port), "--name", stream_name
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    return b"/video_feed" in page.read()
            except OSError:
                return False

        assert wait_until(up, timeout=30), stop(proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/video_feed", timeout=10) as resp:
            assert resp.headers.get_content_type() == "multipart/x-mixed-replace"
            body = b""
            while body.count(b"\xff\xd9") < 3 and len(body) < 4 << 20:  # three whole JPEGs
                body += resp.read1(65536)
        parts = re.findall(rb"Content-Type: image/jpeg\r\n(?:[^\r\n]+\r\n)*\r\n\xff\xd8", body)
        assert len(parts) >= 3
        # /video_feed is the marked stream (the seed's frame_marked), written with like=
        marked = {s.name: s for s in framebus.list_streams()}[f"{stream_name}-marked"]
        assert marked.captured > 0 and marked.source.startswith("writer pid")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/raw_feed", timeout=10) as resp:
            raw = b""
            while b"\xff\xd9" not in raw and len(raw) < 4 << 20:  # a whole JPEG
                raw += resp.read1(65536)
            assert b"Content-Type: image/jpeg" in raw
    finally:
        _, err = stop(proc)
    assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), err
    assert not streams() & {stream_name, f"{stream_name}-marked"}


def test_detect_and_show(stream_name: str) -> None:
    out = run(
        "detect_and_show.py", "testpattern:320x240@30", "--name", stream_name, "--port", "0",
        "--seconds", "3", "--delay", "0.05",
    )  # fmt: skip
    assert "camera and detections at http://127.0.0.1:" in out
    delay = re.search(r"1 frames annotated, detection (\d+) ms after capture", out)
    assert delay and int(delay.group(1)) >= 50, out  # the detector's time is in the age
    assert not streams() & {stream_name, f"{stream_name}-boxes"}


def test_shm_writer_and_reader(stream_name: str) -> None:
    writer = start(
        "shm_writer.py", "testpattern:320x240@100", "--name", stream_name, "--seconds", "60"
    )
    try:
        out = run("shm_reader.py", "--name", stream_name, "--frames", "40", "--wait", "30")
        assert "40 frames read" in out and "(240, 320, 3)" in out
        assert stream_name in streams()  # the reader left; the writer goes on
    finally:
        out, err = stop(writer)
    assert "writer is ready" in out and "frames captured" in out, err
    assert stream_name not in streams()


def test_shm_writer_of_a_file_ends_and_reader_gets_every_frame(
    video_file: Path, stream_name: str
) -> None:
    # the reader first: it waits for the writer
    reader = start("shm_reader.py", "--name", stream_name, "--wait", "30")
    try:
        out = run("shm_writer.py", str(video_file), "--name", stream_name, "--seconds", "40")
    finally:
        if reader.poll() is None and stream_name not in streams():
            reader.kill()
    assert "48 frames captured, state ended" in out
    got, err = reader.communicate(timeout=30)
    assert reader.returncode == 0 and "48 frames read" in got, err


def test_instead_of_diskcache(stream_name: str) -> None:
    common = ("--name", stream_name)
    writer = start(
        "instead_of_diskcache.py", "write", *common, "--interval", "0.3", "--count", "4",
        "--linger", "3",
    )  # fmt: skip
    try:
        assert wait_until(lambda: stream_name in streams(), timeout=30)
        out = run("instead_of_diskcache.py", "read", *common, "--expire", "5")
        images = re.findall(r"image (\d+): \(480, 640, 3\)", out)
        assert 1 <= len(images) <= 4 and images[-1] == "4", out  # the newest, up to the last
        w_out, w_err = writer.communicate(timeout=30)
        assert writer.returncode == 0, w_err
        assert "Ready to push" in w_out
    finally:
        stop(writer)
    assert stream_name not in streams()


def test_many_cameras(stream_name: str) -> None:
    """Four cameras in one gather loop; the second unplugged for a third of the run: its count
    falls to none and comes back, and the others' batches keep their rate all along."""
    out = run("many_cameras.py", "--seconds", "9", "--unplug", "--prefix", stream_name,
              timeout=90)  # fmt: skip
    assert f"{stream_name}1 unplugged" in out and f"{stream_name}1 back" in out
    lines = re.findall(r"(\d+) s: (\d+) batches, frames (.*), spread max (\S+)", out)
    assert len(lines) >= 8
    counts = [[int(c) for c in re.findall(r":(\d+)", seen)] for _, _, seen, _ in lines]
    for (_, batches, _, _), per_camera in zip(lines[1:], counts[1:], strict=True):
        assert int(batches) >= 20  # (25 fps cameras; the first second includes the start)
        assert min(per_camera[0], *per_camera[2:]) >= 20
    second = [c[1] for c in counts]
    gone = second.index(0)  # the unplugged camera's entry: None in every batch of a second
    assert any(c >= 20 for c in second[gone:])  # back by itself
    assert streams().isdisjoint({f"{stream_name}{i}" for i in range(4)})
