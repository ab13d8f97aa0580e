"""The framebus command line, run as a user runs it: a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import framebus
from conftest import framebus_segments, wait_until


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framebus", *args], capture_output=True, text=True, timeout=timeout
    )


def test_serve_without_arguments_serves_a_test_pattern() -> None:
    out = run("serve", "--duration", "1.5", "--interval", "0.5")
    assert out.returncode == 0, out.stderr
    assert "serving test" in out.stdout
    assert "live" in out.stdout and "1280x720" in out.stdout
    assert not any(s.startswith("framebus.test") for s in framebus_segments())


def test_serve_until_ctrl_c_and_ls(stream_name: str) -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}=testpattern:320x240@25"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: stream_name in [s.name for s in framebus.list_streams()])
        with framebus.attach(stream_name, timeout=10) as reader:
            ok, frame = reader.read()
            assert ok and frame is not None and frame.shape == (240, 320, 3)
            ls = run("ls")
            assert ls.returncode == 0
            [row] = [line for line in ls.stdout.splitlines() if line.startswith(stream_name)]
            assert "live" in row and "320x240" in row
        serve.send_signal(signal.SIGINT)
        _, err = serve.communicate(timeout=20)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 0, err
    assert "Traceback" not in err
    assert stream_name not in [s.name for s in framebus.list_streams()]


def test_errors_are_one_line(tmp_path: Path) -> None:
    for args, needle in [
        (("serve", f"x={tmp_path / 'missing.mp4'}"), "no such file"),
        (("serve", "bad name=testpattern"), "invalid stream name"),
    ]:
        out = run(*args)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("framebus: error:"), out.stderr
        assert needle in lines[0]
    usage = run("serve", "nonsense")
    assert usage.returncode == 2 and "NAME=SOURCE" in usage.stderr


def test_a_device_that_is_not_a_video_is_not_called_missing() -> None:
    out = run("serve", "x=/dev/null")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framebus: error:"), out.stderr
    assert "not a regular file" in lines[0] and "no such file" not in lines[0]


def test_ls_shows_no_error_once_a_stream_recovered(stream_name: str) -> None:
    class Once(framebus.Source):
        def __init__(self) -> None:
            self.n = 0

        def read(self) -> np.ndarray | None:
            self.n += 1
            if self.n == 5:
                raise OSError("device hiccup")
            time.sleep(0.01)
            return np.zeros((24, 32), np.uint8)

    policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
    with framebus.publish(stream_name, Once(), reconnect=policy) as pub:
        assert wait_until(lambda: pub.stats().reconnects == 1 and pub.stats().state == "live")
        ls = run("ls")
        [row] = [line for line in ls.stdout.splitlines() if line.startswith(stream_name)]
        assert " live " in row and "hiccup" not in row, row


def test_prune_removes_what_a_killed_publisher_left(stream_name: str) -> None:
    serve = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", "--quiet", f"{stream_name}=testpattern"],
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: stream_name in [s.name for s in framebus.list_streams()])
    finally:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
    time.sleep(0.1)
    ls = run("ls")
    assert any(line.startswith(stream_name) and " dead " in line for line in ls.stdout.splitlines())
    out = run("prune")
    assert out.returncode == 0 and stream_name in out.stdout
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_serve_rejects_intervals_that_would_busy_loop_or_never_end() -> None:
    for flag, value in [("--interval", "0"), ("--interval", "-1"), ("--duration", "nan")]:
        out = run("serve", flag, value, timeout=20)
        assert out.returncode == 2, (flag, value, out.stdout)
        assert "positive number of seconds" in out.stderr
