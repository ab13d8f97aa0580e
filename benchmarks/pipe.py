"""Scenario ``pipe``: frames through a Unix pipe into another process.

Three ways to get the same kind of frames (``cfg.frame_size`` BGR, framebus's moving test
pattern or ffmpeg's) from one process to a reader process through ``|``:

* **framebus cat**: the benchmark publishes a stream (capture in its own process, as for a
  camera); ``framebus cat NAME --format framebus`` writes it to the pipe; the reader is
  ``framebus.pipe.frames(sys.stdin.buffer)``. Age comes from the capture time in each header.
* **seed 004**: the seed's accepted answer: a writer that captures and writes on one thread, a
  zero-padded ASCII length (``str(len).zfill(26)``), the payload (the raw pixels) and a "last
  file" byte; the seed's reader with its ``output += buffer.read(...)`` loop. The camera does
  not wait for the writer, as a real one does not: frame ``k`` is stamped on the camera's
  schedule (``t0 + k / fps``) and, when the writer is late, waits in the camera's buffer (what
  ``cv2.VideoCapture`` returns next is the oldest buffered frame). The capture time travels in
  the first 8 bytes of the pixels (the seed's protocol has no header to put it in).
* **ffmpeg rawvideo**: ``ffmpeg -f lavfi -i testsrc2 -pix_fmt bgr24 -f rawvideo -`` (``-re``
  when paced); the reader reads ``W*H*3`` bytes per frame. Raw video carries no timestamps:
  the age is estimated from the frame index (frame ``k`` is due ``k / fps`` after frame 0) and
  taken relative to the freshest frame of the window (age 0), so it is a lower bound.

Workloads, each measured for ``cfg.duration`` seconds after one second of warm-up:

1. *throughput*: the source as fast as it goes, the reader takes frames as fast as it can:
   frames/s at the reader and CPU of every process of the pipeline (100 = one core);
2. *keeps up*: a 30 fps source, the reader takes each frame at once: age median / p99;
3. *3x slower*: a 30 fps source, the reader "works" 3 frame intervals on each frame: age
   median / p99, the age of the last frame read (a backlog that grows with the run, or
   bounded), and framebus's capture rate meanwhile (the camera is not slowed).

Each pipeline is watched: a stage that hangs is killed after ``duration + 60`` seconds and the
measurement reported as failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import (
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    Size,
    fmt,
    log,
    md_table,
    percentile,
    process_cpu_seconds,
)

__all__ = ["run"]

SOURCE_FPS = 30.0
SLOWNESS = 3
WARM = 1.0
SEED_LENGTH_DIGITS = 26  # the seed: int(log(62914560, 2) + 1)
PEERS = ("framebus", "seed004", "ffmpeg")
LABELS = {
    "framebus": "framebus cat --format framebus",
    "seed004": "seed 004 length prefix",
    "ffmpeg": "ffmpeg -f rawvideo",
}


@dataclass(frozen=True)
class Workload:
    key: str
    fps: float | None  # None: as fast as possible
    work: float  # seconds the reader spends on each frame


WORKLOADS = (
    Workload("throughput", None, 0.0),
    Workload("keeps_up", SOURCE_FPS, 0.0),
    Workload("slow", SOURCE_FPS, SLOWNESS / SOURCE_FPS),
)


# -- the processes of a pipeline (run as ``python -m benchmarks.pipe ROLE ...``) ---------------


def _reader(kind: str, width: int, height: int, fps: float, work: float, duration: float) -> None:
    """Read frames from stdin for WARM + duration seconds; print a JSON summary."""
    stdin = sys.stdin.buffer
    ages: list[float] = []
    first_frame: float | None = None
    cpu0 = None
    frame_bytes = width * height * 3
    first_arrival = None
    index = 0

    def frames() -> Any:
        nonlocal index
        if kind == "framebus":
            import framebus

            for _frame, info in framebus.pipe.frames(stdin):
                yield info.timestamp
        elif kind == "seed004":
            while True:  # the seed's read.py: read(), read_file()
                data, last = _seed_read_file(stdin)
                yield float(np.frombuffer(data[:8], "<f8")[0])
                if last:
                    return
        else:
            while True:
                data = stdin.read(frame_bytes)
                if len(data) < frame_bytes:
                    return
                index += 1
                yield None

    for stamp in frames():
        now = time.time()
        if first_frame is None:
            first_frame = time.monotonic()
        elapsed = time.monotonic() - first_frame
        if kind == "ffmpeg":
            if first_arrival is None:
                first_arrival = now
            stamp = first_arrival + (index - 1) / fps if fps else now
        if elapsed >= WARM:
            if cpu0 is None:
                cpu0, t0 = time.process_time(), time.monotonic()
                print("start", flush=True)  # the benchmark samples the writer's CPU now
            ages.append(now - stamp)
        if elapsed >= WARM + duration:
            break
        if work:
            time.sleep(work)
    if cpu0 is None:
        print(json.dumps({"error": "no frame after the warm-up"}), flush=True)
        return
    wall = time.monotonic() - t0
    if kind == "ffmpeg" and fps:  # relative to the freshest frame of the window: a lower bound
        freshest = min(ages)
        ages = [a - freshest for a in ages]
    print(
        json.dumps(
            {"frames": len(ages), "wall": wall, "cpu": (time.process_time() - cpu0) / wall,
             "ages": ages}
        ),
        flush=True,
    )  # fmt: skip
    time.sleep(10)  # stay until the benchmark has sampled the writer's CPU and stops us
    os._exit(0)


def _seed_read(buffer: Any, number_of_bytes: int) -> bytes:
    output = b""
    while len(output) < number_of_bytes:
        chunk = buffer.read(number_of_bytes - len(output))
        if not chunk:
            raise EOFError
        output += chunk
    return output


def _seed_read_file(buffer: Any) -> tuple[bytes, bool]:
    length = int(_seed_read(buffer, SEED_LENGTH_DIGITS))
    data = _seed_read(buffer, length)
    return data, _seed_read(buffer, 1) == b"1"


def _seed_writer(width: int, height: int, fps: float) -> None:
    """The seed's write.py: capture and write on one thread, length prefix, payload, flag."""
    from framebus.sources.pattern import PatternSource
    from framebus.sources.spec import TestPattern

    source = PatternSource(TestPattern(width, height, fps=None))  # drawn on demand
    source.open()
    out = sys.stdout.buffer
    t0 = time.time()
    k = 0
    try:
        while True:
            frame = source.read()
            assert frame is not None
            if fps:  # the camera's schedule: frame k is due at t0 + k/fps, buffered if late
                due = t0 + k / fps
                if due > time.time():
                    time.sleep(due - time.time())
                stamp = due
            else:
                stamp = time.time()
            flat = frame.reshape(-1)
            flat[:8] = np.frombuffer(np.float64(stamp).tobytes(), np.uint8)
            data = flat.data
            length = str(len(data)).zfill(SEED_LENGTH_DIGITS)
            out.write(length.encode())
            out.write(data)
            out.write(b"0")
            out.flush()
            k += 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


