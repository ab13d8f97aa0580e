"""Scenario ``writer``: frames a program makes, published with ``framebus.VideoWriter``, side by
side with what people do instead, in one run.

1. *One copy*: ``write()`` of a 1920x1080 BGR frame against ``np.copyto`` of the same frame
   into four rotating buffers (the ring's four slots' footprint) and into one buffer, blocks
   alternated in this process.
2. *Writer to a waiting reader* in another process, 1920x1080 at 30 fps: the age of each frame
   when the reader has it (a view, no copy), beside the camera path's (a capture process
   publishing the same frames) measured in the same run.
3. *A stopped reader*: write times of a latest-mode writer with no reader, then with a reader
   process attached and stopped (SIGSTOP) while it holds a view, blocks alternated.
4. *The seed-003 loop*: a camera (1280x720 at 30 fps, its capture time painted as a barcode)
   -> a 6 fps detector process (150 ms of work a frame, then a box drawn) -> a web server ->
   an MJPEG viewer that reads each new frame's barcode: the age at the viewer from the camera.
   Peers for the detector's hand-off: ``VideoWriter`` (framebus web serving it); a
   ``framebus.Source`` subclass whose ``read()`` waits on a ``queue.Queue`` (framebus web); a
   ``multiprocessing.Queue`` into a threaded ``http.server`` that JPEG-encodes what it gets (the
   thread-and-queue recipe); raw frames into ffmpeg's stdin, which serves MJPEG itself
   (``-f mpjpeg -listen 1``, the ffmpeg recipe).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .common import (
    SPAWN,
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    exit_with_parent,
    fmt,
    log,
    md_table,
    percentile,
    stop_process,
)
from .web_viewers import ViewerClient

__all__ = ["run"]

FULL_HD = (1080, 1920, 3)
COPY_TARGET = 1.3  # write() / np.copyto, at most
DETECTOR_S = 0.150  # the detector's work per frame (6 fps with the rest of the loop)
CAMERA = (720, 1280, 3)
CAMERA_FPS = 30.0
BOX = (0, 128, 255)


# -- 1. one copy ------------------------------------------------------------------------------


def _copy_costs(rounds: int, block: int) -> dict[str, list[float]]:
    import framebus

    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, FULL_HD, dtype=np.uint8)
    rotating = [np.empty_like(frame) for _ in range(4)]
    single = np.empty_like(frame)
    times: dict[str, list[float]] = {"write": [], "copyto x4": [], "copyto x1": []}
    name = f"{STREAM_PREFIX}writer-{os.getpid()}"
    with framebus.VideoWriter(name) as out:
        for buf in rotating:
            np.copyto(buf, frame)  # every page touched before timing, as the ring's are
        for _ in range(8):
            out.write(frame)
        for _ in range(rounds):
            for key in times:
                for i in range(block):
                    t0 = time.perf_counter()
                    if key == "write":
                        out.write(frame)
                    elif key == "copyto x4":
                        np.copyto(rotating[i % 4], frame)
                    else:
                        np.copyto(single, frame)
                    times[key].append(time.perf_counter() - t0)
    return times


# -- 2. writer -> a waiting reader, beside a capture process -------------------------------------


def _reader(name: str, seconds: float, conn: Connection) -> None:
    """A reader process: the age of every frame when its view is in hand."""
    exit_with_parent()
    import framebus

    ages: list[float] = []
    with framebus.attach(name, timeout=10) as cap:
        conn.send("ready")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                with cap.view(timeout=1) as _:
                    got = time.time()
                    assert cap.info is not None
                    ages.append(got - cap.info.timestamp)
            except framebus.ReadTimeout:
                continue
    conn.send(ages[1:])  # the first may have been waiting already: not a wake-up


def _reader_ages(name: str, seconds: float, feed: Callable[[threading.Event], None]) -> list[float]:
    here, there = SPAWN.Pipe()
    proc = SPAWN.Process(target=_reader, args=(name, seconds, there), daemon=True)
    proc.start()
    there.close()
    try:
        if not here.poll(30) or here.recv() != "ready":
            raise BenchError("the reader process did not attach")
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(stop,), daemon=True)
        feeder.start()
        if not here.poll(seconds + 30):
            raise BenchError("the reader process did not answer")
        ages: list[float] = here.recv()
        stop.set()
        feeder.join(10)
        return ages
    finally:
        stop_process(proc, grace=5.0)
        here.close()


def _latency(seconds: float) -> dict[str, list[float]]:
    import framebus

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, FULL_HD, dtype=np.uint8) for _ in range(2)]
    out: dict[str, list[float]] = {}
    name = f"{STREAM_PREFIX}writer-lat-{os.getpid()}"
    with framebus.VideoWriter(name) as writer:
        writer.write(frames[0])

        writes: list[float] = []

        def feed(stop: threading.Event) -> None:
            k, t0 = 0, time.monotonic()
            while not stop.is_set():
                k += 1
                delay = t0 + k / CAMERA_FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                w0 = time.perf_counter()
                writer.write(frames[k % 2])
                writes.append(time.perf_counter() - w0)

        out["VideoWriter.write()"] = _reader_ages(name, seconds, feed)
        out["(the write() calls themselves)"] = writes
    pattern = framebus.TestPattern(FULL_HD[1], FULL_HD[0], fps=CAMERA_FPS)
    with framebus.publish(name, pattern):
        out["a capture process (camera path)"] = _reader_ages(name, seconds, lambda stop: None)
    return out


# -- 3. a stopped reader ------------------------------------------------------------------------


def _holder(name: str, conn: Connection) -> None:
    exit_with_parent()
    import framebus

    with framebus.attach(name, timeout=10) as cap, cap.view(timeout=10):
        conn.send("holding")
        time.sleep(3600)


def _stopped_reader(rounds: int, block: int) -> dict[str, list[float]]:
    import framebus

    frame = np.random.default_rng(5).integers(0, 256, FULL_HD, dtype=np.uint8)
    times: dict[str, list[float]] = {"no reader": [], "a stopped reader": []}
    name = f"{STREAM_PREFIX}writer-stop-{os.getpid()}"
    with framebus.VideoWriter(name) as out:
        out.write(frame)
        for _ in range(rounds):
            for key in times:
                proc = None
                if key == "a stopped reader":
                    here, there = SPAWN.Pipe()
                    proc = SPAWN.Process(target=_holder, args=(name, there), daemon=True)
                    proc.start()
                    there.close()
                    if not here.poll(30) or here.recv() != "holding":
                        raise BenchError("the holding reader did not attach")
                    os.kill(proc.pid or 0, signal.SIGSTOP)
                try:
                    for _ in range(block):
                        t0 = time.perf_counter()
                        out.write(frame)
                        times[key].append(time.perf_counter() - t0)
                        time.sleep(0.002)
                finally:
                    if proc is not None:
                        os.kill(proc.pid or 0, signal.SIGCONT)
                        stop_process(proc, grace=2.0)
    return times


# -- 4. the seed-003 loop -----------------------------------------------------------------------


def _camera(name: str, conn: Connection) -> None:
    """The camera: 1280x720 at 30 fps, its capture time painted on each frame."""
    exit_with_parent()
    import framebus
    from framebus.testing import paint_timestamp

    class Barcoded(framebus.Source):
        live = True
        fps = CAMERA_FPS

        def __init__(self) -> None:
            h, w, _ = CAMERA  # a smooth picture, as a camera's (noise would be all JPEG)
            ramp = np.linspace(40, 220, w, dtype=np.float32)[None, :, None]
            shade = np.linspace(0.6, 1.0, h, dtype=np.float32)[:, None, None]
            self.frame = (ramp * shade * np.array([1.0, 0.8, 0.6], np.float32)).astype(np.uint8)
            self.k, self.t0 = 0, 0.0

        def open(self) -> None:
            self.t0 = time.monotonic()

        def read(self) -> np.ndarray | None:
            self.k += 1
            delay = self.t0 + self.k / CAMERA_FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            paint_timestamp(self.frame, time.time())
            return self.frame

    with framebus.publish(name, Barcoded()):
        conn.send("ready")
        conn.recv()  # until told to stop


def _detect(frame: np.ndarray) -> np.ndarray:
    """150 ms of "work", then the boxes drawn on a copy (below the barcode)."""
    import cv2

    time.sleep(DETECTOR_S)
    out = frame.copy()
    cv2.rectangle(out, (400, 200), (880, 560), BOX, 6)
    return out


def _queue_source(q: queue.Queue[np.ndarray | None]) -> Any:
    """The peer ``Source`` subclass: ``read()`` waits on a queue the detector fills."""
    import framebus

    class QueueSource(framebus.Source):
        live = True
        fps = CAMERA_FPS / 5

        def read(self) -> np.ndarray | None:
            return q.get()

    return QueueSource()


def _detector(peer: str, camera: str, out_name: str, port: int, conn: Connection) -> None:
    """The detector process: newest camera frame -> 150 ms -> annotated frame -> ``peer``."""
    exit_with_parent()
    import framebus

    handoff: Callable[[np.ndarray, Any], None]
    closers: list[Callable[[], None]] = []
    if peer == "videowriter":
        writer = framebus.VideoWriter(out_name)
        closers.append(writer.release)

        def handoff(frame: np.ndarray, info: Any) -> None:
            writer.write(frame, like=info)

    elif peer == "source_queue":
        q: queue.Queue[np.ndarray | None] = queue.Queue()

        def handoff(frame: np.ndarray, info: Any) -> None:
            q.put(frame)
            if not closers:  # publish() returns once the first frame is in the ring
                closers.append(framebus.publish(out_name, _queue_source(q)).close)
                closers.append(lambda: q.put(None))

    elif peer == "ffmpeg_pipe":
        h, w, _ = CAMERA
        ffmpeg = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt",
             "bgr24", "-s", f"{w}x{h}", "-r", "6", "-i", "-", "-f", "mpjpeg", "-q:v", "4",
             "-content_type", "multipart/x-mixed-replace;boundary=ffmpeg", "-listen", "1",
             f"http://127.0.0.1:{port}/feed"],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # a broken pipe when its viewer leaves, at the end
        )  # fmt: skip
        assert ffmpeg.stdin is not None
        pipe = ffmpeg.stdin

        def handoff(frame: np.ndarray, info: Any) -> None:
            pipe.write(frame.tobytes())
            pipe.flush()

        def close_ffmpeg() -> None:
            with contextlib.suppress(OSError):
                pipe.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                ffmpeg.wait(5)
            if ffmpeg.poll() is None:
                ffmpeg.kill()
                ffmpeg.wait()

        closers.append(close_ffmpeg)
    else:
        raise BenchError(f"unknown detector peer {peer!r}")
    costs = _Costs()
    try:
        with framebus.attach(camera, timeout=10) as cam:
            if peer != "ffmpeg_pipe":  # (ffmpeg takes a frame once its viewer is there)
                handoff(_detect(cam.read_frame(timeout=2)), cam.info)
            conn.send("ready")  # the annotated stream exists now
            costs.start()
            result = None
            while not conn.poll():
                frame = _detect(cam.read_frame(timeout=2))
                try:
                    with costs.handoff():
                        handoff(frame, cam.info)
                except (BrokenPipeError, ConnectionError):  # ffmpeg's only viewer left
                    result = result or costs.result()
            conn.recv()
            conn.send(result or costs.result())
    finally:
        for close in reversed(closers):
            close()


class _Costs:
    """What the detector process spends: its hand-off calls (wall) and its CPU per frame
    (the same detection for every peer, plus the hand-off and whatever threads it needs)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.cpu0 = 0.0

    def start(self) -> None:
        self.cpu0 = time.process_time()

    @contextlib.contextmanager
    def handoff(self) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.calls.append(time.perf_counter() - t0)

    def result(self) -> dict[str, float]:
        cpu = time.process_time() - self.cpu0
        return {"handoff_s": percentile(self.calls, 50), "cpu_s": cpu / max(1, len(self.calls))}


