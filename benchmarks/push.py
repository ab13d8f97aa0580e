"""Scenario ``push``: streams out of framebus to an RTSP server (``framebus push``), and recorded
(``framebus record``), side by side with FFmpeg's relay, in one run.

1. *Age through a media server*: a camera (GStreamer's RTSP server, 1280x720 at 25 fps, each
   frame's send time painted as a barcode) read by framebus; the same stream pushed by
   ``framebus push`` (passthrough) to GStreamer's RTSP server in record mode, which serves it
   again, read back by framebus; the barcode read off each frame of both at the same time. Peer:
   FFmpeg's ``-c copy`` relay (``ffmpeg -i CAMERA -c copy -f rtsp SERVER``) into a second record
   server, read back the same way, in the same run.
2. *CPU*: ``framebus push`` of the passthrough camera and ``framebus record`` of it (processes
   of their own: their CPU over the run), and ``framebus push --encode`` of a 1280x720 30 fps
   stream against one libx264 encode of the same frames with the same settings (in a process
   of its own, measured as the pushes are: the whole process's CPU).
3. *Server restarts*: the record server killed, started again 2 s later; the time from its
   being back (listening) to the first access unit it receives.
4. *A 1 fps writer pushed at 25 fps*: a ``VideoWriter`` writing a frame a second, pushed at
   25 fps; a reader of the server's stream: its frame rate and the gaps between frames.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .common import (
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    exit_with_parent,
    fmt,
    log,
    md_table,
    percentile,
    process_cpu_seconds,
    stop_process,
)

__all__ = ["run"]

CAMERA = "1280x720"
FPS = 25
INTERVAL = 1.0 / FPS
CPU_TARGET = 0.03  # of a core


def _ages(name: str, seconds: float, out: list[float], stop: threading.Event) -> None:
    import framebus
    from framebus.testing import read_timestamp

    end = time.monotonic() + seconds
    with framebus.attach(name, timeout=10) as reader:
        while time.monotonic() < end and not stop.is_set():
            frame = reader.read_frame()
            sent = read_timestamp(frame)
            if sent is not None:
                out.append(time.time() - sent)


def _wait_frames(name: str, timeout: float = 20.0) -> None:
    import framebus

    with framebus.attach(name, timeout=timeout) as reader:
        reader.read_frame()


@contextlib.contextmanager
def _cli(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "framebus", *args, "--quiet"])
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _age_paths(seconds: float) -> dict[str, list[float]]:
    import framebus
    from framebus.testing import RTSPRecordServer, RTSPServer

    base = f"{STREAM_PREFIX}push-{os.getpid()}"
    ages: dict[str, list[float]] = {"camera, read directly": [], "framebus push -> server": [],
                                    "ffmpeg -c copy -> server": []}  # fmt: skip
    with (
        RTSPServer(size=CAMERA, fps=FPS) as cam,
        RTSPRecordServer() as ours,
        RTSPRecordServer() as theirs,
        framebus.publish(base, cam.url()),
        _cli("push", base, ours.push_url()),
    ):
        relay = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i",
             cam.url(), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp",
             theirs.push_url()],
        )  # fmt: skip
        try:
            time.sleep(3)  # both pushes running
            with (
                framebus.publish(base + "-ours", ours.play_url()),
                framebus.publish(base + "-ffmpeg", theirs.play_url()),
            ):
                for n in ("-ours", "-ffmpeg"):
                    _wait_frames(base + n)
                stop = threading.Event()
                threads = [
                    threading.Thread(target=_ages, args=(name, seconds, ages[key], stop))
                    for name, key in ((base, "camera, read directly"),
                                      (base + "-ours", "framebus push -> server"),
                                      (base + "-ffmpeg", "ffmpeg -c copy -> server"))
                ]  # fmt: skip
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            relay.terminate()
            relay.wait(5)
    return ages


def _cpu_of(pid: int, seconds: float) -> float:
    """Share of a core process ``pid`` used over ``seconds`` (after 2 s to settle)."""
    time.sleep(2)
    t0, c0 = time.monotonic(), process_cpu_seconds(pid)
    time.sleep(seconds)
    return (process_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def _encode_process(name: str, stop: Any) -> None:
    """One libx264 encode (push's settings) of every new frame of ``name``, in a process of its
    own (measured as the push is: the whole process's CPU)."""
    import framebus
    from framebus.sinks.h264 import H264Encoder

    exit_with_parent()
    encoder = H264Encoder(30.0)
    with framebus.attach(name, timeout=5) as reader:
        last = 0.0
        while not stop.is_set():
            with reader.view() as frame:
                now = time.monotonic()
                encoder.encode(frame, key=now - last >= 2.0)
                if now - last >= 2.0:
                    last = now


def _encode_cpu(name: str, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    proc = ctx.Process(target=_encode_process, args=(name, stop), daemon=True)
    proc.start()
    try:
        assert proc.pid is not None
        return _cpu_of(proc.pid, seconds)
    finally:
        stop.set()
        stop_process(proc)


def _cpu(seconds: float) -> dict[str, float]:
    import framebus
    from framebus.testing import RTSPRecordServer, RTSPServer

    base = f"{STREAM_PREFIX}pushcpu-{os.getpid()}"
    out: dict[str, float] = {}
    with (
        RTSPServer(size=CAMERA, fps=FPS) as cam,
        RTSPRecordServer() as srv,
        framebus.publish(base, cam.url()),
    ):
        _wait_frames(base)
        with _cli("push", base, srv.push_url()) as proc:
            out["push, passthrough 720p25"] = _cpu_of(proc.pid, seconds)
        with tempfile.TemporaryDirectory() as tmp, _cli("record", base, "--out", tmp,
                                                        "--segment", "10") as proc:  # fmt: skip
            out["record, passthrough 720p25"] = _cpu_of(proc.pid, seconds)
        pattern = framebus.TestPattern(width=1280, height=720, fps=30.0)
        with framebus.publish(base + "-enc", pattern):
            _wait_frames(base + "-enc")
            with _cli("push", base + "-enc", srv.push_url(), "--encode") as proc:
                out["push, encoded 720p30"] = _cpu_of(proc.pid, seconds)
            out["one libx264 encode, 720p30 (same settings)"] = _encode_cpu(base + "-enc", seconds)
    return out


def _restarts(rounds: int) -> list[float]:
    import framebus
    from framebus.testing import RTSPRecordServer

    base = f"{STREAM_PREFIX}pushrs-{os.getpid()}"
    backs: list[float] = []
    pattern = framebus.TestPattern(width=640, height=360, fps=25.0)
    with (
        RTSPRecordServer() as srv,
        framebus.publish(base, pattern),
        framebus.push(base, srv.push_url()) as p,
    ):
        deadline = time.monotonic() + 15
        while p.stats().state != "live" and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(rounds):
            srv.kill()
            time.sleep(2.0)
            srv.start()  # returns once the server listens
            back = time.monotonic()
            seen = len(srv.events())
            while time.monotonic() - back < 15:
                if any(e.startswith("au ") for e in srv.events()[seen:]):
                    backs.append(time.monotonic() - back)
                    break
                time.sleep(0.01)
            else:
                raise BenchError("the push did not come back within 15 s of the server")
            time.sleep(1.0)
    return backs


def _slow_writer(seconds: float) -> dict[str, Any]:
    import framebus
    from framebus.testing import RTSPRecordServer

    base = f"{STREAM_PREFIX}push1fps-{os.getpid()}"
    stop = threading.Event()
    with RTSPRecordServer() as srv, framebus.VideoWriter(srv.push_url(), fps=25) as writer:

        def produce() -> None:
            i = 0
            while not stop.is_set():
                writer.write(np.full((360, 640, 3), (i * 37) % 200 + 20, np.uint8))
                i += 1
                stop.wait(1.0)

        t = threading.Thread(target=produce)
        t.start()
        try:
            time.sleep(2)
            with framebus.publish(base, srv.play_url()), framebus.attach(base, timeout=10) as r:
                r.read_frame()
                times = []
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    r.read_frame()
                    times.append(time.monotonic())
        finally:
            stop.set()
            t.join()
    gaps = np.diff(times)
    return {"fps": (len(times) - 1) / (times[-1] - times[0]), "gaps": gaps.tolist()}


def run(cfg: Config) -> Section:
    quick = cfg.quick
    data: dict[str, Any] = {}
    log("push: the age through a media server (framebus push, ffmpeg -c copy)")
    data["ages"] = ages = _age_paths(6.0 if quick else 20.0)
    log("push: CPU of push and record")
    data["cpu"] = cpu = _cpu(5.0 if quick else 20.0)
    log("push: server restarts")
    data["restarts"] = backs = _restarts(2 if quick else 5)
    log("push: a 1 fps writer pushed at 25 fps")
    data["slow_writer"] = slow = _slow_writer(5.0 if quick else 20.0)
    return _section(data, ages, cpu, backs, slow)


_INTRO = """A camera (GStreamer's RTSP server, 1280x720 at 25 fps, each frame's send time painted as
a barcode) is read by framebus; `framebus push` sends the stream (passthrough) to GStreamer's
RTSP server in record mode, which serves it again; FFmpeg's `-c copy` relay sends the camera to a
second such server. The three are read at the same time, in one process, and the barcode read
off every frame. The push and the recorder run as the command line runs them (processes of
their own: their CPU over the run).
"""


def _section(
    data: dict[str, Any],
    ages: dict[str, list[float]],
    cpu: dict[str, float],
    backs: list[float],
    slow: dict[str, Any],
) -> Section:
    md = [_INTRO, f"### Age of a {CAMERA} {FPS} fps camera's frames, read at the same time\n"]
    rows = [[k, fmt(1000 * percentile(v, 50)), fmt(1000 * percentile(v, 95)), str(len(v))]
            for k, v in ages.items()]  # fmt: skip
    md.append(md_table(["path", "age p50 ms", "age p95 ms", "frames"], rows))
    direct = percentile(ages["camera, read directly"], 50)
    ours = percentile(ages["framebus push -> server"], 50) - direct
    theirs = percentile(ages["ffmpeg -c copy -> server"], 50) - direct
    data["added_p50_s"] = {"framebus": ours, "ffmpeg": theirs}
    md.append(
        f"\nAdded by the way through the server (p50, over reading the camera directly): "
        f"framebus push **{1000 * ours:.1f} ms**, FFmpeg's relay {1000 * theirs:.1f} ms (the "
        f"server's own relay — depayload, parse, payload — is in both). Target ≤ one frame "
        f"interval ({1000 * INTERVAL:.0f} ms): {'met' if ours <= INTERVAL else '**missed**'}.\n"
    )
    md.append("\n### CPU (share of one core)\n")
    md.append(md_table(["process", "CPU %"], [[k, fmt(100 * v, 2)] for k, v in cpu.items()]))
    push_cpu = cpu["push, passthrough 720p25"]
    rec_cpu = cpu["record, passthrough 720p25"]
    enc = cpu["push, encoded 720p30"] / cpu["one libx264 encode, 720p30 (same settings)"]
    data["encoded_ratio"] = enc
    md.append(
        f"\nPassthrough push {100 * push_cpu:.2f} % and record {100 * rec_cpu:.2f} % of a core "
        f"(target ≤ 3 %: {'met' if max(push_cpu, rec_cpu) <= CPU_TARGET else '**missed**'}); "
        f"encoded push ÷ one libx264 encode of the same frames **{enc:.2f}** (target ≤ 1, the "
        "whole process against the encode alone: its reading, pacing and sending on top).\n"
    )
    md.append("\n### The server restarted: from its being back to the first access unit\n")
    md.append(md_table(["restarts", "p50 s", "max s"],
                       [[str(len(backs)), fmt(percentile(backs, 50), 2),
                         fmt(max(backs) if backs else float("nan"), 2)]]))  # fmt: skip
    worst = max(backs) if backs else float("inf")
    md.append(f"\nTarget ≤ 2 s: {'met' if worst <= 2.0 else '**missed**'}.\n")
    gaps = slow["gaps"]
    md.append("\n### A 1 fps VideoWriter pushed at 25 fps, read from the server\n")
    md.append(md_table(["fps read", "gap p50 ms", "gap p95 ms", "gap max ms"],
                       [[fmt(slow["fps"], 2), fmt(1000 * percentile(gaps, 50)),
                         fmt(1000 * percentile(gaps, 95)),
                         fmt(1000 * max(gaps) if gaps else float("nan"))]]))  # fmt: skip
    steady = slow["fps"] >= 24.0 and percentile(gaps, 95) <= 2 * INTERVAL
    md.append(
        f"\nTarget: a steady 25 fps ({'met' if steady else '**missed**'}: ≥ 24 fps, 95 % of "
        "gaps ≤ two intervals).\n"
    )
    return Section("push", "Push to a media server, and record", "\n".join(md), data=data)