# -- one measurement ---------------------------------------------------------------------------


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.pipe", *args]


def _measure(peer: str, size: Size, load: Workload, duration: float) -> dict[str, Any]:
    import framebus

    w, h = size.width, size.height
    fps = load.fps or 0.0
    reader_cmd = _python("reader", peer, str(w), str(h), str(fps), str(load.work), str(duration))
    pub = None
    procs: list[subprocess.Popen[bytes]] = []
    cpu_pids: dict[str, int] = {}
    watchdog: threading.Timer | None = None
    try:
        if peer == "framebus":
            name = f"{STREAM_PREFIX}pipe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            pub = framebus.publish(name, framebus.TestPattern(w, h, fps=load.fps))
            cpu_pids["capture"] = pub.capture_pid
            writer = [sys.executable, "-m", "framebus", "cat", name, "--format", "framebus"]
        elif peer == "seed004":
            writer = _python("seed-writer", str(w), str(h), str(fps))
        else:
            rate = int(load.fps or 1000)
            writer = ["ffmpeg", "-v", "error", *(["-re"] if load.fps else []), "-f", "lavfi",
                      "-i", f"testsrc2=size={w}x{h}:rate={rate}", "-pix_fmt", "bgr24",
                      "-f", "rawvideo", "-"]  # fmt: skip
        wproc = subprocess.Popen(writer, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(wproc)
        rproc = subprocess.Popen(reader_cmd, stdin=wproc.stdout, stdout=subprocess.PIPE)
        procs.append(rproc)
        assert wproc.stdout is not None
        wproc.stdout.close()  # the reader holds the read end now
        watchdog = threading.Timer(duration + 60, lambda: [p.kill() for p in procs])
        watchdog.daemon = True
        watchdog.start()
        cpu_pids["writer"] = wproc.pid
        assert rproc.stdout is not None
        marker = rproc.stdout.readline()  # the reader's window starts after its warm-up
        if marker.strip() != b"start":
            raise BenchError(f"{peer} {load.key}: the reader got no frame ({marker!r})")
        cpu0 = {k: _cpu(pid) for k, pid in cpu_pids.items()}
        captured0 = pub.stats().captured if pub is not None else None
        t0 = time.monotonic()
        out = rproc.stdout.readline()  # its summary, at the end of its window
        cpu1 = {k: _cpu(pid) for k, pid in cpu_pids.items()}
        captured1 = pub.stats().captured if pub is not None else None
        wall = time.monotonic() - t0
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for p in procs:
            if p.poll() is None:
                p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
                p.wait()
        if pub is not None:
            pub.close()
    try:
        result: dict[str, Any] = json.loads(out.decode())
    except (ValueError, IndexError):
        raise BenchError(f"{peer} {load.key}: the reader printed nothing") from None
    if "error" in result:
        raise BenchError(f"{peer} {load.key}: {result['error']}")
    ages = np.asarray(result.pop("ages"), dtype=float) * 1000
    result.update(
        {
            "fps": result["frames"] / result["wall"],
            "cpu_writer": (cpu1["writer"] - cpu0["writer"]) / wall,
            "cpu_capture": (cpu1["capture"] - cpu0["capture"]) / wall
            if "capture" in cpu1 else None,
            "captured_fps": None if captured0 is None or captured1 is None
            else (captured1 - captured0) / wall,
            "age_median_ms": percentile(ages, 50),
            "age_p99_ms": percentile(ages, 99),
            "age_last_ms": float(ages[-1]) if len(ages) else float("nan"),
        }
    )  # fmt: skip
    return result


def _cpu(pid: int) -> float:
    try:
        return process_cpu_seconds(pid)
    except Exception:  # exited
        return float("nan")


# -- the scenario ------------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    size = cfg.frame_size
    results: dict[str, dict[str, dict[str, Any]]] = {w.key: {} for w in WORKLOADS}
    errors: list[str] = []
    for load in WORKLOADS:
        for peer in PEERS:
            try:
                r = _measure(peer, size, load, cfg.duration)
            except (BenchError, subprocess.SubprocessError, OSError) as exc:
                errors.append(f"pipe {peer} {load.key}: {exc}")
                log(f"  pipe {peer:9} {load.key:10} FAILED {exc}")
                continue
            results[load.key][peer] = r
            log(
                f"  pipe {peer:9} {load.key:10} {r['fps']:7.1f} frames/s  age p99 "
                f"{fmt(r['age_p99_ms'])} ms  writer CPU {r['cpu_writer'] * 100:.0f}%  "
                f"reader CPU {r['cpu'] * 100:.0f}%"
            )
    return Section("pipe", "Frames through a pipe", _text(cfg, size, results), [], results, errors)


def _pct(value: float | None) -> str:
    return "-" if value is None else fmt(value * 100, 0)


def _text(cfg: Config, size: Size, results: dict[str, dict[str, dict[str, Any]]]) -> str:
    thr = results["throughput"]
    rows = [
        [LABELS[p], fmt(r["fps"]), _pct(r["cpu_capture"]), _pct(r["cpu_writer"]), _pct(r["cpu"]),
         fmt((r["cpu_writer"] + (r["cpu_capture"] or 0) + r["cpu"]) * 1000 / max(r["fps"], 1e-9),
             2)]
        for p, r in thr.items()
    ]  # fmt: skip
    t1 = md_table(
        ["pipeline", "frames/s at the reader", "capture CPU %", "writer CPU %", "reader CPU %",
         "CPU ms per frame (all)"],
        rows,
    )  # fmt: skip
    age_rows = []
    for p in PEERS:
        k, s = results["keeps_up"].get(p), results["slow"].get(p)
        if k is None and s is None:
            continue
        age_rows.append(
            [
                LABELS[p],
                fmt(k["age_median_ms"]) if k else "-",
                fmt(k["age_p99_ms"]) if k else "-",
                fmt(s["fps"]) if s else "-",
                fmt(s["age_median_ms"]) if s else "-",
                fmt(s["age_p99_ms"]) if s else "-",
                fmt(s["age_last_ms"]) if s else "-",
                fmt(s["captured_fps"]) if s and s["captured_fps"] is not None else "-",
            ]
        )
    t2 = md_table(
        ["pipeline", "age median (ms), reader keeps up", "age p99 (ms)",
         f"frames/s, reader {SLOWNESS}x slower", "age median (ms)", "age p99 (ms)",
         "age of the last frame (ms)", "framebus capture frames/s meanwhile"],
        age_rows,
    )  # fmt: skip
    return (
        f"{size} BGR frames (framebus: its test pattern, captured in its own process; the "
        "seed's writer: the same pattern drawn in the writer; ffmpeg: `testsrc2`). Each "
        f"workload runs {cfg.duration:g} s after {WARM:g} s of warm-up; CPU is each process's "
        "own CPU time over the window (100 = one core). See `benchmarks/pipe.py` for the exact "
        "pipelines.\n\n"
        "Throughput (source as fast as it goes, reader as fast as it can):\n\n"
        f"{t1}\n\n"
        f"Age ({SOURCE_FPS:g} fps source): the reader takes each frame at once, then one that "
        f"works {SLOWNESS} frame intervals on each frame. Seed 004's writer captures on the "
        "thread that writes, so a slow reader holds the camera's frames in its buffer: the age "
        "grows for as long as the run lasts (compare the last frame's age with the duration). "
        "framebus cat takes the newest frame whenever the pipe has room, so the age stays "
        "bounded and the camera keeps its rate. ffmpeg's ages are lower bounds (estimated from "
        "the frame index; raw video has no timestamps), and ffmpeg `-re` also waits for the "
        "pipe, so its backlog grows like the seed's.\n\n"
        f"{t2}\n"
    )


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "reader":
        kind, width, height, fps, work, duration = rest
        _reader(kind, int(width), int(height), float(fps), float(work), float(duration))
    elif role == "seed-writer":
        width, height, fps = rest
        _seed_writer(int(width), int(height), float(fps))
    else:
        raise SystemExit(f"unknown role {role!r}")
