"""Publishing to an RTSP server (ANNOUNCE, SETUP with ``mode=record``, RECORD): the socket side.

RTP goes interleaved on the RTSP connection (RFC 2326, 10.12) when the server takes it, else
over UDP (``transport="auto"`` tries TCP first, as MediaMTX recommends). The messages, the
session description and the packets are made with no I/O in :mod:`framebus._rtsp` and
:mod:`framebus._rtp`.

Buffers: the kernel's send buffer of the connection is capped at :data:`SEND_BUFFER`;
:meth:`RtspPublisher.backlog` says how many bytes the server has not acknowledged yet, which the
caller uses to drop frames at a keyframe boundary instead of queueing. Whatever the server sends
back (answers to keep-alives, RTCP receiver reports, requests) is read as it comes, through the
bounded :class:`~framebus._rtsp.MessageParser`, and dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import termios
import time
from urllib.parse import urlsplit

from framebus._rtp import Packetizer, announce_sdp, sender_report
from framebus._rtsp import (
    MessageParser,
    Response,
    authorization,
    control_url,
    format_request,
    interleaved_channel,
    parse_session,
    small_number,
    split_credentials,
)
from framebus._urls import check_url, redact
from framebus.errors import (
    PushAuthError,
    PushError,
    PushRefused,
    PushUnreachable,
    SourceUnsupported,
)

__all__ = ["SEND_BUFFER", "TRANSPORTS", "RtspPublisher"]

SEND_BUFFER = 512 * 1024
"""The connection's kernel send buffer (Linux doubles it): about a second of a 4 Mbit/s stream."""
TRANSPORTS = ("auto", "tcp", "udp")
_RECV = 64 * 1024
_SERVICE_BYTES = 256 * 1024  # read at most this much of what the server sends per service()
_SR_EVERY = 5.0  # seconds between RTCP sender reports
_TCP_REFUSED = (400, 461)  # a server that will not take RTP over TCP (461; some cameras say 400)


def _rtsp_url(url: str) -> tuple[str, int]:
    check_url(url, PushRefused)  # (a password with an unencoded / # ?: refused, never shown)
    parts = urlsplit(url)
    if "@" in parts.path + parts.query + parts.fragment:  # (the same, with a number after ':')
        raise PushRefused(
            f"invalid URL {redact(url)}: a user name or password must be percent-encoded (write "
            "/ as %2F, # as %23, ? as %3F, @ as %40)"
        )
    if parts.scheme.lower() != "rtsp":
        raise PushRefused(f"{redact(url)}: only rtsp:// URLs can be pushed to")
    try:
        port = parts.port or 554
    except ValueError:
        raise PushRefused(f"{redact(url)}: bad port") from None
    if not parts.hostname:
        raise PushRefused(f"{redact(url)}: no host")
    return parts.hostname, port


