"""Scenario ``sampling``: saving every Nth frame of a video file as JPEG files, the seed 001 loop
against ``framebus sample``, in the same run.

The file: ffmpeg's ``testsrc2`` at 1920x1080, 25 fps, H.264 (libx264's default preset and GOP,
yuv420p), 64 s (1,600 frames; ``--quick``: 8 s), made once into a cache folder
(``$FRAMEBUS_BENCH_CACHE``, default ``~/.cache/framebus-benchmarks``). Each peer runs as a
fresh process, as a user runs it, so interpreter start-up and imports are included (about
0.3 s for the seed, 0.6 s for framebus here): wall time from start to exit, CPU = user +
system time of the process and all its threads (``RUSAGE_CHILDREN``). The two peers alternate,
``REPEATS`` times each (``--quick``: once); the table shows medians. Every run's file names are
checked: the same frame indexes for both.

* **seed 001 loop**: ``cv2.VideoCapture(file)``, ``read()`` every frame, ``cv2.imwrite`` each
  Nth (OpenCV's defaults: FFmpeg with its own thread count, JPEG quality 95), on one thread.
  The seed's off-by-one (it reads frame 0 before the loop and never saves it) is fixed, so
  both save frames 0, N, 2N, …; its ``cv2.waitKey(1)`` is left out (no window).
* **framebus sample**: ``framebus sample FILE --out DIR --every N --quiet`` (PyAV with frame
  threads, a decoding plan: frames neither kept nor referenced are not decoded, decoding
  stops after the last kept one; BGR conversion only for kept frames, two encoder threads,
  quality 95).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import BenchError, Config, Section, fmt, log, md_table

__all__ = ["SEED_LOOP", "run"]

TARGET = 1.5
REPEATS = 3
EVERY = (25, 1000)
SIZE = "1920x1080"
FPS = 25

SEED_LOOP = """
import os, sys, cv2
path, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
vc = cv2.VideoCapture(path)
c = 0
while True:
    ok, frame = vc.read()
    if not ok:
        break
    if c % n == 0:
        cv2.imwrite(os.path.join(out, str(c) + ".jpg"), frame)
    c += 1
vc.release()
"""


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "framebus-benchmarks"
    return Path(os.environ.get("FRAMEBUS_BENCH_CACHE", default))


def video_file(seconds: int) -> Path:
    """The benchmark's H.264 file of ``seconds``, made by ffmpeg once and cached."""
    path = _cache_dir() / f"testsrc2-{SIZE}-{FPS}fps-{seconds}s.mp4"
    if path.exists():
        return path
    if shutil.which("ffmpeg") is None:
        raise BenchError("ffmpeg is not installed (scripts/system-deps.sh installs it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"sampling: making {path} with ffmpeg (once)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    try:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
             "-i", f"testsrc2=size={SIZE}:rate={FPS}", "-t", str(seconds),
             "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp)],
            check=True,
        )  # fmt: skip
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_peer(peer: str, video: Path, every: int, out: Path) -> dict[str, Any]:
    if peer == "seed":
        argv = [sys.executable, "-c", SEED_LOOP, str(video), str(every), str(out)]
    else:
        argv = [sys.executable, "-m", "framebus", "sample", str(video), "--out", str(out),
                "--every", str(every), "--quiet"]  # fmt: skip
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise BenchError(f"{peer} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    indexes = sorted(int(p.split(".")[0]) for p in os.listdir(out) if not p.startswith("."))
    return {"wall_s": wall, "cpu_s": cpu, "indexes": indexes}


def _difference(a: Path, b: Path) -> float:
    """The largest mean absolute difference (0-255) between the two peers' JPEG files of one
    frame index: both encode the same frame at quality 95 if they kept the same frames (JPEG
    encoders differ by about 0.1), a neighbouring frame by about 4."""
    import cv2

    worst = 0.0
    for name in sorted(os.listdir(a)):
        twin = b / f"{int(name.split('.')[0]):08d}.jpg"  # the seed's "25.jpg", framebus's name
        x, y = cv2.imread(str(a / name)), cv2.imread(str(twin))
        if x is None or y is None or x.shape != y.shape:
            return float("inf")
        worst = max(worst, float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()))
    return worst


