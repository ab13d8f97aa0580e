"""H.264 to a page over a WebSocket (``/streams/NAME.h264``): one binary message per access unit
(:mod:`._h264`), for WebCodecs' ``VideoDecoder``, or with ``?format=fmp4`` as fragmented MP4
for Media Source Extensions.

Buffering policy of an H.264 viewer (stated once, for every server):

* frames depend on each other, so a viewer gets every frame in order from a keyframe on; what
  waits for it is its :class:`~framebus.sinks.gop.GopSlot` (at most 0.5 s of frames); one that
  falls further behind drops everything it holds and restarts at the next keyframe (counted;
  the encoder, if framebus encodes, makes that keyframe come within a second);
* the next frame is sent only once the previous one left the server's buffer, fewer than
  16 KiB wait unsent in the kernel, and the viewer has read all but :data:`SLACK` bytes (or
  twice the last keyframe's), or what it reads in 33 ms, whichever is more (the MJPEG
  viewers' measure, :class:`~framebus.web._sockets.PeerWindow`; H.264 frames are small and all
  must go, so only a backlog holds them): while a slow viewer reads, its frames wait in its
  mailbox, where the bound above applies — never in a socket buffer nobody bounds;
* a viewer that keeps falling behind (a link slower than the stream) is moved to the stream
  encoded at half the width (:class:`_Watching`): all of a smaller stream rather than the
  keyframes of a large one;
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
import time
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

__all__ = ["CLOSE_ENDED", "CLOSE_NOT_FOUND", "CLOSE_POLICY", "CLOSE_TOO_MANY", "MIN_STEP_WIDTH",
           "SLACK", "STEP_DOWN_AFTER", "STEP_DOWN_WINDOW", "h264_endpoint",
           "same_origin"]  # fmt: skip

STEP_DOWN_AFTER = 2
"""Times a viewer may fall behind within :data:`STEP_DOWN_WINDOW` s before it steps down."""
STEP_DOWN_WINDOW = 10.0
MIN_STEP_WIDTH = 320
SLACK = 16 * 1024
SEND_BUFFER = 256 * 1024
"""Bytes a viewer may have unread before its next frame waits (see the module docstring)."""
WRITE_TIMEOUT = 10.0
_IDLE_WAIT = 1.0
CLOSE_ENDED = 4000
"""Close code: the stream ended (or its publisher died); the page may come back later."""
CLOSE_NOT_FOUND = 4404
"""Close code: no such stream, or a bad query."""
CLOSE_TOO_MANY = 4503
"""Close code: the stream has its maximum of encoders, each with viewers."""
CLOSE_POLICY = 1008
"""Close code (before the handshake completes: a 403): a page of another site asked."""


def same_origin(websocket: WebSocket) -> bool:
    """Whether the handshake comes from a page of this server, or from no page at all.

    Browsers apply no same-origin rule to WebSockets: any site a user visits could open
    ``ws://127.0.0.1:8080/streams/cam.h264`` and read the video (with the user's cached Basic
    credentials, even). A browser always sends ``Origin``; its host must be the ``Host`` the
    page asked (a proxy in front must pass ``Host`` on). Clients that are not browsers send
    none: they are not a page of another site. (A site that points its own name at this
    machine after its page loaded passes this check: :class:`~framebus.web.WebServer` bound to
    loopback answers only requests for ``localhost``; elsewhere, use ``--auth``.)"""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and rest.rstrip("/").lower() == host.lower()


def _fmp4(websocket: WebSocket) -> bool:
    """Whether the page asks for fragmented MP4 (``?format=fmp4``, for MSE) rather than
    Annex-B access units (``annexb``, the default, for WebCodecs)."""
    kind = websocket.query_params.get("format", "annexb")
    if kind not in ("annexb", "fmp4"):
        raise ValueError("format must be annexb or fmp4")
    return kind == "fmp4"


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
        if not same_origin(websocket):
            await websocket.close(CLOSE_POLICY)  # before accepting: the handshake gets a 403
            return
        name = websocket.path_params["name"]
        await websocket.accept()  # the close codes below reach the page only after this
        try:
            width, fmp4 = _width(websocket), _fmp4(websocket)
        except ValueError as exc:
            await websocket.close(CLOSE_NOT_FOUND, str(exc))
            return
        if not exists(name):
            await websocket.close(CLOSE_NOT_FOUND, f"no stream named {name!r}")
            return
        try:
            watching = _Watching(hub, name, Viewer(hub, name, Variant(width, codec="h264")))
        except TooManyVariants as exc:
            await websocket.close(CLOSE_TOO_MANY, str(exc)[:120])
            return
        except framebus.FramebusError as exc:  # gone since it was listed
            await websocket.close(CLOSE_NOT_FOUND, str(exc)[:120])
            return
        try:
            await _serve(websocket, hub, name, watching, fmp4)
        finally:
            watching.viewer.close()

    return endpoint


class _Frames:
    """Each access unit's message framed for the WebSocket once for every viewer, by item (an
    item is the same object for every viewer of a sink): the newest ones, at most
    :data:`_KEEP` of them and :data:`_KEEP_BYTES` bytes (viewers of one frame take it within
    moments of each other: a miss only costs making it again)."""

    _KEEP = 256
    _KEEP_BYTES = 32 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: OrderedDict[int, tuple[Encoded[Any], bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, item: Encoded[Any], passthrough: bool, fmp4: bool) -> bytes:
        """The message of ``item`` (fragmented MP4 for ``fmp4``) as a WebSocket frame."""
        key = id(item) * 4 + passthrough * 2 + fmp4
        with self._lock:
            made = self._made.get(key)
            if made is not None and made[0] is item:
                return made[1]
        make = _h264.mse_message if fmp4 else _h264.message
        message = make(item.data, item.info, passthrough=passthrough)
        frame = _h264.websocket_frame(message) if message else b""
        with self._lock:
            old = self._made.pop(key, None)
            self._bytes -= len(old[1]) if old is not None else 0
            self._made[key] = (item, frame)  # the item kept: its id is not reused meanwhile
            self._bytes += len(frame)
            while len(self._made) > self._KEEP or self._bytes > self._KEEP_BYTES:
                _, (_, dropped) = self._made.popitem(last=False)
                self._bytes -= len(dropped)
        return frame


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

    def ready(self) -> bool:
        """The previous frame has left the transport's buffer (high-water 0: the protocol's
        ``writable`` is set again once it drained)."""
        return bool(self._protocol.writable.is_set())

    async def write(self, frame: bytes) -> None:
        """Write ``frame`` once the previous one has left the transport's buffer."""
        await self._protocol.writable.wait()
        self.write_now(frame)

    def write_now(self, frame: bytes) -> None:
        if self._protocol.close_sent or self._transport.is_closing():
            raise ConnectionError("the WebSocket is closing")
        self._transport.write(frame)


