"""Running the app: uvicorn on a socket of ours, each viewer's connection capped.

Where the queues are, per viewer: one encoded frame in its slot; in uvicorn's transport, what
is left of the frame being written (its high-water mark is set to 0, so ``send()`` waits until
the previous write left it entirely); in the kernel, about one frame (``SO_SNDBUF`` fitted to
the frame size, see :mod:`._sockets`). A viewer whose data stays unacknowledged for 10 s is cut
off by the kernel (``TCP_USER_TIMEOUT``).

Connections: at most ``max_connections`` open at once (default 1000, and never more than
half the process's descriptor limit), a quarter of them (at least 16) per client address; at
the cap a new connection takes the place of one with no request in progress for
:data:`EVICT_IDLE` seconds, else it is closed at once, counted and logged. A
connection must deliver a complete request head within :data:`HEAD_TIMEOUT` seconds of
opening, or of its previous response (a silent or dribbling client is closed): uvicorn alone
waits for ever for a first request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from framebus._hosts import host_port, is_loopback
from framebus.errors import FramebusError
from framebus.limits import (
    DEFAULT_MAX_CONNECTIONS,
    connection_budget,
    per_address_connections,
)

from . import _h264, _sockets
from ._hub import EncoderHub

__all__ = ["DEFAULT_BIND", "EVICT_IDLE", "HEAD_TIMEOUT", "LoopbackHosts", "WebServer",
           "parse_bind", "read_auth"]  # fmt: skip

log = logging.getLogger("framebus.web")

DEFAULT_BIND = ("127.0.0.1", 8080)
HEAD_TIMEOUT = 10.0
"""Seconds a connection gets to send a whole request head."""
EVICT_IDLE = 1.0
"""Seconds without a request in progress after which a connection may lose its place to a
new one when ``max_connections`` are open."""
_LOG_EVERY = 10.0
_BACKLOG = 64
_SHUTDOWN_GRACE = 0.3  # seconds a response may still take when the server stops (uvicorn: 1 s)


class _Capped:
    """What the connection limits know of a connection, HTTP or WebSocket."""

    _address = ""
    _idle_since = 0.0  # when it last had no request in progress

    def _idle(self) -> bool:
        return False


class _CappedWS(_Capped, WSProtocol):
    """uvicorn's WebSocket protocol (wsproto) for a connection upgraded from a
    :class:`_CappedH11` one: counted against the same limits, never idle (it streams), and its
    socket forgotten when it closes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        self._peer = peer
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        _sockets.forget(self._peer)
        super().connection_lost(exc)


