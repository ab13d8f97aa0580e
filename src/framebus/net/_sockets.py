"""What both halves of the ZeroMQ transport share: URLs, socket options, CURVE key files and
the connections' descriptors. The sending half is :mod:`.server`, the receiving half
:mod:`.receiver`; the messages are :mod:`.protocol`'s.

pyzmq is an optional dependency (``framebus[zmq]``): this module imports it, so import this
module only where the transport is used.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._hosts import host_port
from ..bus import valid_name
from ..errors import FramebusError, KeyFileError

try:
    import zmq
    import zmq.auth
except ImportError as exc:  # pragma: no cover - the extra brings it
    raise FramebusError(
        f"the ZeroMQ transport needs framebus[zmq] (pip install 'framebus[zmq]'): {exc}"
    ) from None

__all__ = [
    "CLIENT_KEY",
    "CLIENTS_DIR",
    "HEARTBEAT_IVL",
    "HEARTBEAT_TIMEOUT",
    "MAX_REQUEST",
    "REFRESH",
    "MAX_KEY_FILE",
    "SERVER_KEY",
    "Address",
    "ClientKeys",
    "ServerKeys",
    "check_clients_dir",
    "check_key_file",
    "client_socket",
    "cut",
    "generate_keys",
    "key_files",
    "load_client_keys",
    "load_server_keys",
    "parse_bind",
    "parse_url",
    "peer_address",
    "send_nowait",
    "server_socket",
    "valid_name",
]

# -- timing (seconds) ----------------------------------------------------------------------

HEARTBEAT_IVL = 1.0
"""ZMTP PING every second on an idle connection..."""
HEARTBEAT_TIMEOUT = 3.0
"""...and the connection is dropped (and redialled) when nothing came back for 3 s."""
KEEPALIVE_IDLE = 5
"""Seconds of silence before the exporter's TCP keepalive probes a receiver's connection (3
unanswered probes a second apart close it)."""
RECONNECT_IVL = 0.1
RECONNECT_IVL_MAX = 0.5  # a restarted exporter is redialled within half a second
HANDSHAKE_IVL = 3.0
REFRESH = 0.5
"""A receiver that got nothing for this long asks again (its credit, and a keep-alive)."""

# -- sizes -----------------------------------------------------------------------------------

MAX_REQUEST = 1024
"""The exporter's ``MAXMSGSIZE``: requests are short text lines; a peer sending more is cut."""
SOCKET_BUFFER = 2 * 1024 * 1024
"""``SNDBUF``/``RCVBUF`` of both ends: a few JPEG frames. With one credit per receiver the
kernel buffers never hold more than the one frame in flight; the size bounds that frame's
transfer window, not a queue."""

# -- addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """Where an exporter listens: ``tcp://host:port``; ``name`` is a stream (or "")."""

    host: str
    port: int
    name: str = ""

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def url(self) -> str:
        base = f"zmq://{self.endpoint.removeprefix('tcp://')}"
        return f"{base}/{self.name}" if self.name else base


def _host_port(text: str, what: str) -> tuple[str, int]:
    try:
        return host_port(text)
    except ValueError as exc:
        raise ValueError(f"invalid {what} {text!r}: {exc}") from None


def parse_url(url: str, *, need_name: bool = True) -> Address:
    """``zmq://HOST:PORT/NAME`` (``NAME`` optional when ``need_name`` is False)."""
    if not url.startswith("zmq://"):
        raise ValueError(f"invalid URL {url!r}: expected zmq://HOST:PORT/NAME")
    rest = url[len("zmq://") :]
    hostport, _, name = rest.partition("/")
    host, port = _host_port(hostport, "zmq URL")
    if port == 0:
        raise ValueError(f"invalid zmq URL {url!r}: port 0")
    name = name.rstrip("/")
    if need_name and not name:
        raise ValueError(f"zmq URL {url!r} names no stream: expected zmq://HOST:PORT/NAME")
    if name and not valid_name(name):
        raise ValueError(f"zmq URL {url!r}: invalid stream name {name!r}")
    return Address(host, port, name)