def _mp_server(q: Any, port: int, conn: Connection) -> None:
    """The thread-and-queue recipe: frames from a multiprocessing.Queue, JPEG-encoded as they
    come, served as MJPEG by a threaded http.server."""
    exit_with_parent()
    import cv2

    latest: list[bytes] = [b""]
    cond = threading.Condition()
    stop = threading.Event()

    def pull() -> None:
        while not stop.is_set():
            try:
                frame = q.get(timeout=0.5)
            except queue.Empty:
                continue
            jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
            with cond:
                latest[0] = jpeg
                cond.notify_all()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            sent = [b""]
            with contextlib.suppress(OSError):
                while not stop.is_set():
                    with cond:
                        cond.wait_for(lambda: latest[0] is not sent[0] or stop.is_set(), 1.0)
                        jpeg = latest[0]
                    if jpeg is sent[0] or not jpeg:
                        continue
                    sent[0] = jpeg
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n"
                    )  # fmt: skip

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=pull, daemon=True).start()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn.send("ready")
    conn.recv()
    stop.set()
    server.shutdown()
    server.server_close()


def _web_server(name: str, port: int, conn: Connection) -> None:
    exit_with_parent()
    import framebus.web

    hub = framebus.web.EncoderHub()
    web = framebus.web.WebServer(framebus.web.app([name], hub=hub), "127.0.0.1", port, hub=hub)
    web.start()
    conn.send("ready")
    conn.recv()
    web.stop()


