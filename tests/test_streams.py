"""Named streams across independent processes: fan-out, crash safety, cleanup, the registry."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import framebus
from conftest import Procs, framebus_segments, wait_until
from framebus import TestPattern


def counter(fps: float | None = 100, size: tuple[int, int] = (320, 240)) -> TestPattern:
    return TestPattern(*size, fps=fps, pattern="counter")


def result(p: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_attach_from_independent_processes(stream_name: str, procs: Procs) -> None:
    with framebus.publish(stream_name, counter()) as pub:
        readers = [procs.python("reader.py", stream_name, "1.5") for _ in range(3)]
        results = [result(p) for p in readers]
        for r in results:
            assert r["torn"] == 0 and int(r["frames"]) > 10  # type: ignore[call-overload]
        # the readers exited normally: the stream must survive them (resource-tracker trap)
        assert f"framebus.{stream_name}" in framebus_segments()
        with framebus.attach(stream_name, timeout=5) as reader:
            ok, frame = reader.read()
            assert ok and frame is not None and frame.shape == (240, 320, 3)
        assert wait_until(lambda: pub.stats().readers == 0)
        assert pub.stats().state == "live"


def test_every_mode_across_processes_loses_nothing(stream_name: str, procs: Procs) -> None:
    with framebus.publish(stream_name, counter(fps=None), mode="every") as pub:
        readers = [procs.python("reader.py", stream_name, "1.5", "--every") for _ in range(2)]
        results = [result(p) for p in readers]
        for r in results:
            assert r["torn"] == 0 and r["gaps"] == 0 and int(r["frames"]) > 10  # type: ignore[call-overload]
        assert pub.stats().mode == "every"


def test_slow_reader_does_not_slow_the_others(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=200)) as pub:
        slow = framebus.attach(stream_name, timeout=5)
        fast = framebus.attach(stream_name, timeout=5)
        try:
            with slow.view():  # pinned: the slow reader holds one slot
                seen = {int(fast.read_frame()[0, 0, 0]) for _ in range(40)}
            assert len(seen) > 30
            assert pub.stats().readers == 2
        finally:
            slow.release()
            fast.release()


def test_kill_reader_mid_read(stream_name: str, procs: Procs, tmp_path: Path) -> None:
    with framebus.publish(stream_name, counter(fps=200)) as pub:
        holder = procs.python("reader.py", stream_name, "60", "--hold-view")
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline())["holding"]
        assert pub.stats().readers == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # the publisher frees the dead reader's record and pin, and goes on
        assert wait_until(lambda: pub.stats().readers == 0)
        before = pub.stats().captured
        other = procs.python("reader.py", stream_name, "1")
        r = result(other)
        assert r["torn"] == 0 and int(r["frames"]) > 10  # type: ignore[call-overload]
        assert pub.stats().captured > before and pub.stats().state == "live"


def _start_publisher(procs: Procs, name: str) -> tuple[subprocess.Popen[str], int]:
    pub = procs.python("publisher.py", name, start_new_session=True)
    assert pub.stdout is not None
    line = pub.stdout.readline()
    assert line.startswith("ready"), pub.stderr.read() if pub.stderr else line
    return pub, int(line.split()[1])


def test_killed_publisher_readers_return_false(stream_name: str, procs: Procs) -> None:
    pub, _ = _start_publisher(procs, stream_name)
    reader = framebus.attach(stream_name, timeout=30)
    try:
        ok, _ = reader.read()
        assert ok
        os.killpg(pub.pid, signal.SIGKILL)  # publisher and its capture process, mid-stream
        pub.wait()
        t0 = time.monotonic()
        while True:  # a few frames may still be in the ring; then it must say the truth
            ok, frame = reader.read()
            if not ok:
                break
        assert frame is None
        assert isinstance(reader.last_error, framebus.PublisherLost)
        assert time.monotonic() - t0 < 5  # well within the 30 s read timeout
        assert not reader.isOpened()
        with pytest.raises(framebus.StreamNotFound, match="prune"):
            framebus.attach(stream_name)
        assert [s.state for s in framebus.list_streams() if s.name == stream_name] == ["dead"]
    finally:
        reader.release()
    assert any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())
    assert stream_name in framebus.prune()
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_next_publish_takes_over_a_dead_name(stream_name: str, procs: Procs) -> None:
    pub, _ = _start_publisher(procs, stream_name)
    os.killpg(pub.pid, signal.SIGKILL)
    pub.wait()
    with pytest.raises(framebus.StreamNotFound):
        framebus.attach(stream_name)
    with framebus.publish(stream_name, counter()) as again, framebus.attach(stream_name) as r:
        assert r.read()[0]
        assert again.stats().state == "live"


def test_readers_get_publisher_lost_when_the_capture_cleans_up_for_a_killed_publisher(
    stream_name: str, procs: Procs
) -> None:
    pub, capture_pid = _start_publisher(procs, stream_name)
    reader = framebus.attach(stream_name, timeout=30)
    try:
        assert reader.read()[0]
        pub.send_signal(signal.SIGKILL)  # only the publisher: its capture removes the stream
        pub.wait()
        t0 = time.monotonic()
        while reader.read()[0]:
            pass
        assert isinstance(reader.last_error, framebus.PublisherLost), reader.last_error
        assert "publisher" in str(reader.last_error) and time.monotonic() - t0 < 5
    finally:
        reader.release()
    assert wait_until(lambda: not os.path.exists(f"/proc/{capture_pid}"))
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_capture_process_cleans_up_after_killed_publisher(stream_name: str, procs: Procs) -> None:
    pub, capture_pid = _start_publisher(procs, stream_name)
    pub.send_signal(signal.SIGKILL)  # only the publisher: its capture process survives it
    pub.wait()
    assert wait_until(
        lambda: not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())
    )
    assert wait_until(lambda: not os.path.exists(f"/proc/{capture_pid}"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_publisher_cleans_up_on_signals(stream_name: str, procs: Procs, sig: int) -> None:
    pub, _ = _start_publisher(procs, stream_name)
    assert any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())
    pub.send_signal(sig)
    pub.wait(timeout=15)
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_name_errors(stream_name: str) -> None:
    with pytest.raises(framebus.InvalidStreamName):
        framebus.publish("bad name", counter())
    with pytest.raises(framebus.InvalidStreamName):
        framebus.attach("../etc")
    with pytest.raises(framebus.StreamNotFound, match="no stream named"):
        framebus.attach(stream_name)
    with framebus.publish(stream_name, counter()):
        t0 = time.monotonic()
        with pytest.raises(framebus.StreamExists, match="already published"):
            framebus.publish(stream_name, counter())
        assert time.monotonic() - t0 < 1


def test_too_many_readers(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(), max_readers=2):
        a, b = framebus.attach(stream_name), framebus.attach(stream_name)
        with pytest.raises(framebus.TooManyReaders):
            framebus.attach(stream_name)
        a.release()
        framebus.attach(stream_name).release()  # a released record is reused
        b.release()


def test_segments_private_and_bounded(stream_name: str) -> None:
    with framebus.publish(stream_name, counter(fps=None)) as pub, framebus.attach(stream_name):
        wait_until(lambda: pub.stats().captured > 20)
        paths = sorted(Path("/dev/shm").glob(f"framebus.{stream_name}*"))
        sizes = {p.name: p.stat().st_size for p in paths}
        for p in paths:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
        wait_until(lambda: pub.stats().captured > 2000)
        after = {
            p.name: p.stat().st_size for p in Path("/dev/shm").glob(f"framebus.{stream_name}*")
        }
        assert after == sizes  # a fixed ring: nothing grows with run time


def test_waiting_reader_uses_no_cpu(stream_name: str) -> None:
    class Paused(framebus.Source):
        def read(self) -> np.ndarray | None:
            time.sleep(2.0)
            return np.zeros((8, 8), np.uint8)

    with framebus.publish(stream_name, Paused()), framebus.attach(stream_name) as reader:
        reader.read_frame(timeout=5)  # the first frame: the stream went live with it
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.01)
        reader.read_frame(timeout=5)
        t_cpu = time.thread_time()
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.5)  # no frame comes for 0.5 s of the 2 s pause
        assert time.thread_time() - t_cpu < 0.02  # asleep in the kernel, not spinning


def test_list_streams_and_stats(stream_name: str) -> None:
    with framebus.publish(stream_name, TestPattern(64, 48, 50)) as pub:
        with framebus.attach(stream_name) as r:
            r.read()
            [s] = [s for s in framebus.list_streams() if s.name == stream_name]
            assert s.state == "live" and s.readers == 1 and s.width == 64 and s.height == 48
            assert s.source == "testpattern:64x48@50" and s.publisher_pid == os.getpid()
            assert s.delivered >= 1
        pub.close()
        assert pub.closed
    assert stream_name not in [s.name for s in framebus.list_streams()]


def test_reader_sees_stream_end_when_publisher_closes(stream_name: str) -> None:
    pub = framebus.publish(stream_name, counter())
    reader = framebus.attach(stream_name, timeout=10)
    try:
        assert reader.read()[0]
        pub.close()
        frames = sum(1 for _ in reader)  # iteration ends cleanly
        assert frames <= 4
        assert reader.read() == (False, None)
        assert isinstance(reader.last_error, framebus.StreamEnded)  # not PublisherLost
    finally:
        reader.release()
        pub.close()


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "ls"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stderr == ""


def test_reader_of_a_stream_removed_before_its_first_read(stream_name: str) -> None:
    pub = framebus.publish(stream_name, counter())
    reader = framebus.attach(stream_name)
    try:
        pub.close()  # segments unlinked before the reader ever mapped the pixels
        t_cpu = time.thread_time()
        ok, frame = reader.read()
        assert (ok, frame) == (False, None)
        assert isinstance(reader.last_error, framebus.StreamEnded)
        assert time.thread_time() - t_cpu < 0.5  # no spinning on the vanished segment
    finally:
        reader.release()
    assert pub.stats().state == "closed"  # stats stay readable after close


def test_close_during_a_slow_open_stops_the_capture(stream_name: str) -> None:
    import threading

    class SlowOpen(framebus.Source):
        def open(self) -> None:
            time.sleep(1.5)

        def read(self) -> np.ndarray | None:
            return np.zeros((8, 8), np.uint8)

    with pytest.raises(framebus.SourceUnreachable, match="did not open"):
        framebus.publish(stream_name, SlowOpen(), start_timeout=0.3)
    # the capture thread wakes up into a closed stream: it must stop, not revive it
    assert wait_until(
        lambda: not any(t.name.startswith("framebus-capture") for t in threading.enumerate())
    )


def test_a_reader_cannot_be_used_across_fork(stream_name: str) -> None:
    with framebus.publish(stream_name, counter()), framebus.attach(stream_name) as reader:
        assert reader.read()[0]
        pid = os.fork()
        if pid == 0:  # the child: using the parent's reader record must be refused
            try:
                reader.read_frame(timeout=1)
            except framebus.FramebusError as exc:
                os._exit(0 if "another process" in str(exc) else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert reader.read()[0]  # the parent's record is intact
