"""The sending half of the ZeroMQ transport: an :class:`Exporter` serves this machine's
streams to receivers on other machines (``framebus.attach("zmq://host:5555/cam")``, relays).

Design: ROUTER/DEALER with one credit per receiver
--------------------------------------------------

The exporter is one ROUTER socket (``tcp://HOST:PORT``) for every exported stream; each
receiver is one DEALER connected to it, for one stream. A receiver asks for a frame; the
exporter answers with the newest frame of that stream the receiver has not had, as soon as
there is one; the receiver asks again as soon as the frame arrived. So each receiver has
exactly **one frame in flight**, and it is always the newest at the moment the receiver
became ready for it: true latest-only per receiver, on any link. PUB/SUB was not chosen
because it cannot give that: a PUB queue that is full drops the *newest* message and keeps
old ones, ``CONFLATE`` is ignored on XPUB and would only cap ZeroMQ's own queue, not the
kernel's socket buffers (seconds of frames on a slow link), and a publisher cannot tell a slow
subscriber from a fast one. With credits, the kernel buffers can hold at most the one frame
in flight, whatever their size, and the request channel serves the listing (``ls
zmq://``) and the errors (unknown stream) on the same port. The price is one round trip per
frame: a receiver gets at most 1 / (RTT + transfer time) frames per second (LAN: far above
any camera's rate; 100 ms of RTT: 10 fps). ``CONFLATE`` is not used: with one credit there is
never a second frame to conflate, and on a DEALER it would merge the short replies too.

Messages (every message is one ZeroMQ part; the ROUTER adds and strips the peer's id)::

    receiver -> exporter (ASCII, at most 1 KiB: MAXMSGSIZE cuts a peer that sends more)
      GET <name> <session hex> <seq>   my credit for stream <name>; the last frame I have
      LIST                             what do you export?
      BYE                              forget me (release())
    exporter -> receiver
      <64-byte wire header><payload>   a frame (framebus.wire: magic, session, seq, ...)
      WAIT                             no frame newer than yours yet (your credit stands)
      ERR <code> <text>                notfound | ended | busy | bad: the stream is not
                                       exported, it ended, too many receivers, bad request;
                                       unsupported: its frames cannot be sent (a dtype the
                                       wire lacks; the receiver keeps its credit), at most
                                       once a second
      LIST <json>                      {"streams": [{"name", "state", "width", "height",
                                       "fps", "source_fps", "mode", "codec", "receivers"},
                                       ...]}: fps is measured, source_fps the source's own
                                       (0: none); a receiver asks once per connection

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
  0.5 s) or whose connection is gone is forgotten. A sink idle for 10 s is closed (its reader
  released); a sink of an ``every``-mode stream at once.
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

Receivers validate every message (:mod:`framebus.sources.zmq`). CURVE (opt-in,
``curve=DIR`` from :func:`framebus.net.generate_keys`): the exporter's secret key encrypts,
and only receivers whose public keys are in ``DIR/clients/`` get in (ZAP, checked by
``zmq.auth``'s authenticator thread; the directory is read again within a second of a key
being added or removed: new connections use the new set, connected receivers stay).
Exporting on an address other than loopback without CURVE logs a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

import framebus
from framebus import FrameInfo, PublisherLost, ReadTimeout, SinkClosed, StreamEnded, _exit, wire
from framebus._hosts import is_loopback
from framebus._zmq import (
    HEARTBEAT_TIMEOUT,
    REFRESH,
    ServerKeys,
    check_clients_dir,
    load_server_keys,
    parse_bind,
    send_nowait,
    server_socket,
    valid_name,
)
from framebus.errors import FramebusError, StreamNotFound
from framebus.limits import DEFAULT_MAX_CONNECTIONS, connection_budget

from ._zmq_limits import ConnectionBook, per_address_cap
from .base import Encoded, FrameSink, Pick, Subscription
from .jpeg import encode_jpeg

__all__ = ["IDLE_CLOSE", "PEER_TIMEOUT", "CodecName", "ExportConfig", "ExportServer",
           "ExporterStats", "ExportedStream", "ZmqSink", "export_url"]  # fmt: skip

log = logging.getLogger("framebus.zmq")

CodecName = Literal["jpeg", "raw"]
IDLE_CLOSE = 10.0
"""Seconds a sink with no receiver stays open (its reader attached) before it is closed."""
PEER_TIMEOUT = HEARTBEAT_TIMEOUT + 2 * REFRESH
"""Seconds of silence after which a receiver is forgotten (a live one asks every 0.5 s)."""
_SWEEP = 0.25
CLIENTS_CHECK = 1.0
"""Seconds between looks at the allowed clients' folder (``--curve DIR``/clients)."""


