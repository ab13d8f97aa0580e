"""Scenario ``web_h264``: H.264 to browsers against framebus's own MJPEG, side by side in one run.

One framebus web server (its own process, as ``framebus web`` runs) serves three 1280x720 25 fps
streams: an RTSP camera (GStreamer's server, H.264, its send time painted as a barcode) passed
through; the test pattern, encoded once; and a textured picture panning across the frame (a
blurred noise image, the detail of a real scene, with the barcode painted) encoded once.

1. *Bytes*: one H.264 viewer (WebSocket) and one MJPEG viewer (q80) of each stream at once,
   for a window: bytes a second each.
2. *Encodes and CPU*: the textured stream with 0, 1, 4 and 16 H.264 viewers, then the camera
   (passthrough) with 1 and 16: encodes a second and the server process's CPU a second.
3. *Age in a browser*: Debian's Chromium (Playwright) shows the camera's tile (a server serving
   it alone), as H.264 into WebCodecs (the default), as H.264 into Media Source Extensions
   (``?codec=mse``: what a page on plain HTTP from another machine plays) or as MJPEG
   (``?codec=mjpeg``), blocks alternated; every 50 ms the page copies the top rows of what the
   tile shows and reads the barcode: age = now - send time.
4. *First picture*: a page opened anew (a server serving that stream alone, another page
   watching it), from its WebSocket's creation to the first frame drawn, for the camera (from
   the cached group of pictures) and the textured stream (a keyframe made for it, or the cached
   group when the last keyframe is under a second old).
5. *A throttled viewer*: a WebSocket viewer with a 16 KiB receive buffer that reads at a quarter
   of the textured stream's bit rate, beside a normal one: the age of what it gets over time and
   the other's frame rate.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

import framebus
from framebus.testing import (
    CHROMIUM_FLAGS,
    chromium_path,
    paint_timestamp,
    rtsp_server_available,
)
from framebus.testing.websocket import WebSocketClient

from .common import (
    SPAWN,
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    Size,
    exit_with_parent,
    fmt,
    log,
    md_table,
    percentile,
    process_cpu_seconds,
    stop_process,
)
from .live import ServerHost

__all__ = ["run"]

SIZE = Size(1280, 720)
FPS = 25
ARGS = list(CHROMIUM_FLAGS)

# the page's probe: the barcode of what the tile shows now, read in the page (no screenshot)
PROBE = """(name) => {
  const f = document.querySelector(`figure[data-stream='${name}']`);
  if (!f) return null;
  const codec = f.dataset.codec;
  const el = f.querySelector(codec === 'h264' ? 'canvas' : codec === 'mse' ? 'video' : 'img');
  const w = codec === 'h264' ? el.width : codec === 'mse' ? el.videoWidth : el.naturalWidth;
  if (!w) return null;
  const c = window.__probe || (window.__probe = document.createElement('canvas'));
  c.width = w; c.height = 32;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const now = Date.now();
  ctx.drawImage(el, 0, 0);
  const d = ctx.getImageData(0, 0, w, 32).data;
  const bw = Math.floor(w / 64);
  let v = 0n;
  for (let i = 0; i < 64; i++) {
    let sum = 0, n = 0;
    for (let y = 8; y < 24; y += 4)
      for (let x = i * bw + (bw >> 2); x < i * bw + 3 * bw / 4; x += 2) {
        const k = (y * w + x) * 4; sum += (d[k] + d[k + 1] + d[k + 2]) / 3; n++;
      }
    const level = sum / n;
    if (level > 70 && level < 180) return null;
    if (level >= 128) v |= 1n << BigInt(i);
  }
  return [now / 1000, Number(v) / 1e6, f.dataset.codec];
}"""


def _serve(port: int, streams: list[str] | None, conn: Connection) -> None:
    """The web server process: framebus's WebServer on 127.0.0.1:``port`` until SIGTERM."""
    exit_with_parent()
    from framebus.web import EncoderHub, WebServer, app

    hub = EncoderHub()
    server = WebServer(app(streams, hub=hub), "127.0.0.1", port, hub=hub)
    conn.send(os.getpid())
    conn.close()
    server.run()


