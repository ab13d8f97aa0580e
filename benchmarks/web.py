"""Scenario ``web``: MJPEG to browsers, framebus's web server against the Flask and vidgear
servers people write, side by side.

Every server runs in its own process (:mod:`benchmarks.peers.web_`); the viewers are threads of
one client process (:mod:`benchmarks.web_viewers`). Two sources, both 1280x720 at 30 fps:

1. *TestPattern*: framebus's moving bars, published by the benchmark for framebus's servers
   (capture in its own process), drawn by the same code in each peer's own process. Measured:
   JPEG encodes per second with 0, 1, 4 and 16 viewers, the CPU of the server process (and of
   the capture process where there is one), what each viewer receives, how long encoding goes
   on after the last viewer leaves, and framebus's ``/api/streams`` and snapshot latency with
   16 viewers streaming.
2. *RTSP*: the real GStreamer RTSP server (:mod:`benchmarks.live`) painting each frame's send
   time as a barcode. Four viewers decode every new frame they receive and read the barcode:
   the age of a frame when its last byte reached the viewer. framebus's ring age (a
   ``framebus.attach`` reader reading the same barcodes) is measured in the same run. Then a
   throttled viewer joins (16 KiB receive buffer, reading a quarter of the stream's bitrate):
   its age over time, and the others' frame rate and age meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import psutil

import framebus

from .common import (
    SPAWN,
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    Size,
    busy_cores,
    fmt,
    log,
    md_table,
    percentile,
    process_cpu_seconds,
    pyplot,
    stop_process,
)
from .live import ServerHost
from .peers.web_ import WEB_PEERS, WebPeer, serve, web_peers_for
from .web_viewers import ViewerClient

__all__ = ["run"]

SOURCE_FPS = 30
SIZE = Size(1280, 720)
AGE_VIEWERS = 4
THROTTLE_FRACTION = 0.25
THROTTLE_RCVBUF = 16 * 1024
REFERENCE = "framebus-web"
FRAMEBUS = ("framebus-web", "framebus-flask")


@dataclass(frozen=True)
class _Timing:
    counts: tuple[int, ...]
    window: float
    warm: float
    idle: float
    leave: float
    gets: int
    pattern_throttled: float
    age_warm: float
    age_window: float
    throttled: float
    throttled_peers: float
    throttled_warm: float


def _timing(cfg: Config) -> _Timing:
    d = cfg.duration
    return _Timing(
        counts=(1, 4, 16),
        window=0.7 if cfg.quick else max(0.7, round(0.42 * d, 1)),
        warm=0.4 if cfg.quick else 0.7,
        idle=0.5 if cfg.quick else 1.0,
        leave=1.5,
        gets=15 if cfg.quick else 40,
        pattern_throttled=3.0 if cfg.quick else max(3.0, round(1.5 * d, 1)),
        age_warm=0.8 if cfg.quick else 2.0,
        age_window=1.2 if cfg.quick else max(1.5, round(0.67 * d, 1)),
        throttled=4.0 if cfg.quick else max(6.0, 10 * d),
        throttled_peers=2.0 if cfg.quick else max(2.0, round(0.83 * d, 1)),
        throttled_warm=1.0,
    )


# --- a peer's server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: BaseProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if not proc.is_alive():
            raise BenchError("the server process died before it listened")
        time.sleep(0.05)
    raise BenchError(f"the server did not listen on port {port} within {timeout:.0f} s")


class _Server:
    """One web peer's server process (and, for framebus, the stream the benchmark publishes)."""

    def __init__(self, peer: WebPeer, source: dict[str, Any], name: str) -> None:
        self.peer, self.source, self.name = peer, source, name
        self.port = 0
        self.pids: dict[str, int] = {}
        self.pub: framebus.Publisher | None = None
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> _Server:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self.peer.framebus:
            src: Any = self.source.get("url") or framebus.TestPattern(
                SIZE.width, SIZE.height, SOURCE_FPS
            )
            self.pub = framebus.publish(self.name, src)
        self.port = _free_port()
        here, there = SPAWN.Pipe()
        self._conn = here
        # not a daemon: the seeds' server starts its own capture process
        self._proc = SPAWN.Process(
            target=serve,
            args=(self.peer.key, self.source, self.name, self.port, there),
            name=f"bench-web-{self.peer.key}",
        )
        self._proc.start()
        there.close()
        if not here.poll(90):
            raise BenchError(f"{self.peer.label}: the server did not start within 90 s")
        try:
            kind, payload = here.recv()
        except EOFError:
            raise BenchError(f"{self.peer.label}: the server process died at start") from None
        if kind != "ready":
            raise BenchError(f"{self.peer.label}: the server failed:\n{payload}")
        self.pids = {k: v for k, v in payload.items() if v}
        if self.pub is not None:
            self.pids["capture"] = self.pub.capture_pid
        _wait_port(self.port, self._proc, 30)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return bytes(r.read())

    def counts(self) -> tuple[int, float]:
        """(JPEG encodes so far, seconds spent encoding or NaN when the peer does not say)."""
        if self.peer.key == "framebus-web":
            encodes = secs = math.nan
            for line in self._get("/metrics").decode().splitlines():
                if f'codec="mjpeg",stream="{self.name}"' not in line:
                    continue
                if line.startswith("framebus_web_encodes_total"):
                    encodes = float(line.rsplit(" ", 1)[1])
                elif line.startswith("framebus_web_encode_seconds_total"):
                    secs = float(line.rsplit(" ", 1)[1])
            if math.isnan(encodes):  # no encoder yet: /api/streams says 0
                encodes = float(json.loads(self._get(f"/api/streams/{self.name}"))["encodes"])
            return int(encodes), secs
        conn = self._conn
        assert conn is not None
        try:
            conn.send("count")
            if not conn.poll(10):
                raise BenchError(f"{self.peer.label}: no encode count within 10 s")
            msg = conn.recv()
        except (EOFError, OSError):
            raise BenchError(f"{self.peer.label}: the server process died") from None
        if msg[0] != "count":
            raise BenchError(f"{self.peer.label}: the server failed:\n{msg[1]}")
        value = msg[1]
        if isinstance(value, (tuple, list)):
            return int(value[0]), float(value[1])
        return int(value), math.nan

    def encodes(self) -> int:
        return self.counts()[0]

    def captured(self) -> int | None:
        return self.pub.stats().captured if self.pub is not None else None

    def cpu(self) -> dict[str, float]:
        out = {}
        for role, pid in self.pids.items():
            with contextlib.suppress(OSError, psutil.Error):
                out[role] = process_cpu_seconds(pid)
        return out

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()  # SIGTERM: every server stops on it, cleaning up
                self._proc.join(8)
            stop_process(self._proc, grace=0)  # SIGKILL if it did not
            self._proc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.pub is not None:
            self.pub.close()
            self.pub = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- part 1: the TestPattern ----------------------------------------------------------------------


