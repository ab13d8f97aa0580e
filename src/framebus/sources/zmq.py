"""The receiving half of the ZeroMQ transport: one connection to an exporter for one stream.

:class:`Receiver` runs a DEALER socket in a thread of its own (``framebus-zmq-<name>``) and
keeps exactly **one credit** outstanding at the exporter: it asks for a frame (``GET``), the
exporter sends the newest frame it has that this receiver has not had, the receiver stores
it and asks again at once. The protocol, and who drops what, is in :mod:`framebus.sinks.zmq`.

Buffering policy of the receiving side: at most one frame on the wire towards this receiver
(the credit), at most one validated frame waiting for the application (the mailbox: a newer
frame replaces one not yet taken, counted in ``dropped``). Nothing else queues: ``RCVHWM`` is
4 messages (the frame and short replies), requests are never queued for a connection that is
not up (``IMMEDIATE``), and the kernel's receive buffer can only ever hold the one frame in
flight. JPEG frames are decoded by the application's read (:func:`decode`), only for the
frames it takes.

Every message is validated before use: one part only, at most ``max_message`` bytes
(``MAXMSGSIZE``: a peer sending more is disconnected by libzmq), a wire header and payload
that :func:`framebus.wire.unpack_frame` accepts, and a JPEG whose decoded size is the
header's. A bad message is dropped and counted (``bad_messages``), with at most one log line
per 10 s. Frames out of order are dropped (``stale``): within a session ``seq`` must grow, and
once a new session is seen (the exporter restarted) frames of the older sessions are dropped,
so nothing from before a restart is delivered after something newer.

Liveness: ZMTP heartbeats (1 s, 3 s timeout) drop a dead connection, libzmq redials every
0.1-0.5 s, and a receiver that got nothing for 0.5 s asks again (the exporter answers
``WAIT`` when it has no newer frame). :meth:`Receiver.state` is ``connecting`` (no answer
yet), ``live``, ``busy`` (the exporter has no receiver slot for us: ``ERR busy``; attach
raises RemoteBusy), ``stalled`` (the exporter answers, no new frame for 2 s),
``reconnecting`` (no answer for 3 s, or the connection is down) or ``ended``. Idle, the
thread sleeps in ``zmq.Poller.poll`` and wakes twice a second.

:class:`ZmqSource` is the :class:`~framebus.Source` of a relay: ``framebus serve
cam=zmq://host:5555/cam`` re-publishes the remote stream into this machine's shared memory.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import math
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _exit, wire
from .._zmq import (
    HEARTBEAT_TIMEOUT,
    REFRESH,
    Address,
    ClientKeys,
    client_socket,
    load_client_keys,
    parse_url,
    send_nowait,
    valid_name,
)
from ..errors import (
    FramebusError,
    FrameTooLarge,
    ReadTimeout,
    RemoteAuthError,
    RemoteBusy,
    RemoteUnreachable,
    SourceNotFound,
    SourceUnsupported,
    StreamEnded,
    StreamNotFound,
    WireFormatError,
)
from ..limits import check_pixels
from .base import Source
from .spec import Remote

try:
    import zmq
    from zmq.utils.monitor import recv_monitor_message
except ImportError:  # pragma: no cover - _zmq raised already
    raise

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - framebus[zmq] brings it
    _simplejpeg = None

__all__ = ["BACKEND", "STALL_AFTER", "Description", "Dial", "Message", "Receiver", "ReceiverStats",
           "ZmqSource", "decode", "list_exports"]  # fmt: skip

log = logging.getLogger("framebus.zmq")

BACKEND = "ZMQ"
"""``getBackendName()`` of a stream read over ZeroMQ (a remote reader's, a relay's)."""
STALL_AFTER = 2.0
"""Seconds without a new frame after which a live connection is reported ``stalled``."""
_LOG_EVERY = 10.0
_REDIAL_AFTER = 2.0
_MAX_LIST = 256 * 1024


@dataclass(frozen=True)
class Message:
    """One validated frame message: its header, its payload, when it arrived."""

    header: wire.FrameHeader
    payload: memoryview
    received: float  # time.time()
    skipped: int  # frames of this session the receiver never got, since the previous one
    _keep: Any = None  # the zmq.Frame owning the payload's memory


@dataclass(frozen=True)
class ReceiverStats:
    """A receiver's counters."""

    state: str
    received: int
    """Valid frames received."""
    dropped: int
    """Frames replaced in the mailbox before the application took them."""
    bad_messages: int
    """Messages dropped as invalid (wire format, multi-part, undecodable JPEG, wrong size)."""
    stale: int
    """Frames dropped as out of order (older seq, or an older session after a restart)."""
    sessions: int
    """Exporter sessions seen (a restart makes a new one)."""
    reconnects: int
    bytes_received: int
    last_error: str


