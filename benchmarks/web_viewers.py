"""The browsers of the ``web`` scenario: MJPEG viewers in one client process, apart from every
server.

Each viewer is a thread with its own TCP socket: it sends ``GET path HTTP/1.1`` as a browser's
``<img>`` does, undoes the chunked transfer coding the servers answer with, and splits the body
into parts: a part's JPEG ends after its ``Content-Length`` when the part has one (framebus),
else at the JPEG's end-of-image marker ``FF D9`` (the other peers send no length; the marker
cannot occur inside JPEG data, where every ``FF`` is stuffed). A part is *received* at the
``time.time()`` of the ``recv()`` that brought its last byte. A part whose JPEG is byte for byte
the previous one is a repeat (the same frame sent again); the others are *new* frames.

A *probe* viewer decodes each new frame (simplejpeg, grey, at half size; only the top rows are
used) and reads the send time the RTSP server painted on it
(:func:`framebus.testing.read_timestamp`): age = received - sent. Every viewer also notes the
age framebus states in ``X-Framebus-Timestamp`` (the capture time) when the part has it.

A *throttled* viewer sets ``SO_RCVBUF`` before connecting and reads at most ``rate`` bytes per
second (4 KiB reads, paced, never bursting to catch up).

The client process obeys commands from the benchmark on a pipe (:class:`ViewerClient` is the
benchmark's end): add viewers, snapshot their counters, fetch their records, close them, time
HTTP requests (``/api/streams``, snapshots), and run a ``framebus.attach`` reader of a stream
that reads the barcode of each frame in the ring (the ring age).
"""

from __future__ import annotations

import bisect
import contextlib
import http.client
import math
import random
import socket
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

import numpy as np

from .common import SPAWN, BenchError, exit_with_parent, stop_process

__all__ = ["ViewerClient", "barcode_time"]

_EOI = b"\xff\xd9"
_CHUNK = 256 * 1024
_THROTTLED_CHUNK = 4096
_BAND_ROWS = 40  # the barcode is in the top 32 rows of the full-size frame


