"""Scenario ``gather``: the newest frame of four cameras at once, ``framebus.gather`` against
what people write instead, in one run.

Four RTSP cameras (GStreamer's test server, 640x360 at 25 fps, each started at its own moment:
independent phases; each frame's send time painted as a barcode, and RTCP sender reports: the
frames carry the cameras' capture times) are published by framebus. Then:

1. *gather with ``max_skew`` = one interval*: batches a second, the spread of the capture times
   within a batch (p50 / p99), the age of the oldest entry (its barcode, read at the batch).
2. *a camera unplugged*: one server stopped for a while and started again; the other three's
   batches: their rate, and the share of batches that came within 1.5 intervals of the one
   before ("on time").
3. *peer: ultralytics-style threads*: a thread per camera in one process, each reading its
   ``cv2.VideoCapture`` and keeping the last frame, and a loop that takes a batch when every
   camera has a new frame (what ``LoadStreams`` does): batch rate, spread (by the barcodes:
   OpenCV gives no capture time), age; and the same with a camera unplugged.
4. *peer: roboflow's multiplexer* (``multiplex_videos``, in an environment of its own where it
   installs, see :mod:`.peers.streamvision_`): the same measures, by the barcodes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .common import STREAM_PREFIX, BenchError, Config, Section, fmt, log, md_table, percentile
from .peers.streamvision_ import PACKAGE, multiplexer_python, run_multiplexer

__all__ = ["run"]

SIZE = "640x360"
FPS = 25
INTERVAL = 1.0 / FPS
CAMERAS = 4


Batch = tuple[list[np.ndarray], float | None]


def _measure(take: Callable[[], Batch], cameras: int, seconds: float, unplug: Any = None,
             *, by_barcodes: bool = False) -> dict[str, Any]:  # fmt: skip
    """Batches for ``seconds`` (``unplug()`` half-way through): ``take()`` gives a batch's frames
    present and the spread of their capture times (None: not known); ``by_barcodes``: the
    spread by their barcodes instead (a peer that gives no capture time). Ages: the barcodes."""
    from framebus.testing import read_timestamp

    spreads, ages, gaps, complete, n = [], [], [], 0, 0
    last = time.monotonic()
    end = last + seconds
    unplugged = False
    while time.monotonic() < end:
        if unplug is not None and not unplugged and time.monotonic() > end - seconds / 2:
            unplug()
            unplugged = True
        frames, spread = take()
        now = time.monotonic()
        gaps.append(now - last)
        last = now
        n += 1
        stamps = [t for t in (read_timestamp(f) for f in frames) if t is not None]
        if len(frames) == cameras:
            complete += 1
            if by_barcodes:
                spread = max(stamps) - min(stamps) if len(stamps) == cameras else None
            if spread is not None:
                spreads.append(spread)
        if stamps:
            ages.append(time.time() - min(stamps))
    return {"batches": n, "seconds": seconds, "spreads": spreads, "ages": ages, "gaps": gaps,
            "complete": complete}  # fmt: skip


def _gather_run(names: list[str], seconds: float, unplug: Any = None) -> dict[str, Any]:
    import framebus

    with framebus.gather(names, max_skew=INTERVAL, timeout=1.0) as g:
        deadline = time.monotonic() + 15  # every camera in and on camera time
        while time.monotonic() < deadline:
            g.read()
            if all(i is not None and i.clock == "camera" for i in g.infos):
                break

        def take() -> Batch:
            present = [f for f in g.read() if f is not None]
            return present, g.batch.spread if g.batch is not None else None  # (camera time)

        return _measure(take, len(names), seconds, unplug)


def _threads_run(urls: list[str], seconds: float, unplug: Any = None) -> dict[str, Any]:
    """A thread per camera keeping its last frame; a batch when every one has a new frame."""
    import cv2

    cond = threading.Condition()
    latest: list[np.ndarray | None] = [None] * len(urls)
    fresh = [False] * len(urls)
    stop = threading.Event()

    def reader(i: int, url: str) -> None:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        while not stop.is_set():
            ok, frame = cap.read()
            if not ok:
                cap.release()
                time.sleep(0.5)
                cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
                continue
            with cond:
                latest[i], fresh[i] = frame, True
                cond.notify_all()
        cap.release()

    def take() -> Batch:
        with cond:  # LoadStreams' way: wait for every stream (bounded here, to measure)
            cond.wait_for(lambda: all(fresh), 1.0)
            frames = [f.copy() for f in latest if f is not None]
            for i in range(len(fresh)):
                fresh[i] = False
        return frames, None

    threads = [
        threading.Thread(target=reader, args=(i, u), daemon=True) for i, u in enumerate(urls)
    ]
    for t in threads:
        t.start()
    try:
        with cond:
            cond.wait_for(lambda: all(fresh), 20)
        return _measure(take, len(urls), seconds, unplug, by_barcodes=True)  # (OpenCV: no time)
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def _multiplexer_run(
    python: Any, urls: list[str], seconds: float, unplug: Any = None
) -> dict[str, Any]:
    got = run_multiplexer(python, urls, 3.0, seconds, barcodes=True, unplug=unplug)
    spreads, ages, gaps, complete, last = [], [], [], 0, 0.0
    for at, count, now, sent in got["batches"]:
        gaps.append(at - last)
        last = at
        known = [t for t in sent if t is not None]
        if count == len(urls) and len(known) == count:
            complete += 1
            spreads.append(max(known) - min(known))
        if known:
            ages.append(now - min(known))
    return {"batches": len(got["batches"]), "seconds": got["seconds"], "spreads": spreads,
            "ages": ages, "gaps": gaps[1:], "complete": complete}  # fmt: skip


def run(cfg: Config) -> Section:
    import framebus
    from framebus.testing import RTSPServer

    seconds = 8.0 if cfg.quick else 30.0
    base = f"{STREAM_PREFIX}gather-{os.getpid()}"
    servers = []
    pubs = []
    results: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    try:
        for _ in range(CAMERAS):
            servers.append(RTSPServer(size=SIZE, fps=FPS))
            servers[-1].start()
            time.sleep(INTERVAL / CAMERAS * 1.7)  # (independent phases)
        names = [f"{base}-{i}" for i in range(CAMERAS)]
        fast = framebus.Reconnect(stall_timeout=1.0, backoff_initial=0.2, backoff_max=1.0)
        for name, srv in zip(names, servers, strict=True):
            pubs.append(framebus.publish(name, srv.url(), reconnect=fast))
        log("gather: four cameras, max_skew = one interval")
        results["framebus.gather"] = _gather_run(names, seconds)
        log("gather: one camera unplugged")
        results["framebus.gather, a camera unplugged"] = _gather_run(
            names, seconds, unplug=servers[-1].stop
        )
        servers[-1].start()
        time.sleep(3)
        log("gather: peer, a thread per camera (ultralytics LoadStreams style)")
        urls = [s.url() for s in servers]
        results["threads + cv2.VideoCapture"] = _threads_run(urls, seconds)
        log("gather: peer, a camera unplugged")
        results["threads + cv2.VideoCapture, a camera unplugged"] = _threads_run(
            urls, seconds, unplug=servers[-1].stop
        )
        servers[-1].start()
        time.sleep(3)
        python = multiplexer_python()
        if python is None:
            errors.append(f"roboflow's multiplexer: {PACKAGE} does not install here")
        else:
            try:
                log("gather: peer, roboflow's multiplexer")
                results["roboflow multiplex_videos"] = _multiplexer_run(python, urls, seconds)
                log("gather: peer, roboflow's multiplexer, a camera unplugged")
                results["roboflow multiplex_videos, a camera unplugged"] = _multiplexer_run(
                    python, urls, seconds, unplug=servers[-1].stop
                )
            except BenchError as exc:
                errors.append(str(exc))
    finally:
        for p in pubs:
            p.close()
        for s in servers:
            s.stop()
    section = _section(results)
    section.errors.extend(errors)
    return section


def _section(results: dict[str, dict[str, Any]]) -> Section:
    rows = []
    for key, r in results.items():
        gaps = r["gaps"]
        on_time = sum(g <= 1.5 * INTERVAL for g in gaps) / len(gaps) if gaps else float("nan")
        rows.append([
            key, fmt(r["batches"] / r["seconds"], 1),
            fmt(1000 * percentile(r["spreads"], 50)), fmt(1000 * percentile(r["spreads"], 99)),
            fmt(1000 * percentile(r["ages"], 50)), fmt(100 * on_time, 1),
            f"{r['complete']}/{r['batches']}",
        ])  # fmt: skip
    ours = results["framebus.gather"]
    rate = ours["batches"] / ours["seconds"]
    p99 = percentile(ours["spreads"], 99)
    unplugged = results["framebus.gather, a camera unplugged"]
    gaps = unplugged["gaps"]
    on_time = sum(g <= 1.5 * INTERVAL for g in gaps) / len(gaps) if gaps else 0.0
    md = [
        f"Four RTSP cameras ({SIZE}, {FPS} fps, GStreamer, independent phases, RTCP sender "
        "reports: capture times by the cameras' clocks), read at once. Spread: the capture "
        "times of a batch, oldest to newest (for the peers: the barcodes, since they give "
        "no capture time); age: of the oldest entry, by its barcode, when the batch is taken; "
        "on time: batches within 1.5 intervals of the one before. With a camera unplugged, a "
        "complete batch may hold its last frame until its entry goes None (after `timeout`, "
        "1 s here): the spread's p99 is that frame's age.\n",
        md_table(
            [
                "reader",
                "batches/s",
                "spread p50 ms",
                "spread p99 ms",
                "age p50 ms",
                "on time %",
                "complete batches",
            ],
            rows,
        ),
        f"\nframebus.gather: **{rate:.1f} batches/s**, spread p99 **{1000 * p99:.1f} ms** "
        f"(targets ≥ 24/s, ≤ 40 ms: {'met' if rate >= 24 and p99 <= 0.040 else '**missed**'}); "
        f"with a camera unplugged for half the run, {100 * on_time:.1f} % of the batches on "
        f"time (target ≥ 99 %: {'met' if on_time >= 0.99 else '**missed**'}).\n",
    ]
    return Section("gather", "Many cameras: gather", "\n".join(md), data=dict(results))
