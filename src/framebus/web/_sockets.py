"""Per-connection socket limits for viewers: the kernel's send buffer is a queue too.

Linux autotunes a socket's send buffer to megabytes: dozens of 720p JPEGs, seconds of delay for
a slow viewer. A viewer's socket is capped when it connects (:func:`cap`) and, once the size of
its frames is known, fitted to about one frame (:func:`fit`: the kernel doubles the value for
its own bookkeeping). The next frame is chosen only once fewer than :data:`NOTSENT_LOWAT` bytes
wait unsent in the kernel (:func:`wait_unsent`; ``TCP_NOTSENT_LOWAT`` makes "writable" mean
exactly that) and the viewer's own receive buffer has been read down (:class:`PeerWindow`:
the window the viewer advertises, from ``TCP_INFO``), so that "send the newest frame when the
viewer is ready" holds: what is ahead of a new frame is that remainder and the bytes in flight.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import math
import os
import select
import socket
import struct
import termios
import threading
import time
from typing import Any

__all__ = ["MIN_SEND_BUFFER", "NOTSENT_LOWAT", "SEND_BUFFER", "USER_TIMEOUT_MS", "BodyWriter",
           "cap", "fit", "forget", "lookup", "register", "unsent_low", "wait_unsent",
           "PeerWindow"]  # fmt: skip

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
    fd = sock.fileno()
    if fd < 0:
        return True  # closed under us (an aborted connection): nothing to wait for
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(int(timeout * 1000)))


async def wait_unsent(sock: Any, gone: asyncio.Future[None]) -> None:
    """Wait, without blocking the event loop, until :func:`unsent_low` holds or the viewer
    is ``gone`` (a future its disconnect resolves)."""
    if gone.done() or unsent_low(sock):
        return
    loop = asyncio.get_running_loop()
    # the loop refuses a second watcher on a transport's fd: watch a duplicate of it (the same
    # socket, so the same readiness; the duplicate also keeps an aborted socket open, hence
    # the wait for ``gone`` too)
    fd = os.dup(sock.fileno())
    ready: asyncio.Future[None] = loop.create_future()

    def writable() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        loop.add_writer(fd, writable)
        await asyncio.wait((ready, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_writer(fd)
        os.close(fd)
        ready.cancel()


# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, and tcpi_snd_wnd, the receive window the
# peer advertises (Linux 6.2+)
_TCPI_BYTES_ACKED = 120
_TCPI_SND_WND = 228
_POLL = 0.005  # how often a viewer still reading its backlog is looked at again
AHEAD_SECONDS = 0.033  # at most what a viewer reads in this time is ahead of its next frame
_RATE_SPAN = (0.25, 1.0)  # a viewer's read rate is measured over the last 0.25..1 s
_WINDOW_SPAN = 2.0  # seconds a window the viewer advertised counts as its empty-buffer size
_MAX_WAIT = 0.5  # seconds a frame may be held back for a viewer still reading (see _patience)
_WINDOW_NOISE = 8192  # bytes by which the unread estimate may stay off (window rounding)


class PeerWindow:
    """What is ahead of a viewer's next frame, from the kernel's view of its connection.

    Bytes not yet read by the viewer = not yet acknowledged (unsent or in flight, ``SIOCOUTQ``)
    + received but unread (how far the receive window it advertises has closed from the
    largest seen). A slow viewer's own receive buffer is a queue in front of every new frame
    that no send-buffer setting reaches: the next frame is chosen only once what is ahead is
    at most what the viewer reads in :data:`AHEAD_SECONDS` (its read rate measured over the
    last second), so a fast viewer never waits and a slow one gets the frame that is newest
    when it can take it. Where ``TCP_INFO`` lacks these fields (other kernels), nothing waits.
    """

    def __init__(self, sock: Any, *, slack: int = 0) -> None:
        self._sock = sock
        self.slack = slack
        """Bytes that may always be ahead (an H.264 viewer: its frames are small and must all
        go, so only a backlog beyond this holds them; the window's noise stays below it)."""
        self.last_frame = 0
        """Bytes of the last frame written (the caller sets it): past its patience, a frame
        waits while more than half of that is still ahead (see :meth:`may_go`)."""
        # the largest window of the last _WINDOW_SPAN seconds, as a queue of decreasing
        # windows: a window the kernel no longer offers (memory pressure, a buffer resized)
        # ages out instead of making a viewer look behind for ever
        self._windows: collections.deque[tuple[float, int]] = collections.deque()
        self._reads: collections.deque[tuple[float, int]] = collections.deque()

    def _largest(self, now: float, window: int) -> int:
        windows = self._windows
        while windows and windows[-1][1] <= window:
            windows.pop()
        windows.append((now, window))
        while now - windows[0][0] > _WINDOW_SPAN:
            windows.popleft()
        return windows[0][1]

    def ahead(self) -> tuple[int, float]:
        """(bytes the viewer has not read yet, its read rate in bytes/s, inf if not known)."""
        try:
            info = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_SND_WND + 4)
            queued = fcntl.ioctl(self._sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (OSError, ValueError, AttributeError):  # closed under us: nothing to wait for
            return 0, math.inf
        if len(info) < _TCPI_SND_WND + 4:
            return 0, math.inf
        window: int = struct.unpack_from("=I", info, _TCPI_SND_WND)[0]
        acked: int = struct.unpack_from("=Q", info, _TCPI_BYTES_ACKED)[0]
        now = time.monotonic()
        unread = self._largest(now, window) - window
        reads = self._reads
        reads.append((now, acked - unread))
        # the last sample older than the span stays: a viewer looked at once a second (it
        # reads in bursts) still has a rate, not an unknown one that would let any frame go
        while len(reads) > 2 and now - reads[1][0] > _RATE_SPAN[1]:
            reads.popleft()
        span = now - reads[0][0]
        rate = (reads[-1][1] - reads[0][1]) / span if span >= _RATE_SPAN[0] else math.inf
        unacked: int = struct.unpack("=i", queued)[0]
        return unacked + unread, max(rate, 0.0)

    def ready(self) -> bool:
        """True when little enough is ahead to choose the viewer's next frame."""
        ahead, rate = self.ahead()
        return ahead <= max(rate * AHEAD_SECONDS, self.slack)

    def may_go(self, deadline: float) -> bool:
        """:meth:`ready`, or past ``deadline`` with less than half the last frame (or
        :data:`_WINDOW_NOISE`) still ahead. The window a viewer advertises with an empty buffer
        varies (the kernel rounds it and avoids small updates), so an estimate that never
        comes down must not hold its frames back; but while half a frame is ahead the viewer
        is still reading it (a viewer reading in bursts, asleep between them): a frame chosen
        now would wait behind it and be older than needed when read."""
        ahead, rate = self.ahead()
        if ahead <= max(rate * AHEAD_SECONDS, self.slack):  # ready()
            return True
        if time.monotonic() < deadline:
            return False
        return ahead * 2 < self.last_frame or ahead <= _WINDOW_NOISE

    def _patience(self) -> float:
        """How long to wait for :meth:`ready` before the unacknowledged bytes alone decide:
        twice what the viewer needs to read what is ahead at its rate, at most
        :data:`_MAX_WAIT`."""
        ahead, rate = self.ahead()
        if ahead <= max(rate * AHEAD_SECONDS, self.slack):
            return 0.0
        return min(_MAX_WAIT, 2 * ahead / rate) if rate > 0 else _MAX_WAIT

    async def wait_read(self, gone: asyncio.Future[None]) -> None:
        """Wait until :meth:`may_go` or the viewer is ``gone`` (a poll every 5 ms: no event
        tells when a window opens; a viewer that keeps up does not wait here). A viewer that
        reads nothing at all is cut by the caller's write timeout."""
        deadline = time.monotonic() + self._patience()
        while not gone.done() and not self.may_go(deadline):
            await asyncio.sleep(_POLL)

    def wait_read_blocking(self, limit: float) -> bool:
        """:meth:`wait_read` for a thread, for at most ``limit`` seconds; False if the viewer
        read nothing meanwhile (gone)."""
        now = time.monotonic()
        deadline, give_up = now + self._patience(), now + limit
        while not self.may_go(deadline):
            if time.monotonic() >= give_up:
                return False
            time.sleep(_POLL)
        return True


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


class BodyWriter:
    """Writes an endless response's body straight to the socket of one of our connections,
    after its headers went out through ASGI: per frame and viewer, one ``writev`` of the part's
    pieces (no copy of the JPEG, no pass through Starlette's and uvicorn's send machinery and
    h11, which cost more CPU per viewer than the socket write itself).

    Only where the framing h11 chose for the response is known (chunked for HTTP/1.1 viewers,
    the bare body for HTTP/1.0 ones); :meth:`of` gives None otherwise, and for any connection
    not of our server, and the caller goes on through ASGI. The end of the body (h11's last
    chunk) still goes through ASGI. Writes only when the transport holds nothing (the caller
    waits for that first), so bytes never overtake the transport's; what the socket does not
    take at once goes to the transport, which sends it in order.
    """

    __slots__ = ("_chunked", "_fd", "_transport")

    def __init__(self, transport: Any, fd: int, chunked: bool) -> None:
        self._transport, self._fd, self._chunked = transport, fd, chunked

    @classmethod
    def of(cls, transport: Any) -> BodyWriter | None:
        """A writer for ``transport`` (from :func:`lookup`) once its response headers are
        sent, or None."""
        if transport is None or transport.is_closing():
            return None
        sock = transport.get_extra_info("socket")
        conn = getattr(transport.get_protocol(), "conn", None)
        framing = type(getattr(conn, "_writer", None)).__name__  # h11's writer of this body
        if sock is None or framing not in ("ChunkedWriter", "Http10Writer"):
            return None
        return cls(transport, sock.fileno(), framing == "ChunkedWriter")

    def write(self, pieces: tuple[bytes, ...]) -> int:
        """Send ``pieces`` as the next piece of body; returns the body bytes written."""
        size = sum(map(len, pieces))
        total = size
        if self._chunked:
            head = b"%x\r\n" % size
            pieces, total = (head, *pieces, b"\r\n"), size + len(head) + 2
        transport = self._transport
        if transport.is_closing():
            return 0
        sent = 0
        if not transport.get_write_buffer_size():
            try:
                sent = os.writev(self._fd, pieces)
            except BlockingIOError:
                sent = 0
            except OSError:  # the viewer is gone: the transport reports it
                transport.abort()
                return 0
        if sent < total:
            rest = b"".join(pieces)[sent:]  # rare: the socket took part of it
            transport.write(rest)
        return size