def barcode_time(jpeg: bytes, width: int) -> float | None:
    """The send time painted on the frame in ``jpeg`` (``width`` pixels wide), or None."""
    import simplejpeg

    from framebus.testing import read_timestamp

    try:
        img = simplejpeg.decode_jpeg(
            jpeg, colorspace="GRAY", fastdct=True, fastupsample=True, min_factor=2,
            min_width=width // 2,
        )  # fmt: skip
    except ValueError:
        return None
    f = max(1, round(width / img.shape[1]))
    band = img[: _BAND_ROWS // f + 1]
    if f > 1:
        band = np.repeat(np.repeat(band, f, axis=0), f, axis=1)
    sent = read_timestamp(band)
    if sent is None and f > 1:  # not at half size: try the whole frame once
        try:
            full = simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")
        except ValueError:
            return None
        sent = read_timestamp(full[:_BAND_ROWS])
    return sent


class _Dechunk:
    """Undoes ``Transfer-Encoding: chunked`` (Werkzeug and uvicorn answer HTTP/1.1 with it)."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.left = 0
        self.crlf = False

    def feed(self, data: bytes) -> bytes:
        self.raw += data
        out = bytearray()
        while True:
            if self.crlf:
                if len(self.raw) < 2:
                    break
                del self.raw[:2]
                self.crlf = False
            if self.left == 0:
                i = self.raw.find(b"\r\n")
                if i < 0:
                    break
                size = int(bytes(self.raw[:i]).split(b";")[0] or b"0", 16)
                del self.raw[: i + 2]
                if size == 0:
                    break  # the last chunk
                self.left = size
            take = min(self.left, len(self.raw))
            if take == 0:
                break
            out += self.raw[:take]
            del self.raw[:take]
            self.left -= take
            self.crlf = self.left == 0
        return bytes(out)


class _Viewer:
    """One MJPEG viewer (a thread and its socket)."""

    def __init__(
        self, port: int, path: str, *, probe: bool, rate: float | None, rcvbuf: int | None,
        width: int,
    ) -> None:  # fmt: skip
        self.port, self.path, self.probe, self.rate, self.width = port, path, probe, rate, width
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(15)
        self.parts = self.new = self.jpeg_bytes = self.wire_bytes = self.unreadable = 0
        self.t: list[float] = []  # new frames: when received
        self.age: list[float] = []  # ... their true age (barcode), NaN if not a probe
        self.hdr_age: list[float] = []  # ... the age framebus states (X-Framebus-Timestamp)
        self.size: list[int] = []
        self.status = 0
        self.error: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._due = 0.0
        self._prev = b""
        self.thread = threading.Thread(target=self._run, name="bench-viewer", daemon=True)
        self.thread.start()

    def _recv(self) -> tuple[bytes, float]:
        if self.rate is None:
            data = self.sock.recv(_CHUNK)
            return data, time.time()
        data = self.sock.recv(_THROTTLED_CHUNK)
        t = time.time()
        now = time.monotonic()
        self._due = max(self._due, now - 0.05) + len(data) / self.rate  # no catching up
        if self._due > now:
            self._stop.wait(self._due - now)
        return data, t

    def _run(self) -> None:
        try:
            self.sock.connect(("127.0.0.1", self.port))
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\n\r\n"
            )  # as a browser's <img>
            self.sock.sendall(request.encode())
            self._loop()
        except Exception as exc:
            if not self._closing:
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()

    def _loop(self) -> None:
        buf = bytearray()
        while (end := buf.find(b"\r\n\r\n")) < 0:
            data, _ = self._recv()
            if not data:
                raise ConnectionError("closed before the response headers")
            buf += data
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        self.status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        ctype = headers.get("content-type", "")
        if self.status != 200 or "boundary=" not in ctype:
            raise ConnectionError(f"HTTP {self.status}, content-type {ctype!r}")
        boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        delim = b"--" + boundary.encode()
        self.wire_bytes += len(buf)
        body: Any = bytes  # identity
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _Dechunk().feed
            buf = bytearray(body(bytes(buf)))
        self.connected.set()
        state, length, ts, scan = "delim", -1, math.nan, 0
        t = time.time()
        while True:
            progressed = True
            while progressed:
                progressed = False
                if state == "delim":
                    i = buf.find(delim)
                    if i >= 0:
                        del buf[: i + len(delim)]
                        state, progressed = "headers", True
                    elif len(buf) > len(delim):
                        del buf[: len(buf) - len(delim)]
                elif state == "headers":
                    i = buf.find(b"\r\n\r\n")
                    if i >= 0:
                        length, ts = -1, math.nan
                        for line in bytes(buf[:i]).split(b"\r\n"):
                            key, _, value = line.partition(b":")
                            key = key.strip().lower()
                            if key == b"content-length":
                                length = int(value)
                            elif key == b"x-framebus-timestamp":
                                ts = float(value)
                        del buf[: i + 4]
                        state, scan, progressed = "body", 0, True
                else:  # body
                    if length >= 0:
                        n = length if len(buf) >= length else -1
                    else:
                        j = buf.find(_EOI, scan)
                        n = j + 2 if j >= 0 else -1
                        scan = max(0, len(buf) - 1)
                    if n >= 0:
                        jpeg = bytes(buf[:n])
                        del buf[:n]
                        self._part(jpeg, t, ts)
                        state, progressed = "delim", True
            data, t = self._recv()
            if not data:
                return
            self.wire_bytes += len(data)
            buf += body(data)

    def _part(self, jpeg: bytes, t: float, ts: float) -> None:
        self.parts += 1
        self.jpeg_bytes += len(jpeg)
        if jpeg == self._prev:
            return
        self._prev = jpeg
        self.new += 1
        age = math.nan
        if self.probe:
            sent = barcode_time(jpeg, self.width)
            if sent is None:
                self.unreadable += 1
            else:
                age = t - sent
        self.size.append(len(jpeg))
        self.hdr_age.append(t - ts)
        self.age.append(age)
        self.t.append(t)  # last: records() reads len(t) entries of every list

    def counters(self) -> dict[str, Any]:
        return {
            "parts": self.parts,
            "new": self.new,
            "jpeg_bytes": self.jpeg_bytes,
            "wire_bytes": self.wire_bytes,
            "unreadable": self.unreadable,
            "status": self.status,
            "error": self.error,
            "alive": self.thread.is_alive(),
        }

    def records(self, t0: float, t1: float) -> dict[str, list[float]]:
        n = len(self.t)  # the thread appends meanwhile: take a consistent prefix
        t = self.t[:n]
        lo, hi = bisect.bisect_left(t, t0), bisect.bisect_right(t, t1)
        return {
            "t": t[lo:hi],
            "age": self.age[lo:hi],
            "hdr_age": self.hdr_age[lo:hi],
            "size": [float(s) for s in self.size[lo:hi]],
        }

    def close(self) -> None:
        """Leave as a browser does: ``close()`` the socket (a reset when unread data is left
        in it). ``SHUT_RD`` first only wakes the thread's ``recv()``; it sends nothing (a
        ``SHUT_WR`` would send a FIN, and a half-closed connection whose window is full looks
        alive to the server until its write timeout)."""
        self._closing = True
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
        self.thread.join(10)
        self.sock.close()


class _Ring:
    """A ``framebus.attach`` reader that reads the barcode of every frame in the ring."""

    def __init__(self, name: str) -> None:
        import framebus

        self.cap = framebus.attach(name, timeout=0.5)
        self.t: list[float] = []
        self.age: list[float] = []
        self.info_age: list[float] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-ring", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from framebus.testing import read_timestamp

        while not self._stop.is_set():
            ok, frame = self.cap.read()
            t = time.time()
            if not ok or frame is None:
                continue
            sent = read_timestamp(frame)
            info = self.cap.info
            if sent is None or info is None:
                continue
            self.t.append(t)
            self.age.append(t - sent)
            self.info_age.append(t - info.timestamp)

    def stop(self) -> dict[str, list[float]]:
        self._stop.set()
        self.thread.join(5)
        self.cap.release()
        return {"t": self.t, "age": self.age, "info_age": self.info_age}


def _timed_gets(port: int, path: str, n: int, spacing: float) -> dict[str, list[float]]:
    """``n`` GETs of ``path`` on one keep-alive connection, started ``spacing`` s apart on
    average (uniform 0.8-1.2 x, seeded: each lands at a random phase of the source): latency
    from sending the request to the last byte of the body, and for snapshots the time from
    the frame's capture (``X-Framebus-Timestamp``) or the request, whichever is later.

    Never back to back: a request sent the moment the previous response was read waits for
    a delayed ACK (about 40 ms on Linux loopback, measured with plain uvicorn too), which is
    the client's and the kernel's doing, not the server's."""
    rng = random.Random(len(path))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    out: dict[str, list[float]] = {"latency": [], "after_capture": [], "status": []}
    try:
        for _ in range(n):
            start = time.perf_counter()
            asked = time.time()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            done = time.time()
            out["latency"].append(time.perf_counter() - start)
            out["status"].append(float(resp.status))
            ts = resp.getheader("X-Framebus-Timestamp")
            out["after_capture"].append(done - max(asked, float(ts)) if ts else math.nan)
            left = spacing * rng.uniform(0.8, 1.2) - (time.perf_counter() - start)
            if left > 0:
                time.sleep(left)
    finally:
        conn.close()
    return out


