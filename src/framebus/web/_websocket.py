"""H.264 to a page over a WebSocket (``/streams/NAME.h264``): one binary message per access unit
(:mod:`._h264`), for WebCodecs' ``VideoDecoder``.

Buffering policy of an H.264 viewer (stated once, for every server):

* frames depend on each other, so a viewer gets every frame in order from a keyframe on; what
  waits for it is its :class:`~framebus.sinks.gop.GopSlot` (at most 0.5 s of frames); one that
  falls further behind drops everything it holds and restarts at the next keyframe (counted;
  the encoder, if framebus encodes, makes that keyframe come within a second);
* the next frame is sent only once the previous one left the server's buffer, fewer than
  16 KiB wait unsent in the kernel, and the viewer has read all but what it reads in 33 ms
  (the MJPEG viewers' measure, :class:`~framebus.web._sockets.PeerWindow`): while a slow
  viewer reads, its frames wait in its mailbox, where the bound above applies — never in a
  socket buffer nobody bounds;
* a send that does not complete within :data:`~framebus.web.WRITE_TIMEOUT` ends the viewer.

A slow viewer therefore never delays the others nor the encoder. What a page sends is
untrusted: text messages of at most :data:`~._h264.MAX_CLIENT_MESSAGE` bytes (more closes the
connection: :class:`~framebus.web.WebServer` also caps what its WebSocket protocol buffers),
:data:`~._h264.KEY_REQUEST` restarts that viewer at the next keyframe (the encoder honours such
requests at most once a second per stream), anything else is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

import framebus
from framebus import PublisherLost, SinkClosed, StreamEnded
from framebus.sinks.gop import GopSlot
from framebus.sinks.h264 import H264Sink
from framebus.sinks.jpeg import MAX_WIDTH, MIN_WIDTH
from framebus.sinks.passthrough import PassthroughSink

from . import _h264, _sockets
from ._hub import EncoderHub, TooManyVariants, Variant
from ._viewers import Deadline, Viewer

__all__ = ["CLOSE_ENDED", "CLOSE_NOT_FOUND", "CLOSE_TOO_MANY", "h264_endpoint"]

WRITE_TIMEOUT = 10.0
_IDLE_WAIT = 1.0
CLOSE_ENDED = 4000
"""Close code: the stream ended (or its publisher died); the page may come back later."""
CLOSE_NOT_FOUND = 4404
"""Close code: no such stream, or a bad query."""
CLOSE_TOO_MANY = 4503
"""Close code: the stream has its maximum of encoders, each with viewers."""


def _width(websocket: WebSocket) -> int | None:
    text = websocket.query_params.get("width")
    if text is None:
        return None
    try:
        width = int(text)
    except ValueError:
        raise ValueError("width must be a whole number") from None
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"width must be {MIN_WIDTH}..{MAX_WIDTH}")
    return width


def h264_endpoint(hub: EncoderHub, exists: Callable[[str], bool]) -> Any:
    """The WebSocket endpoint of ``/streams/{name}.h264`` for the streams ``exists`` knows."""

    async def endpoint(websocket: WebSocket) -> None:
        name = websocket.path_params["name"]
        try:
            width = _width(websocket)
        except ValueError as exc:
            await websocket.close(CLOSE_NOT_FOUND, str(exc))
            return
        if not exists(name):
            await websocket.close(CLOSE_NOT_FOUND, f"no stream named {name!r}")
            return
        try:
            viewer = Viewer(hub, name, Variant(width, codec="h264"))
        except TooManyVariants as exc:
            await websocket.close(CLOSE_TOO_MANY, str(exc)[:120])
            return
        except framebus.FramebusError as exc:  # gone since it was listed
            await websocket.close(CLOSE_NOT_FOUND, str(exc)[:120])
            return
        try:
            await websocket.accept()
            await _serve(websocket, hub, name, viewer)
        finally:
            viewer.close()

    return endpoint


async def _serve(websocket: WebSocket, hub: EncoderHub, name: str, viewer: Viewer) -> None:
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    transport = _sockets.lookup(websocket.client)
    sock = None if transport is None else transport.get_extra_info("socket")
    window = None if sock is None else _sockets.PeerWindow(sock)
    listener = asyncio.ensure_future(_listen(websocket, viewer, gone))
    passthrough = isinstance(viewer.sink, PassthroughSink)
    try:
        while not gone.done():
            async with Deadline(WRITE_TIMEOUT):
                if sock is not None and window is not None:
                    await _sockets.wait_unsent(sock, gone)
                    await window.wait_read(gone)
            try:
                item = await viewer.next(_IDLE_WAIT)
            except (StreamEnded, PublisherLost, SinkClosed):
                if not gone.done():
                    with contextlib.suppress(Exception):
                        await websocket.close(CLOSE_ENDED, "the stream ended")
                return
            if item is None:
                continue
            data = _h264.message(item.data, item.info, passthrough=passthrough)
            if window is not None:
                window.last_frame = len(data)
            async with Deadline(WRITE_TIMEOUT):
                await websocket.send_bytes(data)
            hub.note_sent(name, len(data), "h264")
    except (TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
        # a viewer that took nothing for WRITE_TIMEOUT, or gone (uvicorn raises on a send
        # after a disconnect): dropped without a traceback in the server's log
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0)
    finally:
        listener.cancel()


async def _listen(websocket: WebSocket, viewer: Viewer, gone: asyncio.Future[None]) -> None:
    """Read what the page sends until it goes; resolve ``gone`` then."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            size = len(text or "") + len(message.get("bytes") or b"")
            if size > _h264.MAX_CLIENT_MESSAGE:
                return  # more than any message of ours: a misbehaving page, closed
            if text == _h264.KEY_REQUEST:
                slot, sink = viewer.sub.mailbox, viewer.sink
                if isinstance(slot, GopSlot):
                    slot.skip_to_key()
                if isinstance(sink, H264Sink):  # a camera's own keyframes come when they come
                    sink.request_key()
    except Exception:  # the connection failed under us: the sender sees it too
        return
    finally:
        if not gone.done():
            gone.set_result(None)