@dataclass(frozen=True)
class Description:
    """What the exporter's listing says of the received stream (asked once per connection)."""

    width: int
    height: int
    fps: float
    """The rate the exporter measures its capture at."""
    source_fps: float | None
    """The source's own rate (a file's, a camera's if it says); None if it has none."""
    mode: str


class Dial:
    """What a socket's monitor said about its connection, and what that means for the user.

    libzmq reports: ``CONNECT_DELAYED`` (a TCP connect started), ``CONNECT_RETRIED`` (it
    failed, or a name did not resolve: then no connect started), ``CONNECTED``,
    ``HANDSHAKE_SUCCEEDED``, ``HANDSHAKE_FAILED_AUTH`` (ZAP refused our key),
    ``HANDSHAKE_FAILED_PROTOCOL`` (e.g. CURVE against NULL), ``HANDSHAKE_FAILED_NO_DETAIL``
    (the peer closed the connection during the handshake: with our CURVE keys, a wrong server
    key or an exporter without CURVE; without keys, a peer that does not speak ZMTP)."""

    def __init__(self, address: Address, curve: bool) -> None:
        self.address = address
        self.curve = curve
        self.attempts = 0
        self.retries = 0
        self.tcp_connected = False
        self.handshakes = 0
        self.closed_in_handshake = 0
        self.connected = False  # a handshake succeeded and no disconnect since
        self.auth_error: str | None = None

    def event(self, event: int) -> str:
        """Note ``event``; returns "made", "lost", "retry" or ""."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.handshakes += 1
            self.connected = True
            self.auth_error = None
            return "made"
        if event == zmq.EVENT_CONNECTED:
            self.tcp_connected = True
            return "retry"
        if event in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
            self.connected = False
            return "lost" if event == zmq.EVENT_DISCONNECTED else ""
        if event == zmq.EVENT_CONNECT_DELAYED:
            self.attempts += 1
            return "retry"
        if event == zmq.EVENT_CONNECT_RETRIED:
            self.retries += 1
            return "retry"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.auth_error = (
                "the exporter refused this receiver's CURVE key (is its public key in the "
                "exporter's clients/ directory?)"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.auth_error = (
                "handshake failed: the exporter uses CURVE and this receiver has no keys, or "
                "the other way round (give curve=DIR, or server_key= and client_key=)"
                if not self.curve
                else "handshake failed: CURVE on one side only (does the exporter use --curve?)"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.closed_in_handshake += 1
            if self.curve:
                self.auth_error = (
                    "the exporter closed the connection during the CURVE handshake: a wrong "
                    "server key, or an exporter without --curve"
                )
        return ""

    def why_silent(self) -> str:
        """Why nothing answered, as well as the events tell."""
        if self.closed_in_handshake:
            return "the peer closed the connection during the handshake (not a framebus exporter?)"
        if self.tcp_connected:
            return "connected, but no framebus answer (not a framebus exporter?)"
        if self.retries and not self.attempts:
            return f"cannot resolve host {self.address.host!r}"
        if self.retries:
            return "connection refused (is the exporter running, is the port right?)"
        return "no connection (wrong host, or a firewall?)"


class Receiver:
    """A connection to the exporter at ``address`` for stream ``address.name``, in a thread.

    ``keys``: CURVE keys (None: no encryption). ``start()`` connects; :meth:`wait_ready`
    waits for the exporter's first answer; :meth:`get` takes the newest frame not yet taken;
    :meth:`close` stops the thread and frees the sockets and the context (idempotent).
    """

    def __init__(
        self,
        address: Address,
        *,
        keys: ClientKeys | None = None,
        max_message: int = wire.HEADER_SIZE + wire.MAX_PAYLOAD,
    ) -> None:
        self.address = address
        self.keys = keys
        self.max_message = max_message
        self.max_payload = max_message - wire.HEADER_SIZE
        self._ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
        self._cond = threading.Condition()
        self._item: Message | None = None
        self._end: FramebusError | None = None  # raised by get() once the item is taken
        self._closed = False
        self._answered = False  # the exporter answered at least once
        self._not_found: str | None = None
        self._unsupported: str | None = None  # the exporter cannot send this stream's frames
        self._busy: str | None = None  # the exporter has no receiver slot for us (ERR busy)
        self._dial = Dial(address, keys is not None)
        self._redial_at: float | None = None
        self._last_answer = 0.0
        self._last_frame = 0.0
        self._session: int | None = None
        self._old_sessions: collections.deque[int] = collections.deque(maxlen=16)
        self._last_seq = 0
        self._last_got = (0, 0)  # (session, seq) of the last frame received, even if dropped
        self._received = 0
        self._dropped = 0
        self._bad = 0
        self._bad_logged = 0
        self._last_log = 0.0
        self._stale = 0
        self._sessions = 0
        self._reconnects = 0
        self._bytes = 0
        self._last_error = ""
        self._remote_state = ""
        self._described: Description | None = None
        self._listed = False  # a LIST answer came (even one without this stream)
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(
            target=self._run, name=f"framebus-zmq-{address.name}", daemon=True
        )

    # -- the application's side ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        # closed at exit while the thread still runs: a script that forgets release() exits
        _exit.close_at_exit(self, sigterm=False)

    def wait_ready(self, timeout: float) -> None:
        """Wait for the exporter's first answer; raise why there is none.

        StreamNotFound (the exporter does not export the name), RemoteAuthError (the CURVE
        handshake failed), RemoteUnreachable (nothing answered within ``timeout``)."""
        where = self.address.endpoint
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._not_found is not None:
                    raise StreamNotFound(self._not_found)
                if self._dial.auth_error is not None:
                    raise RemoteAuthError(f"{where}: {self._dial.auth_error}")
                if self._busy is not None and self._item is None:
                    raise RemoteBusy(f"{where} is busy: {self._busy}")
                answered = self._answered or self._item is not None or self._end is not None
                if answered and self._listed:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if answered:  # an exporter that never lists: frames without a description
                        return
                    break
                self._cond.wait(min(remaining, 0.1))
            why = self._dial.why_silent()
        raise RemoteUnreachable(f"no answer from {where} within {timeout:g} s: {why}")

    def get(self, timeout: float | None) -> Message:
        """The newest frame not yet taken, waiting up to ``timeout`` s (None: forever).

        ReadTimeout when none came, StreamEnded after the exporter said the stream ended (once
        the last frame was taken) or after :meth:`close`, SourceUnsupported while the exporter
        says it cannot send the stream's frames."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is None:
                if self._end is not None:
                    # a copy per raise: one exception object raised again grows one traceback
                    raise copy.copy(self._end) from None
                if self._closed:
                    raise StreamEnded("this reader was released")
                if self._unsupported is not None:
                    raise SourceUnsupported(self._unsupported)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ReadTimeout(
                        f"no new frame from {self.address.url} within {timeout:g} s"
                        f" (state {self._state_locked()})"
                    )
                self._cond.wait(remaining)
            item, self._item = self._item, None
            return item

    def take(self, timeout: float | None) -> tuple[np.ndarray, Message]:
        """The newest frame not yet taken, decoded (:func:`decode`), waiting up to ``timeout``
        s in all; a frame that does not decode is dropped, counted, and the next one awaited.
        Raises as :meth:`get`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ReadTimeout(f"no new frame from {self.address.url} within {timeout:g} s")
            msg = self.get(remaining)
            try:
                return decode(msg), msg
            except (WireFormatError, FrameTooLarge) as exc:
                self.bad(str(exc))  # dropped and counted; wait for the next one

    def bad(self, why: str) -> None:
        """Count a message dropped as invalid (also from the application's decode)."""
        now = time.monotonic()
        with self._cond:
            self._bad += 1
            self._last_error = why
            quiet = now - self._last_log < _LOG_EVERY
            if not quiet:
                self._last_log = now
                count, self._bad_logged = self._bad - self._bad_logged, self._bad
        if not quiet:
            log.warning(
                "%s: dropped %d bad message(s) (%d in all), last: %s",
                self.address.url,
                count,
                self._bad,
                why,
            )

    def state(self) -> str:
        with self._cond:
            return self._state_locked()

    def description(self) -> Description | None:
        """The stream as the exporter listed it on the last connection; None before."""
        with self._cond:
            return self._described

    def _state_locked(self) -> str:
        if self._closed:
            return "closed"
        if self._end is not None:
            return "ended"
        now = time.monotonic()
        if not self._answered:
            return "connecting"
        if not self._dial.connected or now - self._last_answer > HEARTBEAT_TIMEOUT:
            return "reconnecting"
        if self._busy is not None:
            return "busy"
        if now - self._last_frame > STALL_AFTER:
            return "stalled"
        return "live"

    def stats(self) -> ReceiverStats:
        with self._cond:
            return ReceiverStats(
                state=self._state_locked(),
                received=self._received,
                dropped=self._dropped,
                bad_messages=self._bad,
                stale=self._stale,
                sessions=self._sessions,
                reconnects=self._reconnects,
                bytes_received=self._bytes,
                last_error=self._last_error,
            )

    def close(self) -> None:
        """Stop the thread, close the sockets and the context. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._item = None
            self._cond.notify_all()
        _exit.forget(self)
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            # during interpreter finalization a daemon thread never runs again: do not wait
            # for it (the process is ending; the OS frees what it held)
            self._thread.join(None if not sys.is_finalizing() else 0)
            if self._thread.is_alive():
                return
        self._ctx.term()  # every socket is closed by now: returns at once
        os.close(self._stop_r)
        os.close(self._stop_w)

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        sock = client_socket(self._ctx, self.keys, self.max_message)
        monitor = sock.get_monitor_socket()
        try:
            sock.connect(self.address.endpoint)
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            poller.register(self._stop_r, zmq.POLLIN)
            last_ask = 0.0
            while not self._closed:
                if self._redial_at is not None and time.monotonic() >= self._redial_at:
                    self._redial(sock)
                wait = max(0.0, last_ask + REFRESH - time.monotonic())
                events = dict(poller.poll(int(wait * 1000) + 1))
                if self._stop_r in events or self._closed:
                    break
                if monitor in events and self._monitor(monitor):
                    last_ask = self._ask(sock)  # a new connection: a new peer to credit
                    with contextlib.suppress(zmq.Again):
                        send_nowait(sock, [b"LIST"])  # what the stream is (rate, size)
                if sock in events:
                    with contextlib.suppress(zmq.Again):
                        for _ in range(64):  # bounded: a flood cannot keep close() waiting
                            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                            if self._handle(parts):
                                last_ask = self._ask(sock)
                if time.monotonic() - last_ask >= REFRESH:
                    last_ask = self._ask(sock)
        except Exception as exc:  # pragma: no cover - a bug; reported to the reader
            log.exception("%s: receiver stopped", self.address.url)
            with self._cond:
                self._end = StreamEnded(f"{self.address.url}: receiver failed: {exc}")
                self._cond.notify_all()
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.send(b"BYE", zmq.NOBLOCK)  # the exporter stops encoding for us at once
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            monitor.close(0)
            sock.close(100)  # a moment for the BYE; ctx.term() waits at most that

    def _redial(self, sock: zmq.Socket[Any]) -> None:
        """Connect again: libzmq gives up on a connection it dropped for a protocol error (a
        message over ``MAXMSGSIZE``, a failed handshake) instead of redialling it."""
        self._redial_at = None
        with contextlib.suppress(zmq.ZMQError):
            sock.disconnect(self.address.endpoint)
        sock.connect(self.address.endpoint)

    def _ask(self, sock: zmq.Socket[Any]) -> float:
        """Send our credit: GET name session seq (the last frame we have). Never blocks."""
        with self._cond:
            if self._end is not None:  # the stream ended: nothing more to ask for (a new sink
                return time.monotonic()  # of a closed stream would send its last frame again)
            session, seq = self._last_got
        request = f"GET {self.address.name} {session:x} {seq}".encode()
        with contextlib.suppress(zmq.Again):  # no connection up (IMMEDIATE): retried later
            send_nowait(sock, [request])
        return time.monotonic()

    def _monitor(self, monitor: zmq.Socket[Any]) -> bool:
        """Read the monitor's events; True when a connection was just made."""
        made = False
        with contextlib.suppress(zmq.Again):
            while True:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
                with self._cond:
                    what = self._dial.event(event)
                    if what == "made":
                        made = True
                        if self._dial.handshakes > 1:
                            self._reconnects += 1
                    elif what == "lost":
                        # libzmq redials within RECONNECT_IVL_MAX, unless it gave up
                        self._redial_at = time.monotonic() + _REDIAL_AFTER
                    elif what == "retry":
                        self._redial_at = None  # libzmq is redialling by itself
                    if self._dial.auth_error:
                        self._last_error = self._dial.auth_error
                    self._cond.notify_all()
        return made

    def _handle(self, parts: list[zmq.Frame]) -> bool:
        """One message from the exporter; True if our credit was used (ask again now)."""
        now = time.monotonic()
        size = sum(len(p) for p in parts)
        with self._cond:
            self._bytes += size
            self._last_answer = now
            self._answered = True
        if len(parts) != 1:
            self.bad(f"a message of {len(parts)} parts (frames are single-part)")
            return True
        data = parts[0].buffer
        if data[:4] == wire.MAGIC:
            try:
                header, payload = wire.unpack_frame(data, max_payload=self.max_payload)
            except WireFormatError as exc:
                self.bad(str(exc))
                return True
            self._deliver(header, payload, parts[0])
            return True
        text = bytes(data[:256])
        if text.startswith(b"LIST "):
            self._take_listing(data)
            return False
        if text.startswith(b"WAIT"):
            with self._cond:
                self._busy = None  # a slot is ours: our credit stands
                self._remote_state = text[5:32].decode("ascii", "replace")
            return False
        if text.startswith(b"ERR "):
            self._error(text[4:].decode("utf-8", "replace"))
            return False
        self.bad(f"unknown message starting {text[:8]!r}")
        return True

    def _take_listing(self, data: memoryview) -> None:
        if len(data) > _MAX_LIST:
            self.bad(f"a LIST answer of {len(data)} bytes (at most {_MAX_LIST})")
            return
        try:
            rows = _parse_list(bytes(data[5:]), self.address.endpoint)
        except WireFormatError as exc:
            self.bad(str(exc))
            return
        mine = next((r for r in rows if r["name"] == self.address.name), None)
        with self._cond:
            self._listed = True
            if mine is not None:
                self._described = Description(
                    mine["width"], mine["height"], float(mine["fps"]),
                    float(mine["source_fps"]) or None, mine["mode"],
                )  # fmt: skip
            self._cond.notify_all()

    def _error(self, text: str) -> None:
        code, _, message = text.partition(" ")
        message = "".join(c for c in message if c.isprintable())[:200]
        with self._cond:
            self._last_error = message
            if code == "notfound" and not self._received:
                self._not_found = f"{self.address.url}: {message}"
            elif code == "ended":
                self._end = StreamEnded(f"{self.address.url}: {message}")
            elif code == "unsupported":
                self._unsupported = f"{self.address.url}: {message}"
            elif code == "busy":
                self._busy = message
            self._cond.notify_all()

    def _deliver(self, header: wire.FrameHeader, payload: memoryview, keep: Any) -> None:
        with self._cond:
            if self._end is not None:
                return  # sent before the exporter's "ended" crossed our last request
            session = header.session
            self._last_got = (session, header.seq)  # what the next GET says we have
            if session != self._session:
                if session in self._old_sessions:
                    self._stale += 1
                    return
                if self._session is not None:
                    self._old_sessions.append(self._session)
                self._session, self._last_seq, skipped = session, header.seq, 0
                self._sessions += 1
            elif header.seq <= self._last_seq:
                self._stale += 1
                return
            else:
                skipped = header.seq - self._last_seq - 1
            self._last_seq = header.seq
            self._unsupported = None
            self._busy = None
            self._received += 1
            self._last_frame = time.monotonic()
            if self._item is not None:
                self._dropped += 1
                skipped += self._item.skipped + 1
            self._item = Message(header, payload, time.time(), skipped, keep)
            self._cond.notify_all()


def decode(msg: Message) -> np.ndarray:
    """The pixels of a frame message: a read-only view for RAW, a decoded array for JPEG.

    WireFormatError if the JPEG does not decode or its size is not the header's;
    FrameTooLarge (before decoding) if the header's size is over the decoded-size budget."""
    header = msg.header
    if header.codec is wire.Codec.RAW:
        return wire.raw_array(header, msg.payload)  # its bytes arrived: no decoding
    check_pixels(header.width, header.height, "wire: a JPEG frame")
    gray = header.pixel_format is wire.PixelFormat.GRAY8
    if _simplejpeg is not None:
        try:  # the JPEG's own size first: nothing is allocated for a lying header
            height, width, _, _ = _simplejpeg.decode_jpeg_header(msg.payload)
        except ValueError as exc:
            raise WireFormatError(f"wire: JPEG payload does not decode: {exc}") from None
        if (width, height) != (header.width, header.height):
            raise WireFormatError(
                f"wire: JPEG of {width}x{height}, header says {header.width}x{header.height}"
            )
        try:
            img = _simplejpeg.decode_jpeg(
                msg.payload, colorspace="GRAY" if gray else "BGR", fastdct=True
            )
        except ValueError as exc:
            raise WireFormatError(f"wire: JPEG payload does not decode: {exc}") from None
    else:  # pragma: no cover - framebus[zmq] brings simplejpeg
        import cv2

        flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        img = cv2.imdecode(np.frombuffer(msg.payload, np.uint8), flag)
        if img is None:
            raise WireFormatError("wire: JPEG payload does not decode")
    img = np.asarray(img)
    if gray and img.ndim == 3:
        img = img[:, :, 0]
    if img.shape != header.shape:
        raise WireFormatError(f"wire: decoded JPEG of shape {img.shape}, header {header.shape}")
    return img


def receiver_for(spec: Remote) -> Receiver:
    """A receiver (not started) for a :class:`Remote` spec, its keys loaded."""
    address = parse_url(spec.url)
    keys = None
    if spec.server_key is not None and spec.client_key is not None:
        keys = load_client_keys(spec.server_key, spec.client_key)
    return Receiver(address, keys=keys, max_message=spec.max_message)


def list_exports(
    url: str,
    *,
    curve: str | None = None,
    server_key: str | None = None,
    client_key: str | None = None,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """What the exporter at ``zmq://HOST:PORT`` exports: one dict per stream (``name``,
    ``state``, ``width``, ``height``, ``fps``, ``mode``, ``codec``, ``receivers``).

    Raises RemoteUnreachable, RemoteAuthError or WireFormatError (an answer that is not a
    list)."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    address = parse_url(url, need_name=False)
    spec = Remote(
        address.url + "/x", curve=curve, server_key=server_key, client_key=client_key
    )  # validates the key options
    keys = None
    if spec.server_key is not None and spec.client_key is not None:
        keys = load_client_keys(spec.server_key, spec.client_key)
    ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
    sock = client_socket(ctx, keys, _MAX_LIST)
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(address.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        dial = Dial(address, keys is not None)
        sent = False
        while (remaining := deadline - time.monotonic()) > 0:
            if not sent:
                with contextlib.suppress(zmq.Again):
                    sock.send(b"LIST", zmq.NOBLOCK)
                    sent = True
            events = dict(poller.poll(int(min(remaining, 0.1) * 1000) + 1))
            if monitor in events:
                with contextlib.suppress(zmq.Again):
                    while True:
                        dial.event(recv_monitor_message(monitor, zmq.NOBLOCK)["event"])
                if dial.auth_error is not None:
                    raise RemoteAuthError(f"{address.endpoint}: {dial.auth_error}")
            if sock in events:
                parts = sock.recv_multipart()
                if len(parts) == 1 and parts[0].startswith(b"LIST "):
                    return _parse_list(parts[0][5:], address.endpoint)
        raise RemoteUnreachable(
            f"no answer from {address.endpoint} within {timeout:g} s: {dial.why_silent()}"
        )
    finally:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()


_WORD = re.compile(r"[a-z]{1,16}")


def _parse_list(body: bytes, where: str) -> list[dict[str, Any]]:
    """The exporter's listing, every field checked: names are stream names, states, modes and
    codecs short lowercase words, numbers finite and in range (so nothing a hostile server
    sends can reach a terminal as an escape sequence or a line break)."""
    import json

    def check(key: str, value: Any) -> Any:
        if key == "name":
            ok = isinstance(value, str) and valid_name(value)
        elif key in ("state", "mode", "codec"):
            ok = isinstance(value, str) and _WORD.fullmatch(value) is not None
        elif key in ("fps", "source_fps"):
            ok = isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1e4
        else:  # width, height, receivers
            ok = isinstance(value, int) and 0 <= value <= (1 << 31)
        if not ok or isinstance(value, bool):
            raise TypeError(f"field {key!r} is not valid: {ascii(value)[:40]}")
        return value

    fields = ("name", "state", "width", "height", "fps", "mode", "codec", "receivers")
    optional = {"source_fps": 0.0}  # an exporter of an earlier framebus does not send it
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("the answer is not an object")
        streams = data["streams"]
        if not isinstance(streams, list):
            raise TypeError("streams is not a list")
        out = []
        for entry in streams[:1000]:
            if not isinstance(entry, dict):
                raise TypeError("an entry is not an object")
            row = {key: check(key, entry.get(key)) for key in fields}
            row.update({k: check(k, entry.get(k, v)) for k, v in optional.items()})
            out.append(row)
        return out
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise WireFormatError(f"{where}: the LIST answer is not valid: {why}") from None


class ZmqSource(Source):
    """A remote stream as a source: the relay's (``framebus serve cam=zmq://host:5555/cam``).

    ``open()`` connects and waits for the exporter's first answer (its errors: SourceNotFound
    for a name it does not export, RemoteAuthError, RemoteUnreachable). ``read()`` returns
    the newest frame (decoded), skipping bad ones, stamped with its remote capture time
    (:meth:`frame_time_ns`); None once the remote stream ended; it
    raises RemoteUnreachable after ``read_timeout`` s without a frame, so the publisher's
    supervisor reconnects with backoff (the stream shows ``reconnecting``).
    """

    backend_name = BACKEND

    live = True

    def __init__(self, spec: Remote) -> None:
        self.spec = spec
        self._receiver: Receiver | None = None
        self._stamp = 0

    def open(self) -> None:
        receiver = receiver_for(self.spec)
        self._receiver = receiver
        receiver.start()
        try:
            receiver.wait_ready(self.spec.open_timeout)
        except StreamNotFound as exc:
            raise SourceNotFound(str(exc)) from None

    def read(self) -> np.ndarray | None:
        receiver = self._receiver
        assert receiver is not None, "open() first"
        try:
            frame, msg = receiver.take(self.spec.read_timeout)
        except StreamEnded:
            return None
        except ReadTimeout:
            raise RemoteUnreachable(
                f"no frame from {self.spec.url} for {self.spec.read_timeout:g} s "
                f"(state {receiver.state()})"
            ) from None
        self._stamp = msg.header.capture_ns
        return frame

    def frame_time_ns(self) -> int | None:
        """The remote capture time: ages in the relay's ring count from the camera (on the
        camera host's clock: keep the hosts' clocks synchronised, NTP or PTP)."""
        return self._stamp or None

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