def parse_bind(text: str) -> Address:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``) to listen on; HOST ``*`` or ``0.0.0.0`` is every
    interface, PORT 0 a free port."""
    hostport = text.removeprefix("tcp://")
    if "://" in hostport:
        raise ValueError(f"invalid endpoint {text!r}: only tcp://HOST:PORT is supported")
    host, port = _host_port(hostport, "endpoint")
    return Address(host, port)


# -- CURVE keys ------------------------------------------------------------------------------

SERVER_KEY = "server.key"
"""In a key directory: the exporter's public key (give it to every receiver)."""
SERVER_SECRET = "server.key_secret"
CLIENT_KEY = "client.key_secret"
"""In a key directory: a receiver's key pair (its public half also in ``clients/``)."""
CLIENTS_DIR = "clients"
"""In a key directory: the public keys of the receivers an exporter lets in."""


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    clients_dir: str


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


MAX_KEY_FILE = 64 * 1024
"""Bytes a CURVE key file may have (one is about 300): zmq.auth reads a file whole, so a key
"file" that is /dev/zero or a huge file would run the process out of memory."""


def check_key_file(path: str | os.PathLike[str]) -> None:
    """KeyFileError unless ``path`` is a regular file of at most MAX_KEY_FILE bytes."""
    import stat

    try:
        st = os.stat(path)
    except OSError as exc:
        raise KeyFileError(
            f"cannot read CURVE key file {os.fspath(path)}: {exc.strerror or 'not found'}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"CURVE key file {os.fspath(path)} is not a regular file")
    if st.st_size > MAX_KEY_FILE:
        raise KeyFileError(
            f"CURVE key file {os.fspath(path)} has {st.st_size} bytes: not a key file "
            f"(at most {MAX_KEY_FILE})"
        )


def check_clients_dir(folder: str | os.PathLike[str]) -> None:
    """KeyFileError naming the first ``*.key`` in ``folder`` that :func:`check_key_file`
    refuses (zmq.auth reads every one of them whole)."""
    for entry in sorted(Path(folder).glob("*.key")):
        check_key_file(entry)


def _load(path: str | os.PathLike[str], need_secret: bool) -> tuple[bytes, bytes | None]:
    check_key_file(path)
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a key file"
        raise KeyFileError(f"cannot read CURVE key file {os.fspath(path)}: {why}") from None
    if need_secret and not secret:
        raise KeyFileError(f"CURVE key file {os.fspath(path)} holds no secret key")
    return public, secret


def load_server_keys(directory: str | os.PathLike[str]) -> ServerKeys:
    """An exporter's keys from a directory made by :func:`generate_keys`."""
    d = Path(directory)
    public, secret = _load(d / SERVER_SECRET, True)
    clients = d / CLIENTS_DIR
    if not clients.is_dir():
        raise KeyFileError(f"CURVE key directory {d} has no {CLIENTS_DIR}/ of allowed clients")
    check_clients_dir(clients)
    assert secret is not None
    return ServerKeys(public, secret, str(clients))


def load_client_keys(
    server_key: str | os.PathLike[str], client_key: str | os.PathLike[str]
) -> ClientKeys:
    """A receiver's keys: the exporter's public key file and this receiver's key pair file."""
    server_public, _ = _load(server_key, False)
    public, secret = _load(client_key, True)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def generate_keys(directory: str | os.PathLike[str], clients: int = 1) -> list[Path]:
    """Create a key directory: ``server.key`` + ``server.key_secret`` (the exporter's),
    ``client.key_secret`` (+ ``client.key``) for receivers (more clients: ``client2`` ...),
    and ``clients/`` holding the public keys the exporter accepts. Existing files are kept.
    Returns the files written. Secret files are created readable by their owner only."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    allowed = d / CLIENTS_DIR
    allowed.mkdir(exist_ok=True)
    written: list[Path] = []
    names = ["server"] + [f"client{i if i > 1 else ''}" for i in range(1, clients + 1)]
    old = os.umask(0o077)
    try:
        for name in names:
            if (d / f"{name}.key_secret").exists():
                continue
            public, secret = zmq.auth.create_certificates(str(d), name)
            written += [Path(public), Path(secret)]
            if name != "server":
                target = allowed / f"{name}.key"
                target.write_bytes(Path(public).read_bytes())
                written.append(target)
    finally:
        os.umask(old)
    return written


# -- sockets ---------------------------------------------------------------------------------


def _common(sock: zmq.Socket[Any], max_message: int) -> None:
    sock.setsockopt(zmq.LINGER, 0)  # close never waits for unsent frames
    sock.setsockopt(zmq.MAXMSGSIZE, max_message)
    sock.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT_IVL * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(HEARTBEAT_TIMEOUT * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TTL, int(HEARTBEAT_TIMEOUT * 1000))
    sock.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_IVL * 1000))
    sock.setsockopt(zmq.SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(zmq.RCVBUF, SOCKET_BUFFER)


def server_socket(ctx: zmq.Context[Any], keys: ServerKeys | None) -> zmq.Socket[Any]:
    """The exporter's ROUTER: small requests in, at most one frame per peer queued out."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
    _common(sock, MAX_REQUEST)
    # No ZMTP heartbeats of its own: libzmq 4.3.5 aborts the process (assertion `!_io_error`,
    # stream_engine_base.cpp:310; libzmq #4364, unfixed) when its heartbeat timer fires on a
    # connection that was throttled at RCVHWM and then reset by the peer; any peer can do
    # that. Receivers still get PONGs for their PINGs (their liveness check); the exporter
    # forgets a silent receiver by the protocol (PEER_TIMEOUT) and TCP keepalive closes a
    # dead connection.
    sock.setsockopt(zmq.HEARTBEAT_IVL, 0)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a gone peer is an error, not a silent drop
    sock.setsockopt(zmq.SNDHWM, 4)  # per peer: the one credited frame and a few short replies
    sock.setsockopt(zmq.RCVHWM, 16)  # per peer: short requests
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_server = True
    return sock


def send_nowait(sock: zmq.Socket[Any], parts: list[bytes]) -> None:
    """Send one message without blocking; :class:`zmq.Again` only if the peer's queue is full.

    A socket learns that its I/O thread took messages off a peer's queue (``SNDHWM``) from
    commands it processes lazily: a send looks at them at most about once a millisecond, a
    read only when nothing is waiting. So after a few fast round trips a non-blocking send
    can find "full" a queue the peer emptied long ago (``EAGAIN``, and the reply is lost).
    Reading ``ZMQ_EVENTS`` processes the pending commands; then the send is tried once more.
    """
    try:
        sock.send_multipart(parts, zmq.NOBLOCK, copy=False)
    except zmq.Again:
        sock.getsockopt(zmq.EVENTS)
        sock.send_multipart(parts, zmq.NOBLOCK, copy=False)


def client_socket(
    ctx: zmq.Context[Any], keys: ClientKeys | None, max_message: int
) -> zmq.Socket[Any]:
    """A receiver's DEALER: one frame in flight (credit), requests never queued offline."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    _common(sock, max_message)
    sock.setsockopt(zmq.IMMEDIATE, 1)  # no request queued for a connection not yet made
    sock.setsockopt(zmq.IPV6, 1)  # IPv6 addresses and names too (IPv4 still works)
    sock.setsockopt(zmq.RECONNECT_IVL, int(RECONNECT_IVL * 1000))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, int(RECONNECT_IVL_MAX * 1000))
    sock.setsockopt(zmq.RCVHWM, 4)  # the credited frame and a few short replies
    sock.setsockopt(zmq.SNDHWM, 4)
    if keys is not None:
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        sock.curve_serverkey = keys.server_public
    return sock


def key_files(folder: str) -> frozenset[tuple[str, int, int]]:
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


def peer_address(fd: int) -> str:
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


def cut(fd: int) -> None:
    """End the TCP connection on descriptor ``fd`` (libzmq's): shut it down through a
    duplicate, so libzmq sees the peer go and cleans up as for any disconnect. The descriptor
    comes from libzmq's own events and messages in this process, never from a peer."""
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()