def export_url(endpoint: str, name: str = "", host: str | None = None) -> str:
    """``zmq://HOST:PORT[/NAME]`` for receivers of the exporter bound to ``endpoint`` (HOST:
    the bound one unless given)."""
    bound_host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    base = f"zmq://{host or bound_host}:{port}"
    return f"{base}/{name}" if name else base


def _key_files(folder: str) -> frozenset[tuple[str, int, int]]:
    """(name, mtime, size) of the public key files in ``folder``: what a reload would read."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(
                (e.name, st.st_mtime_ns, st.st_size)
                for e in entries
                if e.name.endswith(".key") and (st := e.stat())
            )
    except OSError:
        return frozenset()


_LIST_FOR = 0.5  # seconds a LIST answer is reused
_MISSING_FOR = 0.5  # seconds a name not found is answered from memory
_MISSING_KEPT = 1024  # names not found remembered at most (then forgotten all at once)


def _peer_address(fd: int) -> str:
    """The remote address of libzmq's connection on descriptor ``fd`` ("" if unknown)."""
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return ""
    try:
        return str(dup.getpeername()[0])
    except (OSError, IndexError):
        return ""
    finally:
        dup.close()


def _cut(fd: int) -> None:
    """End the TCP connection on descriptor ``fd`` (libzmq's): shut it down through a
    duplicate, so libzmq sees the peer go and cleans up as for any disconnect. The descriptor
    comes from libzmq's own events and messages in this process, never from a peer."""
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()


# a frame in flight longer than this is taken as lost: the receiver's next ask gets a new one
_IN_FLIGHT = 10.0
_LOG_EVERY = 10.0