def _window(srv: _Server, cl: ViewerClient, vids: list[int], seconds: float) -> dict[str, Any]:
    """Encodes, CPU and what each viewer received over ``seconds``."""
    # the counters are read outside the CPU window (a /metrics request costs the server CPU)
    s0 = cl.snapshot(vids)
    e0, cap0 = srv.counts(), srv.captured()
    cpu0, cl0, m0, t0 = srv.cpu(), process_cpu_seconds(cl.pid), psutil.cpu_times(), time.time()
    time.sleep(seconds)
    cpu1, cl1, m1, t1 = srv.cpu(), process_cpu_seconds(cl.pid), psutil.cpu_times(), time.time()
    e1, cap1 = srv.counts(), srv.captured()
    s1 = cl.snapshot(vids)
    wall, vwall = t1 - t0, s1["t"] - s0["t"]
    parts = [s1[v]["parts"] - s0[v]["parts"] for v in vids]
    new = [s1[v]["new"] - s0[v]["new"] for v in vids]
    jpeg = sum(s1[v]["jpeg_bytes"] - s0[v]["jpeg_bytes"] for v in vids)
    wire = sum(s1[v]["wire_bytes"] - s0[v]["wire_bytes"] for v in vids)
    errors = [s1[v]["error"] for v in vids if s1[v]["error"] or not s1[v]["alive"]]
    return {
        "viewers": len(vids),
        "wall": wall,
        "encodes": e1[0] - e0[0],
        "eps": (e1[0] - e0[0]) / wall,
        "encode_ms": 1000 * (e1[1] - e0[1]) / max(1, e1[0] - e0[0]),
        "source_fps": (cap1 - cap0) / wall if cap0 is not None and cap1 is not None else None,
        "cpu": {r: (cpu1[r] - cpu0[r]) / wall for r in cpu1 if r in cpu0},
        "client_cpu": (cl1 - cl0) / wall,
        "machine": busy_cores(m0, m1),
        "parts_fps": [p / vwall for p in parts],
        "new_fps": [n / vwall for n in new],
        "kb_per_part": jpeg / max(1, sum(parts)) / 1024,
        "mbyte_s": wire / vwall / 2**20,
        "errors": [str(e) for e in errors],
    }


def _after_leave(srv: _Server, t_close: float, seconds: float) -> dict[str, Any]:
    """Poll the encode counter every 50 ms for ``seconds`` after the last viewer left."""
    times, counts = [time.time()], [srv.encodes()]
    while time.time() < t_close + seconds:
        time.sleep(0.05)
        times.append(time.time())
        counts.append(srv.encodes())
    final = counts[-1]
    first_final = next(i for i, c in enumerate(counts) if c == final)
    late = [(t, c) for t, c in zip(times, counts, strict=True) if t >= times[-1] - 0.5]
    still = late[-1][1] > late[0][1]
    return {
        "after": final - counts[0],
        "stopped_s": None if still else max(0.0, times[first_final] - t_close),
        "still_eps": (late[-1][1] - late[0][1]) / max(1e-3, late[-1][0] - late[0][0]),
        "window_s": seconds,
    }


def _pattern_throttled(
    srv: _Server, cl: ViewerClient, vids: list[int], path: str, last: dict[str, Any], tm: _Timing
) -> dict[str, Any]:
    """A throttled viewer on the TestPattern stream (larger JPEGs than the RTSP source's),
    timed by framebus's own clock: ``X-Framebus-Timestamp``, the capture time of the frame."""
    size = last["kb_per_part"] * 1024
    rate = THROTTLE_FRACTION * SOURCE_FPS * size
    thr = cl.add(srv.port, path, 1, rate=rate, rcvbuf=THROTTLE_RCVBUF)
    try:
        t0 = time.time()
        time.sleep(tm.throttled_warm + tm.pattern_throttled)
        t1 = time.time()
        r = cl.records(thr, t0 + tm.throttled_warm, t1)[thr[0]]
    finally:
        cl.close_viewers(thr)
    ages = np.asarray(r["hdr_age"], dtype=float) * 1000
    ages = ages[np.isfinite(ages)]
    return {
        "size": size,
        "rate": rate,
        "seconds": tm.pattern_throttled,
        "transfer_ms": 1000 * size / rate,
        "p50": percentile(ages, 50),
        "p99": percentile(ages, 99),
        "fps": len(ages) / tm.pattern_throttled,
    }


