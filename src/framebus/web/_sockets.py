"""Per-connection socket limits for viewers: the kernel's send buffer is a queue too.

Linux autotunes a socket's send buffer to megabytes: dozens of 720p JPEGs, seconds of delay for
a slow viewer. A viewer's socket is capped when it connects (:func:`cap`) and, once the size of
its frames is known, fitted to about one frame (:func:`fit`: the kernel doubles the value for
its own bookkeeping). The next frame is chosen only once fewer than :data:`NOTSENT_LOWAT` bytes
wait unsent in the kernel (:func:`wait_unsent`; ``TCP_NOTSENT_LOWAT`` makes "writable" mean
exactly that), so that "send the newest frame when the viewer is ready" holds: what is ahead of
a new frame is that remainder, the bytes in flight and whatever the viewer's own receive buffer
holds (which no server can see).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
from typing import Any

__all__ = ["MIN_SEND_BUFFER", "NOTSENT_LOWAT", "SEND_BUFFER", "USER_TIMEOUT_MS", "cap", "fit",
           "forget", "lookup", "register", "unsent_low", "wait_unsent"]  # fmt: skip

SEND_BUFFER = 64 * 1024  # until the frame size is known
MIN_SEND_BUFFER = 16 * 1024
NOTSENT_LOWAT = 16 * 1024  # writable again only when little is left unsent
USER_TIMEOUT_MS = 10_000  # unacknowledged data for this long: the viewer is gone (no FIN)

_lock = threading.Lock()
_by_peer: dict[tuple[Any, ...], Any] = {}  # the transports of our server's connections


def _set(sock: Any, level: int, opt: int | None, value: int) -> None:
    if opt is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(level, opt, value)


def cap(sock: Any) -> None:
    """Apply the limits to a connected TCP socket (options a platform lacks are skipped)."""
    _set(sock, socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    _set(sock, socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", None), NOTSENT_LOWAT)
    _set(sock, socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), USER_TIMEOUT_MS)


def fit(sock: Any, frame_bytes: int) -> None:
    """Size the send buffer to about one frame of ``frame_bytes``."""
    _set(sock, socket.SOL_SOCKET, socket.SO_SNDBUF, max(MIN_SEND_BUFFER, frame_bytes))


def unsent_low(sock: Any, timeout: float = 0.0) -> bool:
    """True when the kernel takes more data at once: with ``TCP_NOTSENT_LOWAT`` set by
    :func:`cap`, fewer than :data:`NOTSENT_LOWAT` bytes wait unsent (or the connection failed,
    which the next write reports). Waits up to ``timeout`` seconds (blocking) for it."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(int(timeout * 1000)))


async def wait_unsent(sock: Any) -> None:
    """Wait, without blocking the event loop, until :func:`unsent_low` holds."""
    if unsent_low(sock):
        return
    loop = asyncio.get_running_loop()
    # the loop refuses a second watcher on a transport's fd: watch a duplicate of it (the same
    # socket, so the same readiness)
    fd = os.dup(sock.fileno())
    ready: asyncio.Future[None] = loop.create_future()

    def writable() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        loop.add_writer(fd, writable)
        await ready
    finally:
        loop.remove_writer(fd)
        os.close(fd)


def register(peer: tuple[Any, ...] | None, transport: Any) -> None:
    if peer is not None:
        with _lock:
            _by_peer[tuple(peer)] = transport


def forget(peer: tuple[Any, ...] | None) -> None:
    if peer is not None:
        with _lock:
            _by_peer.pop(tuple(peer), None)


def lookup(peer: Any) -> Any:
    """The transport of the connection from ``peer`` (an ASGI scope's ``client``), if it is
    one of :class:`framebus.web.WebServer`'s; None otherwise."""
    if peer is None:
        return None
    with _lock:
        return _by_peer.get(tuple(peer))
