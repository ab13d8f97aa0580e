"""The receiving half of the ZeroMQ transport: one connection to an exporter for one stream.

:class:`Receiver` runs a DEALER socket in a thread of its own (``framebus-zmq-<name>``) and
keeps exactly **one credit** outstanding at the exporter: it asks for a frame (``GET``), the
exporter sends the newest frame it has that this receiver has not had, the receiver stores
it and asks again at once. The protocol is in
:mod:`framebus.net.protocol`, who drops what at the exporter in :mod:`framebus.net.server`.

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

The relay's source is :mod:`.source`, the remote reader's feed :mod:`.feed`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from .. import _exit, _jpeg, wire
from ..errors import (
    FrameTooLarge,
    ReadTimeout,
    RemoteAuthError,
    RemoteBusy,
    RemoteUnreachable,
    SourceUnsupported,
    StreamEnded,
    StreamNotFound,
    WireFormatError,
)
from ..limits import check_pixels
from ..sources.spec import Remote
from . import protocol
from ._sockets import (
    REFRESH,
    Address,
    ClientKeys,
    client_socket,
    load_client_keys,
    parse_url,
    send_nowait,
)
from .dial import Dial
from .link import STALL_AFTER, Description, Link, Message, ReceiverStats

try:
    import zmq
    from zmq.utils.monitor import recv_monitor_message
except ImportError:  # pragma: no cover - _zmq raised already
    raise

__all__ = ["BACKEND", "STALL_AFTER", "Description", "Message", "Receiver", "ReceiverStats",
           "decode", "receiver_for"]  # fmt: skip

log = logging.getLogger("framebus.zmq")

BACKEND = "ZMQ"
"""``getBackendName()`` of a stream read over ZeroMQ (a remote reader's, a relay's)."""
_LOG_EVERY = 10.0
_REDIAL_AFTER = 2.0


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
        self._cond = threading.Condition()  # guards the link, the dial and the redial time
        self._link = Link(address.url, address.name)
        self._dial = Dial(address, keys is not None)
        self._redial_at: float | None = None
        self._bad_logged = 0  # bad messages already logged (one line per _LOG_EVERY s)
        self._last_log = 0.0
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
                link = self._link
                if link.not_found is not None:
                    raise StreamNotFound(link.not_found)
                if self._dial.auth_error is not None:
                    raise RemoteAuthError(f"{where}: {self._dial.auth_error}")
                if link.busy is not None and link.item is None:
                    raise RemoteBusy(f"{where} is busy: {link.busy}")
                answered = link.answered or link.item is not None or link.end is not None
                if answered and link.listed:
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
        link = self._link
        with self._cond:
            while link.item is None:
                if link.end is not None:
                    # a copy per raise: one exception object raised again grows one traceback
                    raise copy.copy(link.end) from None
                if link.closed:
                    raise StreamEnded("this reader was released")
                if link.unsupported is not None:
                    raise SourceUnsupported(link.unsupported)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ReadTimeout(
                        f"no new frame from {self.address.url} within {timeout:g} s"
                        f" (state {self._state_locked()})"
                    )
                self._cond.wait(remaining)
            item = link.take()
            assert item is not None  # the loop ends only when there is one
            return item

    def wait_frame(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until :meth:`get` would not wait (a frame, or an end it
        would raise); takes nothing."""
        deadline = time.monotonic() + timeout
        link = self._link
        with self._cond:
            while (
                link.item is None
                and link.end is None
                and not link.closed
                and (link.unsupported is None)
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def take(self, timeout: float | None) -> tuple[np.ndarray, Message]:
        """The newest frame not yet taken, decoded (:func:`decode`), waiting up to ``timeout``
        s in all; a frame that does not decode is dropped, counted, and the next one awaited.
        Raises as :meth:`get`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = self.get(remaining)  # (with 0: a frame already there, else ReadTimeout)
            try:
                return decode(msg), msg
            except (WireFormatError, FrameTooLarge) as exc:
                self.bad(str(exc))  # dropped and counted; wait for the next one

    def bad(self, why: str) -> None:
        """Count a message dropped as invalid (also from the application's decode)."""
        now = time.monotonic()
        with self._cond:
            self._link.bad_message(why)
            total = self._link.bad
            quiet = now - self._last_log < _LOG_EVERY
            if not quiet:
                self._last_log = now
                count, self._bad_logged = total - self._bad_logged, total
        if not quiet:
            log.warning(
                "%s: dropped %d bad message(s) (%d in all), last: %s",
                self.address.url,
                count,
                total,
                why,
            )

    def state(self) -> str:
        with self._cond:
            return self._state_locked()

    def description(self) -> Description | None:
        """The stream as the exporter listed it on the last connection; None before."""
        with self._cond:
            return self._link.described

    def _state_locked(self) -> str:
        return self._link.state(time.monotonic(), self._dial.connected)

    def stats(self) -> ReceiverStats:
        with self._cond:
            return self._link.stats(time.monotonic(), self._dial.connected)

    def close(self) -> None:
        """Stop the thread, close the sockets and the context. Idempotent."""
        with self._cond:
            if self._link.closed:
                return
            self._link.closed = True
            self._link.item = None
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
            while not self._link.closed:
                if self._redial_at is not None and time.monotonic() >= self._redial_at:
                    self._redial(sock)
                wait = max(0.0, last_ask + REFRESH - time.monotonic())
                events = dict(poller.poll(int(wait * 1000) + 1))
                if self._stop_r in events or self._link.closed:
                    break
                if monitor in events and self._monitor(monitor):
                    last_ask = self._ask(sock)  # a new connection: a new peer to credit
                    with contextlib.suppress(zmq.Again):
                        send_nowait(sock, [protocol.LIST])  # what the stream is (rate, size)
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
                self._link.end = StreamEnded(f"{self.address.url}: receiver failed: {exc}")
                self._cond.notify_all()
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.send(protocol.BYE, zmq.NOBLOCK)  # the exporter stops encoding for us at once
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
        """Send our credit (if the stream has not ended). Never blocks."""
        with self._cond:
            request = self._link.request()
        if request is not None:
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
                        self._link.connected(self._dial.handshakes)
                    elif what == "lost":
                        # libzmq redials within RECONNECT_IVL_MAX, unless it gave up
                        self._redial_at = time.monotonic() + _REDIAL_AFTER
                    elif what == "retry":
                        self._redial_at = None  # libzmq is redialling by itself
                    if self._dial.auth_error:
                        self._link.last_error = self._dial.auth_error
                    self._cond.notify_all()
        return made

    def _handle(self, parts: list[zmq.Frame]) -> bool:
        """One message from the exporter; True if our credit was used (ask again now)."""
        with self._cond:
            self._link.arrived(sum(len(p) for p in parts), time.monotonic())
        if len(parts) != 1:
            self.bad(f"a message of {len(parts)} parts (frames are single-part)")
            return True
        try:
            reply = protocol.parse_reply(
                parts[0].buffer, max_payload=self.max_payload, where=self.address.endpoint
            )
        except WireFormatError as exc:
            self.bad(str(exc))
            return True
        with self._cond:
            used = self._link.reply(reply, parts[0], time.monotonic(), time.time())
            self._cond.notify_all()
        return used


def decode(msg: Message) -> np.ndarray:
    """The pixels of a frame message: a read-only view for RAW, a decoded array for JPEG.

    WireFormatError if the JPEG does not decode or its size is not the header's;
    FrameTooLarge (before decoding) if the header's size is over the decoded-size budget."""
    header = msg.header
    if header.codec is wire.Codec.RAW:
        return wire.raw_array(header, msg.payload)  # its bytes arrived: no decoding
    check_pixels(header.width, header.height, "wire: a JPEG frame")
    try:  # the JPEG's own size first: nothing is allocated for a lying header
        own = _jpeg.size(msg.payload)
        if own is not None and own != (header.width, header.height):
            raise WireFormatError(
                f"wire: JPEG of {own[0]}x{own[1]}, header says {header.width}x{header.height}"
            )
        img = _jpeg.decode(msg.payload, grey=header.pixel_format is wire.PixelFormat.GRAY8)
    except ValueError as exc:
        raise WireFormatError(f"wire: JPEG payload does not decode: {exc}") from None
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
