"""The sending half of the ZeroMQ transport: an :class:`Exporter` serves this machine's
streams to receivers on other machines (``framebus.attach("zmq://host:5555/cam")``, relays).

The protocol (ROUTER/DEALER, one credit per receiver) and its messages, byte for byte, are in
:mod:`framebus.net.protocol`, with the book of receivers and their credits.

Who drops what
--------------

* One :class:`ZmqSink` per exported stream (a :class:`~framebus.sinks.FrameSink`: one reader,
  one worker thread) encodes each new frame **once** for every receiver into a private
  ``[header | payload]`` bytes object (never a view of a ring slot, which the capture may
  reuse mid-send), and hands it to the exporter's thread through a one-item
  :class:`~framebus.sinks.LatestSlot`: a frame the exporter has not taken yet is replaced.
* The exporter keeps, per stream, only that newest encoded frame, and per receiver its credit
  and the (session, seq) of the last frame sent. A receiver with credit gets the newest frame
  if it is newer than its last one; a receiver without credit (its frame still in flight, or
  it is slow) is skipped: when it asks again it gets the newest frame then. A slow receiver
  never delays the encoder or the other receivers; nothing is queued for it but the one frame
  it asked for (ROUTER ``SNDHWM`` 4 per peer covers that frame and short replies;
  ``ROUTER_MANDATORY`` turns a send to a vanished peer into an error that forgets it).
* **No encoding while no one receives**: the sink is subscribed only while at least one
  receiver of its stream is known; a receiver silent for 4 s (a live one asks at least every
  0.5 s) or whose connection is gone is forgotten. The sinks live in the hub every wing
  shares (:mod:`framebus.sinks.hub`), under its idle policy: a sink idle for 10 s is closed
  (its reader released); a sink of an ``every``-mode stream at once.
* ``every``-mode streams (files): a remote receiver gets **newest-frame** delivery, not every
  frame. The sink's reader is the stream's only pace-setter on this side, and it reads at the
  encoder's speed, never at the network's: a remote reader must never stall the capture
  host, and every-frame delivery over a network would let a slow link or a dead receiver hold
  the file up for every local reader. For every frame of a file on another machine, publish it
  with ``--realtime`` (frames at the file's rate, each one newest in turn) or send the file.

Frames the wire cannot carry (RAW: float64, int8, int32 or 2 or more than 4 channels; JPEG:
anything but 8/16-bit grey, BGR or BGRA) are not sent: the sink logs the first failure and
counts the others (``encode_errors``); if no frame encodes at all, receivers are told why
(``ERR unsupported``) and their reads raise ``SourceUnsupported``.

Receivers validate every message (:mod:`framebus.net.receiver`). CURVE (opt-in,
``curve=DIR`` from :func:`framebus.net.generate_keys`): the exporter's secret key encrypts,
and only receivers whose public keys are in ``DIR/clients/`` get in (ZAP, checked by
``zmq.auth``'s authenticator thread; the directory is read again within a second of a key
being added or removed: new connections use the new set, connected receivers stay).
Exporting on an address other than loopback without CURVE logs a warning.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

import framebus
from framebus import PublisherLost, ReadTimeout, SinkClosed, StreamEnded, _exit
from framebus.errors import FramebusError, StreamNotFound, WireFormatError
from framebus.limits import connection_budget
from framebus.sinks.base import Encoded, Subscription
from framebus.sinks.hub import SinkHub

from . import protocol
from ._sockets import (
    HEARTBEAT_TIMEOUT,
    REFRESH,
    ServerKeys,
    check_clients_dir,
    cut,
    key_files,
    load_server_keys,
    parse_bind,
    peer_address,
    send_nowait,
    server_socket,
)
from .config import ExportConfig, ExportedStream, ExporterStats
from .limits import ConnectionBook, per_address_cap
from .protocol import CreditBook, ErrorCode
from .sink import CodecName, ZmqSink

__all__ = ["CLIENTS_CHECK", "PEER_TIMEOUT", "ExportServer"]

log = logging.getLogger("framebus.zmq")

PEER_TIMEOUT = HEARTBEAT_TIMEOUT + 2 * REFRESH
"""Seconds of silence after which a receiver is forgotten (a live one asks every 0.5 s)."""
_SWEEP = 0.25
CLIENTS_CHECK = 1.0
"""Seconds between looks at the allowed clients' folder (``--curve DIR``/clients)."""


