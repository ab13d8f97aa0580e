"""The MJPEG servers of the ``web`` scenario: each peer's server, in a process of its own.

Why not :class:`~benchmarks.peers.Peer`: a peer there is a producer and a consumer whose
``get()`` returns frames in the consumer's process. A web peer is a *server*; its consumers are
browsers, the same HTTP viewers for every peer (:mod:`benchmarks.web_viewers`), and what is
measured is the server process itself (its CPU, its JPEG encodes). So a web peer is a key, a
label, the URL path of its stream and a function that runs its server: :func:`serve` is the
target of the spawned server process.

Every peer serves the same source: ``{"kind": "pattern", ...}`` is framebus's TestPattern
(1280x720 at 30 fps, moving colour bars with a frame number), drawn in the peer's own process
by the same code framebus's capture runs (:class:`framebus.sources.pattern.PatternSource`,
whose ``read()`` blocks until the next frame is due, like a camera's); ``{"kind": "rtsp",
"url": ...}`` is the real RTSP server (:mod:`benchmarks.live`), read with
``cv2.VideoCapture(url)`` where the peer's code opens a camera with ``cv2.VideoCapture(0)``.
framebus's own peers serve a stream the benchmark publishes (``framebus.publish``), so their
capture runs in the publisher's capture process, measured apart.

JPEG encodes are counted in the peer's own process: its encoder call (``cv2.imencode``, or
``simplejpeg.encode_jpeg`` for WebGear's own producer) is wrapped with a counter, read through
the control pipe; framebus's are read from its ``/api/streams`` (the CLI server) or its hub's
stats (the Flask integration).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar

import numpy as np

from ..common import SPAWN, exit_with_parent, stop_process

__all__ = ["WEB_PEERS", "WebPeer", "serve", "web_peers_for"]

Source = dict[str, Any]


@dataclass(frozen=True)
class WebPeer:
    key: str
    label: str
    path: str
    """URL path of the MJPEG stream (``{name}``: the framebus stream's name)."""
    framebus: bool = False
    """Serves a framebus stream the benchmark publishes (its capture is a process of ours)."""
    api: bool = False
    """Has ``/api/streams`` and snapshots (``/streams/NAME.jpg``)."""
    describe: str = ""

    def url_path(self, name: str) -> str:
        return self.path.format(name=name)


WEB_PEERS: dict[str, WebPeer] = {}


def _register(peer: WebPeer) -> None:
    WEB_PEERS[peer.key] = peer


_register(
    WebPeer(
        "flask-seed-main",
        "seeds' Flask app, encode in the main loop",
        "/video_feed",
        describe="the seeds' server (seeds/003): a capture `Process` copies each camera frame "
        "into a shared `Array`; the main loop encodes that array with `cv2.imencode` over and "
        "over, as fast as it can (no wait for a new frame); `gen()` yields the last JPEG bytes "
        "in a loop (no wait either); Werkzeug threaded server in a daemon thread "
        "(`app.run(threaded=True)`)",
    )
)
_register(
    WebPeer(
        "flask-seed-gen",
        "seeds' Flask app, encode per viewer in gen()",
        "/video_feed",
        describe="the seeds' other variant: the same capture `Process` and shared `Array`; "
        "each viewer's `gen()` encodes the shared frame with `cv2.imencode` and yields it, "
        "in a loop without waiting; the main loop only assigns `frame_marked = frame` (it "
        "spins, as in the seed)",
    )
)
_register(
    WebPeer(
        "flask-grinberg",
        "Flask camera thread + events (Grinberg)",
        "/video_feed",
        describe="the flask-video-streaming pattern (Miguel Grinberg's `BaseCamera`, OpenCV "
        "camera): one camera thread reads a frame and encodes it (`cv2.imencode`), stores the "
        "JPEG and sets one `threading.Event` per viewer thread; each viewer waits for its "
        "event, clears it and yields the JPEG; the thread starts with the first viewer and "
        "stops 10 s after the last one asked for a frame; Werkzeug threaded server",
    )
)
_register(
    WebPeer(
        "webgear",
        "vidgear WebGear (uvicorn)",
        "/video",
        describe="vidgear `WebGear` on uvicorn, as its documentation shows: TestPattern source: "
        'a custom `web.config["generator"]` (the documented way to serve a source WebGear '
        "cannot open) that opens the camera, reads, `cv2.imencode`s and yields, per viewer; "
        "RTSP source: `WebGear(source=url)`, its own producer (CamGear thread and queue, "
        "`simplejpeg` encode per viewer, quality 90, 4:2:2); `skip_generate_webdata=True` "
        "(the page assets are downloaded from GitHub at first run, which fails offline; the "
        "MJPEG route is the same) and `frame_size_reduction=0` (its default 25 % reduction "
        "would serve 960x540, not 1280x720)",
    )
)
_register(
    WebPeer(
        "framebus-web",
        "framebus web (uvicorn)",
        "/streams/{name}.mjpg",
        framebus=True,
        api=True,
        describe="`framebus web NAME --http 127.0.0.1:PORT` (the CLI, `framebus.web.WebServer`) "
        "in its own process, serving a stream the benchmark publishes "
        "(`framebus.publish(name, source)`: capture in its own process); one encoder "
        "(simplejpeg, quality 80, 4:2:0) for all viewers",
    )
)
_register(
    WebPeer(
        "framebus-flask",
        "framebus.web.mjpeg_stream in Flask",
        "/video_feed",
        framebus=True,
        describe="a Flask app whose view returns `Response(framebus.web.mjpeg_stream(name, "
        "environ=request.environ), mimetype=MJPEG_MIMETYPE)`, Werkzeug threaded server, "
        "serving the stream the benchmark publishes",
    )
)


def web_peers_for(only: tuple[str, ...] | None) -> list[WebPeer]:
    """The web peers to run: those in ``only`` (all if None), framebus's server always."""
    return [
        p for p in WEB_PEERS.values() if only is None or p.key in only or p.key == "framebus-web"
    ]


# --- in the server process ---------------------------------------------------------------------


class _Encodes:
    """Counts the calls of an encoder function (wrapped in place, thread-safe)."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            with self._lock:
                self.n += 1
            return out

        return counted


class _Control:
    """The server process's end of the pipe: ``ready``, then answers ``count`` requests."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, *msg: Any) -> None:
        with self._lock, contextlib.suppress(OSError):
            self.conn.send(msg)

    def ready(self, pids: dict[str, int], count: Callable[[], Any]) -> None:
        self.send("ready", pids)
        threading.Thread(target=self._answer, args=(count,), daemon=True).start()

    def _answer(self, count: Callable[[], Any]) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            if msg == "count":
                self.send("count", count(), time.time())


class _Camera:
    """What the peers' code opens as ``cv2.VideoCapture(0)``: ``read() -> (ok, frame)`` blocks
    until the next frame like a camera's."""

    def __init__(self, source: Source) -> None:
        self._cap: Any = None
        self._pattern: Any = None
        if source["kind"] == "pattern":
            import framebus
            from framebus.sources.pattern import PatternSource

            self._pattern = PatternSource(
                framebus.TestPattern(source["width"], source["height"], source["fps"])
            )
            self._pattern.open()
        else:
            import cv2

            self._cap = cv2.VideoCapture(source["url"])
            if not self._cap.isOpened():
                raise RuntimeError(f"cv2.VideoCapture could not open {source['url']}")

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._pattern is not None:
            frame = self._pattern.read()
            return frame is not None, frame
        ok, frame = self._cap.read()
        return bool(ok), frame

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()


def _werkzeug(app: Any, port: int) -> Any:
    """Werkzeug's threaded development server, what ``app.run(threaded=True)`` starts (made
    directly so that it binds before we say we are ready; no request log)."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    return make_server("127.0.0.1", port, app, threaded=True)


# seeds/003: the capture process of the seeds' server, and its two ways of encoding


def _seed_capture(source: Source, shared: Any, stopped: Any, shape: tuple[int, int, int]) -> None:
    """The seed's ``get_from_stream``: read the camera, copy each frame into the shared array."""
    exit_with_parent()
    frame = np.ctypeslib.as_array(shared.get_obj()).reshape(shape)
    stream = _Camera(source)
    try:
        while True:
            if stopped.value:
                return
            ok, raw = stream.read()
            if ok and raw is not None:
                frame[:] = raw
    except SystemExit:
        pass
    finally:
        stream.release()


def _run_seed(source: Source, port: int, ctl: _Control, per_viewer: bool) -> None:
    import cv2
    import flask

    enc = _Encodes()
    cv2.imencode = enc.wrap(cv2.imencode)
    shape = (source["height"], source["width"], 3)
    shared = SPAWN.Array(ctypes.c_uint8, shape[0] * shape[1] * shape[2])
    frame = np.ctypeslib.as_array(shared.get_obj()).reshape(shape)
    stopped = SPAWN.Value(ctypes.c_bool, False)
    capture = SPAWN.Process(
        target=_seed_capture, args=(source, shared, stopped, shape), name="bench-web-seed-capture"
    )
    capture.start()
    g: dict[str, Any] = {"frame_marked": frame}  # the seed's module globals
    g["frame_bytes"] = cv2.imencode(".jpg", frame)[1].tobytes()
    app = flask.Flask("seed")

    def gen() -> Any:
        while True:
            if per_viewer:
                yield (
                    b"--frame\r\n"
                    b"Content-Type: image/jpeg\r\n\r\n"
                    + cv2.imencode(".jpg", g["frame_marked"])[1].tobytes()
                    + b"\r\n\r\n"
                )
            else:
                yield (
                    b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + g["frame_bytes"] + b"\r\n\r\n"
                )

    @app.route("/video_feed")
    def video_feed() -> Any:
        return flask.Response(gen(), mimetype="multipart/x-mixed-replace; boundary=frame")

    server = _werkzeug(app, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ctl.ready({"server": os.getpid(), "capture": capture.pid or 0}, lambda: enc.n)
    try:
        while True:  # the seed's main loop
            if stopped.value:
                return
            if not per_viewer:
                g["frame_bytes"] = cv2.imencode(".jpg", frame)[1].tobytes()
            g["frame_marked"] = frame
    finally:
        stopped.value = True
        stop_process(capture, grace=1.0)
        server.shutdown()


# flask-video-streaming: a camera thread, one event per viewer thread


class _ViewerEvents:
    """One ``threading.Event`` per viewer thread (keyed by its thread id), set for all of them
    when the camera has a new frame; a viewer whose event stayed set for 5 s is forgotten."""

    def __init__(self) -> None:
        self.events: dict[int, list[Any]] = {}

    def wait(self) -> bool:
        me = threading.get_ident()
        if me not in self.events:
            self.events[me] = [threading.Event(), time.time()]
        return bool(self.events[me][0].wait())

    def set(self) -> None:
        now = time.time()
        stale = None
        for me, (event, _) in self.events.items():
            if not event.is_set():
                event.set()
                self.events[me][1] = now
            elif now - self.events[me][1] > 5:
                stale = me
        if stale is not None:
            del self.events[stale]

    def clear(self) -> None:
        self.events[threading.get_ident()][0].clear()


class _CameraThread:
    """The camera thread: started by the first viewer, encodes every frame it reads, stops
    when nobody asked for a frame for 10 s. Class attributes: one camera per process."""

    thread: ClassVar[threading.Thread | None] = None
    frame: ClassVar[bytes | None] = None
    last_access: ClassVar[float] = 0.0
    event: ClassVar[_ViewerEvents] = _ViewerEvents()
    source: ClassVar[Source] = {}

    def __init__(self) -> None:
        cls = _CameraThread
        if cls.thread is None:
            cls.last_access = time.time()
            cls.thread = threading.Thread(target=cls._thread)  # not a daemon, as there
            cls.thread.start()
            cls.event.wait()

    def get_frame(self) -> bytes | None:
        cls = _CameraThread
        cls.last_access = time.time()
        cls.event.wait()
        cls.event.clear()
        return cls.frame

    @staticmethod
    def frames() -> Any:
        import cv2

        camera = _Camera(_CameraThread.source)
        while True:
            _, img = camera.read()
            yield cv2.imencode(".jpg", img)[1].tobytes()

    @classmethod
    def _thread(cls) -> None:
        frames = cls.frames()
        for frame in frames:
            _CameraThread.frame = frame
            _CameraThread.event.set()
            time.sleep(0)
            if time.time() - _CameraThread.last_access > 10:
                frames.close()
                break
        _CameraThread.thread = None


def _run_grinberg(source: Source, port: int, ctl: _Control) -> None:
    import cv2
    import flask

    enc = _Encodes()
    cv2.imencode = enc.wrap(cv2.imencode)
    _CameraThread.source = source
    app = flask.Flask("grinberg")

    def gen(camera: _CameraThread) -> Any:
        while True:
            frame = camera.get_frame()
            yield b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + (frame or b"") + b"\r\n"

    @app.route("/video_feed")
    def video_feed() -> Any:
        return flask.Response(
            gen(_CameraThread()), mimetype="multipart/x-mixed-replace; boundary=frame"
        )

    server = _werkzeug(app, port)
    ctl.ready({"server": os.getpid()}, lambda: enc.n)
    server.serve_forever()


# vidgear WebGear


def _run_webgear(source: Source, port: int, ctl: _Control) -> None:
    import asyncio

    import cv2
    import simplejpeg
    import uvicorn
    from vidgear.gears.asyncio import WebGear

    enc = _Encodes()
    cv2.imencode = enc.wrap(cv2.imencode)
    simplejpeg.encode_jpeg = enc.wrap(simplejpeg.encode_jpeg)  # WebGear's own producer
    options: dict[str, Any] = {"skip_generate_webdata": True, "frame_size_reduction": 0}
    if source["kind"] == "pattern":
        web = WebGear(logging=False, **options)

        async def my_frame_producer() -> Any:  # the documented custom source
            stream = _Camera(source)
            try:
                while True:
                    grabbed, frame = stream.read()
                    if not grabbed:
                        break
                    encoded = cv2.imencode(".jpg", frame)[1].tobytes()
                    yield b"--frame\r\nContent-Type:image/jpeg\r\n\r\n" + encoded + b"\r\n"
                    await asyncio.sleep(0)
            finally:
                stream.release()

        web.config["generator"] = my_frame_producer
    else:
        web = WebGear(source=source["url"], logging=False, **options)
    config = uvicorn.Config(
        web(), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)  # what uvicorn.run(web(), host=..., port=...) runs
    ctl.ready({"server": os.getpid()}, lambda: enc.n)
    try:
        server.run()
    finally:
        web.shutdown()


# framebus


def _run_framebus_web(name: str, port: int, ctl: _Control) -> None:
    from framebus.cli import main

    ctl.ready({"server": os.getpid()}, lambda: -1)  # the benchmark reads /api/streams
    main(["web", name, "--http", f"127.0.0.1:{port}"], out=io.StringIO())


def _run_framebus_flask(name: str, port: int, ctl: _Control) -> None:
    import flask

    import framebus.web

    app = flask.Flask("framebus-flask")

    @app.route("/video_feed")
    def video_feed() -> Any:
        return flask.Response(
            framebus.web.mjpeg_stream(name, environ=flask.request.environ),
            mimetype=framebus.web.MJPEG_MIMETYPE,
        )

    def count() -> tuple[int, float]:
        st = framebus.web.default_hub().stats(name)
        return st.encodes, st.encode_seconds

    server = _werkzeug(app, port)
    ctl.ready({"server": os.getpid()}, count)
    try:
        server.serve_forever()
    finally:
        framebus.web.default_hub().close()


def serve(key: str, source: Source, name: str, port: int, conn: Connection) -> None:
    """The server process of web peer ``key`` on 127.0.0.1:``port``: sends ``("ready", pids)``
    once it listens (or ``("error", traceback)``), serves until SIGTERM."""
    exit_with_parent()
    ctl = _Control(conn)
    try:
        if key == "flask-seed-main":
            _run_seed(source, port, ctl, per_viewer=False)
        elif key == "flask-seed-gen":
            _run_seed(source, port, ctl, per_viewer=True)
        elif key == "flask-grinberg":
            _run_grinberg(source, port, ctl)
        elif key == "webgear":
            _run_webgear(source, port, ctl)
        elif key == "framebus-web":
            _run_framebus_web(name, port, ctl)
        elif key == "framebus-flask":
            _run_framebus_flask(name, port, ctl)
        else:
            raise ValueError(f"unknown web peer {key!r}")
    except (SystemExit, KeyboardInterrupt):
        pass
    except BaseException:
        ctl.send("error", traceback.format_exc())
    finally:
        conn.close()
        if key == "flask-grinberg":
            # its camera thread is not a daemon and runs 10 s after its last viewer: leave now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
