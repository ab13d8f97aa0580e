"""A small RTSP client: one TCP connection, RTP interleaved on it (RFC 2326, 10.12).

It does what a camera reader needs and nothing more: OPTIONS, DESCRIBE (Basic or Digest
authentication), SETUP of the first video stream over TCP, PLAY, keep-alives, TEARDOWN. The
protocol itself (parsing, SDP, authentication) is in :mod:`.protocol`, RTP in :mod:`.depacketize`.
Every failure is a specific :class:`framebus.SourceError` whose message holds no credentials.
"""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlsplit

from ...errors import (
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceUnreachable,
    SourceUnsupported,
)
from .._net import connect
from .depacketize import RtpPacket, parse_rtp
from .protocol import (
    Interleaved,
    MessageParser,
    Response,
    ServerRequest,
    VideoMedia,
    authorization,
    control_url,
    format_request,
    parse_sdp,
    small_number,
    split_credentials,
)

__all__ = ["RTSPClient"]

_RECV = 256 * 1024


class RTSPClient:
    """Connects to ``url`` and delivers the RTP packets of its first video stream.

    ``open_timeout`` bounds the connection and each answer during the handshake;
    ``read_timeout`` bounds the silence while playing.
    """

    def __init__(self, url: str, label: str, *, open_timeout: float, read_timeout: float) -> None:
        self.url, self._user, self._password = split_credentials(url)
        self.label = label
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.media: VideoMedia | None = None
        self._sock: socket.socket | None = None
        self._parser = MessageParser()
        self._cseq = 0
        self._challenge: list[str] | None = None
        self._nc = 0
        self._session = ""
        self._keepalive_every = 30.0
        self._keepalive_method = "OPTIONS"
        self._next_keepalive = 0.0
        self._rtp_channel = 0
        self._play_url = ""
        self.tcp_refused = False  # the SETUP failed because the server will not do RTP over TCP

    # -- handshake ---------------------------------------------------------------------------

    def open(self) -> VideoMedia:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        try:
            port = parts.port or 554
        except ValueError:
            raise SourceOpenError(f"cannot open {self.label}: invalid port in the URL") from None
        self._sock = connect(host, port, self.open_timeout, self.label)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        options = self._request("OPTIONS", self.url, allow_fail=True)
        public = options.header("public").upper() if options is not None else ""
        if "GET_PARAMETER" in public:
            self._keepalive_method = "GET_PARAMETER"
        described = self._request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        assert described is not None
        media = parse_sdp(described.body.decode("utf-8", "replace"))
        if media is None:
            raise SourceOpenError(f"{self.label}: the stream has no video")
        if media.codec not in ("H264", "H265"):
            raise SourceUnsupported(f"{self.label}: video codec {media.codec or '?'}")
        base = described.header("content-base") or described.header("content-location")
        base = base or self.url
        setup = self._request(
            "SETUP",
            control_url(base, media.control),
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"},
        )
        assert setup is not None
        session = setup.header("session")
        self._session = session.split(";")[0].strip()
        for param in session.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            timeout = small_number(value, 1, 86400) if key.strip().lower() == "timeout" else None
            if timeout is not None:  # (a value out of 1 s..1 day is ignored: keep-alive 30 s)
                self._keepalive_every = max(1.0, timeout / 2)
        transport = setup.header("transport").lower()
        if transport and "interleaved=" not in transport:
            self.tcp_refused = True  # (it answered with a UDP transport)
            raise SourceUnsupported(f"{self.label}: the server refused RTP over TCP")
        if "interleaved=" in transport:
            value = transport.split("interleaved=")[1].split(";")[0].split(",")[0]
            channel = small_number(value.split("-")[0], 0, 255)
            if channel is None:
                raise SourceUnsupported(
                    f"{self.label}: the server sent a bad interleaved channel: {value[:20]!r}"
                )
            self._rtp_channel = channel
        self._play_url = control_url(base, media.session_control) if media.session_control else base
        self._request("PLAY", self._play_url, {"Range": "npt=0.000-"})
        self._next_keepalive = time.monotonic() + self._keepalive_every
        assert self._sock is not None
        self._sock.settimeout(self.read_timeout)
        self.media = media
        return media

    def _headers(self, method: str, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._session:
            headers["Session"] = self._session
        if self._challenge is not None and self._user is not None:
            self._nc += 1
            auth = authorization(
                self._challenge, method, url, self._user, self._password or "", self._nc
            )
            if auth:
                headers["Authorization"] = auth
        return headers

    def _send(self, method: str, url: str, extra: dict[str, str] | None = None) -> int:
        assert self._sock is not None
        self._cseq += 1
        msg = format_request(method, url, self._cseq, self._headers(method, url, extra))
        self._sock.sendall(msg)
        return self._cseq

    def _request(
        self,
        method: str,
        url: str,
        extra: dict[str, str] | None = None,
        *,
        allow_fail: bool = False,
    ) -> Response | None:
        """Send a request and wait for its answer (authenticating once if asked to)."""
        for attempt in range(2):
            try:
                cseq = self._send(method, url, extra)
                resp = self._await_response(cseq)
            except TimeoutError:
                raise SourceUnreachable(
                    f"{self.label}: no answer to {method} within {self.open_timeout:g} s"
                ) from None
            except OSError as exc:
                raise SourceUnreachable(
                    f"{self.label}: connection lost during {method} ({exc.strerror or exc})"
                ) from None
            if resp.status == 401 and attempt == 0 and self._user is not None:
                self._challenge = resp.headers.get("www-authenticate", [])
                if authorization(self._challenge, method, url, self._user, "") is None:
                    raise SourceUnsupported(f"{self.label}: unknown authentication scheme")
                continue
            if 200 <= resp.status < 300 or allow_fail:
                return resp if 200 <= resp.status < 300 else None
            raise self._status_error(method, resp)
        raise AssertionError("unreachable")

    def _status_error(self, method: str, resp: Response) -> SourceError:
        said = f"{resp.status} {resp.reason}".strip()
        if resp.status == 401:
            if self._user is None:
                return SourceAuthError(
                    f"{self.label}: the server wants credentials (user:password@ in the URL)"
                )
            return SourceAuthError(
                f"{self.label}: the server refused the credentials (wrong user name or password?)"
            )
        if resp.status == 403:
            return SourceAuthError(f"{self.label}: access forbidden ({said})")
        if resp.status == 404:
            return SourceNotFound(f"{self.label}: the server has no stream at this path")
        if method == "SETUP" and resp.status in (400, 461):  # our one SETUP asks for TCP
            self.tcp_refused = True  # (UDP-only servers answer 461 Unsupported Transport or 400)
            return SourceUnsupported(f"{self.label}: the server refused RTP over TCP with {said}")
        if resp.status in (301, 302, 303, 305, 307, 405, 451, 454, 455, 459, 461, 501, 505, 551):
            return SourceUnsupported(f"{self.label}: the server answered {method} with {said}")
        return SourceOpenError(f"{self.label}: the server answered {method} with {said}")

    def _await_response(self, cseq: int) -> Response:
        """Read until the response to ``cseq`` comes (interleaved data before it is dropped)."""
        assert self._sock is not None
        deadline = time.monotonic() + self.open_timeout
        while True:
            msg = self._parser.next()
            if msg is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self._sock.settimeout(left)
                data = self._sock.recv(_RECV)
                if not data:
                    raise ConnectionResetError(0, "closed by the server")
                self._parser.feed(data)
            elif isinstance(msg, Response) and msg.cseq in (cseq, -1):
                return msg

    # -- playing -----------------------------------------------------------------------------

    def read_packet(self) -> RtpPacket:
        """The next RTP packet of the video stream. Raises SourceUnreachable if the server
        goes silent for ``read_timeout`` or closes the connection."""
        sock = self._sock
        assert sock is not None
        parser, channel = self._parser, self._rtp_channel
        while True:
            msg = parser.next()
            if msg is None:
                if time.monotonic() >= self._next_keepalive:
                    self._keepalive()
                try:
                    data = sock.recv(_RECV)
                except TimeoutError:
                    raise SourceUnreachable(
                        f"{self.label}: no data for {self.read_timeout:g} s"
                    ) from None
                except OSError as exc:
                    raise SourceUnreachable(
                        f"{self.label}: connection lost ({exc.strerror or exc})"
                    ) from None
                if not data:
                    raise SourceUnreachable(f"{self.label}: the server closed the connection")
                parser.feed(data)
            elif isinstance(msg, Interleaved):
                if msg.channel == channel and (pkt := parse_rtp(msg.payload)) is not None:
                    return pkt  # (RTCP, on the next channel, is not needed to receive video)
            elif isinstance(msg, ServerRequest):
                self._answer(msg)
            elif msg.status == 401 and msg.headers.get("www-authenticate"):
                # a Digest nonce went stale: the next keep-alive answers the new challenge
                self._challenge = msg.headers["www-authenticate"]
                self._next_keepalive = time.monotonic()

    def _answer(self, req: ServerRequest) -> None:
        """Some cameras ping their clients (GET_PARAMETER, OPTIONS): say we are here."""
        ok = req.method in ("GET_PARAMETER", "SET_PARAMETER", "OPTIONS")
        status = "200 OK" if ok else "551 Option not supported"
        cseq = small_number(req.headers.get("cseq", ["0"])[0], 0, 999_999_999) or 0  # echoed
        assert self._sock is not None
        with contextlib.suppress(OSError):
            self._sock.sendall(f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n\r\n".encode())

    def _keepalive(self) -> None:
        self._next_keepalive = time.monotonic() + self._keepalive_every
        with contextlib.suppress(OSError):  # the read that follows reports a lost connection
            self._send(self._keepalive_method, self._play_url or self.url)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._session:
            with contextlib.suppress(OSError):  # polite, not required: never wait for it
                sock.settimeout(0.2)
                self._cseq += 1
                headers = self._headers("TEARDOWN", self._play_url or self.url, None)
                sock.sendall(format_request("TEARDOWN", self._play_url, self._cseq, headers))
        sock.close()