class _CappedH11(_Capped, H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the viewer limits applied to each connection."""

    max_connections = DEFAULT_MAX_CONNECTIONS
    refused = 0  # connections closed at once because max_connections were open
    _logged_at = -_LOG_EVERY
    _head_timer: asyncio.TimerHandle | None = None
    _refused_this = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        self._idle_since = time.monotonic()
        if not self._room(transport):
            self._refuse(transport)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _sockets.cap(sock)
            _sockets.register(transport.get_extra_info("peername"), transport)
        # send() waits until the previous write left this buffer entirely (asyncio's default
        # lets 64 KiB pile up first): the app then picks the newest frame, not a stale one
        transport.set_write_buffer_limits(high=0)
        super().connection_made(transport)
        self._arm_head_timer()

    def _room(self, transport: asyncio.Transport) -> bool:
        """Whether this connection may stay: its address holds less than a quarter of the
        connections (at least 16), and there is room, or one idle for EVICT_IDLE seconds
        (no request in progress) gives up its place: a host that opens connections and says
        nothing cannot keep a viewer of another host out."""
        others = [c for c in self.server_state.connections if isinstance(c, _Capped)]
        share = per_address_connections(self.max_connections)
        if self._address and sum(c._address == self._address for c in others) >= share:
            return False
        if len(self.server_state.connections) < self.max_connections:
            return True
        now = time.monotonic()
        idle = [c for c in others if c._idle() and now - c._idle_since >= EVICT_IDLE]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._idle_since)
        oldest.transport.abort()  # uvicorn forgets it when asyncio reports it lost
        self.server_state.connections.discard(oldest)  # its place is taken now
        return True

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """The connection becomes a WebSocket: it has its request, and the head timer must not
        close it."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().handle_websocket_upgrade(event)

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused_this = True
        transport.abort()
        cls = type(self)
        cls.refused += 1
        now = time.monotonic()
        if now - cls._logged_at >= _LOG_EVERY:
            cls._logged_at = now
            log.warning(
                "framebus web: %d connection(s) refused so far: %d open, the maximum "
                "(--max-connections)",
                cls.refused,
                self.max_connections,
            )

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_timeout)

    def _head_timeout(self) -> None:
        """No request in progress HEAD_TIMEOUT s after the connection opened or the last
        response ended: a silent or dribbling client, closed."""
        self._head_timer = None
        if self._idle():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = time.monotonic()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused_this:
            return  # never served: nothing of uvicorn's to undo
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.transport is not None:
            _sockets.forget(self.transport.get_extra_info("peername"))
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server stops: an MJPEG response never completes by itself, so a connection
        still busy after :data:`_SHUTDOWN_GRACE` is cut (its app then sees a disconnect and
        returns) before uvicorn's graceful timeout would cancel the task with a traceback."""
        super().shutdown()
        self.loop.call_later(_SHUTDOWN_GRACE, self._cut_if_busy)

    def _cut_if_busy(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.abort()


def parse_bind(text: str) -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT``; ValueError with a one-line reason."""
    return host_port(text, default_host=DEFAULT_BIND[0])


def read_auth(source: str) -> tuple[str, str]:
    """``user:password`` from a file, or from an environment variable with ``env:NAME``
    (never from argv, which every user of the machine can read)."""
    if source.startswith("env:"):
        value = os.environ.get(source[4:])
        if value is None:
            raise FramebusError(f"--auth: the environment variable {source[4:]} is not set")
    else:
        try:
            with open(source, encoding="utf-8") as f:
                value = f.read(4096).strip()
        except OSError as exc:
            raise FramebusError(f"--auth: cannot read {source}: {exc.strerror}") from None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise FramebusError("--auth: expected user:password")
    return user, password


class LoopbackHosts:
    """Only requests whose ``Host`` names this machine (``localhost``, a loopback address),
    for a server bound to loopback: DNS rebinding (a site whose name an attacker points at
    127.0.0.1 once its page is loaded) would otherwise let any web page read the streams,
    since to the browser the requests are then the page's own. Others get 421 (a WebSocket:
    a refused handshake)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self._ours(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = b'{"error": "this server answers requests for localhost only"}'
            await send({"type": "http.response.start", "status": 421,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await self.inner(scope, receive, send)

    @staticmethod
    def _ours(scope: Any) -> bool:
        host = b""
        for key, value in scope.get("headers") or []:
            if key.lower() == b"host":
                host = value
                break
        text = host.decode("latin-1").strip().lower()
        if not text:
            return True  # no Host (HTTP/1.0): not a browser's request, which always names one
        if text.startswith("["):
            name = text[1:].partition("]")[0]
        else:
            name = text.rpartition(":")[0] if text.count(":") == 1 else text
        return is_loopback(name)


class WebServer:
    """uvicorn serving ``asgi_app`` on ``host:port`` (port 0: any free one), in a thread of
    its own (:meth:`start`/:meth:`stop`) or in the calling thread (:meth:`run`). Bound to
    loopback, it answers requests for ``localhost`` and loopback addresses only
    (:class:`LoopbackHosts`)."""

    def __init__(
        self,
        asgi_app: Any,
        host: str = DEFAULT_BIND[0],
        port: int = 8080,
        *,
        hub: EncoderHub | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.hub = hub  # the encoders of asgi_app, if this server owns them: closed at the end
        self.max_connections = connection_budget(max_connections)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(addr)
            self.sock.listen(_BACKLOG)
        except OSError as exc:
            self.sock.close()
            raise FramebusError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.host, self.port = host, self.sock.getsockname()[1]
        if is_loopback(host):
            asgi_app = LoopbackHosts(asgi_app)
        protocol = type("CappedH11", (_CappedH11,), {"max_connections": self.max_connections})
        self._protocol: type[_CappedH11] = protocol
        config = uvicorn.Config(
            asgi_app,
            http=protocol,
            ws=_CappedWS,
            # what a page may send: short text messages (the H.264 player's requests); no
            # compression of video that is compressed already
            ws_max_size=_h264.MAX_CLIENT_MESSAGE,
            ws_per_message_deflate=False,
            loop="asyncio",  # the viewers' waits watch sockets with the selector loop's add_writer
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            # also how many connections asyncio accepts per wake-up: with a cap, that many
            # may hold a descriptor for a moment before they are refused
            backlog=_BACKLOG,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def refused(self) -> int:
        """Connections closed at once because ``max_connections`` were open."""
        return self._protocol.refused

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/"

    def run(self, asked_to_stop: threading.Event | None = None) -> None:
        """Serve until Ctrl-C/SIGTERM (uvicorn handles them in the main thread).
        ``asked_to_stop``: set by a Ctrl-C that came before uvicorn took the signals (its
        KeyboardInterrupt could land in a weakref callback and be lost): then stop at once.
        The signal handlers are as before when it returns; a Ctrl-C that stopped it is a
        KeyboardInterrupt then."""
        server = self.server
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        asked: list[int] = []
        if asked_to_stop is not None:

            def early(signum: int, frame: object) -> None:
                asked.append(signum)
                server.should_exit = True

            for sig in before:
                signal.signal(sig, early)  # until uvicorn installs its own (and after)
            if asked_to_stop.is_set():
                asked.append(signal.SIGINT)
                server.should_exit = True
        try:
            server.run(sockets=[self.sock])
        finally:
            self._release()
            if asked_to_stop is not None:
                for sig, handler in before.items():
                    signal.signal(sig, handler)
        if signal.SIGINT in asked:
            raise KeyboardInterrupt

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="framebus-web",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise FramebusError(f"the web server did not start on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.hub is not None:
            self.hub.close()  # viewers' responses end now, so uvicorn need not wait for them
        if self._thread is not None:
            self._thread.join(10)
        self._release()

    def _release(self) -> None:
        if self.hub is not None:
            self.hub.close()
        self.sock.close()