def _gets_together(port: int, paths: list[str], n: int, spacing: float) -> dict[str, Any]:
    """:func:`_timed_gets` of each of ``paths`` at the same time, one thread each."""
    results: dict[str, Any] = {}

    def one(path: str) -> None:
        results[path] = _timed_gets(port, path, n, spacing)

    threads = [threading.Thread(target=one, args=(p,), daemon=True) for p in paths]
    for th in threads:
        th.start()
    for th in threads:
        th.join(n * spacing + 60)
    return results


def _client(conn: Connection, width: int) -> None:
    """The client process: obey the benchmark's commands until ``exit``."""
    exit_with_parent()
    viewers: dict[int, _Viewer] = {}
    ring: _Ring | None = None
    next_id = 0
    try:
        while True:
            try:
                cmd, args = conn.recv()
            except EOFError:
                return
            try:
                if cmd == "add":
                    port, path, n, opts = args
                    new = []
                    for _ in range(n):
                        viewers[next_id] = _Viewer(port, path, width=width, **opts)
                        new.append(next_id)
                        next_id += 1
                    deadline = time.monotonic() + 20
                    for vid in new:
                        viewers[vid].connected.wait(max(0.0, deadline - time.monotonic()))
                    reply: Any = {vid: viewers[vid].counters() for vid in new}
                elif cmd == "snapshot":
                    reply = {vid: v.counters() for vid, v in viewers.items() if vid in args}
                    reply["t"] = time.time()
                elif cmd == "records":
                    vids, t0, t1 = args
                    reply = {vid: viewers[vid].records(t0, t1) for vid in vids}
                elif cmd == "close":
                    for vid in args:
                        viewers[vid].close()
                    reply = time.time()
                    for vid in args:
                        del viewers[vid]
                elif cmd == "gets":
                    reply = _gets_together(*args)
                elif cmd == "ring_start":
                    ring = _Ring(args)
                    reply = True
                elif cmd == "ring_stop":
                    reply = ring.stop() if ring is not None else {}
                    ring = None
                elif cmd == "exit":
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send(("ok", reply))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (BrokenPipeError, SystemExit):
        pass
    finally:
        for v in viewers.values():
            v.close()
        if ring is not None:
            ring.stop()
        conn.close()