class ZmqSink(FrameSink[bytes]):
    """One stream's frames as wire messages, encoded once for every receiver.

    ``codec="jpeg"`` (8-bit grey or BGR; BGRA loses alpha, 16-bit keeps its top byte) at
    ``quality``, or ``"raw"`` (lossless: any dtype and channel count the wire has). Each
    message is a private bytes object: header and payload, copied out of the ring once.
    Buffering: :class:`~framebus.sinks.FrameSink`'s (one item per consumer: the exporter).
    ``session`` is random per sink: a receiver sees a new sink (the exporter restarted, or
    the stream was published again) as a new session.
    """

    def __init__(self, name: str, *, codec: CodecName = "jpeg", quality: int = 80) -> None:
        if codec not in ("jpeg", "raw"):
            raise ValueError(f"codec must be 'jpeg' or 'raw', not {codec!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        self.codec: CodecName = codec
        self.quality = quality
        self.session = wire.new_session()
        super().__init__(name, pick=Pick.newest())
        self.every_mode = self._reader.stats().mode == "every"

    def encode(self, frame: np.ndarray, info: FrameInfo) -> bytes:
        capture_ns = int(info.timestamp * 1e9)
        if self.codec == "raw":
            return wire.pack_frame_bytes(
                frame, seq=info.seq, session=self.session, capture_ns=capture_ns
            )
        jpeg = encode_jpeg(frame, self.quality)
        grey = frame.ndim == 2 or frame.shape[2] == 1
        height, width = int(frame.shape[0]), int(frame.shape[1])
        header = wire.FrameHeader(
            wire.Codec.JPEG,
            wire.PixelFormat.GRAY8 if grey else wire.PixelFormat.BGR24,
            width,
            height,
            width * (1 if grey else 3),
            len(jpeg),
            info.seq,
            self.session,
            capture_ns,
            time.time_ns(),
        )
        return wire.encode_header(header) + jpeg


@dataclass
class _Peer:
    name: str
    last_seen: float
    address: str = ""
    credit: bool = False
    in_flight: bool = False
    last_sent: tuple[int, int] | None = None  # (session, seq)
    sent_at: float = 0.0


@dataclass
class _Stream:
    name: str
    sink: ZmqSink
    sub: Subscription[bytes] | None = None
    latest: Encoded[bytes] | None = None
    key: tuple[int, int] | None = None  # (session, seq) of latest
    peers: set[bytes] = field(default_factory=set)
    idle_since: float | None = None
    frames_sent: int = 0
    bytes_sent: int = 0
    failures_told: int = 0  # encode failures its receivers have been told of
    checked_at: float = 0.0  # when the failures were last looked at


@dataclass(frozen=True)
class ExportedStream:
    """One exported stream's counters."""

    name: str
    receivers: int
    frames_encoded: int
    frames_sent: int
    bytes_sent: int


@dataclass(frozen=True)
class ExporterStats:
    endpoint: str
    receivers: int
    bad_requests: int
    streams: tuple[ExportedStream, ...]
    connections: int = 0
    """TCP connections open now."""
    refused_connections: int = 0
    """Connections cut at once because ``max_connections`` were open."""
    idle_cut: int = 0
    """Connections cut because they asked nothing for a while (not receivers)."""
    throttled_requests: int = 0
    """Requests dropped because their connection asked too fast."""
    restarts: int = 0
    """Times the exporter's process died and was started again."""
    last_failure: str = ""
    """How it died the last time (e.g. ``killed by SIGABRT``)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExporterStats:
        """From the exporter's own process; a malformed record raises TypeError/KeyError."""
        streams = tuple(ExportedStream(**row) for row in data["streams"])
        return cls(
            str(data["endpoint"]),
            int(data["receivers"]),
            int(data["bad_requests"]),
            streams,
            connections=int(data["connections"]),
            refused_connections=int(data["refused_connections"]),
            idle_cut=int(data["idle_cut"]),
            throttled_requests=int(data["throttled_requests"]),
        )


@dataclass(frozen=True)
class ExportConfig:
    """What an export serves and how, validated: everything an :class:`ExportServer` needs,
    in a form that travels as JSON to the exporter's own process."""

    endpoint: str
    names: tuple[str, ...] | None
    codec: CodecName
    quality: int
    curve: str | None
    max_receivers: int
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def make(
        cls,
        endpoint: str,
        names: Iterable[str] | None = None,
        *,
        codec: CodecName = "jpeg",
        quality: int = 80,
        curve: str | os.PathLike[str] | None = None,
        max_receivers: int = 64,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> ExportConfig:
        """Check every option (ValueError, InvalidStreamName, KeyFileError) before anything
        starts."""
        if codec not in ("jpeg", "raw"):
            raise ValueError(f"codec must be 'jpeg' or 'raw', not {codec!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        if not 1 <= max_receivers <= 100_000:
            raise ValueError(f"max_receivers must be 1..100000, not {max_receivers}")
        if not 1 <= max_connections <= 1_000_000:
            raise ValueError(f"max_connections must be 1..1000000, not {max_connections}")
        parse_bind(endpoint)
        listed = None if names is None else tuple(names)
        for name in listed or ():
            if not valid_name(name):
                raise framebus.InvalidStreamName(f"invalid stream name {name!r}")
        if curve is not None:
            load_server_keys(curve)
        folder = None if curve is None else str(Path(curve).absolute())
        return cls(endpoint, listed, codec, quality, folder, max_receivers, max_connections)

    @property
    def insecure(self) -> bool:
        """No CURVE on an address other than loopback: anyone who reaches the port reads."""
        return self.curve is None and not is_loopback(parse_bind(self.endpoint).host)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "names": None if self.names is None else list(self.names),
            "codec": self.codec, "quality": self.quality, "curve": self.curve,
            "max_receivers": self.max_receivers, "max_connections": self.max_connections,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportConfig:
        """From our own parent process (a pipe, not the network): checked again all the same."""
        return cls.make(
            data["endpoint"],
            data["names"],
            codec=data["codec"],
            quality=data["quality"],
            curve=data["curve"],
            max_receivers=data["max_receivers"],
            max_connections=data["max_connections"],
        )


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
                self._clients_seen = _key_files(keys.clients_dir)
                self._clients_checked = time.monotonic()
            self._sock = server_socket(self._ctx, keys)
            if ":" in host:
                self._sock.setsockopt(zmq.IPV6, 1)
            try:
                self._sock.bind(bind)
            except zmq.ZMQError as exc:
                raise FramebusError(f"cannot listen on {endpoint}: {exc.strerror}") from None
            bound = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            # connections come and go: counted, capped, cut when silent (_zmq_limits)
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
        self._peers: dict[bytes, _Peer] = {}
        self._closing: list[threading.Thread] = []
        self._book = ConnectionBook(connection_budget(config.max_connections))
        self._per_address = per_address_cap(config.max_receivers)
        self._listed: tuple[float, bytes] = (-math.inf, b"")  # LIST answers, made at most 2/s
        self._missing: dict[str, tuple[float, str]] = {}  # names not found lately: until, ERR
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
            for stream in self._streams.values():
                stream.sink.close()
            self._streams.clear()
            for thread in self._closing:
                thread.join()
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
                    for victim in self._book.accepted(fd, _peer_address(fd), now):
                        _cut(victim)
                else:
                    self._book.closed(fd)

    def _requests(self, sock: zmq.Socket[Any]) -> None:
        """Up to 64 waiting requests (then frames get their turn), each checked against its
        connection's rate."""
        now = time.monotonic()
        with contextlib.suppress(zmq.Again):
            for _ in range(64):
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                last = frames[-1]
                if not self._book.request(int(last.get(zmq.SRCFD)), now):
                    continue  # over its rate: dropped, counted in throttled_requests
                address = str(last.get("Peer-Address"))
                self._request(sock, [f.bytes for f in frames], address)

    def _request(self, sock: zmq.Socket[Any], parts: list[bytes], address: str = "") -> None:
        if len(parts) != 2:
            self._bad_request(f"a request of {len(parts) - 1} parts")
            return
        peer_id, body = parts
        words = body.split()
        verb = words[0] if words else b""
        if verb == b"GET" and len(words) == 4:
            try:
                name = words[1].decode("ascii")
                session = int(words[2], 16) if len(words[2]) <= 16 else -1
                seq = int(words[3]) if len(words[3]) <= 20 else -1
            except ValueError:
                session = -1
            if session < 0 or seq < 0 or not valid_name(name):
                self._bad_request("malformed GET")
                self._send(sock, peer_id, b"ERR bad malformed request")
                return
            self._get(sock, peer_id, name, (session, seq), address)
        elif verb == b"LIST" and len(words) == 1:
            self._send(sock, peer_id, b"LIST " + self._cached_listing())
        elif verb == b"BYE" and len(words) == 1:
            self._forget(peer_id)
        else:
            self._bad_request(f"unknown request {body[:16]!r}")
            self._send(sock, peer_id, b"ERR bad unknown request")

    def _send(self, sock: zmq.Socket[Any], peer_id: bytes, data: bytes) -> bool:
        """Send without blocking; False if the peer is gone (it is forgotten) or full."""
        try:
            send_nowait(sock, [peer_id, data])
            return True
        except zmq.Again:
            return False  # its queue is full: it gets the newest frame when it asks again
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self._forget(peer_id)
                return False
            raise

    def _get(
        self,
        sock: zmq.Socket[Any],
        peer_id: bytes,
        name: str,
        has: tuple[int, int],
        address: str = "",
    ) -> None:
        now = time.monotonic()
        peer = self._peers.get(peer_id)
        if peer is not None and peer.name != name:
            self._forget(peer_id)
            peer = None
        if peer is None:
            busy = self._busy(address)
            if busy:
                self._send(sock, peer_id, f"ERR busy {busy}".encode())
                return
        stream, error = self._open(name)
        if stream is None:
            self._send(sock, peer_id, error.encode())
            return
        if peer is None:
            peer = self._peers[peer_id] = _Peer(name, now, address)
        peer.last_seen = now
        if peer.in_flight and peer.last_sent != has and now - peer.sent_at < _IN_FLIGHT:
            return  # a keep-alive that overtook the frame it has not received yet
        peer.in_flight, peer.credit = False, True
        if not stream.peers:
            stream.idle_since = None
        stream.peers.add(peer_id)
        if stream.sub is None:
            stream.sub = stream.sink.subscribe(self._wake)
        if not self._offer(sock, stream, peer_id, peer):
            self._send(sock, peer_id, b"WAIT")

    def _busy(self, address: str) -> str:
        """Why a new receiver from ``address`` cannot have a slot ("" if it can)."""
        if len(self._peers) >= self.max_receivers:
            return f"the exporter serves its maximum of {self.max_receivers} receivers"
        mine = sum(1 for p in self._peers.values() if p.address == address)
        if address and mine >= self._per_address:
            return f"{address} already has its maximum of {self._per_address} receivers here"
        return ""

    def _open(self, name: str) -> tuple[_Stream | None, str]:
        """The stream entry for ``name``, its sink created on demand; else (None, ERR ...).
        A name not found is remembered for a moment: asking again costs no look-up."""
        stream = self._streams.get(name)
        if stream is not None:
            return stream, ""
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

    def _open_sink(self, name: str) -> tuple[_Stream | None, str]:
        if self.names is not None and name not in self.names:
            exports = ", ".join(self.names) or "none"
            return None, f"ERR notfound stream {name!r} is not exported here (exports: {exports})"
        try:
            sink = ZmqSink(name, codec=self.codec, quality=self.quality)
        except StreamNotFound:
            return None, f"ERR notfound no stream {name!r} on the exporter's host"
        except FramebusError as exc:
            return None, f"ERR unavailable stream {name!r}: {exc}"
        stream = self._streams[name] = _Stream(name, sink)
        self._listed = (-math.inf, b"")  # the cached listing may predate this stream
        return stream, ""

    def _offer(self, sock: zmq.Socket[Any], stream: _Stream, peer_id: bytes, peer: _Peer) -> bool:
        """Send the stream's newest frame to ``peer`` if it has credit and not that frame."""
        if not peer.credit or stream.latest is None or stream.key is None:
            return False
        last = peer.last_sent
        if last is not None and (last[0] == stream.key[0] and last[1] >= stream.key[1]):
            return False
        if not self._send(sock, peer_id, stream.latest.data):
            return False
        peer.credit, peer.in_flight, peer.last_sent = False, True, stream.key
        peer.sent_at = time.monotonic()
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
            for peer_id in list(stream.peers):
                peer = self._peers.get(peer_id)
                if peer is not None:
                    self._offer(sock, stream, peer_id, peer)

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
        message = f"ERR unsupported stream {stream.name!r}: {failed.last_encode_error}".encode()
        for peer_id in list(stream.peers):
            peer = self._peers.get(peer_id)
            if peer is not None and peer.credit:
                self._send(sock, peer_id, message[:512])

    def _ended(self, sock: zmq.Socket[Any], stream: _Stream, exc: BaseException) -> None:
        """The stream ended (or its publisher died): tell its receivers, drop its sink."""
        code = "ended" if isinstance(exc, (StreamEnded, SinkClosed)) else "lost"
        message = f"ERR {code} stream {stream.name!r}: {exc}".encode()
        for peer_id in list(stream.peers):
            self._send(sock, peer_id, message[:512])
            self._forget(peer_id)
        self._retire(stream)

    def _retire(self, stream: _Stream) -> None:
        self._streams.pop(stream.name, None)
        if stream.sub is not None:
            stream.sub.close()
        thread = threading.Thread(target=stream.sink.close, name="framebus-zmq-close", daemon=True)
        self._closing = [t for t in self._closing if t.is_alive()] + [thread]
        thread.start()  # closing waits for the sink's worker: not in this thread

    def _forget(self, peer_id: bytes) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        stream = self._streams.get(peer.name)
        if stream is not None:
            stream.peers.discard(peer_id)

    def _reload_clients(self, now: float) -> None:
        """Take up a change of the allowed clients' folder (a key added or removed), checked
        every CLIENTS_CHECK s: new handshakes use the new set. (A removed key refuses new
        connections; a receiver already connected stays until it disconnects.)"""
        if self._auth is None or self._clients_dir is None:
            return
        if now - self._clients_checked < CLIENTS_CHECK:
            return
        self._clients_checked = now
        seen = _key_files(self._clients_dir)
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
        for fd in self._book.idle(now):
            _cut(fd)
        for peer_id, peer in list(self._peers.items()):
            if now - peer.last_seen > PEER_TIMEOUT:
                self._forget(peer_id)
        for stream in list(self._streams.values()):
            if stream.peers:
                continue
            if stream.sub is not None:  # nobody receives: no more reading nor encoding
                stream.sub.close()
                stream.sub, stream.latest, stream.key = None, None, None
            if stream.idle_since is None:
                stream.idle_since = now
            if stream.sink.every_mode or now - stream.idle_since >= IDLE_CLOSE:
                self._retire(stream)
        snapshot = ExporterStats(
            self.endpoint,
            len(self._peers),
            self._bad,
            tuple(
                ExportedStream(
                    s.name,
                    len(s.peers),
                    s.sink.stats().frames_encoded,
                    s.frames_sent,
                    s.bytes_sent,
                )
                for s in self._streams.values()
            ),
            connections=len(self._book),
            refused_connections=self._book.refused,
            idle_cut=self._book.idle_cut,
            throttled_requests=self._book.throttled,
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
            stream = self._streams.get(s.name)
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
                    "receivers": len(stream.peers) if stream else 0,
                }
            )
        return json.dumps({"streams": rows}).encode()
