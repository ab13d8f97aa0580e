"""Scenario ``open``: how long ``framebus.VideoCapture(file)`` takes to open, beside
``cv2.VideoCapture``, first in a fresh process and then again in the same process.

"Open" is the constructor plus ``get(CAP_PROP_FRAME_WIDTH)``, which framebus answers from the
header once the constructor returns (the capture has decoded the first frame by then). Each
run is a fresh interpreter (spawned) that has imported framebus and cv2 already: the first
open there includes starting the capture fork server, the later ones a fork each. The file is
a short H.264 MP4 (320x240, 25 fps, 50 frames). Peers: ``cv2.VideoCapture``; framebus with
the fork server turned off (``FRAMEBUS_FORK_SERVER=0``: a fresh interpreter per capture, as
before the server).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .common import SPAWN, BenchError, Config, Section, exit_with_parent, log, md_table, percentile

__all__ = ["run"]

OPENS = 20
FIRST_TARGET, LATER_TARGET = 0.400, 0.050


def _opens(kind: str, path: str, n: int, conn: Connection) -> None:
    exit_with_parent()
    if kind == "framebus, no fork server":
        os.environ["FRAMEBUS_FORK_SERVER"] = "0"
    import cv2

    import framebus

    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        if kind == "cv2":
            cap: Any = cv2.VideoCapture(path)
        else:
            cap = framebus.VideoCapture(path)
        width = cap.get(cv2.CAP_PROP_FRAME_WIDTH)
        times.append(time.perf_counter() - t0)
        cap.release()
        if width != 320:
            conn.send(("error", f"{kind}: width {width} right after opening"))
            return
    conn.send(("ok", times))


def _run(kind: str, path: str, n: int) -> list[float]:
    here, there = SPAWN.Pipe()
    proc = SPAWN.Process(target=_opens, args=(kind, path, n, there), daemon=True)
    proc.start()
    there.close()
    try:
        if not here.poll(300):
            raise BenchError(f"{kind}: no answer")
        status, payload = here.recv()
        if status != "ok":
            raise BenchError(str(payload))
        return list(payload)
    finally:
        proc.join(30)
        here.close()


def run(cfg: Config) -> Section:
    runs = 2 if cfg.quick else 5
    kinds = ("cv2", "framebus", "framebus, no fork server")
    firsts: dict[str, list[float]] = {k: [] for k in kinds}
    laters: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="framebus-bench-open-") as tmp:
        path = str(Path(tmp) / "clip.mp4")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
             "-frames:v", "50", "-c:v", "libx264", "-pix_fmt", "yuv420p", path],
            check=True, timeout=60,
        )  # fmt: skip
        for r in range(runs):
            for kind in kinds:  # alternated: the machine's state is the same for each
                log(f"open: {kind}, run {r + 1}/{runs}")
                n = OPENS if kind != "framebus, no fork server" else 5
                times = _run(kind, path, n)
                firsts[kind].append(times[0])
                laters[kind] += times[1:]
    rows = []
    for kind in kinds:
        rows.append([kind, f"{1000 * percentile(firsts[kind], 50):.1f}",
                     f"{1000 * percentile(laters[kind], 50):.1f}",
                     f"{1000 * percentile(laters[kind], 90):.1f}",
                     str(len(firsts[kind])), str(len(laters[kind]))])  # fmt: skip
    first, later = percentile(firsts["framebus"], 50), percentile(laters["framebus"], 50)
    verdict = "met" if first <= FIRST_TARGET and later <= LATER_TARGET else "**missed**"
    header = ["", "first open in a process, p50 ms", "later opens, p50 ms", "later, p90 ms",
              "first opens", "later opens"]  # fmt: skip
    md = [
        md_table(header, rows),
        f"\nframebus: first {1000 * first:.0f} ms (target ≤ {1000 * FIRST_TARGET:.0f}), later "
        f"{1000 * later:.0f} ms (target ≤ {1000 * LATER_TARGET:.0f}): {verdict}. Every open "
        "knew its frame width when the constructor returned (checked on each).\n",
    ]
    data = {"first_s": firsts, "later_s": laters}
    return Section("open", "Opening a file: `VideoCapture(file)`", "\n".join(md), data=data)
