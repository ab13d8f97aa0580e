"""Scenario ``scale``: how many 720p25 H.264 RTSP cameras this machine reads with every frame
decoded, framebus against a plain decoding loop and against what people write instead, in one
run.

The cameras cost next to no CPU: GStreamer's RTSP server replays a pre-encoded stream
(``framebus.testing.encode_replay``: 1280x720, 25 fps, High profile, 4 Mbit/s, a keyframe every
2 s, no B-frames, as cameras send) on a mount per camera, each started by its first client
(independent phases), with RTCP sender reports. Its CPU is measured and reported apart.

1. *framebus*: ``framebus.publish`` of 1, 2, 4, 6, ... cameras (a capture process each, every
   frame decoded to BGR into the stream's ring); after a warm-up, over the window: each
   camera's frame rate, the capture processes' CPU, and the age of the newest frame (camera
   time, from the sender reports) sampled by a reader. *Sustained*: every camera ≥ 24.5 fps and
   the age p95 ≤ 250 ms. The ladder stops at the first count not sustained.
2. *A plain decoding loop*: a process per camera doing only the decoding — PyAV
   (``av.open``, ``decode``, ``to_ndarray("bgr24")``, one decoder thread as framebus's live
   sources use) — at 1 and 4 cameras: framebus's CPU per camera against it (target ≤ 1.1x).
   Beside it ``cv2.VideoCapture(url).read()`` in a loop (OpenCV's own decoder threads).
3. *Peers*: ultralytics-style threads (a ``cv2.VideoCapture`` per camera in a thread of one
   process, keeping the last frame; ``LoadStreams``' way) over the same ladder; and roboflow's
   multiplexer (``streamvision.camera.utils.multiplex_videos``, what ``inference`` batches
   cameras with), where it installs (a virtual environment of its own: it needs the
   non-headless OpenCV).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .common import (
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    busy_cores,
    exit_with_parent,
    fmt,
    log,
    md_table,
    percentile,
    process_cpu_seconds,
    stop_process,
)
from .peers.streamvision_ import PACKAGE, multiplexer_python, run_multiplexer

__all__ = ["run"]

SIZE = "1280x720"
FPS = 25
LADDER = (1, 2, 4, 6, 8, 10, 12, 14, 16)
QUICK_LADDER = (1, 2, 4)
BASELINE_COUNTS = (1, 4)
MIN_FPS = 24.5
MAX_AGE_P95 = 0.250
WARMUP = 4.0


def _window(cfg: Config) -> float:
    return 5.0 if cfg.quick else 12.0


# --- framebus -----------------------------------------------------------------------------


def _framebus_step(urls: list[str], seconds: float) -> dict[str, Any]:
    import framebus

    base = f"{STREAM_PREFIX}scale-{os.getpid()}-{len(urls)}"
    names = [f"{base}-{i}" for i in range(len(urls))]
    pubs: list[Any] = []
    readers: list[Any] = []
    try:
        for name, url in zip(names, urls, strict=True):
            pubs.append(framebus.publish(name, url))
        readers = [framebus.attach(name, timeout=20) for name in names]
        time.sleep(WARMUP)
        pids = [p.capture_pid for p in pubs]
        before = [p.stats().captured for p in pubs]
        cpu0 = [process_cpu_seconds(pid) for pid in pids]
        box0 = psutil.cpu_times()
        t0 = time.monotonic()
        ages: list[float] = []
        clocks: set[str] = set()
        while time.monotonic() - t0 < seconds:
            for r in readers:  # the newest frame's age, by the camera's clock (no copy)
                if r.grab() and r.info is not None:
                    ages.append(time.time() - r.info.timestamp)
                    clocks.add(r.info.clock)
            time.sleep(0.25)
        dt = time.monotonic() - t0
        box = busy_cores(box0, psutil.cpu_times())
        cpu = [process_cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        fps = [(p.stats().captured - b) / dt for p, b in zip(pubs, before, strict=True)]
        restarted = [p.capture_pid != pid for p, pid in zip(pubs, pids, strict=True)]
    finally:
        for r in readers:
            r.release()
        for p in pubs:
            p.close()
    return {"cameras": len(urls), "seconds": dt, "fps": fps, "cpu": [c / dt for c in cpu],
            "ages": ages, "clocks": sorted(clocks), "box": box,
            "restarted": sum(restarted)}  # fmt: skip


def _sustained(step: dict[str, Any]) -> bool:
    ages = step["ages"]
    return bool(
        step["fps"]
        and min(step["fps"]) >= MIN_FPS
        and ages
        and percentile(ages, 95) <= MAX_AGE_P95
        and not step.get("restarted")
    )


# --- plain loops and ultralytics-style threads (processes of their own) ------------------------


def _pyav_loop(url: str, count: Any, stop: Any) -> None:
    """Only the decoding: every frame to BGR, nothing else."""
    import av

    exit_with_parent()
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="bgr24")
            with count.get_lock():
                count.value += 1
            if stop.is_set():
                break


def _cv2_loop(url: str, count: Any, stop: Any) -> None:
    import cv2

    exit_with_parent()
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        while not stop.is_set():
            ok, _ = cap.read()
            if not ok:
                break
            with count.get_lock():
                count.value += 1
    finally:
        cap.release()


def _threads_process(urls: list[str], counts: list[Any], stop: Any) -> None:
    """ultralytics' LoadStreams: a thread per camera reading its cv2.VideoCapture, keeping the
    last frame (the batches it builds from them cost nothing here)."""
    import cv2

    exit_with_parent()
    latest: list[Any] = [None] * len(urls)

    def reader(i: int) -> None:
        cap = cv2.VideoCapture(urls[i], cv2.CAP_FFMPEG)
        try:
            while not stop.is_set():
                if not cap.grab():
                    break
                ok, frame = cap.retrieve()
                if ok:
                    latest[i] = frame
                    with counts[i].get_lock():
                        counts[i].value += 1
        finally:
            cap.release()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _processes_step(kind: str, urls: list[str], seconds: float) -> dict[str, Any]:
    """``kind``: "pyav" or "cv2" (a process per camera), "threads" (one process)."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    counts = [ctx.Value("q", 0) for _ in urls]
    if kind == "threads":
        procs = [ctx.Process(target=_threads_process, args=(urls, counts, stop), daemon=True)]
    else:
        target = _pyav_loop if kind == "pyav" else _cv2_loop
        procs = [
            ctx.Process(target=target, args=(u, c, stop), daemon=True)
            for u, c in zip(urls, counts, strict=True)
        ]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(c.value for c in counts):
            time.sleep(0.1)
        time.sleep(WARMUP)
        before = [c.value for c in counts]
        cpu0 = [process_cpu_seconds(p.pid) for p in procs if p.pid]
        box0 = psutil.cpu_times()
        t0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        box = busy_cores(box0, psutil.cpu_times())
        cpu = sum(process_cpu_seconds(p.pid) for p in procs if p.pid) - sum(cpu0)
        fps = [(c.value - b) / dt for c, b in zip(counts, before, strict=True)]
    finally:
        stop.set()
        for p in procs:
            stop_process(p, grace=3.0)
    return {"cameras": len(urls), "seconds": dt, "fps": fps,
            "cpu": [cpu / dt / len(urls)] * len(urls), "ages": [], "box": box}  # fmt: skip


