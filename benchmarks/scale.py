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
   time, from the sender reports) sampled by a reader.
2. *A plain decoding loop*: a process per camera doing only the decoding — PyAV
   (``av.open``, ``decode``, ``to_ndarray("bgr24")``, one decoder thread as framebus's live
   sources use) — at 1 and 4 cameras, in rounds alternating with framebus's (the median of
   three each): framebus's CPU per camera against it (target ≤ 1.1x). Beside it
   ``cv2.VideoCapture(url).read()`` in a loop (OpenCV's own decoder threads).
3. *Peer*: ultralytics-style threads (a ``cv2.VideoCapture`` per camera in a thread of one
   process, keeping the last frame; ``LoadStreams``' way) over the same ladder.

*Keeping up*, for every reader alike: each camera ≥ 24.5 fps, and its lag (the wall clock
minus the frame's stream time: ``CAP_PROP_POS_MSEC``, PyAV's ``frame.time``, framebus's
camera-time age) grows by at most 100 ms over the window — a reader that decodes slower than
the camera sends falls further behind every second, whatever its frame rate says while the
socket buffers fill. A ladder stops at the first count not kept up with.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .common import (
    STREAM_PREFIX,
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

__all__ = ["run"]

SIZE = "1280x720"
FPS = 25
LADDER = (1, 2, 4, 6, 8, 10, 12, 14, 16)
QUICK_LADDER = (1, 2, 4)
BASELINE_COUNTS = (1, 4)
MIN_FPS = 24.5
MAX_GROWTH = 0.100
WARMUP = 4.0
ROUNDS = 3


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
        lags: list[list[float]] = [[] for _ in readers]
        clocks: set[str] = set()
        while time.monotonic() - t0 < seconds:
            for r, lag in zip(readers, lags, strict=True):  # the newest frame's age (no copy)
                if r.grab() and r.info is not None:
                    lag.append(time.time() - r.info.timestamp)
                    clocks.add(r.info.clock)
            time.sleep(0.25)
        ages = [a for lag in lags for a in lag]
        growth = [_growth(lag) for lag in lags]
        dt = time.monotonic() - t0
        box = busy_cores(box0, psutil.cpu_times())
        restarted = [p.capture_pid != pid for p, pid in zip(pubs, pids, strict=True)]
        if any(restarted):  # (a capture that failed and was started again: not kept up)
            cpu = [float("nan")] * len(pids)
        else:
            cpu = [process_cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        fps = [(p.stats().captured - b) / dt for p, b in zip(pubs, before, strict=True)]
    finally:
        for r in readers:
            r.release()
        for p in pubs:
            p.close()
    return {"cameras": len(urls), "seconds": dt, "fps": fps, "cpu": [c / dt for c in cpu],
            "ages": ages, "growth": growth, "clocks": sorted(clocks), "box": box,
            "restarted": sum(restarted)}  # fmt: skip


def _growth(lags: list[float]) -> float:
    """How much a camera's lag grew over the window: the median of its last samples minus
    the median of its first (inf without enough samples)."""
    if len(lags) < 16:
        return float("inf")
    return percentile(lags[-8:], 50) - percentile(lags[:8], 50)


def _kept_up(step: dict[str, Any]) -> bool:
    # (framebus's ages are by the cameras' clocks only while they are trusted: beyond 2 s of
    # delay a frame keeps its arrival time, and the lag would stop growing)
    return bool(
        step["fps"]
        and min(step["fps"]) >= MIN_FPS
        and max(step["growth"]) <= MAX_GROWTH
        and not step.get("restarted")
        and step.get("clocks", ["camera"]) == ["camera"]
    )


# --- plain loops and ultralytics-style threads (processes of their own) ------------------------


def _pyav_loop(url: str, count: Any, shown: Any, stop: Any) -> None:
    """Only the decoding: every frame to BGR, nothing else (and its stream time noted)."""
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
            shown.value = frame.time or 0.0
            if stop.is_set():
                break


def _cv2_loop(url: str, count: Any, shown: Any, stop: Any) -> None:
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
            shown.value = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
    finally:
        cap.release()


def _threads_process(urls: list[str], counts: list[Any], shown: list[Any], stop: Any) -> None:
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
                    shown[i].value = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
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
    shown = [ctx.Value("d", 0.0) for _ in urls]  # the newest frame's stream time, seconds
    if kind == "threads":
        procs = [ctx.Process(target=_threads_process, args=(urls, counts, shown, stop),
                             daemon=True)]  # fmt: skip
    else:
        target = _pyav_loop if kind == "pyav" else _cv2_loop
        procs = [
            ctx.Process(target=target, args=(u, c, g, stop), daemon=True)
            for u, c, g in zip(urls, counts, shown, strict=True)
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
        samples: list[list[float]] = [[] for _ in urls]
        while time.monotonic() - t0 < seconds:
            for stream_time, sample in zip(shown, samples, strict=True):
                sample.append(time.time() - stream_time.value)  # (a stalled reader: grows)
            time.sleep(0.25)
        dt = time.monotonic() - t0
        box = busy_cores(box0, psutil.cpu_times())
        cpu = sum(process_cpu_seconds(p.pid) for p in procs if p.pid) - sum(cpu0)
        fps = [(c.value - b) / dt for c, b in zip(counts, before, strict=True)]
    finally:
        stop.set()
        for p in procs:
            stop_process(p, grace=3.0)
    return {"cameras": len(urls), "seconds": dt, "fps": fps,
            "cpu": [cpu / dt / len(urls)] * len(urls), "ages": [],
            "growth": [_growth(sample) for sample in samples], "box": box}  # fmt: skip


# --- the run ----------------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    from framebus.testing import RTSPServer, encode_replay

    seconds = _window(cfg)
    ladder = QUICK_LADDER if cfg.quick else LADDER
    results: dict[str, Any] = {"framebus": [], "threads": [], "cv2": [],
                               "rounds": {n: {"framebus": [], "pyav": []}
                                          for n in BASELINE_COUNTS}}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="framebus-scale-") as tmp:
        clip = Path(tmp) / "camera.h264"
        log("scale: encoding the cameras' clip (20 s of 1280x720 H.264)")
        encode_replay(clip, size=SIZE, fps=FPS, seconds=20)
        mounts = tuple(f"/cam{i}" for i in range(max(ladder) + 1))
        with RTSPServer(replay=clip, fps=FPS, mounts=mounts, size=SIZE) as srv:
            assert srv.proc is not None
            server_pid = srv.proc.pid
            urls = [srv.url(m) for m in mounts]

            def measured(what: str, n: int, measure: Any) -> dict[str, Any]:
                log(f"scale: {what}, {n} camera(s)")
                c0, t0 = process_cpu_seconds(server_pid), time.monotonic()
                step: dict[str, Any] = measure(urls[:n], seconds)
                step["server"] = (process_cpu_seconds(server_pid) - c0) / (time.monotonic() - t0)
                return step

            def kind(k: str) -> Any:
                return lambda u, w: _processes_step(k, u, w)

            for n in BASELINE_COUNTS:  # framebus and the plain loop, turn about
                for _ in range(1 if cfg.quick else ROUNDS):
                    rounds = results["rounds"][n]
                    rounds["framebus"].append(measured("framebus", n, _framebus_step))
                    rounds["pyav"].append(measured("plain PyAV loop", n, kind("pyav")))
                results["cv2"].append(measured("plain cv2 loop", n, kind("cv2")))
            for n in ladder:
                step = measured("framebus", n, _framebus_step)
                results["framebus"].append(step)
                if not _kept_up(step):
                    break
            for n in ladder:
                step = measured("threads in one process", n, kind("threads"))
                results["threads"].append(step)
                if not _kept_up(step):
                    break
    return _section(results)


def _cpu_per_camera(step: dict[str, Any]) -> float:
    return float(sum(step["cpu"]) / step["cameras"])


def _kept_up_count(steps: list[dict[str, Any]]) -> int:
    return max((s["cameras"] for s in steps if _kept_up(s)), default=0)


def _load(steps: list[dict[str, Any]]) -> str:
    """What the machine had left at the most cameras kept up with."""
    n = _kept_up_count(steps)
    step = next((s for s in steps if s["cameras"] == n), None)
    if step is None:
        return ""
    ages = step["ages"]
    age = f", age p95 {1000 * percentile(ages, 95):.0f} ms" if ages else ""
    return f" (the machine {100 * step['box']:.0f} % busy of 200{age})"


HEADER = ["reader", "cameras", "slowest camera fps", "lag growth ms (worst camera)",
          "CPU per camera %", "machine %", "server %", "age p50 ms", "age p95 ms"]  # fmt: skip


def _row(label: str, s: dict[str, Any]) -> list[str]:
    ages = s["ages"]
    return [label, str(s["cameras"]), fmt(min(s["fps"]), 1), fmt(1000 * max(s["growth"]), 0),
            fmt(100 * _cpu_per_camera(s), 1), fmt(100 * s["box"], 0),
            fmt(100 * s["server"], 1), fmt(1000 * percentile(ages, 50), 0) if ages else "",
            fmt(1000 * percentile(ages, 95), 0) if ages else ""]  # fmt: skip


RATIO_HEADER = ["cameras", "framebus % (each round)", "plain PyAV loop % (each round)",
                "plain cv2 loop %", "framebus ÷ PyAV loop"]  # fmt: skip


def _section(results: dict[str, Any]) -> Section:
    fb, threads = results["framebus"], results["threads"]
    ladder_rows = [_row("framebus (a capture process per camera)", s) for s in fb]
    ladder_rows += [_row("threads + cv2.VideoCapture in one process (ultralytics style)", s)
                    for s in threads]  # fmt: skip
    ratio_rows, verdicts, ratios = [], [], []
    for n, rounds in results["rounds"].items():
        ours = percentile([_cpu_per_camera(s) for s in rounds["framebus"]], 50)
        plain = percentile([_cpu_per_camera(s) for s in rounds["pyav"]], 50)
        cv2s = [_cpu_per_camera(s) for s in results["cv2"] if s["cameras"] == n]
        ratio = ours / plain
        ratios.append(ratio)
        verdicts.append(f"{n} camera(s) **{ratio:.2f}x**")
        ratio_rows.append([
            str(n), " / ".join(fmt(100 * _cpu_per_camera(s), 1) for s in rounds["framebus"]),
            " / ".join(fmt(100 * _cpu_per_camera(s), 1) for s in rounds["pyav"]),
            fmt(100 * cv2s[0], 1) if cv2s else "", f"{ratio:.2f}",
        ])  # fmt: skip
    met = "met" if ratios and max(ratios) <= 1.1 else "**missed**"
    lines = [
        f"Cameras: GStreamer's RTSP server replaying a pre-encoded {SIZE} H.264 stream at {FPS} "
        "fps (4 Mbit/s, High profile, a keyframe every 2 s) on a mount per camera, with RTCP "
        "sender reports; server: its process's CPU, all cameras, in % of a core. CPU per camera "
        "in % of a core; machine: all cores busy (200 = both); age: the newest frame's, by the "
        "camera's clock, sampled by a reader (framebus only: OpenCV gives no capture time). "
        f"*Kept up with*: every camera ≥ {MIN_FPS} fps and its lag grew ≤ "
        f"{1000 * MAX_GROWTH:.0f} ms over the window (the lag: the wall clock minus the "
        "frame's stream time).\n",
        md_table(HEADER, ladder_rows),
        "",
        f"Kept up with, every frame decoded: framebus **{_kept_up_count(fb)} cameras**"
        f"{_load(fb)}, threads + cv2.VideoCapture in one process {_kept_up_count(threads)}"
        f"{_load(threads)}.",
        "",
        "CPU per camera against a plain decoding loop (PyAV, a process per camera, only "
        "decoding to BGR), rounds alternating; the ratio of the medians:\n",
        md_table(RATIO_HEADER, ratio_rows),
        "",
        f"framebus ÷ plain decoding loop: {', '.join(verdicts)} (target ≤ 1.1x: {met}).",
    ]
    return Section("scale", "Many cameras: how many one machine reads", "\n".join(lines) + "\n",
                   data={k: v for k, v in results.items() if k != "rounds"}
                   | {"rounds": {str(n): r for n, r in results["rounds"].items()}})  # fmt: skip