def _mp_detector(camera: str, q: Any, conn: Connection) -> None:
    exit_with_parent()
    import framebus

    costs = _Costs()
    with framebus.attach(camera, timeout=10) as cam:
        conn.send("ready")
        costs.start()
        while not conn.poll():
            frame = _detect(cam.read_frame(timeout=2))
            with costs.handoff():
                q.put(frame)  # pickled and sent by the queue's feeder thread
        conn.recv()
        conn.send(costs.result())
    q.cancel_join_thread()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _process(target: Callable[..., None], *args: Any) -> Iterator[dict[str, Any]]:
    """A spawned helper that says "ready", runs until told to stop, then is stopped; what it
    answers the stop with (a dict) lands in the dict this yields."""
    here, there = SPAWN.Pipe()
    proc = SPAWN.Process(target=target, args=(*args, there), daemon=True)
    proc.start()
    there.close()
    try:
        if not here.poll(60) or here.recv() != "ready":
            raise BenchError(f"{target.__name__} did not start")
        answer: dict[str, Any] = {}
        yield answer
    finally:
        with contextlib.suppress(OSError, EOFError):
            here.send("stop")
            if here.poll(10):
                answer.update(here.recv())
        proc.join(10)
        stop_process(proc, grace=2.0)
        here.close()