# --- roboflow's multiplexer (a virtual environment of its own) --------------------------------


def _multiplexer_step(python: Path, urls: list[str], seconds: float) -> dict[str, Any]:
    got = run_multiplexer(python, urls, WARMUP, seconds)
    n = len(urls)
    return {"cameras": n, "seconds": got["seconds"], "fps": got["fps"],
            "cpu": [got["cpu"] / n] * n, "ages": []}  # fmt: skip


# --- the run ----------------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    from framebus.testing import RTSPServer, encode_replay

    seconds = _window(cfg)
    ladder = QUICK_LADDER if cfg.quick else LADDER
    results: dict[str, Any] = {"framebus": [], "pyav": [], "cv2": [], "threads": [],
                               "multiplexer": [], "server": []}  # fmt: skip
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="framebus-scale-") as tmp:
        clip = Path(tmp) / "camera.h264"
        log("scale: encoding the cameras' clip (20 s of 1280x720 H.264)")
        encode_replay(clip, size=SIZE, fps=FPS, seconds=20)
        mounts = tuple(f"/cam{i}" for i in range(max(ladder) + 1))
        with RTSPServer(replay=clip, fps=FPS, mounts=mounts, size=SIZE) as srv:
            assert srv.proc is not None
            server_pid = srv.proc.pid
            urls = [srv.url(m) for m in mounts]

            def server_cpu(measure: Any) -> dict[str, Any]:
                c0 = process_cpu_seconds(server_pid)
                t0 = time.monotonic()
                step: dict[str, Any] = measure()
                step["server"] = (process_cpu_seconds(server_pid) - c0) / (time.monotonic() - t0)
                return step

            for n in ladder:
                log(f"scale: framebus, {n} camera(s)")
                step = server_cpu(lambda n=n: _framebus_step(urls[:n], seconds))
                results["framebus"].append(step)
                if not _sustained(step):
                    break
            for n in BASELINE_COUNTS:
                for kind in ("pyav", "cv2"):
                    log(f"scale: plain {kind} loop, {n} camera(s)")
                    results[kind].append(
                        server_cpu(lambda n=n, k=kind: _processes_step(k, urls[:n], seconds))
                    )
            for n in ladder:
                log(f"scale: peer, threads in one process, {n} camera(s)")
                step = server_cpu(lambda n=n: _processes_step("threads", urls[:n], seconds))
                results["threads"].append(step)
                if min(step["fps"]) < MIN_FPS:
                    break
            python = multiplexer_python()
            if python is None:
                errors.append(f"roboflow's multiplexer: {PACKAGE} does not install here")
            else:
                for n in ladder:
                    log(f"scale: peer, roboflow's multiplexer, {n} camera(s)")
                    try:
                        step = server_cpu(lambda n=n: _multiplexer_step(python, urls[:n], seconds))
                    except (BenchError, subprocess.SubprocessError) as exc:
                        errors.append(str(exc))
                        break
                    results["multiplexer"].append(step)
                    if min(step["fps"]) < MIN_FPS:
                        break
    section = _section(results)
    section.errors.extend(errors)
    return section


