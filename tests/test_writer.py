"""framebus.VideoWriter: frames a program makes, written into a named stream that any process
reads as it reads a camera (real processes, real shared memory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest

import framebus
from conftest import Procs, framebus_segments, wait_until


def ready(p: subprocess.Popen[str]) -> int:
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), p.stderr.read() if p.stderr else line
    return int(line.split()[1])


def last_json(p: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- across processes ----------------------------------------------------------------------------


def test_a_writer_process_feeds_reader_processes_exact_pixels(
    stream_name: str, procs: Procs
) -> None:
    writer = procs.python("writer.py", stream_name, "--interval", "0.004")
    ready(writer)
    readers = [procs.python("reader.py", stream_name, "1.5") for _ in range(2)]
    for p in readers:
        r = last_json(p)
        assert r["torn"] == 0 and int(r["frames"]) > 20, r  # every pixel is its frame's
    writer.send_signal(signal.SIGTERM)
    writer.communicate(timeout=20)
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_every_mode_readers_get_every_frame_then_the_end(stream_name: str, procs: Procs) -> None:
    writer = procs.python(
        "writer.py", stream_name, "--mode", "every", "--count", "300", "--readers", "2"
    )
    ready(writer)  # it writes once both readers are there (else the second may come too late)
    readers = [procs.python("reader.py", stream_name, "60", "--every") for _ in range(2)]
    results = [last_json(p) for p in readers]
    for r in results:
        assert r["ended"] and r["torn"] == 0 and r["gaps"] == 0, r
        assert r["last_pos"] == 299  # frames still in the ring at release() were delivered
    stats = last_json(writer)["stats"]
    assert stats["captured"] == 300 and stats["mode"] == "every"


def test_like_carries_the_capture_time_through_a_processor_process(
    stream_name: str, procs: Procs
) -> None:
    """camera (a publisher process) -> processor (a writer process, 0.1 s a frame) -> here."""
    camera = procs.python("publisher.py", stream_name, "--fps", "30")
    ready(camera)
    boxes = f"{stream_name}-b"
    processor = procs.python(
        "writer.py", boxes, "--relay", stream_name, "--delay", "0.1", "--count", "12",
        "--readers", "1",
    )  # fmt: skip
    ready(processor)
    seen = []
    with framebus.attach(boxes, timeout=20) as out:
        for frame in out:
            info = out.info
            assert info is not None and int(frame.max()) == int(frame.min()) == info.pos % 256
            seen.append((info.pos, info.timestamp, info.age))
    lines = [json.loads(line) for line in processor.communicate(timeout=30)[0].splitlines()]
    used = {d["pos"]: d["ts"] for d in lines if "pos" in d}
    stats = lines[-1]["stats"]
    assert len(seen) >= 3
    for pos, ts, age in seen:
        assert ts == pytest.approx(used[pos], abs=1e-6)  # the camera's capture time, as read
        assert age >= 0.1  # its age includes the processing delay
    assert stats["captured"] == 12 and stats["delay_max"] >= stats["delay_mean"] >= 0.1
    camera.kill()


def test_like_carries_the_capture_time_through_a_zmq_relay(stream_name: str) -> None:
    net = pytest.importorskip("framebus.net")
    out_name = f"{stream_name}-z"
    pattern = framebus.TestPattern(160, 120, fps=30, pattern="counter")
    with (
        framebus.publish(stream_name, pattern),
        net.export("tcp://127.0.0.1:0", codec="raw") as ex,
        framebus.attach(ex.url(stream_name), timeout=20) as remote,
        framebus.VideoWriter(out_name) as out,
        framebus.attach(out_name) as local,
    ):
        for _ in range(5):
            frame = remote.read_frame()
            assert remote.info is not None
            out.write(255 - frame, like=remote.info)
            got = local.read_frame(timeout=5)
            assert local.info is not None
            assert np.array_equal(got, 255 - frame)
            assert local.info.timestamp == pytest.approx(remote.info.timestamp, abs=1e-6)
            assert local.info.pos == remote.info.pos
        stats = out.stats()
        assert stats.delay is not None and stats.delay >= 0
        assert stats.delay_mean is not None and stats.delay_max is not None


def test_a_killed_writer_is_seen_by_readers_and_its_name_taken_back(
    stream_name: str, procs: Procs
) -> None:
    writer = procs.python("writer.py", stream_name, "--interval", "0.01")
    pid = ready(writer)
    reader = framebus.attach(stream_name, timeout=10)
    try:
        assert reader.read()[0]
        os.kill(pid, signal.SIGKILL)
        writer.wait()
        t0 = time.monotonic()
        while reader.read()[0]:  # the frames still in the ring, then the truth
            pass
        assert isinstance(reader.last_error, framebus.PublisherLost)
        assert time.monotonic() - t0 < 5
    finally:
        reader.release()
    with framebus.VideoWriter(stream_name) as again, framebus.attach(stream_name) as r:
        again.write(np.zeros((8, 8), np.uint8))
        assert r.read()[0] and again.stats().state == "live"


def test_a_stopped_reader_never_holds_up_a_latest_mode_writer(
    stream_name: str, procs: Procs
) -> None:
    with framebus.VideoWriter(stream_name) as out:  # 4 slots: 2 pinned, the newest, 1 free
        out.write(np.zeros((240, 320, 3), np.uint8))
        holder = procs.python("reader.py", stream_name, "60", "--hold-view")  # pins a slot
        sleeper = procs.python("reader.py", stream_name, "60")
        assert holder.stdout is not None and "holding" in holder.stdout.readline()
        assert wait_until(lambda: out.stats().readers == 2)
        os.kill(holder.pid, signal.SIGSTOP)
        os.kill(sleeper.pid, signal.SIGSTOP)
        try:
            with framebus.attach(stream_name) as live:
                frame = np.empty((240, 320, 3), np.uint8)
                for n in range(1, 301):
                    frame.fill(n % 256)
                    out.write(frame)
                got = live.read_frame(timeout=5)  # the newest: the others skipped to it
                assert int(got[0, 0, 0]) == 300 % 256
            assert out.stats().captured == 301
        finally:
            for p in (holder, sleeper):
                os.kill(p.pid, signal.SIGCONT)
                p.kill()


# -- in one process --------------------------------------------------------------------------------


def test_every_mode_waits_for_its_readers_and_times_out(stream_name: str) -> None:
    frame = np.zeros((4, 4), np.uint8)
    with framebus.VideoWriter(stream_name, mode="every", slots=3) as out:
        with pytest.raises(framebus.WriteTimeout, match="no reader took"):
            out.write(frame, timeout=0.2)  # nobody attached: the frame waits for a reader
        with framebus.attach(stream_name) as reader:
            for n in range(3):  # the ring holds `slots` unread frames
                out.write(frame + n, timeout=5)
            with pytest.raises(framebus.WriteTimeout):
                out.write(frame + 3, timeout=0.2)
            assert int(reader.read_frame(timeout=5)[0, 0]) == 0
            out.write(frame + 3, timeout=5)  # a slot is free again
            assert [int(reader.read_frame(timeout=5)[0, 0]) for _ in range(3)] == [1, 2, 3]


def test_release_wakes_a_write_that_waits(stream_name: str) -> None:
    out = framebus.VideoWriter(stream_name, mode="every")
    raised: list[BaseException] = []

    def write() -> None:
        try:
            out.write(np.zeros((4, 4), np.uint8))
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=write)
    t.start()
    time.sleep(0.2)
    out.release()
    t.join(10)
    assert not t.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], framebus.StreamEnded)


def test_size_channels_and_dtype_may_change_between_writes(stream_name: str) -> None:
    rng = np.random.default_rng(1)
    frames = [
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8),  # larger: a new generation
        rng.integers(0, 65536, (100, 120), dtype=np.uint16),
        rng.random((30, 40, 4), dtype=np.float32),
        rng.integers(-(2**31), 2**31 - 1, (5, 7, 2), dtype=np.int32),
        np.asfortranarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)),
        rng.integers(0, 256, (240, 640, 3), dtype=np.uint8)[:, ::2],  # strided
    ]
    with (
        framebus.VideoWriter(stream_name, mode="every") as out,
        framebus.attach(stream_name) as reader,
    ):
        for frame in frames:
            out.write(frame, timeout=5)
            got = reader.read_frame(timeout=5)
            assert got.dtype == frame.dtype and np.array_equal(got, frame)
            assert reader.get(cv2.CAP_PROP_FRAME_WIDTH) == frame.shape[1]


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        ([[1, 2], [3, 4]], TypeError, "numpy array"),
        (np.empty((4, 4), object), TypeError, "dtype object"),
        (np.zeros((4, 4), bool), TypeError, "dtype bool"),
        (np.zeros((4, 4), np.float16), TypeError, "dtype float16"),
        (np.zeros((4, 4), ">u2"), TypeError, "cannot be written"),
        (np.zeros(16, np.uint8), ValueError, "1-D"),
        (np.array(3, np.uint8), ValueError, "0-D"),
        (np.zeros((1, 2, 2, 2, 3), np.uint8), ValueError, "5-D"),
        (np.zeros((2, 4, 4, 3), np.uint8), ValueError, "4-D"),
        (np.zeros((0, 4, 3), np.uint8), ValueError, "empty"),
        (np.zeros((4, 4, 65), np.uint8), ValueError, "65"),
    ],
)
def test_frames_the_ring_cannot_hold_are_refused_before_anything_is_written(
    stream_name: str, bad: Any, error: type[Exception], words: str
) -> None:
    with framebus.VideoWriter(stream_name) as out:
        with pytest.raises(error, match=words):
            out.write(bad)
        assert out.stats().captured == 0 and out.isOpened()
        out.write(np.zeros((4, 4), np.uint8))  # the writer goes on
        assert out.stats().captured == 1


def test_names_in_use_bad_names_and_writes_after_release(stream_name: str) -> None:
    with framebus.VideoWriter(stream_name) as out:
        with pytest.raises(framebus.StreamExists):
            framebus.VideoWriter(stream_name)
        with pytest.raises(framebus.StreamExists):
            framebus.publish(stream_name, framebus.TestPattern(8, 8))
        with pytest.raises(TypeError, match="FrameInfo"):
            out.write(np.zeros((4, 4), np.uint8), like=1.5)  # type: ignore[arg-type]
    with (
        framebus.publish(stream_name, framebus.TestPattern(8, 8)),
        pytest.raises(framebus.StreamExists),
    ):
        framebus.VideoWriter(stream_name)
    with pytest.raises(framebus.InvalidStreamName, match=r"e\.g\. out\.mp4"):
        framebus.VideoWriter("bad name")
    with pytest.raises(ValueError, match="needs fps and frameSize"):
        framebus.VideoWriter("out.mp4")  # a file (tests/test_video_file.py)
    assert not out.isOpened()
    with pytest.raises(framebus.StreamEnded, match="released"):
        out.write(np.zeros((4, 4), np.uint8))
    assert out.stats().state == "closed" and out.stats().captured == 0
    out.release()  # idempotent


def test_a_frame_larger_than_shared_memory(stream_name: str) -> None:
    huge = np.broadcast_to(np.uint8(0), (60000, 60000, 3))  # 10.8 GB that costs nothing
    with framebus.VideoWriter(stream_name) as out:
        with pytest.raises(framebus.SharedMemoryFull, match="not enough shared memory"):
            out.write(huge)
        out.write(np.zeros((4, 4), np.uint8))  # the smaller frames still go
        assert out.stats().captured == 1
    with pytest.raises(framebus.SharedMemoryFull):  # frameSize reserves the ring at once
        framebus.VideoWriter(stream_name, 0, 30.0, (60000, 60000))
    assert stream_name not in {s.name for s in framebus.list_streams()}


def test_cv2_form_open_and_what_readers_see_before_the_first_frame(stream_name: str) -> None:
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    out = framebus.VideoWriter()
    assert not out.isOpened()
    assert out.open(stream_name, fourcc, 25.0, (320, 240))
    try:
        assert out.isOpened() and out.getBackendName() == "FRAMEBUS_WRITER"
        listed = {s.name: s for s in framebus.list_streams()}
        assert listed[stream_name].state == "live" and listed[stream_name].source_fps == 25.0
        with framebus.attach(stream_name) as reader:  # attached before the first write
            assert reader.get(cv2.CAP_PROP_FPS) == 25.0
            assert reader.getBackendName() == "FRAMEBUS_WRITER"
            with pytest.raises(framebus.ReadTimeout):
                reader.read_frame(timeout=0.2)  # waits for the first write
            out.write(np.full((240, 320, 3), 7, np.uint8))
            assert int(reader.read_frame(timeout=5).max()) == 7
    finally:
        out.release()
    assert not out.isOpened()


def test_writers_in_threads_of_one_process(stream_name: str) -> None:
    names = [f"{stream_name}-{i}" for i in range(3)]
    shared = f"{stream_name}-s"
    writers = [framebus.VideoWriter(n, mode="every") for n in [*names, shared]]
    readers = [framebus.attach(n) for n in [*names, shared]]
    try:

        def run(i: int) -> None:
            for n in range(50):
                writers[i].write(np.full((16, 16), n, np.uint8), timeout=10)
                # and a fourth stream written by all three threads at once
                writers[3].write(np.full((16, 16), 100 + i, np.uint8), timeout=10)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        got: list[list[int]] = [[] for _ in range(4)]
        drained = threading.Event()

        def drain(k: int, count: int) -> None:
            for _ in range(count):
                frame = readers[k].read_frame(timeout=10)
                assert frame.min() == frame.max()  # never half of one write and half another
                got[k].append(int(frame[0, 0]))
            if k == 3:
                drained.set()

        drains = [threading.Thread(target=drain, args=(k, 150 if k == 3 else 50)) for k in range(4)]
        for t in [*threads, *drains]:
            t.start()
        for t in [*threads, *drains]:
            t.join(30)
        for k in range(3):
            assert got[k] == list(range(50))
        assert sorted(got[3]) == sorted([100, 101, 102] * 50) and drained.is_set()
    finally:
        for r in readers:
            r.release()
        for w in writers:
            w.release()


def test_a_script_that_forgets_release_exits_at_once_and_leaves_nothing(
    stream_name: str,
) -> None:
    code = (
        "import numpy as np, framebus\n"
        f"out = framebus.VideoWriter({stream_name!r})\n"
        "out.write(np.zeros((8, 8, 3), np.uint8))\n"
        "print('written', flush=True)\n"
    )
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "written" in done.stdout, done.stderr
    assert time.monotonic() - t0 < 20
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())


def test_the_cli_lists_a_written_stream(stream_name: str) -> None:
    with framebus.VideoWriter(stream_name, fps=12) as out:
        out.write(np.zeros((48, 64, 3), np.uint8))
        done = subprocess.run(
            [sys.executable, "-m", "framebus", "ls"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        line = next(line for line in done.stdout.splitlines() if stream_name in line)
        assert "live" in line and "64x48" in line and "writer pid" in line


def test_wings_read_a_written_stream_unchanged(stream_name: str) -> None:
    """``framebus cat`` (a pipe) and a ``zmq://`` exporter take a written stream as they take
    a camera's: the pixels written, in order."""
    net = pytest.importorskip("framebus.net")
    frames = [np.full((48, 64, 3), 10 * n, np.uint8) for n in range(6)]
    with framebus.VideoWriter(stream_name, mode="every") as out:
        cat = subprocess.Popen(
            [sys.executable, "-m", "framebus", "cat", stream_name, "--frames", "6"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_until(lambda: out.stats().readers == 1, timeout=30)
            for frame in frames:
                out.write(frame, timeout=30)
            assert cat.stdout is not None
            got = [f for f, _ in framebus.pipe.frames(cat.stdout)]
        finally:
            _, err = cat.communicate(timeout=30)
        assert cat.returncode == 0, err
        assert len(got) == 6 and all(np.array_equal(g, f) for g, f in zip(got, frames, strict=True))
    with (
        framebus.VideoWriter(stream_name) as out,
        net.export("tcp://127.0.0.1:0", codec="raw") as ex,
        framebus.attach(ex.url(stream_name), timeout=20) as remote,
    ):
        for frame in frames:
            out.write(frame)
            got_remote = remote.read_frame(timeout=10)
            while not np.array_equal(got_remote, frame):  # a newest-frame reader may lag one
                got_remote = remote.read_frame(timeout=10)
        assert remote.getBackendName() == "ZMQ"


def test_a_zero_timeout_writes_when_a_slot_is_free_and_latest_mode_ignores_it(
    stream_name: str,
) -> None:
    frame = np.zeros((4, 4), np.uint8)
    with framebus.VideoWriter(stream_name) as out:
        for _ in range(10):
            out.write(frame, timeout=0)  # latest mode: never waits, the timeout is moot
        assert out.stats().captured == 10
    with (
        framebus.VideoWriter(stream_name, mode="every", slots=2) as out,
        framebus.attach(stream_name) as reader,
    ):
        out.write(frame, timeout=0)  # a free slot: written at once
        out.write(frame, timeout=0)
        with pytest.raises(framebus.WriteTimeout):
            out.write(frame, timeout=0)  # both unread
        reader.read_frame(timeout=5)
        out.write(frame, timeout=0)


@pytest.mark.parametrize(
    "info",
    [
        framebus.FrameInfo(1, float("nan"), 0, 0, 4, 4),
        framebus.FrameInfo(1, 2.0**64, 0, 0, 4, 4),
        framebus.FrameInfo(1, -5.0, 0, 0, 4, 4),
        framebus.FrameInfo(1, time.time(), -1, 0, 4, 4),
        framebus.FrameInfo(1, time.time(), 2**64, 0, 4, 4),
    ],
)
def test_a_like_that_is_not_a_frames_is_refused_before_anything_is_written(
    stream_name: str, info: framebus.FrameInfo
) -> None:
    with framebus.VideoWriter(stream_name, slots=2) as out:
        for _ in range(3):  # a refused write must not leave a slot taken
            with pytest.raises(ValueError, match="like="):
                out.write(np.zeros((4, 4), np.uint8), like=info)
        out.write(np.zeros((4, 4), np.uint8))
        assert out.stats().captured == 1


def test_a_writer_dropped_without_release_ends_its_stream(stream_name: str) -> None:
    import gc

    out = framebus.VideoWriter(stream_name)
    out.write(np.zeros((4, 4), np.uint8))
    reader = framebus.attach(stream_name)
    try:
        assert reader.read()[0]
        del out
        gc.collect()
        ok, _ = reader.read()  # the stream ended: not a wait for ever
        assert not ok and isinstance(reader.last_error, framebus.StreamEnded)
    finally:
        reader.release()
    assert not any(s.startswith(f"framebus.{stream_name}") for s in framebus_segments())