class _Textured:
    """A VideoWriter stream: a panning crop of a blurred noise image, barcode painted."""

    def __init__(self, name: str) -> None:
        import cv2

        rng = np.random.default_rng(7)
        big = rng.integers(0, 255, (SIZE.height + 64, SIZE.width * 2, 3), np.uint8)
        self.image = cv2.GaussianBlur(big, (0, 0), 2.0)
        self.writer = framebus.VideoWriter(name, fps=FPS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-textured", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n, t0 = 0, time.monotonic()
        while not self._stop.is_set():
            x = (n * 6) % SIZE.width
            frame = np.ascontiguousarray(self.image[32 : 32 + SIZE.height, x : x + SIZE.width])
            paint_timestamp(frame, time.time())
            self.writer.write(frame)
            n += 1
            self._stop.wait(max(0.0, t0 + n / FPS - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.writer.release()


class _Reader:
    """A viewer in a thread: an H.264 WebSocket (messages parsed) or an MJPEG response (bytes
    counted). ``rate``: bytes a second it reads at most (a slow link), else as fast as it can."""

    def __init__(self, port: int, path: str, *, rcvbuf: int | None = None, rate: float = 0.0):
        self.port, self.path, self.rate, self.rcvbuf = port, path, rate, rcvbuf
        self.bytes = 0
        self.records: list[tuple[float, float, int, bool]] = []  # (recv, capture, index, key)
        self._stop = threading.Event()
        self._ws: WebSocketClient | None = None
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.endswith(".mjpg"):
                self._mjpeg()
            else:
                self._h264()

    def _h264(self) -> None:
        from framebus.web._h264 import parse

        ws = self._ws = WebSocketClient(self.port, self.path, rcvbuf=self.rcvbuf)
        t0 = time.monotonic()
        while not self._stop.is_set():
            data = ws.message()
            if data is None:
                return
            au, ts, _ = parse(data)
            self.bytes += len(data)
            self.records.append((time.time(), ts, au.index, au.key))
            if self.rate:  # a slow link: what it has read by now is at most rate * elapsed
                ahead = self.bytes / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

    def _mjpeg(self) -> None:
        sock = self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while not self._stop.is_set():
            data = sock.recv(1 << 16)
            if not data:
                return
            self.bytes += len(data)

    def close(self) -> None:
        self._stop.set()
        if self._ws is not None:
            self._ws.shutdown()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        if self._ws is not None:
            self._ws.close()
        if self._sock is not None:
            self._sock.close()


class _Server:
    def __init__(self, streams: list[str] | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        here, there = SPAWN.Pipe()
        self.proc = SPAWN.Process(
            target=_serve, args=(self.port, streams, there), name="bench-web-h264"
        )
        self.proc.start()
        there.close()
        if not here.poll(60):
            stop_process(self.proc)
            raise BenchError("the web server did not start within 60 s")
        self.pid = int(here.recv())
        here.close()
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise BenchError("the web server does not listen")
            time.sleep(0.05)

    def stream(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/streams/{name}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return dict(json.loads(r.read()))

    def h264(self, name: str) -> dict[str, Any]:
        return dict(self.stream(name)["codecs"]["h264"])

    def cpu(self) -> float:
        return process_cpu_seconds(self.pid)

    def close(self) -> None:
        if self.proc.is_alive():
            os.kill(self.pid, signal.SIGTERM)
            self.proc.join(8)
        stop_process(self.proc, grace=0)


# --- the parts ------------------------------------------------------------------------------------


def _bytes(srv: _Server, names: dict[str, str], seconds: float) -> dict[str, dict[str, float]]:
    out = {}
    for label, name in names.items():
        h264 = _Reader(srv.port, f"/streams/{name}.h264")
        mjpeg = _Reader(srv.port, f"/streams/{name}.mjpg")
        time.sleep(1.0)  # both started
        b0 = (h264.bytes, mjpeg.bytes)
        time.sleep(seconds)
        rates = ((h264.bytes - b0[0]) / seconds, (mjpeg.bytes - b0[1]) / seconds)
        h264.close()
        mjpeg.close()
        out[label] = {"h264": rates[0], "mjpeg": rates[1], "ratio": rates[1] / max(rates[0], 1)}
        log(f"  web_h264 bytes {label}: H.264 {rates[0] / 1e3:.0f} kB/s, MJPEG "
            f"{rates[1] / 1e3:.0f} kB/s")  # fmt: skip
    return out


def _load(
    srv: _Server, name: str, counts: tuple[int, ...], seconds: float, capture: int | None = None
) -> list[dict[str, Any]]:
    """Encodes and CPU with ``counts`` viewers; CPU of the web server and, for a published
    stream, of its capture process: what framebus spends on the stream."""

    def cpu() -> tuple[float, float]:
        return srv.cpu(), process_cpu_seconds(capture) if capture else 0.0

    rows = []
    for n in counts:
        readers = [_Reader(srv.port, f"/streams/{name}.h264") for _ in range(n)]
        time.sleep(1.5)  # joined, keyframes made
        e0, c0, r0 = srv.h264(name)["encodes"], cpu(), [len(r.records) for r in readers]
        time.sleep(seconds)
        e1, c1 = srv.h264(name)["encodes"], cpu()
        got = [(len(r.records) - r0[i]) / seconds for i, r in enumerate(readers)]
        for r in readers:
            r.close()
        rows.append({
            "viewers": n,
            "encodes_per_s": (e1 - e0) / seconds,
            "cpu_per_s": (c1[0] - c0[0]) / seconds,
            "capture_cpu_per_s": (c1[1] - c0[1]) / seconds,
            "viewer_fps_min": min(got) if got else 0.0,
        })  # fmt: skip
        log(f"  web_h264 load {name[-8:]} x{n}: {rows[-1]}")
        time.sleep(0.5)
    return rows


def _browser_age(port: int, name: str, seconds: float, blocks: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    if chromium is None:
        raise BenchError("needs Debian's chromium")
    ages: dict[str, list[float]] = {"h264": [], "mse": [], "mjpeg": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            for _ in range(blocks):
                for codec in ages:
                    page = browser.new_page(viewport={"width": 1400, "height": 900})
                    page.goto(f"http://127.0.0.1:{port}/?codec={codec}")
                    page.wait_for_function(
                        "(name) => { const f = document.querySelector("
                        "`figure[data-stream='${name}']`); return f && f.dataset.codec }",
                        arg=name,
                        timeout=30_000,
                    )
                    page.wait_for_timeout(2000)  # playing
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        got = page.evaluate(PROBE, name)
                        if got is not None and got[2] == codec:
                            ages[codec].append(got[0] - got[1])
                        time.sleep(0.05)
                    page.close()
        finally:
            browser.close()
    return ages


def _first_pictures(port: int, name: str, joins: int) -> list[float]:
    """Seconds from a new page's WebSocket to its first picture of ``name`` (the only stream
    the server at ``port`` serves), ``joins`` times, while another page keeps watching."""
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    out: list[float] = []
    shown = (
        "(name) => { const f = document.querySelector(`figure[data-stream='${name}']`);"
        " return f && f.dataset.first }"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            keeper = browser.new_page()  # a viewer already watching: the encoder runs
            keeper.goto(f"http://127.0.0.1:{port}/")
            keeper.wait_for_function(shown, arg=name, timeout=30_000)
            for i in range(joins):
                time.sleep(0.37 + 0.23 * i)  # join at different points of the groups
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(shown, arg=name, timeout=30_000)
                first, opened = page.evaluate(
                    "(name) => { const f = document.querySelector("
                    "`figure[data-stream='${name}']`); return [Number(f.dataset.first),"
                    " Number(f.dataset.opened)] }",
                    name,
                )
                out.append((first - opened) / 1000)
                page.close()
        finally:
            browser.close()
    return out


def _throttled(srv: _Server, name: str, bitrate: float, seconds: float) -> dict[str, Any]:
    slow = _Reader(srv.port, f"/streams/{name}.h264", rcvbuf=16384, rate=bitrate / 4)
    fast = _Reader(srv.port, f"/streams/{name}.h264")
    time.sleep(seconds)
    behind = srv.h264(name)["behind"]
    slow.close()
    fast.close()
    recs = slow.records
    t0 = recs[0][0] if recs else 0.0
    ages = [(r[0] - t0, r[0] - r[1]) for r in recs]
    half = seconds / 2
    first = [a for t, a in ages if t < half]
    second = [a for t, a in ages if t >= half]
    span = (fast.records[-1][0] - fast.records[0][0]) if len(fast.records) > 1 else 0.0
    return {
        "seconds": seconds,
        "slow_frames": len(recs),
        "slow_keys": sum(r[3] for r in recs),
        "age_p50_first_half": percentile(first, 50) if first else float("nan"),
        "age_p50_second_half": percentile(second, 50) if second else float("nan"),
        "age_max": max((a for _, a in ages), default=float("nan")),
        "behind": behind,
        "fast_fps": (len(fast.records) - 1) / span if span else 0.0,
        "series": ages,
    }


# --- the scenario --------------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    quick = cfg.quick
    window = 3.0 if quick else 8.0
    errors: list[str] = []
    data: dict[str, Any] = {}
    if not rtsp_server_available():
        raise BenchError("needs GStreamer's RTSP server")
    base = f"{STREAM_PREFIX}h264-{os.getpid()}"
    names = {"camera (passthrough)": f"{base}-cam", "test pattern (encoded)": f"{base}-pat",
             "textured (encoded)": f"{base}-tex"}  # fmt: skip
    cam, pat, tex = names.values()
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(ServerHost(SIZE, FPS))
        camera = stack.enter_context(framebus.publish(cam, host.url))
        stack.enter_context(
            framebus.publish(pat, framebus.TestPattern(SIZE.width, SIZE.height, fps=FPS))
        )
        textured = _Textured(tex)
        stack.callback(textured.close)
        srv = _Server()
        stack.callback(srv.close)
        time.sleep(2.0)
        log("  web_h264: bytes per viewer")
        data["bytes"] = _bytes(srv, names, window)
        log("  web_h264: encodes and CPU")
        data["load_encoded"] = _load(srv, tex, (0, 1, 4, 16), window)
        data["load_passthrough"] = _load(srv, cam, (1, 16), window, camera.capture_pid)
        log("  web_h264: age in Chromium")
        try:
            # a page of the camera alone (three 720p tiles would make it the browser's CPU
            # that is measured), served by a server of its own
            alone = _Server([cam])
            try:
                data["age"] = _browser_age(
                    alone.port, cam, 4.0 if quick else 10.0, 1 if quick else 3
                )
            finally:
                alone.close()
            data["first"] = {}
            for label, name in (("camera (passthrough)", cam), ("textured (encoded)", tex)):
                alone = _Server([name])
                try:
                    data["first"][label] = _first_pictures(alone.port, name, 4 if quick else 10)
                finally:
                    alone.close()
        except BenchError as exc:
            errors.append(f"web_h264 browser: {exc}")
        log("  web_h264: a throttled viewer")
        rate = data["bytes"]["textured (encoded)"]["h264"]
        data["throttled"] = _throttled(srv, tex, rate, 15.0 if quick else 60.0)
    text = _text(data)
    series = data.get("throttled", {}).pop("series", None)
    del series
    return Section("web_h264", "H.264 to browsers against MJPEG", text, [], data, errors)


def _text(d: dict[str, Any]) -> str:
    parts = [__doc__.split("\n\n", 1)[1] if __doc__ else ""]
    rows = [(label, fmt(r["h264"] / 1e3, 0), fmt(r["mjpeg"] / 1e3, 0), f"1/{r['ratio']:.1f}")
            for label, r in d["bytes"].items()]  # fmt: skip
    parts.append("**Bytes per viewer** (kB/s; target: H.264 at most 1/8 of MJPEG q80)\n\n"
                 + md_table(["stream", "H.264", "MJPEG q80", "H.264 / MJPEG"], rows))  # fmt: skip
    enc = d["load_encoded"]
    one = next((r for r in enc if r["viewers"] == 1), None)
    rows = [(str(r["viewers"]), fmt(r["encodes_per_s"]), fmt(r["cpu_per_s"] * 100, 0),
             fmt(r["viewer_fps_min"])) for r in enc]  # fmt: skip
    parts.append("**Encoded once** (textured 720p25; target: encodes/s = source fps, 0 without "
                 "viewers; CPU 16 ÷ 1 at most 1.3)\n\n"
                 + md_table(["H.264 viewers", "encodes/s", "server CPU %", "slowest viewer fps"],
                            rows))  # fmt: skip
    pas = d["load_passthrough"]
    rows = [(str(r["viewers"]), fmt(r["encodes_per_s"]), fmt(r["cpu_per_s"] * 100, 1),
             fmt(r["capture_cpu_per_s"] * 100, 1),
             fmt((r["cpu_per_s"] + r["capture_cpu_per_s"]) * 100, 1),
             fmt(r["viewer_fps_min"])) for r in pas]  # fmt: skip
    parts.append("**Passthrough** (the RTSP camera; its capture process receives, keeps the "
                 "packets and decodes for the frame ring whatever the viewers)\n\n"
                 + md_table(["H.264 viewers", "encodes/s", "web server CPU %",
                             "capture CPU %", "together %", "slowest viewer fps"],
                            rows))  # fmt: skip
    sixteen = next((r for r in enc if r["viewers"] == 16), None)
    p16 = next((r for r in pas if r["viewers"] == 16), None)
    p1 = next((r for r in pas if r["viewers"] == 1), None)
    if one and sixteen and p1 and p16:
        both16 = p16["cpu_per_s"] + p16["capture_cpu_per_s"]
        both1 = p1["cpu_per_s"] + p1["capture_cpu_per_s"]
        parts.append(
            f"Server CPU 16 viewers ÷ 1: encoded **{sixteen['cpu_per_s'] / one['cpu_per_s']:.2f}**,"
            f" passthrough **{both16 / max(both1, 1e-9):.2f}** with its capture process, "
            f"{p16['cpu_per_s'] / max(p1['cpu_per_s'], 1e-9):.2f} for the web server alone "
            "(target ≤ 1.3; on loopback the kernel's receive side of each viewer's TCP is "
            "counted in the sender's time)."
        )
    if "age" in d:
        names = {"h264": "H.264, WebCodecs", "mse": "H.264, MSE", "mjpeg": "MJPEG"}
        rows = [(names[codec], str(len(a)),
                 fmt(percentile(a, 50) * 1e3), fmt(percentile(a, 95) * 1e3))
                for codec, a in d["age"].items() if a]  # fmt: skip
        parts.append("**Age of what the page shows** (Chromium, the RTSP camera's barcode read "
                     "off the tile, ms; target: H.264 p50 ≤ MJPEG p50 + 15, p95 ≤ 150)\n\n"
                     + md_table(["tile", "samples", "p50", "p95"], rows))  # fmt: skip
    if "first" in d:
        rows = [(label, str(len(v)), fmt(percentile(v, 50) * 1e3, 0), fmt(max(v) * 1e3, 0))
                for label, v in d["first"].items() if v]  # fmt: skip
        parts.append("**First picture of a new page** (ms from its WebSocket; target ≤ 500)\n\n"
                     + md_table(["stream", "joins", "p50", "max"], rows))  # fmt: skip
    t = d["throttled"]
    parts.append(
        "**A throttled viewer** (a quarter of the textured stream's bit rate, "
        f"{t['seconds']:.0f} s):"
        f" age p50 {fmt(t['age_p50_first_half'] * 1e3, 0)} ms in the first half, "
        f"{fmt(t['age_p50_second_half'] * 1e3, 0)} ms in the second (flat), max "
        f"{fmt(t['age_max'] * 1e3, 0)} ms; it got {t['slow_frames']} frames "
        f"({t['slow_keys']} keyframes), fell behind {t['behind']} times; the other viewer kept "
        f"{fmt(t['fast_fps'])} fps."
    )
    return "\n\n".join(parts)