class RtspPublisher:
    """One publishing session: :meth:`open`, then :meth:`send` access units, :meth:`close`.

    ``timeout`` bounds the connection, each answer, and a send the server does not take.
    Raises PushUnreachable, PushAuthError or PushRefused (the message never holds credentials).
    Not thread-safe: one thread drives it.
    """

    def __init__(self, url: str, *, transport: str = "auto", timeout: float = 5.0) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.host, self.port = _rtsp_url(url)
        self.url, self._user, self._password = split_credentials(url)
        self.label = self.url  # (never the credentials: they were split off)
        self.want = transport
        self.timeout = timeout
        self.transport = ""  # "tcp" or "udp" once open
        self.codec = ""  # what was announced
        self._sock: socket.socket | None = None
        self._udp: tuple[socket.socket, socket.socket] | None = None
        self._udp_dest: tuple[tuple[str, int], tuple[str, int]] | None = None
        self._parser = MessageParser()
        self._cseq = 0
        self._challenge: list[str] | None = None
        self._nc = 0
        self._session = ""
        self._keepalive_every = 25.0
        self._next_keepalive = 0.0
        self._channel = 0
        self._packetizer: Packetizer | None = None
        self._next_report = 0.0
        self.dropped_udp = 0  # RTP packets the kernel would not take (UDP: no queue)

    # -- the handshake ------------------------------------------------------------------------

    def open(self, codec: str, sets: dict[str, bytes]) -> None:
        """Connect, ANNOUNCE the stream (``codec`` with its parameter ``sets``), SETUP, RECORD."""
        try:
            self._connect()
            address = self._sock.getsockname()[0] if self._sock else "127.0.0.1"
            sdp = announce_sdp(codec, sets, address, "trackID=0")
            self._request(
                "ANNOUNCE", self.url, {"Content-Type": "application/sdp"}, sdp.encode("ascii")
            )
            track = control_url(self.url, "trackID=0")
            tcp = self.want in ("auto", "tcp")
            if tcp:
                answer = self._request(
                    "SETUP",
                    track,
                    {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"},
                    check=False,
                )
                if answer.status in _TCP_REFUSED and self.want == "auto":
                    tcp = False
                else:
                    self._check(answer, "SETUP")
                    channel = interleaved_channel(answer.header("transport"))
                    self._channel = 0 if channel is None else channel
                    self.transport = "tcp"
            if not tcp:
                self._setup_udp(track)
            headers = {"Range": "npt=0.000-"}
            self._request("RECORD", self.url, headers)
        except (OSError, ValueError) as exc:
            self.close()
            raise self._connection_error(exc) from None
        except BaseException:
            self.close()
            raise
        self._packetizer = Packetizer(codec, secrets.randbits(32), secrets.randbits(16))
        self.codec = codec
        self._next_report = 0.0

    def _connect(self) -> None:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )[0]
        except OSError as exc:
            raise self._connection_error(exc) from None
        sock = socket.socket(family, kind, proto)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock  # before connecting: abort() may cut the connection attempt short
        sock.settimeout(self.timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            raise self._connection_error(exc) from None

    def _setup_udp(self, track: str) -> None:
        rtp, rtcp = _udp_pair(self._sock.getsockname()[0] if self._sock else "")
        self._udp = (rtp, rtcp)
        port = rtp.getsockname()[1]
        answer = self._request(
            "SETUP", track, {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1};"
                             "mode=record"}
        )  # fmt: skip
        ports = _server_ports(answer.header("transport"))
        if ports is None:
            raise PushRefused(f"{self.label}: the server named no UDP port to send RTP to")
        host = self._sock.getpeername()[0] if self._sock else self.host
        self._udp_dest = ((host, ports[0]), (host, ports[1]))
        self.transport = "udp"

    def _connection_error(self, exc: OSError | ValueError) -> PushError:
        if isinstance(exc, PushError):
            return exc
        if isinstance(exc, socket.gaierror):
            return PushUnreachable(f"{self.label}: unknown host {self.host!r}")
        if isinstance(exc, ConnectionRefusedError):
            return PushUnreachable(
                f"{self.label}: connection refused (is the server running, is the port right?)"
            )
        if isinstance(exc, TimeoutError):
            return PushUnreachable(f"{self.label}: no answer within {self.timeout:g} s")
        if isinstance(exc, OSError):
            return PushUnreachable(f"{self.label}: {os.strerror(exc.errno or 0).lower()}")
        return PushRefused(f"{self.label}: {exc}")

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        check: bool = True,
    ) -> Response:
        for _ in range(2):  # once more with credentials after a 401
            answer = self._exchange(method, url, headers, body)
            if answer.status == 401 and self._user is not None and self._challenge is None:
                self._challenge = answer.headers.get("www-authenticate", [])
                continue
            break
        if check:
            self._check(answer, method)
        session = answer.header("session")
        if session:
            ident, timeout = parse_session(session)
            self._session = ident or self._session
            if timeout:
                self._keepalive_every = max(1.0, timeout / 2)
        return answer

    def _check(self, answer: Response, method: str) -> None:
        if 200 <= answer.status < 300:
            return
        what = f"{self.label}: {method} answered {answer.status} {answer.reason[:80]}".rstrip()
        if answer.status in (401, 403):
            hint = "" if self._user is not None else " (the URL has no user:password)"
            raise PushAuthError(f"{what}: credentials refused{hint}")
        raise PushRefused(what)

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Response:
        sock = self._sock
        assert sock is not None
        self._cseq += 1
        all_headers = dict(headers)
        if self._session:
            all_headers["Session"] = self._session
        if self._challenge is not None and self._user is not None:
            self._nc += 1
            auth = authorization(
                self._challenge, method, url, self._user, self._password or "", self._nc
            )
            if auth is None:
                raise PushAuthError(f"{self.label}: the server asks for an unknown authentication")
            all_headers["Authorization"] = auth
        if body:
            all_headers["Content-Length"] = str(len(body))
        try:
            message = format_request(method, url, self._cseq, all_headers) + body
        except SourceUnsupported as exc:
            raise PushRefused(f"{self.label}: {exc}") from None
        sock.settimeout(self.timeout)
        sock.sendall(message)
        deadline = time.monotonic() + self.timeout
        while True:
            got = self._next_message()
            if isinstance(got, Response) and got.cseq in (self._cseq, -1):
                return got
            if got is not None:
                continue  # RTCP, a server's request, an old answer
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(_RECV)
            if not data:
                raise PushUnreachable(f"{self.label}: the server closed the connection")
            self._parser.feed(data)

    def _next_message(self) -> object:
        try:
            return self._parser.next()
        except SourceUnsupported as exc:
            raise PushRefused(f"{self.label}: {exc}") from None

    # -- sending ------------------------------------------------------------------------------

    def send(self, access_unit: bytes, rtp_time: int, wall_time: float) -> None:
        """Send one access unit (Annex-B) stamped ``rtp_time`` (90 kHz), captured at
        ``wall_time`` (seconds since the epoch, for the sender reports). Waits at most
        ``timeout`` for the kernel to take it over TCP; raises PushUnreachable if it does not."""
        p, sock = self._packetizer, self._sock
        if p is None or sock is None:
            raise PushUnreachable(f"{self.label}: not connected")
        packets = p.packetize(access_unit, rtp_time)
        now = time.monotonic()
        report = None
        if now >= self._next_report:
            self._next_report = now + _SR_EVERY
            report = sender_report(p, wall_time, rtp_time)
        try:
            if self.transport == "tcp":
                frames = [b"$" + bytes([self._channel]) + len(pk).to_bytes(2, "big") + pk
                          for pk in packets]  # fmt: skip
                if report is not None:
                    head = bytes([self._channel + 1]) + len(report).to_bytes(2, "big")
                    frames.append(b"$" + head + report)
                sock.settimeout(self.timeout)
                sock.sendall(b"".join(frames))
            else:
                assert self._udp is not None and self._udp_dest is not None
                for pk in packets:
                    try:
                        self._udp[0].sendto(pk, self._udp_dest[0])
                    except BlockingIOError:
                        self.dropped_udp += 1
                if report is not None:
                    with contextlib.suppress(BlockingIOError):
                        self._udp[1].sendto(report, self._udp_dest[1])
            self.service()
        except OSError as exc:
            raise self._connection_error(exc) from None

    def backlog_limit(self) -> int:
        """The most :meth:`backlog` can reach before a send waits: half the kernel's buffer."""
        sock = self._sock
        try:
            size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) if sock else 0
        except OSError:
            size = 0
        return max(64 * 1024, size // 2) if size else 2 * SEND_BUFFER

    def abort(self) -> None:
        """Cut the connection from another thread: a send, receive or connection attempt
        under way in the driving thread fails at once (it then calls :meth:`close`)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def backlog(self) -> int:
        """Bytes sent but not yet acknowledged by the server (0 over UDP, or if unknown)."""
        sock = self._sock
        if sock is None or self.transport != "tcp":
            return 0
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return int.from_bytes(queued, "little")

    def service(self) -> None:
        """Read what the server sent (and drop it), send a keep-alive when one is due. Raises
        PushUnreachable if the server closed the connection."""
        sock = self._sock
        if sock is None:
            raise PushUnreachable(f"{self.label}: not connected")
        sock.settimeout(0.0)  # (a timeout would make Python wait for data first)
        taken = 0
        while taken < _SERVICE_BYTES:  # a server that floods us cannot hold the thread here
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise self._connection_error(exc) from None
            if not data:
                raise PushUnreachable(f"{self.label}: the server closed the connection")
            taken += len(data)
            self._parser.feed(data)
            while (got := self._next_message()) is not None:
                if isinstance(got, Response) and got.status in (401, 403):
                    raise PushAuthError(f"{self.label}: the server refused the credentials")
        now = time.monotonic()
        if now >= self._next_keepalive:
            if self._next_keepalive:  # not at the start: RECORD just refreshed the session
                try:
                    self._keepalive()
                except OSError as exc:
                    raise self._connection_error(exc) from None
            self._next_keepalive = now + self._keepalive_every

    def _keepalive(self) -> None:
        """An OPTIONS with the session, not waited for (its answer is read by :meth:`service`)."""
        sock = self._sock
        assert sock is not None
        self._cseq += 1
        headers = {"Session": self._session} if self._session else {}
        if self._challenge is not None and self._user is not None:
            self._nc += 1
            auth = authorization(
                self._challenge, "OPTIONS", self.url, self._user, self._password or "", self._nc
            )
            if auth is not None:
                headers["Authorization"] = auth
        sock.settimeout(self.timeout)
        sock.sendall(format_request("OPTIONS", self.url, self._cseq, headers))

    def close(self) -> None:
        """TEARDOWN (best effort, not waited for) and close the sockets (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._packetizer is not None:
                self._cseq += 1
                headers = {"Session": self._session} if self._session else {}
                with contextlib.suppress(OSError, SourceUnsupported):
                    sock.settimeout(0.2)
                    sock.sendall(format_request("TEARDOWN", self.url, self._cseq, headers))
            sock.close()
        udp, self._udp = self._udp, None
        if udp is not None:
            for s in udp:
                s.close()
        self._packetizer = None
        self._parser = MessageParser()
        self._session, self._challenge, self.transport = "", None, ""


def _udp_pair(address: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on consecutive ports, the first even (RTP, then RTCP; RFC 3550)."""
    for _ in range(64):
        rtp = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET,
                            socket.SOCK_DGRAM)  # fmt: skip
        try:
            rtp.bind((address, 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0 and port < 65535:
                rtcp = socket.socket(rtp.family, socket.SOCK_DGRAM)
                try:
                    rtcp.bind((address, port + 1))
                except OSError:
                    rtcp.close()
                else:
                    for s in (rtp, rtcp):
                        s.setblocking(False)
                    return rtp, rtcp
        except OSError:
            pass
        rtp.close()
    raise PushUnreachable("no two consecutive UDP ports free for RTP and RTCP")


def _server_ports(transport: str) -> tuple[int, int] | None:
    """``server_port=a-b`` of a SETUP answer's ``Transport:``."""
    for part in transport.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "server_port":
            first, _, second = value.partition("-")
            a = small_number(first, 1, 65535)
            b = small_number(second, 1, 65535) if second else (a + 1 if a else None)
            if a is not None and b is not None:
                return a, b
    return None
