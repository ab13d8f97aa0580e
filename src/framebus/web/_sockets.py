"""Per-connection socket limits for viewers: the kernel's send buffer is a queue too.

Linux autotunes a socket's send buffer to megabytes: dozens of 720p JPEGs, seconds of delay for
a slow viewer. A viewer's socket is capped when it connects (:func:`cap`) and, once the size of
its frames is known, fitted to about one frame (:func:`fit`: the kernel doubles the value for
its own bookkeeping), so that "send the newest frame when the viewer is ready" holds: at most
the frame in flight and about one more wait in the kernel.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

__all__ = ["MIN_SEND_BUFFER", "NOTSENT_LOWAT", "SEND_BUFFER", "USER_TIMEOUT_MS", "cap", "fit",
           "forget", "lookup", "register"]  # fmt: skip

SEND_BUFFER = 64 * 1024  # until the frame size is known
MIN_SEND_BUFFER = 16 * 1024
NOTSENT_LOWAT = 16 * 1024  # writable again only when little is left unsent
USER_TIMEOUT_MS = 10_000  # unacknowledged data for this long: the viewer is gone (no FIN)

_lock = threading.Lock()
_by_peer: dict[tuple[Any, ...], Any] = {}  # the sockets of our server's connections


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


def register(peer: tuple[Any, ...] | None, sock: Any) -> None:
    if peer is not None:
        with _lock:
            _by_peer[tuple(peer)] = sock


def forget(peer: tuple[Any, ...] | None) -> None:
    if peer is not None:
        with _lock:
            _by_peer.pop(tuple(peer), None)


def lookup(peer: Any) -> Any:
    """The socket of the connection from ``peer`` (an ASGI scope's ``client``), if it is one
    of :class:`framebus.web.WebServer`'s; None otherwise."""
    if peer is None:
        return None
    with _lock:
        return _by_peer.get(tuple(peer))
