"""The capture fork server: captures forked from one warm process per user process, each still
a process of its own; what happens when the publisher or the server is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import framebus
from conftest import Procs, fork_server_pid, framebus_segments, wait_until
from framebus import _platform as plat
from framebus.bus import Mode, create_stream, remove_stream
from framebus.capture import _forkserver
from framebus.sources import Pipe, spec_to_json

W, H = cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def pattern() -> framebus.TestPattern:
    return framebus.TestPattern(64, 48, fps=50, pattern="counter")


def warm_server() -> int:
    """The fork server's pid, once it is ready (the first call of a process starts it in the
    background: that capture is a fresh interpreter; the next waits for it)."""
    server = _forkserver.fork_server() or _forkserver.fork_server()
    assert server is not None
    return server.proc.pid


def test_captures_are_forked_by_one_warm_server(stream_name: str) -> None:
    warm_server()
    with (
        framebus.publish(stream_name + "a", pattern()) as a,
        framebus.publish(stream_name + "b", pattern()) as b,
    ):
        server = fork_server_pid()
        assert server is not None
        for pub in (a, b):
            assert ppid(pub.capture_pid) == server
            # the argv that proves a capture is framebus's own (dead_stream's check) holds
            argv = plat.process_command(pub.capture_pid)
            assert argv[-2:] == ["-m", "framebus.capture"]
    assert server == fork_server_pid() and plat.process_alive(server, 0)  # it stays, warm


def test_opening_knows_the_size_every_time(video_file: Path) -> None:
    """The race the fork server makes tighter: the constructor returns once the first frame's
    size is in the header, not when the frame is in the ring."""
    for _ in range(200):
        cap = framebus.VideoCapture(str(video_file))
        try:
            assert (cap.get(W), cap.get(H)) == (320, 240)
        finally:
            cap.release()


def test_each_open_gets_the_callers_directory_and_environment(
    video_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_name: str
) -> None:
    warm_server()  # up before what follows
    with framebus.publish(stream_name, pattern()):
        shutil.copy(video_file, tmp_path / "clip.mp4")
        monkeypatch.chdir(tmp_path)
        with framebus.VideoCapture("clip.mp4") as cap:  # relative to here, not the server's
            assert cap.read()[0]
        _, jpeg = cv2.imencode(".jpg", np.zeros((120, 160, 3), np.uint8))
        for budget, frames in ((None, 3), ("1000", 0)):  # 1000 pixels: set after the start
            if budget is not None:
                monkeypatch.setenv("FRAMEBUS_MAX_PIXELS", budget)
            r, w = os.pipe()  # a pipe source: its descriptor travels to the forked capture
            try:
                os.write(w, jpeg.tobytes() * 3)
                os.close(w)
                if frames:
                    with framebus.VideoCapture(Pipe(fd=r)) as cap:
                        assert [f.shape for f in cap] == [(120, 160, 3)] * frames
                else:
                    with pytest.raises(framebus.FrameTooLarge):
                        framebus.VideoCapture(Pipe(fd=r))
            finally:
                os.close(r)


def test_a_killed_publisher_takes_the_server_and_its_streams_with_it(
    stream_name: str, procs: Procs
) -> None:
    pub = procs.python("publisher.py", stream_name, "--warm", start_new_session=True)
    assert pub.stdout is not None
    line = pub.stdout.readline()
    assert line.startswith("ready"), pub.stderr.read() if pub.stderr else line
    capture = int(line.split()[1])
    server = ppid(capture)
    assert server != pub.pid and ppid(server) == pub.pid
    with framebus.attach(stream_name, timeout=10) as reader:
        assert reader.read()[0]
        os.kill(pub.pid, signal.SIGKILL)  # the publisher alone
        pub.wait()
        assert wait_until(lambda: not plat.process_alive(server, 0), timeout=10)
        assert wait_until(lambda: not plat.process_alive(capture, 0), timeout=10)
        while reader.read()[0]:
            pass
        assert isinstance(reader.last_error, framebus.PublisherLost)
    assert wait_until(
        lambda: not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())
    )  # the capture removed the stream for its dead publisher


def test_a_killed_server_leaves_running_captures_alone(stream_name: str) -> None:
    warm_server()
    with (
        framebus.publish(stream_name, pattern()) as pub,
        framebus.attach(stream_name, timeout=10) as reader,
    ):
        server = fork_server_pid()
        assert server is not None
        os.kill(server, signal.SIGKILL)
        assert wait_until(lambda: not plat.process_alive(server, 0))
        seqs = []
        for _ in range(20):  # the capture goes on: it checks that its publisher lives
            assert reader.read()[0] and reader.info is not None
            seqs.append(reader.info.seq)
        assert seqs == sorted(seqs) and pub.stats().state == "live"
        assert warm_server() != server  # a new one
        with framebus.publish(stream_name + "2", pattern()) as again:
            assert ppid(again.capture_pid) == fork_server_pid()
    assert not plat.process_alive(pub.capture_pid, 0)  # stopped with its stream


def test_without_the_server_each_capture_is_a_fresh_interpreter(stream_name: str) -> None:
    code = (
        "import os, framebus\n"
        f"with framebus.publish({stream_name!r}, framebus.TestPattern(64, 48, fps=50)) as p:\n"
        "    stat = open(f'/proc/{p.capture_pid}/stat', 'rb').read()\n"
        "    parent = int(stat[stat.rindex(b')') + 2:].split()[1])\n"
        "    print(parent == os.getpid())\n"
    )
    env = {**os.environ, "FRAMEBUS_FORK_SERVER": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_a_capture_without_its_launch_ticket_writes_nothing(stream_name: str) -> None:
    """A launch the publisher gave up on (a fork server that did not answer) must never
    become a second writer of the ring: the capture claims the ticket first, or exits."""
    ctl = create_stream(stream_name, 2, 1, Mode.LATEST, "test")
    try:
        ticket = ctl.offer_launch()
        assert ctl.withdraw_launch(ticket) is None  # given up before the capture started
        spec = spec_to_json(framebus.TestPattern(32, 24, fps=50))
        message = {"name": stream_name, "spec": spec, "realtime": False, "ticket": ticket}
        done = subprocess.run(
            [sys.executable, "-m", "framebus.capture"],
            input=json.dumps(message), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 4, done.stderr
        assert ctl.writer == (0, 0) and ctl.captured == 0
    finally:
        ctl.close()
        remove_stream(stream_name)