PEERS_003 = {
    "videowriter": "framebus `VideoWriter` + framebus web",
    "source_queue": "a `framebus.Source` fed by a `queue.Queue` + framebus web",
    "mp_queue": "`multiprocessing.Queue` -> threaded `http.server`, `cv2.imencode`",
    "ffmpeg_pipe": "raw frames into ffmpeg's stdin, `-f mpjpeg -listen 1`",
}


def _seed_loop(peer: str, seconds: float) -> dict[str, Any]:
    camera = f"{STREAM_PREFIX}cam-{os.getpid()}"
    out_name = f"{STREAM_PREFIX}boxes-{os.getpid()}"
    port = _free_port()
    with contextlib.ExitStack() as stack, ViewerClient(CAMERA[1]) as viewers:
        stack.enter_context(_process(_camera, camera))
        if peer in ("videowriter", "source_queue"):
            costs = stack.enter_context(_process(_detector, peer, camera, out_name, port))
            stack.enter_context(_process(_web_server, out_name, port))
            path = f"/streams/{out_name}.mjpg"
        elif peer == "mp_queue":
            q = SPAWN.Queue()
            stack.enter_context(_process(_mp_server, q, port))
            costs = stack.enter_context(_process(_mp_detector, camera, q))
            path = "/"
        else:
            costs = stack.enter_context(_process(_detector, peer, camera, out_name, port))
            path = "/feed"
            time.sleep(0.5)  # ffmpeg opens its listening socket
        vids = viewers.add(port, path, 1, probe=True)
        time.sleep(2.0)  # warm-up: the first frames wait for the viewer
        t0 = time.time()
        time.sleep(seconds)
        records = viewers.records(vids, t0, time.time())[vids[0]]
        viewers.close_viewers(vids)
    ages = [a for a in records["age"] if np.isfinite(a)]
    return {"ages": ages, "frames": len(records["t"]), "seconds": seconds,
            "fps": len(records["t"]) / seconds, **costs}  # fmt: skip


def _encode_seconds() -> float:
    """The web wing's JPEG encode of one camera frame, p50."""
    from framebus import _jpeg

    frame = np.zeros(CAMERA, np.uint8)
    frame[:] = np.linspace(40, 220, CAMERA[1], dtype=np.uint8)[None, :, None]
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        _jpeg.encode(frame)
        times.append(time.perf_counter() - t0)
    return percentile(times[5:], 50)


# -- the section ----------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> str:
    return fmt(1000 * percentile(values, q), 2)


def run(cfg: Config) -> Section:
    quick = cfg.quick
    log("writer: write() against np.copyto, 1080p")
    copies = _copy_costs(rounds=3 if quick else 10, block=20 if quick else 50)
    log("writer: writer -> waiting reader, beside a capture process")
    latency = _latency(4.0 if quick else 15.0)
    log("writer: a stopped reader")
    stopped = _stopped_reader(rounds=2 if quick else 5, block=20 if quick else 60)
    loops = {}
    for peer in PEERS_003:
        log(f"writer: the seed-003 loop, {peer}")
        try:
            loops[peer] = _seed_loop(peer, 6.0 if quick else 20.0)
        except BenchError as exc:
            loops[peer] = {"error": str(exc), "ages": [], "frames": 0}
    return _section(copies, latency, stopped, loops, _encode_seconds())


