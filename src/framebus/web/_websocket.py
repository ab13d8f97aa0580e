"""H.264 to a page over a WebSocket (``/streams/NAME.h264``): one binary message per access unit
(:mod:`._h264`), for WebCodecs' ``VideoDecoder``.

Buffering policy of an H.264 viewer (stated once, for every server):

* frames depend on each other, so a viewer gets every frame in order from a keyframe on; what
  waits for it is its :class:`~framebus.sinks.gop.GopSlot` (at most 0.5 s of frames); one that
  falls further behind drops everything it holds and restarts at the next keyframe (counted;
  the encoder, if framebus encodes, makes that keyframe come within a second);
* the next frame is sent only once the previous one left the server's buffer, fewer than
  16 KiB wait unsent in the kernel (whose send buffer is fitted to about two frames), and
  the viewer has read all but :data:`SLACK` bytes or what it reads in 33 ms, whichever is
  more (the MJPEG viewers' measure, :class:`~framebus.web._sockets.PeerWindow`; H.264 frames
  are small and all must go, so only a backlog holds them): while a slow viewer reads, its
  frames wait in its mailbox, where the bound above applies — never in a socket buffer
  nobody bounds;
* a send that does not complete within :data:`~framebus.web.WRITE_TIMEOUT` ends the viewer.

A slow viewer therefore never delays the others nor the encoder. Each frame is framed for the
WebSocket once (:func:`~._h264.websocket_frame`) and written as it is to every viewer's socket
on :class:`~framebus.web.WebServer` (through Starlette's ``send_bytes`` elsewhere).

What a page sends is untrusted: text messages of at most :data:`~._h264.MAX_CLIENT_MESSAGE`
bytes (more closes the connection: :class:`~framebus.web.WebServer` also caps what its
WebSocket protocol buffers), :data:`~._h264.KEY_REQUEST` restarts that viewer at the next
keyframe (the encoder honours such requests at most once a second per stream), anything else
is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

import framebus
from framebus import PublisherLost, SinkClosed, StreamEnded
from framebus.sinks import Encoded
from framebus.sinks.gop import GopSlot
from framebus.sinks.h264 import H264Sink
from framebus.sinks.jpeg import MAX_WIDTH, MIN_WIDTH
from framebus.sinks.passthrough import PassthroughSink

from . import _h264, _sockets
from ._hub import EncoderHub, TooManyVariants, Variant
from ._viewers import Deadline, Viewer

__all__ = ["CLOSE_ENDED", "CLOSE_NOT_FOUND", "CLOSE_TOO_MANY", "SLACK", "h264_endpoint"]

SLACK = 64 * 1024
"""Bytes a viewer may have unread before its next frame waits (see the module docstring)."""
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


class _Frames:
    """Each access unit's message, framed for the WebSocket once for every viewer: the last
    :data:`_KEEP` of them, by item (an item is the same object for every viewer of a sink)."""

    _KEEP = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: OrderedDict[int, tuple[Encoded[Any], bytes, bytes]] = OrderedDict()

    def get(self, item: Encoded[Any], passthrough: bool) -> tuple[bytes, bytes]:
        """(the message, the message as a WebSocket frame)."""
        key = id(item) * 2 + passthrough
        with self._lock:
            made = self._made.get(key)
            if made is not None and made[0] is item:
                return made[1], made[2]
        message = _h264.message(item.data, item.info, passthrough=passthrough)
        frame = _h264.websocket_frame(message)
        with self._lock:
            self._made[key] = (item, message, frame)  # the item kept: its id is not reused
            while len(self._made) > self._KEEP:
                self._made.popitem(last=False)
        return message, frame


_frames = _Frames()


class _Direct:
    """Writes whole WebSocket frames straight to the transport of one of our server's
    WebSocket connections (uvicorn's wsproto protocol writes its own frames, pings and the
    close, on the same event loop and whole: they never interleave with ours)."""

    def __init__(self, transport: Any, protocol: Any) -> None:
        self._transport, self._protocol = transport, protocol

    @classmethod
    def of(cls, transport: Any) -> _Direct | None:
        if transport is None or transport.is_closing():
            return None
        protocol = transport.get_protocol()
        writable = getattr(protocol, "writable", None)
        if not isinstance(writable, asyncio.Event) or not hasattr(protocol, "close_sent"):
            return None
        return cls(transport, protocol)

    async def write(self, frame: bytes) -> None:
        """Write ``frame`` once the previous one has left the transport's buffer."""
        await self._protocol.writable.wait()  # high-water 0: set again once drained
        if self._protocol.close_sent or self._transport.is_closing():
            raise ConnectionError("the WebSocket is closing")
        self._transport.write(frame)


async def _serve(websocket: WebSocket, hub: EncoderHub, name: str, viewer: Viewer) -> None:
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    transport = _sockets.lookup(websocket.client)
    sock = None if transport is None else transport.get_extra_info("socket")
    window = None if sock is None else _sockets.PeerWindow(sock, slack=SLACK)
    direct = _Direct.of(transport)
    listener = asyncio.ensure_future(_listen(websocket, viewer, gone))
    passthrough = isinstance(viewer.sink, PassthroughSink)
    fitted, average = 0, 0.0
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
            message, frame = _frames.get(item, passthrough)
            average = len(frame) if not average else average + 0.05 * (len(frame) - average)
            if sock is not None and not fitted * 0.75 <= 2 * average <= fitted * 1.5:
                fitted = int(2 * average)
                _sockets.fit(sock, fitted)  # the kernel's queue: about two frames
            if window is not None:
                window.last_frame = len(frame)
            async with Deadline(WRITE_TIMEOUT):
                if direct is not None:
                    await direct.write(frame)
                else:
                    await websocket.send_bytes(message)
            hub.note_sent(name, len(message), "h264")
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