def _pattern_peer(peer: WebPeer, cl: ViewerClient, tm: _Timing) -> dict[str, Any]:
    name = f"{STREAM_PREFIX}web-{os.getpid()}-{peer.key}-bars"
    source = {"kind": "pattern", "width": SIZE.width, "height": SIZE.height, "fps": SOURCE_FPS}
    out: dict[str, Any] = {"windows": []}
    with _Server(peer, source, name) as srv:
        out["pids"] = sorted(srv.pids)
        path = peer.url_path(name)
        time.sleep(0.3)
        e0, t0 = srv.encodes(), time.time()
        time.sleep(tm.idle)
        out["idle_eps"] = (srv.encodes() - e0) / (time.time() - t0)
        vids: list[int] = []
        t_close = 0.0
        try:
            for n in tm.counts:
                vids += cl.add(srv.port, path, n - len(vids))
                time.sleep(tm.warm)
                w = _window(srv, cl, vids, tm.window)
                out["windows"].append(w)
                log(
                    f"  web {peer.key:16} {n:2} viewers: {w['eps']:6.1f} encodes/s, server CPU "
                    f"{w['cpu'].get('server', math.nan) * 100:5.1f}%, new frames/s per viewer "
                    f"{min(w['new_fps']):.1f}..{max(w['new_fps']):.1f}"
                )
            if peer.api:
                got = cl.gets(srv.port, ["/api/streams", f"/streams/{name}.jpg"], tm.gets, 0.1)
                out["api"] = {"api": got["/api/streams"], "snapshot": got[f"/streams/{name}.jpg"]}
            if peer.key == REFERENCE:
                out["throttled"] = _pattern_throttled(srv, cl, vids, path, out["windows"][-1], tm)
        finally:
            if vids:
                t_close = cl.close_viewers(vids)
        out["leave"] = _after_leave(srv, t_close, tm.leave)
    return out


# --- part 2: the RTSP source and its barcode clock ---------------------------------------------


def _ages(
    recs: dict[int, dict[str, list[float]]], vids: list[int], t0: float, t1: float
) -> dict[str, Any]:
    """Pooled age statistics of viewers ``vids`` over ``t0``..``t1``."""
    ages, fps, sizes = [], [], []
    for v in vids:
        r = recs[v]
        t = np.asarray(r["t"], dtype=float)
        keep = (t >= t0) & (t <= t1)
        a = np.asarray(r["age"], dtype=float)[keep]
        ages.append(a[np.isfinite(a)] * 1000)
        sizes += list(np.asarray(r["size"], dtype=float)[keep])
        fps.append(int(keep.sum()) / (t1 - t0))
    pooled = np.concatenate(ages) if ages else np.array([])
    return {
        "p50": percentile(pooled, 50),
        "p99": percentile(pooled, 99),
        "max": float(pooled.max()) if len(pooled) else math.nan,
        "n": len(pooled),
        "fps": fps,
        "size": float(np.mean(sizes)) if sizes else math.nan,
    }


def _growth(t: np.ndarray, ages_ms: np.ndarray) -> float:
    ok = np.isfinite(ages_ms)
    if ok.sum() < 3 or np.ptp(t[ok]) <= 0:
        return math.nan
    return float(np.polyfit(t[ok], ages_ms[ok], 1)[0])


