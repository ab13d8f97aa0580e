"""The ASGI app: a page with a live tile per stream, MJPEG, snapshots, JSON stats, metrics.

Buffering policy of an MJPEG viewer (stated once, for every server):

* the viewer holds the newest encoded frame only (its :class:`~framebus.sinks.LatestSlot`);
  whatever was encoded while it was still sending is skipped and counted for it;
* the newest frame is chosen only once the previous one has left the server's own buffer (an
  empty write first: uvicorn's ``send()`` waits for its transport to drain before writing);
* the kernel's buffers are queues too: :class:`~framebus.web.WebServer` fits the send buffer to
  about one frame per connection, chooses the next frame only once fewer than 16 KiB wait
  unsent and the viewer has read all but what it reads in 33 ms (its own receive buffer
  included, see :class:`~framebus.web._sockets.PeerWindow`), and aborts a connection whose
  data stays unacknowledged for 10 s (``TCP_USER_TIMEOUT``: a viewer whose cable was pulled).
  Another ASGI server serving this app
  keeps its own buffers (uvicorn run by hand: asyncio's 64 KiB high-water mark and an
  autotuned kernel buffer; granian: 32 messages), which then decide how stale a slow viewer's
  frames get;
* a write that does not complete within :data:`WRITE_TIMEOUT` ends that viewer's response.

A slow viewer therefore never delays the others nor the encoder: they share the encoder, not a
queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

import framebus
from framebus import PublisherLost, SinkClosed, StreamEnded, StreamStats
from framebus.outputs import list_outputs
from framebus.sinks.jpeg import MAX_WIDTH, MIN_WIDTH, encoder_name

from . import _mjpeg, _sockets
from ._auth import BasicAuth
from ._hub import EncoderHub, TooManyVariants, Variant, default_hub
from ._viewers import Deadline, Viewer
from ._websocket import h264_endpoint

__all__ = ["SNAPSHOT_TIMEOUT", "WRITE_TIMEOUT", "app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WRITE_TIMEOUT = 10.0  # seconds a viewer may take to accept one frame before it is dropped
SNAPSHOT_TIMEOUT = 10.0
_IDLE_WAIT = 1.0  # how often a waiting viewer looks for a disconnect
_GONE_STATES = ("dead", "unreadable", "closed")
_EMPTY = {"type": "http.response.body", "body": b"", "more_body": True}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _Query(ValueError):
    pass


def _variant(request: Request) -> Variant:
    q = request.query_params
    width = quality = None
    try:
        if "width" in q:
            width = int(q["width"])
        if "quality" in q:
            quality = int(q["quality"])
    except ValueError:
        raise _Query("width and quality must be whole numbers") from None
    if width is not None and not MIN_WIDTH <= width <= MAX_WIDTH:
        raise _Query(f"width must be {MIN_WIDTH}..{MAX_WIDTH}")
    if quality is not None and not 1 <= quality <= 100:
        raise _Query("quality must be 1..100")
    return Variant(width, quality) if quality is not None else Variant(width)


_NO_STORE = {"cache-control": "no-store, no-cache, must-revalidate", "pragma": "no-cache"}


class _MjpegResponse(Response):
    """An endless ``multipart/x-mixed-replace`` response for one viewer."""

    def __init__(self, hub: EncoderHub, name: str, viewer: Viewer) -> None:
        super().__init__(media_type=None)
        self.hub, self.name, self.viewer = hub, name, viewer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        viewer = self.viewer
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        transport = _sockets.lookup(scope.get("client"))
        sock = None if transport is None else transport.get_extra_info("socket")
        window = None if sock is None else _sockets.PeerWindow(sock)

        async def watch() -> None:  # uvicorn's send() returns silently after a disconnect
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set_result(None)

        watcher = asyncio.ensure_future(watch())
        try:
            headers = [
                (b"content-type", _mjpeg.MJPEG_MIMETYPE.encode()),
                (b"cache-control", b"no-store, no-cache, must-revalidate"),
                (b"pragma", b"no-cache"),
                (b"x-accel-buffering", b"no"),  # nginx in front: do not buffer the stream
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": _mjpeg.first_chunk(),
                        "more_body": True})  # fmt: skip
            direct = _sockets.BodyWriter.of(transport)  # frames below ASGI, if possible
            fitted = 0
            while not gone.done():
                async with Deadline(WRITE_TIMEOUT):
                    # the newest frame is chosen only once the last one left the server's
                    # buffer (an empty write: uvicorn's send() waits for its transport to
                    # drain; on our server's connections, only if it holds anything) and
                    # was read by the viewer
                    if transport is None or transport.get_write_buffer_size():
                        await send(_EMPTY)
                    if sock is not None and window is not None:
                        await _sockets.wait_unsent(sock, gone)
                        await window.wait_read(gone)
                try:
                    item = await viewer.next(_IDLE_WAIT)
                except (StreamEnded, PublisherLost, SinkClosed):
                    break
                if item is None:
                    continue
                pieces = _mjpeg.part_pieces(item.data, item.info)
                size = sum(len(p) for p in pieces)
                if window is not None:
                    window.last_frame = size
                if sock is not None and not fitted * 0.75 <= size <= fitted * 1.5:
                    fitted = size
                    _sockets.fit(sock, fitted)  # the kernel's queue: about one frame
                if direct is not None:
                    direct.write(pieces)  # the transport was drained just above
                else:
                    async with Deadline(WRITE_TIMEOUT):
                        chunk = b"".join(pieces)
                        await send({"type": "http.response.body", "body": chunk,
                                    "more_body": True})  # fmt: skip
                self.hub.note_sent(self.name, size)
            if not gone.done():
                with contextlib.suppress(Exception):
                    async with Deadline(WRITE_TIMEOUT):
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            # a viewer that took no data for WRITE_TIMEOUT (a frozen tab, a half-closed or
            # vanished client) is dropped without a traceback in the server's log
            if transport is not None:
                transport.abort()
                await asyncio.sleep(0)  # let uvicorn see the connection lost
        finally:
            viewer.close()
            watcher.cancel()


def app(
    streams: list[str] | None = None,
    *,
    hub: EncoderHub | None = None,
    auth: tuple[str, str] | None = None,
    title: str = "framebus",
) -> Any:
    """A Starlette ASGI app serving ``streams`` (default: every stream of this user's on the
    machine, as they come and go). Run it with uvicorn, or mount it:
    ``api.mount("/video", framebus.web.app())``.

    ``auth``: (user, password) for HTTP Basic authentication of every request but
    ``/healthz`` (200 when every stream served is live, else 503; counts only).
    ``hub``: the encoders to share (default: the process's, shared with :func:`mjpeg_stream`).
    """
    hub = hub or default_hub()
    fixed = None if streams is None else list(streams)

    def listed() -> list[StreamStats]:
        found = [s for s in framebus.list_streams() if s.state not in _GONE_STATES]
        if fixed is not None:
            found = [s for s in found if s.name in fixed]
        return found

    def find(name: str) -> StreamStats | None:
        if fixed is not None and name not in fixed:
            return None
        return next((s for s in listed() if s.name == name), None)

    def describe(s: StreamStats) -> dict[str, Any]:
        web = hub.stats(s.name)
        return {
            **asdict(s),
            "viewers": web.viewers,
            "encodes": web.encodes,
            "bytes_sent": web.bytes_sent,
            "viewer_skipped": list(web.viewer_skipped),
            "codecs": {codec: asdict(c) for codec, c in web.codecs.items()},
            # the pushes and recorders of this stream on this machine (framebus.outputs)
            "outputs": [asdict(o) for o in list_outputs(s.name)],
        }

    async def index(request: Request) -> Response:
        page = _asset("index.html").replace("{{title}}", title)
        root = request.scope.get("root_path", "")
        return HTMLResponse(page.replace("{{base}}", f"{root}/"))

    def checked(request: Request) -> tuple[str, Variant] | Response:
        """The stream and variant the request names, or the error response saying why not."""
        name = request.path_params["name"]
        try:
            variant = _variant(request)
        except _Query as exc:
            return _error(400, str(exc))
        if find(name) is None:
            return _error(404, f"no stream named {name!r}")
        return name, variant

    def head(request: Request, media_type: str) -> Response:
        """HEAD: the headers a GET would have, and no encoder started (the response ends)."""
        found = checked(request)
        if isinstance(found, Response):
            return found
        return Response(status_code=200, media_type=media_type, headers=_NO_STORE)

    def watch(request: Request) -> Viewer | Response:
        """A viewer of the stream the request names, or the error response saying why not."""
        found = checked(request)
        if isinstance(found, Response):
            return found
        name, variant = found
        try:
            return Viewer(hub, name, variant)
        except TooManyVariants as exc:
            return _error(503, str(exc))
        except framebus.FramebusError as exc:  # gone since it was listed
            return _error(404, str(exc))

    async def mjpeg(request: Request) -> Response:
        if request.method == "HEAD":
            return head(request, _mjpeg.MJPEG_MIMETYPE)
        viewer = watch(request)
        if isinstance(viewer, Response):
            return viewer
        return _MjpegResponse(hub, request.path_params["name"], viewer)

    async def snapshot(request: Request) -> Response:
        if request.method == "HEAD":
            return head(request, "image/jpeg")
        name = request.path_params["name"]
        asked = time.time()
        viewer = watch(request)
        if isinstance(viewer, Response):
            return viewer
        try:
            deadline = time.monotonic() + SNAPSHOT_TIMEOUT
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = await viewer.next(min(left, _IDLE_WAIT))
                except (StreamEnded, PublisherLost, SinkClosed) as exc:
                    return _error(404, f"stream {name!r}: {exc}")
                if item is not None and item.info.timestamp >= asked:
                    return Response(
                        item.data,
                        media_type="image/jpeg",
                        headers={
                            "Cache-Control": "no-store",
                            "X-Framebus-Seq": str(item.info.seq),
                            "X-Framebus-Timestamp": f"{item.info.timestamp:.6f}",
                        },
                    )
            return _error(504, f"stream {name!r}: no new frame within {SNAPSHOT_TIMEOUT:g} s")
        finally:
            viewer.close()

    async def api_list(request: Request) -> Response:
        # the page asks every second: a good time to close idle encoders (off the loop)
        await asyncio.get_running_loop().run_in_executor(None, hub.sweep)
        return JSONResponse([describe(s) for s in listed()])

    async def api_one(request: Request) -> Response:
        s = find(request.path_params["name"])
        if s is None:
            return _error(404, f"no stream named {request.path_params['name']!r}")
        return JSONResponse(describe(s))

    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(listed, hub))

    async def healthz(request: Request) -> Response:
        # every configured stream live (or, serving every stream, every one there is): 200;
        # else 503. Counts only: it is served without credentials (a container's health check)
        states = {s.name: s.state for s in framebus.list_streams()}
        names = fixed if fixed is not None else [n for n, st in states.items()
                                                 if st not in _GONE_STATES]  # fmt: skip
        live = sum(states.get(n) == "live" for n in names)
        ok = live == len(names)
        return JSONResponse({"ok": ok, "live": live, "streams": len(names)},
                            status_code=200 if ok else 503)  # fmt: skip

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    static = StaticFiles(directory=str(importlib.resources.files(__package__) / "static"))
    routes = [
        Route("/", index),
        Route("/streams/{name}.mjpg", mjpeg),
        Route("/streams/{name}.jpg", snapshot),
        WebSocketRoute("/streams/{name}.h264", h264_endpoint(hub, lambda n: find(n) is not None)),
        Route("/api/streams", api_list),
        Route("/api/streams/{name}", api_one),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Mount("/static", static),
    ]
    inner = Starlette(routes=routes)
    inner.state.hub = hub
    if auth is None:
        return inner
    return BasicAuth(inner, *auth, open_paths=frozenset({"/healthz"}))


class _Collector:
    """Prometheus metrics, read when scraped (nothing is counted twice)."""

    def __init__(self, listed: Callable[[], list[StreamStats]], hub: EncoderHub) -> None:
        self._listed, self._hub = listed, hub

    def collect(self) -> Any:
        label, by_codec = ["stream"], ["stream", "codec"]
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "captured": CounterMetricFamily(
                "framebus_frames_captured", "Frames captured into the ring", labels=label
            ),
            "fps": GaugeMetricFamily("framebus_capture_fps", "Measured capture rate", labels=label),
            "readers": GaugeMetricFamily(
                "framebus_readers", "Readers attached to the stream", labels=label
            ),
            "age": GaugeMetricFamily(
                "framebus_frame_age_seconds", "Age of the newest frame", labels=label
            ),
            "reconnects": CounterMetricFamily(
                "framebus_reconnects", "Reconnects of the stream's source", labels=label
            ),
        }
        web: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "viewers": GaugeMetricFamily(
                "framebus_web_viewers", "Viewers and pending snapshots", labels=by_codec
            ),
            "encodes": CounterMetricFamily(
                "framebus_web_encodes", f"Frames encoded (JPEG: {encoder_name()})", labels=by_codec
            ),
            "encode_seconds": CounterMetricFamily(
                "framebus_web_encode_seconds", "Time spent encoding", labels=by_codec
            ),
            "bytes_sent": CounterMetricFamily(
                "framebus_web_sent_bytes", "Bytes of frames sent to viewers", labels=by_codec
            ),
            "skipped": GaugeMetricFamily(
                "framebus_web_skipped_frames", "Frames the current viewers skipped", labels=by_codec
            ),
            "behind": GaugeMetricFamily(
                "framebus_web_behind",
                "Times the current H.264 viewers fell behind and restarted at a keyframe",
                labels=by_codec,
            ),
        }
        for s in self._listed():
            values = {
                "captured": s.captured,
                "fps": s.capture_fps,
                "readers": s.readers,
                "age": s.last_frame_age if s.last_frame_age is not None else float("nan"),
                "reconnects": s.reconnects,
            }
            for key, fam in fams.items():
                fam.add_metric([s.name], values[key])
            for codec, stats in self._hub.stats(s.name).codecs.items():
                for key, fam in web.items():
                    fam.add_metric([s.name, codec], getattr(stats, key))
        yield from fams.values()
        yield from web.values()


def _asset(name: str) -> str:
    return (importlib.resources.files(__package__) / "static" / name).read_text("utf-8")