class ViewerClient:
    """The benchmark's end: ``with ViewerClient(width) as cl: ids = cl.add(port, path, 4)``."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None
        self.pid = 0

    def __enter__(self) -> ViewerClient:
        here, there = SPAWN.Pipe()
        self._proc = SPAWN.Process(
            target=_client, args=(there, self.width), name="bench-web-viewers", daemon=True
        )
        self._conn = here
        try:
            self._proc.start()
            there.close()
            self.pid = self._proc.pid or 0
        except BaseException:
            self.close()
            raise
        return self

    def _call(self, cmd: str, args: Any = None, timeout: float = 60.0) -> Any:
        conn = self._conn
        if conn is None:
            raise BenchError("the viewer process is not running")
        try:
            conn.send((cmd, args))
            if not conn.poll(timeout):
                raise BenchError(f"viewers: no answer to {cmd} within {timeout:.0f} s")
            kind, payload = conn.recv()
        except (EOFError, OSError):
            raise BenchError(f"the viewer process died during {cmd}") from None
        if kind != "ok":
            raise BenchError(f"viewers: {cmd} failed:\n{payload}")
        return payload

    def add(
        self, port: int, path: str, n: int, *, probe: bool = False, rate: float | None = None,
        rcvbuf: int | None = None,
    ) -> list[int]:  # fmt: skip
        """Start ``n`` viewers; returns their ids once each has its response headers."""
        opts = {"probe": probe, "rate": rate, "rcvbuf": rcvbuf}
        got = self._call("add", (port, path, n, opts))
        bad = [c for c in got.values() if c["status"] != 200 or c["error"]]
        if bad:
            self.close_viewers(list(got))
            raise BenchError(f"viewer could not open {path}: {bad[0]['error'] or bad[0]}")
        return list(got)

    def snapshot(self, vids: list[int]) -> dict[Any, Any]:
        return dict(self._call("snapshot", list(vids)))

    def records(self, vids: list[int], t0: float, t1: float) -> dict[int, dict[str, list[float]]]:
        return dict(self._call("records", (list(vids), t0, t1), timeout=120))

    def close_viewers(self, vids: list[int]) -> float:
        """Close the viewers; returns ``time.time()`` once all sockets are shut down."""
        return float(self._call("close", list(vids)))

    def gets(self, port: int, paths: list[str], n: int, spacing: float) -> dict[str, Any]:
        return dict(self._call("gets", (port, paths, n, spacing), timeout=n * spacing + 120))

    def ring_start(self, name: str) -> None:
        self._call("ring_start", name)

    def ring_stop(self) -> dict[str, list[float]]:
        return dict(self._call("ring_stop"))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, EOFError):
                conn.send(("exit", None))
                conn.poll(15)
            conn.close()
        if self._proc is not None:
            stop_process(self._proc, grace=5.0)
            self._proc = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