def _age_peer(peer: WebPeer, cl: ViewerClient, url: str, tm: _Timing) -> dict[str, Any]:
    name = f"{STREAM_PREFIX}web-{os.getpid()}-{peer.key}-rtsp"
    source = {
        "kind": "rtsp", "url": url, "width": SIZE.width, "height": SIZE.height,
        "fps": SOURCE_FPS,
    }  # fmt: skip
    out: dict[str, Any] = {}
    with _Server(peer, source, name) as srv:
        path = peer.url_path(name)
        vids: list[int] = []
        ring = False
        try:
            vids = cl.add(srv.port, path, AGE_VIEWERS, probe=True)
            time.sleep(tm.age_warm)
            if peer.framebus:
                cl.ring_start(name)
                ring = True
            c0, s0, t0 = srv.counts(), cl.snapshot(vids), time.time()
            time.sleep(tm.age_window)
            c1, s1, t1 = srv.counts(), cl.snapshot(vids), time.time()
            if ring:
                ring = False
                r = cl.ring_stop()
                t = np.asarray(r["t"], dtype=float)
                keep = (t >= t0) & (t <= t1)
                out["ring"] = {
                    "p50": percentile(np.asarray(r["age"])[keep] * 1000, 50),
                    "p99": percentile(np.asarray(r["age"])[keep] * 1000, 99),
                    "info_p50": percentile(np.asarray(r["info_age"])[keep] * 1000, 50),
                    "n": int(keep.sum()),
                }
            base_recs = cl.records(vids, t0, t1)
            base = _ages(base_recs, vids, t0, t1)
            base["unreadable"] = sum(s1[v]["unreadable"] - s0[v]["unreadable"] for v in vids)
            base["parts_fps"] = [(s1[v]["parts"] - s0[v]["parts"]) / (t1 - t0) for v in vids]
            base["eps"] = (c1[0] - c0[0]) / (t1 - t0)
            base["encode_ms"] = (
                1000 * (c1[1] - c0[1]) / (c1[0] - c0[0]) if c1[0] > c0[0] else math.nan
            )
            out["base"] = base
            log(
                f"  web {peer.key:16} age p50 {fmt(base['p50'])} ms, p99 {fmt(base['p99'])} ms, "
                f"new frames/s {min(base['fps']):.1f}..{max(base['fps']):.1f}"
                + (f", ring p50 {fmt(out['ring']['p50'])} ms" if "ring" in out else "")
            )
            size = base["size"] if np.isfinite(base["size"]) else 100_000.0
            rate = THROTTLE_FRACTION * SOURCE_FPS * size
            seconds = tm.throttled if peer.key == REFERENCE else tm.throttled_peers
            thr = cl.add(srv.port, path, 1, probe=True, rate=rate, rcvbuf=THROTTLE_RCVBUF)
            vids += thr
            t2 = time.time()
            time.sleep(tm.throttled_warm + seconds)
            t3 = time.time()
            recs = cl.records(vids, t2, t3)
            counted = t2 + tm.throttled_warm
            tr = recs[thr[0]]
            tt = np.asarray(tr["t"], dtype=float)
            ta = np.asarray(tr["age"], dtype=float) * 1000
            keep = tt >= counted
            third = max(1, int(keep.sum()) // 3)
            kept = ta[keep][np.isfinite(ta[keep])]
            out["throttled"] = {
                "rate": rate,
                "seconds": seconds,
                "transfer_ms": 1000 * size / rate,
                "p50": percentile(kept, 50),
                "p99": percentile(kept, 99),
                "max": float(kept.max()) if len(kept) else math.nan,
                "fps": int(keep.sum()) / max(1e-6, t3 - counted),
                "growth": _growth(tt[keep] - counted, ta[keep]),
                "first_p50": percentile(kept[:third], 50),
                "last_p50": percentile(kept[-third:], 50),
                "t": list(tt - t2),
                "age": list(ta),
                "others": _ages(recs, vids[:-1], counted, t3),
                "other_t": list(np.asarray(recs[vids[0]]["t"], dtype=float) - t2),
                "other_age": list(np.asarray(recs[vids[0]]["age"], dtype=float) * 1000),
                "warm": tm.throttled_warm,
            }
            th = out["throttled"]
            log(
                f"  web {peer.key:16} throttled ({rate / 1024:.0f} KiB/s, {seconds:g} s): age p50 "
                f"{fmt(th['p50'])} ms, p99 {fmt(th['p99'])} ms, {th['fps']:.1f} frames/s; "
                f"others p50 {fmt(th['others']['p50'])} ms"
            )
        finally:
            if ring:
                with contextlib.suppress(BenchError):
                    cl.ring_stop()
            if vids:
                cl.close_viewers(vids)
    return out


def _warm_rtsp(url: str) -> None:
    """A first, untimed client of the fresh RTSP server (its first client gets older frames)."""
    name = f"{STREAM_PREFIX}web-{os.getpid()}-warm"
    try:
        with framebus.publish(name, url), framebus.attach(name, timeout=2.0) as cap:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                cap.read()
    except framebus.FramebusError as exc:
        log(f"  web: RTSP warm-up client failed: {exc}")


# --- the scenario --------------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    tm = _timing(cfg)
    peers = web_peers_for(cfg.peers)
    errors: list[str] = []
    pattern: dict[str, dict[str, Any]] = {}
    age: dict[str, dict[str, Any]] = {}
    with ViewerClient(SIZE.width) as cl:
        for peer in peers:
            try:
                pattern[peer.key] = _pattern_peer(peer, cl, tm)
            except BenchError as exc:
                errors.append(f"web {peer.key} (TestPattern): {exc}")
                log(f"  web {peer.key}: FAILED {exc}")
        try:
            with ServerHost(SIZE, SOURCE_FPS) as host:
                _warm_rtsp(host.url)
                for peer in peers:
                    try:
                        age[peer.key] = _age_peer(peer, cl, host.url, tm)
                    except BenchError as exc:
                        errors.append(f"web {peer.key} (RTSP): {exc}")
                        log(f"  web {peer.key}: FAILED {exc}")
        except BenchError as exc:
            errors.append(f"web (RTSP): {exc}")
    plots = [p for p in (_plot_load(cfg, peers, pattern), _plot_throttled(cfg, peers, age)) if p]
    text = _text(cfg, tm, peers, pattern, age)
    return Section(
        "web",
        "MJPEG to browsers: encodes, CPU, frame age, a throttled viewer",
        text,
        plots,
        {"pattern": pattern, "age": _strip_series(age)},
        errors,
    )


def _strip_series(age: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, r in age.items():
        r = dict(r)
        if "throttled" in r:
            r["throttled"] = dict(r["throttled"])
            for s in ("other_t", "other_age"):
                r["throttled"].pop(s, None)
        out[k] = r
    return out


# --- the report ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _label(key: str) -> str:
    return WEB_PEERS[key].label


def _load_table(peers: list[WebPeer], pattern: dict[str, dict[str, Any]]) -> str:
    rows = []
    for p in peers:
        r = pattern.get(p.key)
        if r is None:
            continue
        rows.append([f"**{p.label}**" if p.key in FRAMEBUS else p.label, "0", fmt(r["idle_eps"])]
                    + ["-"] * 8)  # fmt: skip
        for w in r["windows"]:
            n = w["viewers"]
            cpu = w["cpu"]
            rows.append(
                [
                    "",
                    str(n),
                    fmt(w["eps"]),
                    fmt(w["eps"] / SOURCE_FPS, 2),
                    fmt(cpu.get("server", math.nan) * 100),
                    fmt(cpu["capture"] * 100) if "capture" in cpu else "in server",
                    f"{min(w['new_fps']):.1f} / {np.mean(w['new_fps']):.1f}",
                    fmt(float(np.mean(w["parts_fps"]))),
                    fmt(w["kb_per_part"], 0),
                    fmt(w["client_cpu"] * 100, 0),
                    fmt(w["machine"] * 100, 0),
                ]
            )
    return md_table(
        [
            "server",
            "viewers",
            "JPEG encodes/s",
            "encodes ÷ 30 fps",
            "server process CPU %",
            "capture process CPU %",
            "new frames/s per viewer (min / mean)",
            "parts/s per viewer",
            "KiB per JPEG",
            "viewers' process CPU %",
            "machine CPU %",
        ],
        rows,
        align="lrrrrrrrrrr",
    )


def _cpu_row(r: dict[str, Any]) -> tuple[float, float, float, float]:
    by_n = {w["viewers"]: w for w in r["windows"]}
    if 1 not in by_n or 16 not in by_n:
        return (math.nan,) * 4
    one = by_n[1]["cpu"].get("server", math.nan)
    many = by_n[16]["cpu"].get("server", math.nan)
    cap1 = by_n[1]["cpu"].get("capture", 0.0)
    cap16 = by_n[16]["cpu"].get("capture", 0.0)
    return one, many, (many + cap16) / (one + cap1), (many - one) / 15


def _idle_table(peers: list[WebPeer], pattern: dict[str, dict[str, Any]]) -> str:
    rows = []
    for p in peers:
        r = pattern.get(p.key)
        if r is None:
            continue
        one, many, total_ratio, per = _cpu_row(r)
        lv = r["leave"]
        stopped = (
            f"{lv['stopped_s']:.2f} s"
            if lv["stopped_s"] is not None
            else f"still {lv['still_eps']:.0f}/s at {lv['window_s']:g} s"
        )
        rows.append(
            [
                p.label,
                fmt(r["idle_eps"]),
                str(lv["after"]),
                stopped,
                fmt(one * 100),
                fmt(many * 100),
                fmt(many / one, 2) if one > 0 else "-",
                fmt(total_ratio, 2),
                fmt(per * 100, 2),
            ]
        )
    return md_table(
        [
            "server",
            "encodes/s, 0 viewers (before the first)",
            "encodes after the last viewer left",
            "encoding stopped after",
            "server CPU %, 1 viewer",
            "16 viewers",
            "server CPU 16 ÷ 1",
            "server + capture 16 ÷ 1",
            "CPU % per extra viewer",
        ],
        rows,
        align="lrrrrrrrr",
    )


def _age_table(peers: list[WebPeer], age: dict[str, dict[str, Any]]) -> str:
    rows = []
    for p in peers:
        r = age.get(p.key)
        if r is None or "base" not in r:
            continue
        b = r["base"]
        ring = r.get("ring")
        rows.append(
            [
                f"**{p.label}**" if p.key in FRAMEBUS else p.label,
                f"{min(b['fps']):.1f} / {np.mean(b['fps']):.1f}",
                fmt(float(np.mean(b["parts_fps"]))),
                fmt(b["eps"]),
                fmt(b["p50"]),
                fmt(b["p99"]),
                fmt(b["max"]),
                f"{fmt(ring['p50'])} / {fmt(ring['p99'])}" if ring else "-",
                fmt(b["p50"] - ring["p50"]) if ring else "-",
                str(b["unreadable"]),
            ]
        )
    return md_table(
        [
            "server",
            "new frames/s per viewer (min / mean)",
            "parts/s per viewer",
            "encodes/s",
            "age p50 (ms)",
            "age p99 (ms)",
            "max (ms)",
            "ring age p50 / p99 (ms)",
            "p50 - ring p50 (ms)",
            "unreadable barcodes",
        ],
        rows,
        align="lrrrrrrrrr",
    )


def _throttled_table(peers: list[WebPeer], age: dict[str, dict[str, Any]]) -> str:
    interval = 1000 / SOURCE_FPS
    rows = []
    for p in peers:
        th = age.get(p.key, {}).get("throttled")
        base = age.get(p.key, {}).get("base")
        if th is None or base is None:
            continue
        o = th["others"]
        limit = 2 * interval + th["transfer_ms"]
        none = f"no new frame in {th['seconds'] + th['warm']:g} s"
        rows.append(
            [
                f"**{p.label}**" if p.key in FRAMEBUS else p.label,
                f"{th['seconds']:g}",
                fmt(th["rate"] / 1024, 0),
                fmt(th["fps"]),
                fmt(th["p50"]) if th["fps"] > 0 else none,
                fmt(th["p99"]),
                fmt(th["max"]),
                fmt(limit, 0),
                f"{fmt(th['first_p50'])} → {fmt(th['last_p50'])}",
                fmt(th["growth"], 1),
                _pct(np.mean(o["fps"]), np.mean(base["fps"])),
                _pct(o["p50"], base["p50"]),
            ]
        )
    return md_table(
        [
            "server",
            "s",
            "throttled to (KiB/s)",
            "its frames/s",
            "its age p50 (ms)",
            "p99 (ms)",
            "max (ms)",
            "2 intervals + its transfer of one frame (ms)",
            "its age p50, first → last third (ms)",
            "growth (ms/s)",
            "others' frames/s vs before",
            "others' age p50 vs before",
        ],
        rows,
        align="lrrrrrrrrrrr",
    )


def _pct(now: float, before: float) -> str:
    if not (np.isfinite(now) and np.isfinite(before)) or before == 0:
        return "-"
    return f"{(now / before - 1) * 100:+.1f} %"


def _api_table(pattern: dict[str, dict[str, Any]]) -> str:
    api = pattern.get(REFERENCE, {}).get("api")
    if not api:
        return ""
    rows = []
    for what, label in (("api", "`GET /api/streams`"), ("snapshot", "`GET /streams/NAME.jpg`")):
        lat = np.asarray(api[what]["latency"], dtype=float) * 1000
        after = np.asarray(api[what]["after_capture"], dtype=float) * 1000
        ok = sum(1 for s in api[what]["status"] if s == 200)
        rows.append(
            [
                label,
                f"{ok} / {len(lat)}",
                fmt(percentile(lat, 50)),
                fmt(percentile(lat, 99)),
                fmt(float(lat.max()) if len(lat) else math.nan),
                fmt(percentile(after[np.isfinite(after)], 50)) if what == "snapshot" else "-",
                fmt(percentile(after[np.isfinite(after)], 99)) if what == "snapshot" else "-",
            ]
        )
    return md_table(
        [
            "request (16 viewers streaming)",
            "200 OK",
            "latency p50 (ms)",
            "p99 (ms)",
            "max (ms)",
            "from the frame's capture: p50 (ms)",
            "p99 (ms)",
        ],
        rows,
        align="lrrrrrr",
    )


def _targets(
    pattern: dict[str, dict[str, Any]], age: dict[str, dict[str, Any]], peers: list[WebPeer]
) -> list[str]:
    interval = 1000 / SOURCE_FPS
    lines = ["Targets (from the issue), for framebus's server and its Flask integration:", ""]
    for key in FRAMEBUS:
        r = pattern.get(key)
        if r is None:
            continue
        tag = "" if key == REFERENCE else " [Flask integration]"
        bad = []
        for w in r["windows"]:
            src = w["source_fps"] or SOURCE_FPS
            if abs(w["eps"] - src) > 1:
                bad.append(f"{w['viewers']} viewers: {w['eps']:.1f}/s against {src:.1f} captured/s")
        counts = ", ".join(f"{w['viewers']}: {w['eps']:.1f}" for w in r["windows"])
        lines.append(
            f"- encodes/s = source fps ± 1 with 1, 4, 16 viewers{tag}: {counts}: "
            + _verdict(not bad)
            + (f" ({'; '.join(bad)})" if bad else "")
        )
        one, many, _, per = _cpu_row(r)
        if np.isfinite(one) and one > 0:
            ratio = many / one
            lines.append(
                f"- server CPU 16 ÷ 1 viewer ≤ 1.3{tag}: {fmt(one * 100)} % → {fmt(many * 100)} % "
                f"= {ratio:.2f}: {_verdict(ratio <= 1.3)}"
                + (f" (by {ratio - 1.3:.2f})" if ratio > 1.3 else "")
                + f"; per extra viewer {per * 100:.2f} % of a core (< 0.5 %): "
                + _verdict(per < 0.005)
            )
        lv = r["leave"]
        stopped = lv["stopped_s"]
        lines.append(
            f"- encodes with 0 viewers = 0{tag}: {r['idle_eps']:.1f}/s: "
            f"{_verdict(r['idle_eps'] == 0)}; stops within 1 s after the last viewer leaves: "
            + (
                f"after {stopped:.2f} s ({lv['after']} encodes): {_verdict(stopped <= 1.0)}"
                if stopped is not None
                else f"still encoding at {lv['window_s']:g} s: **NOT met**"
            )
        )
    ref = age.get(REFERENCE, {})
    b, ring = ref.get("base"), ref.get("ring")
    if b and ring:
        enc = b["encode_ms"] if np.isfinite(b["encode_ms"]) else 0.0
        lim50 = ring["p50"] + enc + 10
        lim99 = ring["p50"] + 2 * interval
        lines.append(
            f"- age p50 ≤ ring age + one encode + 10 ms = {fmt(ring['p50'])} + {fmt(enc)} + 10 = "
            f"{fmt(lim50)} ms: {fmt(b['p50'])} ms: {_verdict(b['p50'] <= lim50)}"
            + (f" (by {b['p50'] - lim50:.1f} ms)" if b["p50"] > lim50 else "")
        )
        lines.append(
            f"- age p99 ≤ ring age + 2 frame intervals = {fmt(ring['p50'])} + {2 * interval:.1f} "
            f"= {fmt(lim99)} ms: {fmt(b['p99'])} ms: {_verdict(b['p99'] <= lim99)}"
            + (f" (by {b['p99'] - lim99:.1f} ms)" if b["p99"] > lim99 else "")
        )
        others = {k: r["base"] for k, r in age.items() if k not in FRAMEBUS and "base" in r}
        worse = [k for k, o in others.items() if not (b["p50"] < o["p50"] and b["p99"] < o["p99"])]
        lines.append(
            f"- age best of all peers ({len(others)} measured): "
            + (
                "p50 and p99 below every one: **met**"
                if not worse
                else "not below "
                + ", ".join(
                    f"{_label(k)} ({fmt(others[k]['p50'])} / {fmt(others[k]['p99'])} ms)"
                    for k in worse
                )
                + ": **NOT met**"
            )
        )
    th = ref.get("throttled")
    if th and b:
        limit = 2 * interval + th["transfer_ms"]
        flat = np.isfinite(th["growth"]) and th["growth"] < 1.0
        o = th["others"]
        dfps = np.mean(o["fps"]) / np.mean(b["fps"]) - 1
        dage = o["p50"] / b["p50"] - 1
        lines.append(
            f"- throttled viewer ({th['seconds']:g} s at {th['rate'] / 1024:.0f} KiB/s): its age "
            f"p99 ≤ 2 frame intervals + its transfer of one frame = {2 * interval:.1f} + "
            f"{th['transfer_ms']:.0f} = {limit:.0f} ms: {fmt(th['p99'])} ms: "
            f"{_verdict(th['p99'] <= limit)}"
            + (f" (by {th['p99'] - limit:.0f} ms)" if th["p99"] > limit else "")
            + f"; flat (growth < 1 ms/s): {fmt(th['growth'], 2)} ms/s, p50 "
            f"{fmt(th['first_p50'])} → {fmt(th['last_p50'])} ms: {_verdict(flat)}"
        )
        pt = pattern.get(REFERENCE, {}).get("throttled")
        if pt:
            plim = 2 * interval + pt["transfer_ms"]
            lines.append(
                f"  - the same on the TestPattern ({pt['size'] / 1024:.0f} KiB JPEGs, "
                f"{pt['seconds']:g} s at {pt['rate'] / 1024:.0f} KiB/s, framebus's own clock "
                f"`X-Framebus-Timestamp`): p99 {fmt(pt['p99'])} ms against {plim:.0f} ms: "
                + _verdict(pt["p99"] <= plim)
                + (f" (by {pt['p99'] - plim:.0f} ms)" if pt["p99"] > plim else "")
            )
        lines.append(
            f"- other viewers meanwhile within 5 %: frames/s {dfps * 100:+.1f} %, age p50 "
            f"{dage * 100:+.1f} %: {_verdict(abs(dfps) <= 0.05 and abs(dage) <= 0.05)}"
        )
    api = pattern.get(REFERENCE, {}).get("api")
    if api:
        for what, label in (("api", "`/api/streams`"), ("snapshot", "snapshot")):
            p99 = percentile(np.asarray(api[what]["latency"], dtype=float) * 1000, 99)
            line = (
                f"- {label} latency with 16 viewers p99 < 20 ms: {fmt(p99)} ms: "
                f"{_verdict(p99 < 20)}" + (f" (by {p99 - 20:.1f} ms)" if p99 >= 20 else "")
            )
            if what == "snapshot":
                after = np.asarray(api[what]["after_capture"], dtype=float) * 1000
                line += (
                    f"; a snapshot is a frame captured after the request, so it waits up to a "
                    f"frame interval ({interval:.1f} ms) for the next capture by design; from "
                    f"that capture to the last byte: p99 {fmt(percentile(after, 99))} ms"
                )
            lines.append(line)
    return lines


def _throttled_why(pattern: dict[str, dict[str, Any]], age: dict[str, dict[str, Any]]) -> str:
    """Where framebus's throttled viewer's age comes from, in the run's own figures."""
    ref = age.get(REFERENCE, {})
    th, ring = ref.get("throttled"), ref.get("ring")
    if not th or not ring or not np.isfinite(th["p50"]):
        return ""
    size = th["rate"] / THROTTLE_FRACTION / SOURCE_FPS
    rest = th["p50"] - ring["p50"] - th["transfer_ms"]
    text = (
        f"Where framebus's throttled viewer's age comes from: the RTSP source's JPEGs are "
        f"{size / 1024:.0f} KiB, so at {th['rate'] / 1024:.0f} KiB/s one takes "
        f"{th['transfer_ms']:.0f} ms to arrive; its age p50 {fmt(th['p50'])} ms is the ring's "
        f"{fmt(ring['p50'])} ms + that transfer + {rest:.0f} ms: the wait for the next "
        "encoded frame (up to one interval) and the older bytes still ahead of each frame it "
        f"gets (at this rate {rest:.0f} ms would be {rest / 1000 * th['rate'] / 1024:.0f} KiB). "
        "framebus chooses a viewer's next frame once fewer than 16 KiB wait unsent in the "
        "kernel (`TCP_NOTSENT_LOWAT`) and what the viewer has not yet read (unacknowledged "
        "bytes plus its closed receive window, from `TCP_INFO`) is at most what it reads in "
        "33 ms; the viewer's own receive buffer (16 KiB asked, which the kernel doubles) is "
        "otherwise a queue no server setting reaches."
    )
    pt = pattern.get(REFERENCE, {}).get("throttled")
    if pt and np.isfinite(pt["p50"]):
        prest = pt["p50"] - pt["transfer_ms"]
        text += (
            f" With the TestPattern's {pt['size'] / 1024:.0f} KiB JPEGs the same viewer's age "
            f"is p50 {fmt(pt['p50'])} / p99 {fmt(pt['p99'])} ms for a {pt['transfer_ms']:.0f} "
            f"ms transfer (framebus's clock, capture to last byte): {prest:.0f} ms, about "
            f"{prest / 1000 * pt['rate'] / 1024:.0f} KiB, ahead of each frame. The target's "
            "2 frame intervals leave room for the wait for the next frame and about one "
            "interval of bytes ahead, which these buffers exceed whenever a frame is small "
            "against them."
        )
    return text


def _text(
    cfg: Config,
    tm: _Timing,
    peers: list[WebPeer],
    pattern: dict[str, dict[str, Any]],
    age: dict[str, dict[str, Any]],
) -> str:
    settings = md_table(
        ["server", "how it is set up"], [[p.label, p.describe] for p in peers], align="ll"
    )
    missing = [k for k in WEB_PEERS if k not in {p.key for p in peers}]
    counts = ", ".join(str(n) for n in tm.counts)
    parts = [
        f"Every server runs in its own process on 127.0.0.1, serving a {SIZE} source at "
        f"{SOURCE_FPS} fps; the viewers are threads of one client process (raw sockets, "
        "`GET ... HTTP/1.1` as a browser's `<img>` sends it, the multipart body split into "
        "parts: by `Content-Length` where a part has one, else at the JPEG's end-of-image "
        "marker). A part counts as received at the `recv()` that brought its last byte; a part "
        "byte for byte equal to the previous one is the same frame again (a *repeat*), the "
        "others are *new frames*. JPEG encodes are counted in each server's process (its "
        "encoder call wrapped with a counter, read over a pipe; framebus: its `/metrics` and "
        "`/api/streams`). CPU: the POSIX CPU clock of the server process, and of the capture "
        "process where the server has one (the seeds' capture `Process`; framebus's capture, "
        "started by `framebus.publish` in the benchmark process), 100 = one core.",
        "",
        f"**1. TestPattern source** (framebus's moving bars; the peers draw the same frames in "
        f"their own process with the same code, paced like a camera): {tm.idle:g} s with no "
        f"viewer, then {counts} viewers (each count: {tm.warm:g} s to settle, {tm.window:g} s "
        "measured), then all viewers leave at once and the encode counter is read every 50 ms "
        f"for {tm.leave:g} s. With 16 viewers streaming, framebus's server also answers "
        f"{tm.gets} `GET /api/streams` and {tm.gets} snapshots (`/streams/NAME.jpg`, which "
        "waits for a frame captured after the request), 80-120 ms apart, on two keep-alive "
        "connections (never back to back: a request sent the moment the previous response "
        "was read waits about 40 ms for a delayed ACK, with plain uvicorn too). Then a "
        f"throttled viewer (as in part 2) joins for {tm.pattern_throttled:g} s, timed by "
        "framebus's `X-Framebus-Timestamp` (the frame's capture time).",
        "",
        _load_table(peers, pattern),
        "",
        _idle_table(peers, pattern),
        "",
    ]
    api = _api_table(pattern)
    if api:
        parts += [api, ""]
    parts += [
        f"**2. RTSP source with the barcode clock** (`framebus.testing.RTSPServer`, {SIZE} "
        f"H.264 at {SOURCE_FPS} fps; the peers open it with `cv2.VideoCapture(url)` where "
        "their code opens the camera; framebus publishes it with its default RTSP client): "
        f"{AGE_VIEWERS} viewers decode every new frame (simplejpeg, grey, half size) and read "
        "the send time painted on it; age = received - sent, the whole chain from the RTSP "
        f"server to a viewer holding the JPEG. {tm.age_warm:g} s to settle, {tm.age_window:g} s "
        "measured. *Ring age*: a `framebus.attach` reader of the same stream reading the "
        "barcode of every frame in the ring, in the same window. Then a throttled viewer "
        f"joins: `SO_RCVBUF` {THROTTLE_RCVBUF // 1024} KiB, reading "
        f"{THROTTLE_FRACTION:g} x (30 x the mean JPEG size of that server) bytes per second; "
        f"counted from {tm.throttled_warm:g} s after it joined, for {tm.throttled:g} s on "
        f"framebus's server and {tm.throttled_peers:g} s on the others (the run's time goes "
        "to the server the target is about); the other viewers go on meanwhile.",
        "",
        _age_table(peers, age),
        "",
        "Part of framebus's lead in age is its capture, not its web server: framebus's RTSP "
        "client hands a frame over when its last RTP packet arrives, while `cv2.VideoCapture` "
        "(FFmpeg's RTSP demuxer) hands it over when the next frame begins, one frame interval "
        "later (the `rtsp` scenario measures it); *p50 - ring p50* is what framebus's web "
        "layer adds (encode, send, receive).",
        "",
        _throttled_table(peers, age),
        "",
        _throttled_why(pattern, age),
        "",
        "\n".join(_targets(pattern, age, peers)),
        "",
        "Where the peers' figures come from: the seeds' app never waits for a new frame (its "
        "main loop re-encodes the same array, its `gen()` re-sends the same bytes), so it burns"
        " a core or two whatever the viewers do and sends each frame many times (*parts/s* "
        "against *new frames/s*); a slow viewer of the main-loop variant gets the same frame "
        "over and over, since its thread fills the kernel's buffers with copies of whatever "
        "frame was current (no new frame at all within the throttled run); encoding in `gen()` "
        "multiplies the encodes by the viewers; the camera-thread pattern encodes once per "
        "frame but keeps encoding 10 s after the last viewer, and its Werkzeug threads block in"
        " `sendall()` into kernel buffers that autotune to megabytes, which is where a "
        "throttled viewer's frames wait; WebGear encodes per viewer on the event loop (its own "
        "producer also splits one frame queue between its viewers). The machine has 2 cores: a "
        "server that needs more leaves less for the viewers' process, which then receives less.",
        "",
        f"Server settings:\n\n{settings}",
        "",
    ]
    if missing:
        parts += [f"Not run (--peers): {', '.join(missing)}.", ""]
    parts += ["![CPU and encodes against viewers](web.png)", ""]
    parts += ["![age of the throttled viewer](web_throttled.png)", ""]
    return "\n".join(parts)


# --- plots ---------------------------------------------------------------------------------------


def _plot_load(cfg: Config, peers: list[WebPeer], pattern: dict[str, dict[str, Any]]) -> str | None:
    if not pattern:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.get_cmap("tab10")
    xs_all = [0, *_timing(cfg).counts]
    pos = {n: i for i, n in enumerate(xs_all)}
    for i, p in enumerate(peers):
        r = pattern.get(p.key)
        if r is None:
            continue
        style = {"color": colors(i % 10), "lw": 2.4 if p.key in FRAMEBUS else 1.3}
        ns = [w["viewers"] for w in r["windows"]]
        cpu = [w["cpu"].get("server", math.nan) * 100 for w in r["windows"]]
        ax1.plot([pos[n] for n in ns], cpu, "o-", label=p.label, **style)
        if any("capture" in w["cpu"] for w in r["windows"]):
            cap = [w["cpu"].get("capture", math.nan) * 100 for w in r["windows"]]
            ax1.plot([pos[n] for n in ns], cap, "x:", label=f"{p.label}: capture", **style)
        eps = [max(r["idle_eps"], 0.1)] + [max(w["eps"], 0.1) for w in r["windows"]]
        ax2.plot([pos[n] for n in [0, *ns]], eps, "o-", label=p.label, **style)
    ax2.axhline(SOURCE_FPS, color="k", lw=0.8, ls="--")
    ax2.text(0.05, SOURCE_FPS * 1.08, f"source: {SOURCE_FPS} fps", fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(xs_all)), [str(n) for n in xs_all])
        ax.set_xlabel("viewers")
        ax.grid(True, alpha=0.3)
    ax1.set_ylabel("CPU % (100 = one core)")
    ax1.set_title("Server process CPU (dotted: its capture process)")
    ax1.legend(fontsize=7)
    ax2.set_yscale("log")
    ax2.set_ylabel("JPEG encodes per second (log; 0 drawn at 0.1)")
    ax2.set_title("JPEG encodes per second")
    fig.suptitle(f"MJPEG servers, {SIZE} @ {SOURCE_FPS} fps TestPattern")
    fig.tight_layout()
    path = Path(cfg.out) / "web.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plot_throttled(
    cfg: Config, peers: list[WebPeer], age: dict[str, dict[str, Any]]
) -> str | None:
    if not any("throttled" in r for r in age.values()):
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    colors = plt.get_cmap("tab10")
    for i, p in enumerate(peers):
        th = age.get(p.key, {}).get("throttled")
        if th is None:
            continue
        style = {"color": colors(i % 10), "lw": 2.2 if p.key in FRAMEBUS else 1.2}
        ax1.plot(th["t"], th["age"], ".-", ms=2, label=p.label, **style)
        ax2.plot(th["other_t"], th["other_age"], "-", label=p.label, **style)
        if p.key == REFERENCE:
            limit = 2000 / SOURCE_FPS + th["transfer_ms"]
            ax1.axhline(limit, color=style["color"], ls="--", lw=0.8)
            ax1.text(0.2, limit * 1.05, f"target for framebus: {limit:.0f} ms", fontsize=8)
            ax1.axvline(th["warm"], color="k", ls=":", lw=0.8)
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.set_ylabel("frame age when received (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_title(
        f"Throttled viewer ({THROTTLE_FRACTION:g} x the stream's bitrate, "
        f"SO_RCVBUF {THROTTLE_RCVBUF // 1024} KiB); counted from the dotted line"
    )
    ax2.set_title("One of the other viewers, meanwhile")
    ax2.set_xlabel("seconds since the throttled viewer joined")
    ax1.legend(fontsize=8, ncol=2)
    fig.suptitle(f"Frame age (barcode clock), RTSP {SIZE} @ {SOURCE_FPS} fps")
    fig.tight_layout()
    path = Path(cfg.out) / "web_throttled.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