def _per_camera(steps: list[dict[str, Any]], n: int) -> float | None:
    for s in steps:
        if s["cameras"] == n:
            return float(sum(s["cpu"]) / n)
    return None


def _sustained_count(steps: list[dict[str, Any]], ages: bool = True) -> int:
    best = 0
    for s in steps:
        if (_sustained(s) if ages else min(s["fps"]) >= MIN_FPS) and s["cameras"] > best:
            best = s["cameras"]
    return best


HEADER = ["reader", "cameras", "slowest camera fps", "CPU per camera %", "machine %", "server %",
          "age p50 ms", "age p95 ms"]  # fmt: skip


def _section(results: dict[str, Any]) -> Section:
    rows = []
    names = {"framebus": "framebus (a capture process per camera)",
             "pyav": "plain PyAV decoding loop (a process per camera)",
             "cv2": "plain cv2.VideoCapture loop (a process per camera)",
             "threads": "threads + cv2.VideoCapture in one process (ultralytics style)",
             "multiplexer": "roboflow multiplex_videos (streamvision)"}  # fmt: skip
    for key, label in names.items():
        for s in results[key]:
            ages = s["ages"]
            rows.append([
                label, str(s["cameras"]), fmt(min(s["fps"]), 1),
                fmt(100 * sum(s["cpu"]) / s["cameras"], 1), fmt(100 * s["box"], 0)
                if "box" in s else "", fmt(100 * s.get("server", float("nan")), 1),
                fmt(1000 * percentile(ages, 50), 0) if ages else "",
                fmt(1000 * percentile(ages, 95), 0) if ages else "",
            ])  # fmt: skip
    fb = results["framebus"]
    sustained = _sustained_count(fb)
    lines = [
        f"Cameras: GStreamer's RTSP server replaying a pre-encoded {SIZE} H.264 stream at {FPS} "
        "fps (4 Mbit/s, High profile, a keyframe every 2 s) on a mount per camera, with RTCP "
        "sender reports (server CPU: its process, all cameras, in % of a core). CPU per camera "
        "in % of a core; machine: all cores busy, in % of a core (200 = both); age: the newest "
        "frame's, by the camera's clock, sampled by a reader. Sustained: every camera ≥ "
        f"{MIN_FPS} fps and age p95 ≤ {1000 * MAX_AGE_P95:.0f} ms.\n",
        md_table(HEADER, rows),
        "",
        f"framebus sustains **{sustained} camera(s)** here, every frame decoded.",
    ]
    for n in BASELINE_COUNTS:
        ours, plain = _per_camera(fb, n), _per_camera(results["pyav"], n)
        if ours is not None and plain:
            ratio = ours / plain
            verdict = "met" if ratio <= 1.1 else "**missed**"
            lines.append(
                f"At {n} camera(s): framebus {100 * ours:.1f} % of a core per camera, the plain "
                f"PyAV loop {100 * plain:.1f} %: **{ratio:.2f}x** (target ≤ 1.1x: {verdict})."
            )
    threads = results["threads"]
    if threads:
        lines.append(
            f"Threads + cv2.VideoCapture in one process sustain {_sustained_count(threads, False)}"
            " camera(s) at full rate (no capture time: fps only)."
        )
    mux = results["multiplexer"]
    if mux:
        lines.append(
            f"roboflow's multiplexer sustains {_sustained_count(mux, False)} camera(s) at full "
            "rate."
        )
    return Section("scale", "Many cameras: how many one machine reads", "\n".join(lines) + "\n",
                   data=dict(results))  # fmt: skip