_LIST_FOR = 0.5  # seconds a LIST answer is reused
_MISSING_FOR = 0.5  # seconds a name not found is answered from memory
_MISSING_KEPT = 1024  # names not found remembered at most (then forgotten all at once)


# a frame in flight longer than this is taken as lost: the receiver's next ask gets a new one
_IN_FLIGHT = 10.0
_LOG_EVERY = 10.0


@dataclass
class _Stream:
    name: str
    sink: ZmqSink
    sub: Subscription[bytes] | None = None
    latest: Encoded[bytes] | None = None
    key: tuple[int, int] | None = None  # (session, seq) of latest
    frames_sent: int = 0
    bytes_sent: int = 0
    failures_told: int = 0  # encode failures its receivers have been told of
    checked_at: float = 0.0  # when the failures were last looked at


class ExportServer:
    """The exporter's ZeroMQ side in a thread of this process (``framebus-zmq-export``), from
    construction until :meth:`close`; binding errors raise at once. What faces the network
    runs here: :class:`~framebus.net.Exporter` runs it in a process of its own, so that
    nothing a peer does to libzmq can take the streams down. See the module docstring for
    the protocol and its buffering policy.
    """

    def __init__(self, config: ExportConfig) -> None:
        address = parse_bind(config.endpoint)
        endpoint = config.endpoint
        self.config = config
        self.names = config.names
        self.codec: CodecName = config.codec
        self.quality = config.quality
        self.max_receivers = config.max_receivers
        keys: ServerKeys | None = (
            load_server_keys(config.curve) if config.curve is not None else None
        )
        self.curve = config.curve
        host = "*" if address.host in ("*", "0.0.0.0") else address.host
        bind = f"tcp://{f'[{host}]' if ':' in host else host}:{address.port or '*'}"
        self._ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
        self._auth: ThreadAuthenticator | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._monitor: zmq.Socket[Any] | None = None
        self._clients_dir: str | None = None  # the allowed clients' public keys (CURVE)
        self._clients_seen: frozenset[tuple[str, int, int]] = frozenset()
        self._clients_checked = 0.0
        try:
            if keys is not None:
                self._auth = ThreadAuthenticator(self._ctx, log=log)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=keys.clients_dir)
                self._clients_dir = keys.clients_dir
                self._clients_seen = key_files(keys.clients_dir)
                self._clients_checked = time.monotonic()
            self._sock = server_socket(self._ctx, keys)
            if ":" in host:
                self._sock.setsockopt(zmq.IPV6, 1)
            try:
                self._sock.bind(bind)
            except zmq.ZMQError as exc:
                raise FramebusError(f"cannot listen on {endpoint}: {exc.strerror}") from None
            bound = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            # connections come and go: counted, capped, cut when silent (limits)
            self._monitor = self._sock.get_monitor_socket(
                zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
            )
        except BaseException:
            self._teardown()
            raise
        self.endpoint: str = bound
        """The endpoint bound, its port resolved (``tcp://0.0.0.0:5555``)."""
        self._lock = threading.Lock()  # guards the stats snapshot below
        self._streams: dict[str, _Stream] = {}
        self._book = CreditBook(
            config.max_receivers,
            per_address_cap(config.max_receivers),
            peer_timeout=PEER_TIMEOUT,
            in_flight=_IN_FLIGHT,
        )
        # the encoders, one per stream, closed by the idle policy every wing shares
        self._hub: SinkHub[ZmqSink] = SinkHub(thread_name="framebus-zmq")
        self._connections_book = ConnectionBook(connection_budget(config.max_connections))
        self._listed: tuple[float, bytes] = (-math.inf, b"")  # LIST answers, made at most 2/s
        self._missing: dict[str, tuple[float, bytes]] = {}  # names not found lately: until, ERR
        self._bad = 0
        self._bad_logged = 0
        self._last_log = 0.0
        self._snapshot = ExporterStats(bound, 0, 0, ())
        self._closed = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="framebus-zmq-export", daemon=True)
        self._thread.start()
        # closed at exit while the thread still runs: a script that forgets close() exits
        _exit.close_at_exit(self, sigterm=False)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    # -- owner ---------------------------------------------------------------------------------

    def stats(self) -> ExporterStats:
        with self._lock:
            return self._snapshot

    def close(self) -> None:
        """Stop serving: receivers see the connection go (``reconnecting``). Idempotent."""
        if self._closed:
            return
        self._closed = True
        _exit.forget(self)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            # during interpreter finalization a daemon thread never runs again: do not wait
            self._thread.join(None if not sys.is_finalizing() else 0)
            if self._thread.is_alive():
                return
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _teardown(self) -> None:
        if self._monitor is not None:
            if self._sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()

    def __enter__(self) -> ExportServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            monitor = self._monitor
            assert monitor is not None
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            next_sweep = time.monotonic() + _SWEEP
            while not self._closed:
                timeout = max(0.0, next_sweep - time.monotonic())
                events = dict(poller.poll(int(timeout * 1000) + 1))
                if self._wake_r in events:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if monitor in events:
                    self._connections(monitor)
                if sock in events:
                    self._requests(sock)
                self._collect(sock)
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + _SWEEP
        except Exception:  # pragma: no cover - a bug
            log.exception("the exporter on %s stopped", self.endpoint)
        finally:
            self._streams.clear()
            self._hub.close()
            self._teardown()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending
            os.write(self._wake_w, b"x")

    def _bad_request(self, why: str) -> None:
        self._bad += 1
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            count, self._bad_logged = self._bad - self._bad_logged, self._bad
            self._last_log = now
            log.warning("exporter %s: %d bad request(s), last: %s", self.endpoint, count, why)

    def _connections(self, monitor: zmq.Socket[Any]) -> None:
        """Connections accepted and gone (the monitor's events): count them, cut the ones
        beyond the cap."""
        now = time.monotonic()
        with contextlib.suppress(zmq.Again):
            for _ in range(256):  # bounded: requests and frames get their turn
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
                fd = int(event["value"])
                if event["event"] == zmq.EVENT_ACCEPTED:
                    for victim in self._connections_book.accepted(fd, peer_address(fd), now):
                        cut(victim)
                else:
                    self._connections_book.closed(fd)

    def _requests(self, sock: zmq.Socket[Any]) -> None:
        """Up to 64 waiting requests (then frames get their turn), each checked against its
        connection's rate."""
        now = time.monotonic()
        with contextlib.suppress(zmq.Again):
            for _ in range(64):
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                last = frames[-1]
                if not self._connections_book.request(int(last.get(zmq.SRCFD)), now):
                    continue  # over its rate: dropped, counted in throttled_requests
                address = str(last.get("Peer-Address"))
                self._request(sock, [f.bytes for f in frames], address)

    def _request(self, sock: zmq.Socket[Any], parts: list[bytes], address: str = "") -> None:
        if len(parts) != 2:
            self._bad_request(f"a request of {len(parts) - 1} parts")
            return
        peer_id, body = parts
        try:
            request = protocol.parse_request(body)
        except WireFormatError as exc:
            self._bad_request(str(exc))
            self._send(sock, peer_id, protocol.error(ErrorCode.BAD, str(exc)))
            return
        if isinstance(request, protocol.Get):
            self._get(sock, peer_id, request, address)
        elif isinstance(request, protocol.ListRequest):
            self._send(sock, peer_id, self._cached_listing())
        else:
            self._book.forget(peer_id)

    def _send(self, sock: zmq.Socket[Any], peer_id: bytes, data: bytes) -> bool:
        """Send without blocking; False if the peer is gone (it is forgotten) or full."""
        try:
            send_nowait(sock, [peer_id, data])
            return True
        except zmq.Again:
            return False  # its queue is full: it gets the newest frame when it asks again
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self._book.forget(peer_id)
                return False
            raise

    def _get(
        self, sock: zmq.Socket[Any], peer_id: bytes, request: protocol.Get, address: str = ""
    ) -> None:
        book = self._book
        busy = book.refusal(peer_id, request.name, address)
        if busy:
            self._send(sock, peer_id, protocol.error(ErrorCode.BUSY, busy))
            return
        stream, error = self._open(request.name)
        if stream is None:
            self._send(sock, peer_id, error)
            return
        if not book.ask(peer_id, request, address, time.monotonic()):
            return  # a keep-alive that overtook the frame it has not received yet
        if not self._offer(sock, stream, peer_id):
            self._send(sock, peer_id, protocol.WAIT)

    def _open(self, name: str) -> tuple[_Stream | None, bytes]:
        """The stream entry for ``name``, subscribed to its sink (made on demand); else (None,
        ERR ...). A name not found is remembered for a moment: asking again costs no look-up."""
        stream = self._streams.get(name)
        if stream is not None and stream.sub is not None:
            return stream, b""
        now = time.monotonic()
        missing = self._missing.get(name)
        if missing is not None and now < missing[0]:
            return None, missing[1]
        stream, error = self._open_sink(name)
        if stream is None:
            if len(self._missing) >= _MISSING_KEPT:
                self._missing.clear()
            self._missing[name] = (now + _MISSING_FOR, error)
        return stream, error

    def _open_sink(self, name: str) -> tuple[_Stream | None, bytes]:
        if self.names is not None and name not in self.names:
            exports = ", ".join(self.names) or "none"
            why = f"stream {name!r} is not exported here (exports: {exports})"
            return None, protocol.error(ErrorCode.NOTFOUND, why)

        def make() -> ZmqSink:
            return ZmqSink(name, codec=self.codec, quality=self.quality)

        try:
            sink, sub = self._hub.subscribe(name, None, make, self._wake)
        except StreamNotFound:
            why = f"no stream {name!r} on the exporter's host"
            return None, protocol.error(ErrorCode.NOTFOUND, why)
        except FramebusError as exc:
            return None, protocol.error(ErrorCode.UNAVAILABLE, f"stream {name!r}: {exc}")
        stream = self._streams.get(name)
        if stream is None or stream.sink is not sink:  # new, or the hub closed the old sink
            stream = self._streams[name] = _Stream(name, sink)
            self._listed = (-math.inf, b"")  # the cached listing may predate this stream
        stream.sub = sub
        return stream, b""

    def _offer(self, sock: zmq.Socket[Any], stream: _Stream, peer_id: bytes) -> bool:
        """Send the stream's newest frame to the receiver if it has credit and not that frame."""
        if stream.latest is None or stream.key is None:
            return False
        if not self._book.wants(peer_id, stream.key):
            return False
        if not self._send(sock, peer_id, stream.latest.data):
            return False
        self._book.sent(peer_id, stream.key, time.monotonic())
        stream.frames_sent += 1
        stream.bytes_sent += len(stream.latest.data)
        return True

    def _collect(self, sock: zmq.Socket[Any]) -> None:
        """Take each stream's newest encoded frame and send it to the receivers with credit."""
        for stream in list(self._streams.values()):
            sub = stream.sub
            if sub is None:
                continue
            try:
                item = sub.get(0)
            except ReadTimeout:
                self._tell_failures(sock, stream)
                continue
            except (StreamEnded, PublisherLost, SinkClosed) as exc:
                self._ended(sock, stream, exc)
                continue
            stream.latest = item
            stream.key = (stream.sink.session, item.info.seq)
            for peer_id in list(self._book.receivers(stream.name)):
                self._offer(sock, stream, peer_id)

    def _tell_failures(self, sock: zmq.Socket[Any], stream: _Stream) -> None:
        """Frames fail to encode (a dtype the wire has no format for): tell the receivers
        waiting for one why nothing comes, once a second, instead of leaving them stalled."""
        now = time.monotonic()
        if now - stream.checked_at < 1.0:
            return  # looked at most once a second: this runs whenever no new frame came
        stream.checked_at = now
        failed = stream.sink.stats()
        if failed.encode_errors <= stream.failures_told or failed.frames_encoded:
            return  # no new failure, or frames do get through
        stream.failures_told = failed.encode_errors
        why = f"stream {stream.name!r}: {failed.last_encode_error}"
        message = protocol.error(ErrorCode.UNSUPPORTED, why)
        for peer_id in list(self._book.receivers(stream.name)):
            if self._book.has_credit(peer_id):
                self._send(sock, peer_id, message)

    def _ended(self, sock: zmq.Socket[Any], stream: _Stream, exc: BaseException) -> None:
        """The stream ended (or its publisher died): tell its receivers, drop its sink."""
        code = ErrorCode.ENDED if isinstance(exc, (StreamEnded, SinkClosed)) else ErrorCode.LOST
        message = protocol.error(code, f"stream {stream.name!r}: {exc}")
        for peer_id in list(self._book.receivers(stream.name)):
            self._send(sock, peer_id, message)
            self._book.forget(peer_id)
        self._drop(stream)  # the hub closes its ended sink

    def _drop(self, stream: _Stream) -> None:
        self._streams.pop(stream.name, None)
        if stream.sub is not None:
            stream.sub.close()
            stream.sub = None

    def _reload_clients(self, now: float) -> None:
        """Take up a change of the allowed clients' folder (a key added or removed), checked
        every CLIENTS_CHECK s: new handshakes use the new set. (A removed key refuses new
        connections; a receiver already connected stays until it disconnects.)"""
        if self._auth is None or self._clients_dir is None:
            return
        if now - self._clients_checked < CLIENTS_CHECK:
            return
        self._clients_checked = now
        seen = key_files(self._clients_dir)
        if seen == self._clients_seen:
            return
        try:
            check_clients_dir(self._clients_dir)  # zmq.auth reads each file whole
            self._auth.configure_curve(domain="*", location=self._clients_dir)
        except Exception as exc:  # a key file being written, or not a key: keep the old set
            log.warning("allowed CURVE clients in %s not reloaded: %s", self._clients_dir, exc)
            return
        self._clients_seen = seen
        log.info("allowed CURVE clients reloaded from %s: %d keys", self._clients_dir, len(seen))

    def _sweep(self) -> None:
        now = time.monotonic()
        self._reload_clients(now)
        for fd in self._connections_book.idle(now):
            cut(fd)
        self._book.forget_silent(now)  # a live receiver asks at least every REFRESH
        for stream in list(self._streams.values()):
            if self._book.receivers(stream.name):
                continue
            if stream.sub is not None:  # nobody receives: no more reading nor encoding
                stream.sub.close()
                stream.sub, stream.latest, stream.key = None, None, None
            if stream.sink not in self._hub.sinks(stream.name):
                del self._streams[stream.name]  # the hub closed it (idle): forget its counters
        snapshot = ExporterStats(
            self.endpoint,
            len(self._book),
            self._bad,
            tuple(
                ExportedStream(
                    s.name,
                    len(self._book.receivers(s.name)),
                    s.sink.stats().frames_encoded,
                    s.frames_sent,
                    s.bytes_sent,
                )
                for s in self._streams.values()
            ),
            connections=len(self._connections_book),
            refused_connections=self._connections_book.refused,
            idle_cut=self._connections_book.idle_cut,
            throttled_requests=self._connections_book.throttled,
        )
        with self._lock:
            self._snapshot = snapshot

    def _cached_listing(self) -> bytes:
        """The listing, made again at most every _LIST_FOR seconds: a LIST flood costs a send
        each, not a scan of every stream each."""
        made, body = self._listed
        now = time.monotonic()
        if now - made >= _LIST_FOR:
            body = self._listing()
            self._listed = (now, body)
        return body

    def _listing(self) -> bytes:
        wanted = None if self.names is None else set(self.names)
        rows = []
        for s in framebus.list_streams():
            if wanted is not None and s.name not in wanted:
                continue
            if s.state in ("dead", "unreadable", "closed"):
                continue
            rows.append(
                {
                    "name": s.name,
                    "state": s.state,
                    "width": s.width,
                    "height": s.height,
                    "fps": round(s.capture_fps, 2),
                    "source_fps": s.source_fps or 0.0,
                    "mode": s.mode,
                    "codec": self.codec,
                    "receivers": len(self._book.receivers(s.name)),
                }
            )
        return protocol.listing(rows)