class _Watching:
    """What one WebSocket watches now: a viewer of the stream as H.264, passed through or
    encoded at some width. A viewer that fell behind :data:`STEP_DOWN_AFTER` times within
    :data:`STEP_DOWN_WINDOW` seconds is moved to the stream encoded at half the width (at
    least :data:`MIN_STEP_WIDTH`), once per halving: a link slower than the stream then gets
    all of a smaller stream instead of the keyframes of a large one. (It stays there: a link
    that is fast again shows no sign of it until it is asked more.)"""

    def __init__(self, hub: EncoderHub, name: str, viewer: Viewer) -> None:
        self.hub, self.name, self.viewer = hub, name, viewer
        self.steps = 0
        self._behind = 0
        self._times: list[float] = []

    def fell_behind(self, width: int) -> bool:
        """Look at the viewer after a keyframe (a viewer behind restarts at one); step down
        if it fell behind too often. True if it now watches a smaller stream."""
        behind = self.viewer.sub.stats().behind
        if behind == self._behind:
            return False
        self._behind = behind
        now = time.monotonic()
        self._times = [t for t in self._times if now - t < STEP_DOWN_WINDOW] + [now]
        smaller = max(MIN_STEP_WIDTH, width // 2)
        if len(self._times) < STEP_DOWN_AFTER or not width or smaller >= width:
            return False
        try:
            viewer = Viewer(self.hub, self.name, Variant(smaller, codec="h264"))
        except framebus.FramebusError:  # TooManyVariants, or the stream ended: stay
            return False
        self.viewer.close()
        self.viewer, self._behind, self._times = viewer, 0, []
        self.steps += 1
        return True


async def _serve(
    websocket: WebSocket, hub: EncoderHub, name: str, watching: _Watching, fmp4: bool
) -> None:
    viewer = watching.viewer
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    transport = _sockets.lookup(websocket.client)
    sock = None if transport is None else transport.get_extra_info("socket")
    window = None if sock is None else _sockets.PeerWindow(sock, slack=SLACK)
    direct = _Direct.of(transport)
    listener = asyncio.ensure_future(_listen(websocket, watching, gone))
    passthrough = isinstance(viewer.sink, PassthroughSink)
    slack_until = 0.0
    if sock is not None:
        # every frame must go, so the send buffer is not fitted to a frame or two as for MJPEG
        # (unacknowledged bytes would cap the rate at buffer / round trip): what waits unsent is
        # bounded by TCP_NOTSENT_LOWAT and the waits below, what is in flight by TCP itself
        _sockets.fit(sock, SEND_BUFFER)
    try:
        while not gone.done():
            # (a viewer that keeps up does not wait: no timer is armed for it)
            if (
                sock is not None
                and window is not None
                and not (_sockets.unsent_low(sock) and window.ready())
            ):
                async with Deadline(WRITE_TIMEOUT):
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
            if item.data.key and watching.fell_behind(item.data.width):
                viewer = watching.viewer  # a smaller stream, from its next keyframe
                passthrough = False
                continue
            frame = _frames.get(item, passthrough, fmp4)
            if not frame:
                continue  # (an access unit with no picture, in fragmented MP4)
            if window is not None:
                window.last_frame = len(frame)
                # the frames after a keyframe must not wait for it to be read: for a second,
                # the slack is twice the keyframe (a 4K one would hide seconds at a slow viewer)
                if item.data.key:
                    window.slack, slack_until = max(SLACK, 2 * len(frame)), time.monotonic() + 1
                elif window.slack > SLACK and time.monotonic() > slack_until:
                    window.slack = SLACK
            if direct is not None and direct.ready():
                direct.write_now(frame)
            else:
                async with Deadline(WRITE_TIMEOUT):
                    if direct is not None:
                        await direct.write(frame)
                    else:  # another ASGI server: through Starlette (the message unframed)
                        await websocket.send_bytes(bytes(_h264.unframe(frame)))
            hub.note_sent(name, len(frame), "h264")
    except (TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
        # a viewer that took nothing for WRITE_TIMEOUT, or gone (uvicorn raises on a send
        # after a disconnect): dropped without a traceback in the server's log
        if transport is not None:
            transport.abort()
            await asyncio.sleep(0)
    finally:
        listener.cancel()


async def _listen(websocket: WebSocket, watching: _Watching, gone: asyncio.Future[None]) -> None:
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
                slot, sink = watching.viewer.sub.mailbox, watching.viewer.sink
                if isinstance(slot, GopSlot):
                    slot.skip_to_key()
                if isinstance(sink, H264Sink):  # a camera's own keyframes come when they come
                    sink.request_key()
    except Exception:  # the connection failed under us: the sender sees it too
        return
    finally:
        if not gone.done():
            gone.set_result(None)