def _rows(by_key: dict[str, list[float]]) -> list[list[str]]:
    return [[k, _ms(v, 50), _ms(v, 99), str(len(v))] for k, v in by_key.items()]


def _section(
    copies: dict[str, list[float]],
    latency: dict[str, list[float]],
    stopped: dict[str, list[float]],
    loops: dict[str, dict[str, Any]],
    encode_s: float,
) -> Section:
    data: dict[str, Any] = {"copies": copies, "latency": latency, "stopped": stopped,
                            "loops": loops}  # fmt: skip
    med = {k: percentile(v, 50) for k, v in copies.items()}
    ratio4, ratio1 = med["write"] / med["copyto x4"], med["write"] / med["copyto x1"]
    data["ratio_vs_copyto_x4"], data["ratio_vs_copyto_x1"] = ratio4, ratio1
    md = ["### One copy: `write()` of a 1920x1080 BGR frame\n"]
    md.append(md_table(["operation", "p50 ms", "p99 ms", "n"], _rows(copies)))
    verdict = "met" if ratio4 <= COPY_TARGET else "**missed**"
    md.append(
        f"\n`write()` ÷ `np.copyto` into four rotating buffers: **{ratio4:.2f}** (target ≤ "
        f"{COPY_TARGET}: {verdict}); ÷ `np.copyto` into one buffer (cache-warm): {ratio1:.2f}.\n"
    )
    md.append("\n### Writer to a reader waiting in another process, 1920x1080 at 30 fps\n")
    md.append(md_table(["path", "age p50 ms", "age p99 ms", "frames"], _rows(latency)))
    writer_p50 = percentile(latency["VideoWriter.write()"], 50)
    camera_p50 = percentile(latency["a capture process (camera path)"], 50)
    bound = camera_p50 + percentile(latency["(the write() calls themselves)"], 50)
    data["latency_bound_s"] = bound
    md.append(
        f"\nThe writer's age p50 {1000 * writer_p50:.2f} ms against the camera path's (a frame "
        f"is stamped once it is in its slot: the wake-up) plus the p50 of the same run's "
        f"`write()` calls (the copy), {1000 * bound:.2f} ms: "
        f"{'met' if writer_p50 <= bound * 1.1 else '**missed**'} (within 10 %).\n"
    )
    md.append("\n### A latest-mode writer and a stopped reader\n")
    md.append(md_table(["readers", "write p50 ms", "write p99 ms", "writes"], _rows(stopped)))
    fb = loops["videowriter"]
    md.append(
        f"\n### The seed-003 loop: camera (1280x720, 30 fps) -> detector "
        f"({1000 * DETECTOR_S:.0f} ms a frame: {fb.get('fps', 0):.1f} fps) -> annotated stream "
        "-> MJPEG viewer\n"
    )
    rows = []
    for peer, r in loops.items():
        ages = r["ages"]
        handoff, cpu = r.get("handoff_s"), r.get("cpu_s")
        rows.append([PEERS_003[peer], _ms(ages, 50), _ms(ages, 99),
                     fmt(None if handoff is None else 1000 * handoff, 2),
                     fmt(None if cpu is None else 1000 * cpu, 1), str(len(ages)),
                     r.get("error", "")])  # fmt: skip
    md.append(md_table(["hand-off", "age p50 ms", "age p99 ms", "hand-off call p50 ms",
                        "detector CPU ms/frame", "frames", "error"], rows))  # fmt: skip
    ideal = DETECTOR_S + camera_p50 + encode_s + 1 / CAMERA_FPS
    data["seed_loop_bound_s"], data["encode_s"] = ideal, encode_s
    if fb["ages"]:
        p50 = percentile(fb["ages"], 50)
        md.append(
            f"\nframebus's age p50 {1000 * p50:.0f} ms against detector + ring + JPEG encode "
            f"({1000 * encode_s:.1f} ms) + one camera interval = {1000 * ideal:.0f} ms: "
            f"{'met' if p50 <= ideal else '**missed**'}.\n"
        )
    return Section("writer", "Writing frames: `VideoWriter`", "\n".join(md), data=data)


if __name__ == "__main__":
    from pathlib import Path

    from .common import Size

    cfg = Config(("writer",), (Size(1920, 1080),), 5.0, True, Path("/tmp"))
    section = run(cfg)
    print(section.markdown)
    print(json.dumps({k: v for k, v in section.data.items() if "ratio" in k}))