PEERS = {"seed": "seed 001 loop (`cv2.VideoCapture.read` + `cv2.imwrite`)",
         "framebus": "**`framebus sample`**"}  # fmt: skip


def run(cfg: Config) -> Section:
    seconds = 8 if cfg.quick else 64
    repeats = 1 if cfg.quick else REPEATS
    video = video_file(seconds)
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="framebus-bench-sampling-") as tmp:
        for every in EVERY:
            results[every] = {p: [] for p in PEERS}
            for rep in range(repeats):
                outs = {}
                for peer in PEERS:
                    out = outs[peer] = Path(tmp) / f"{peer}-{every}-{rep}"
                    out.mkdir()
                    log(f"sampling: every {every}, {peer}, run {rep + 1}/{repeats}")
                    results[every][peer].append(_run_peer(peer, video, every, out))
                results[every]["framebus"][-1]["difference"] = _difference(
                    outs["seed"], outs["framebus"]
                )
                for out in outs.values():
                    shutil.rmtree(out)
    return _section(cfg, video, seconds, repeats, results)


def _section(
    cfg: Config,
    video: Path,
    seconds: int,
    repeats: int,
    results: dict[int, dict[str, list[dict[str, Any]]]],
) -> Section:
    rows = []
    data: dict[str, Any] = {"video": str(video), "seconds": seconds, "repeats": repeats}
    verdicts = []
    for every, by_peer in results.items():
        seed_wall = float(np.median([r["wall_s"] for r in by_peer["seed"]]))
        want = by_peer["seed"][0]["indexes"]
        same = all(r["indexes"] == want for runs in by_peer.values() for r in runs)
        for peer, runs in by_peer.items():
            wall = float(np.median([r["wall_s"] for r in runs]))
            cpu = float(np.median([r["cpu_s"] for r in runs]))
            speedup = seed_wall / wall if wall > 0 else float("nan")
            diffs = [r["difference"] for r in runs if "difference" in r]
            diff = f"{max(diffs):.2f}" if diffs else "-"
            rows.append([str(every), PEERS[peer], fmt(wall, 2), fmt(cpu, 2),
                         f"{speedup:.2f}x", str(len(runs[0]["indexes"])),
                         "yes" if same else "**no**", diff])  # fmt: skip
            data[f"every_{every}_{peer}"] = {
                "difference": diffs,
                "wall_s": [r["wall_s"] for r in runs],
                "cpu_s": [r["cpu_s"] for r in runs],
                "files": len(runs[0]["indexes"]),
            }
        fb_wall = float(np.median([r["wall_s"] for r in by_peer["framebus"]]))
        ratio = seed_wall / fb_wall
        data[f"every_{every}_speedup"] = ratio
        data[f"every_{every}_same_indexes"] = same
        ok = ratio >= TARGET and same
        verdicts.append(
            f"every {every}: speed-up {ratio:.2f}x in wall time (target {TARGET}x), frame indexes "
            f"{'identical' if same else 'DIFFERENT'}: {'met' if ok else '**missed**'}"
        )
    table = md_table(
        [
            "every",
            "peer",
            "wall s",
            "CPU s",
            "vs seed (wall)",
            "files",
            "same indexes",
            "pixel difference from the seed's files",
        ],
        rows,
        align="rlrrrrrr",
    )
    text = (
        f"`{video.name}`: {SIZE}, {FPS} fps, {seconds} s ({seconds * FPS} frames), H.264; "
        f"median of {repeats} run(s) per cell, each peer a fresh process (start-up included). "
        "CPU is user + system time of the process and its threads. Pixel difference: the "
        "largest mean absolute difference (0-255) between the two peers' files of one index, "
        "over all files and runs (both JPEG, quality 95, from frames both decoded: encoders "
        "differ by about 0.1 on one frame; two neighbouring frames of this video differ by "
        "about 4, "
        "before any encoding).\n\n" + table + "\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    )
    return Section("sampling", "Sampling a video file to JPEG files (seed 001)", text, data=data)
