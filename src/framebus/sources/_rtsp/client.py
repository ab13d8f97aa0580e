"""A small RTSP client: one TCP connection, RTP interleaved on it (RFC 2326, 10.12).

It does what a camera reader needs and nothing more: OPTIONS, DESCRIBE (Basic or Digest
authentication), SETUP of the first video stream over TCP, PLAY, keep-alives, TEARDOWN, and up
to :data:`MAX_REDIRECTS` redirects. The protocol itself (parsing, SDP, authentication) is in
:mod:`.protocol`, RTP in :mod:`.depacketize`.

Every failure is a specific :class:`framebus.SourceError` whose message holds no credentials.
:class:`~framebus.SourceUnsupported` means *another backend may handle this stream* (another
codec, a server that refuses RTP over TCP, an unknown authentication scheme or RTSP dialect):
the automatic backend choice then tries FFmpeg. A server that breaks the protocol (bytes that
are not RTSP, a head or body over the bounds, a bad number, a redirect loop) is a
:class:`~framebus.SourceOpenError` with this client's own message: FFmpeg would only be fed the
same bytes, for its whole timeout.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import time
from urllib.parse import urljoin, urlsplit

from ..._rtp import SenderReport, parse_sender_reports
from ..._rtsp import (
    Interleaved,
    MessageParser,
    Response,
    ServerRequest,
    VideoMedia,
    authorization,
    control_url,
    format_request,
    interleaved_channel,
    parse_sdp,
    parse_session,
    small_number,
    split_credentials,
)
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

__all__ = ["MAX_REAUTH", "MAX_REDIRECTS", "REAUTH_INTERVAL", "RTSPClient"]

_RECV = 256 * 1024

MAX_REDIRECTS = 5
"""Redirects followed while opening; one more is a loop (FFmpeg follows them forever)."""
REAUTH_INTERVAL = 1.0
"""Seconds between answers to the server's challenges while playing, at least."""
MAX_REAUTH = 3
"""401s in a row while playing (no success between them) after which the stream fails."""

_REDIRECTS = (301, 302, 303, 307, 308)
# what another client (FFmpeg) may get past: a method, transport or option this one lacks
_UNSUPPORTED = (405, 451, 459, 461, 501, 505, 551)


class _Redirect(Exception):
    """A 3xx with a Location, while opening (never leaves this module)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


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
        self._last_sent = 0.0  # when the last request went out (keep-alives pace re-auth)
        self._refusals = 0  # 401s while playing since the last success
        self.tcp_refused = False  # the SETUP failed because the server will not do RTP over TCP
        self.reports: collections.deque[SenderReport] = collections.deque(maxlen=8)
        """RTCP sender reports received (the newest 8), for the camera's clock."""
        self.arrival = 0.0
        """``time.time()`` when the last packet :meth:`read_packet` returned was received."""

    # -- handshake ---------------------------------------------------------------------------

    def open(self) -> VideoMedia:
        """Connect, negotiate and PLAY; follows at most :data:`MAX_REDIRECTS` redirects."""
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return self._handshake()
            except _Redirect as redirect:
                self._follow(redirect.location)
        raise SourceOpenError(
            f"{self.label}: more than {MAX_REDIRECTS} redirects (the server redirects in a loop?)"
        )

    def _follow(self, location: str) -> None:
        """Start over at ``location``; credentials go along only to the same host and port."""
        self.close()
        try:
            target = urljoin(self.url, location)
            url, user, password = split_credentials(target)  # (checks the host and port)
        except ValueError:
            target, url, user, password = "", "", None, None
        scheme = urlsplit(target).scheme.lower()
        if scheme == "rtsps":
            raise SourceUnsupported(f"{self.label}: the server redirects to RTSP over TLS")
        if scheme != "rtsp" or not urlsplit(url).hostname:
            raise SourceOpenError(f"{self.label}: the server redirects to a bad or non-RTSP URL")
        same = urlsplit(url).netloc.lower() == urlsplit(self.url).netloc.lower()
        if user is None and same:
            user, password = self._user, self._password
        self.url, self._user, self._password = url, user, password
        self._parser = MessageParser()
        self._challenge, self._nc, self._session = None, 0, ""
        self._keepalive_method, self._play_url = "OPTIONS", ""

    def _handshake(self) -> VideoMedia:
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
        if media.codec == "H264" and media.fmtp.get("packetization-mode", "").strip() == "2":
            # STAP-B, MTAP and FU-B: say so now, not once the first such packet comes
            raise SourceUnsupported(f"{self.label}: interleaved H.264 packetization (mode 2)")
        base = described.header("content-base") or described.header("content-location")
        base = base or self.url
        setup = self._request(
            "SETUP",
            control_url(base, media.control),
            {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"},
        )
        assert setup is not None
        transport = setup.header("transport")
        try:
            self._session, timeout = parse_session(setup.header("session"))
            channel = interleaved_channel(transport)
        except ValueError as exc:
            raise SourceOpenError(f"{self.label}: the server sent a {exc}") from None
        if timeout is not None:  # (a value out of 1 s..1 day is ignored: keep-alive 30 s)
            self._keepalive_every = max(1.0, timeout / 2)
        if transport and channel is None:
            self.tcp_refused = True  # (it answered with a UDP transport)
            raise SourceUnsupported(f"{self.label}: the server refused RTP over TCP")
        if channel is not None:
            self._rtp_channel = channel
        self._play_url = control_url(base, media.session_control) if media.session_control else base
        self._request("PLAY", self._play_url, {"Range": "npt=0.000-"})
        self._next_keepalive = time.monotonic() + self._keepalive_every
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
        try:
            msg = format_request(method, url, self._cseq, self._headers(method, url, extra))
        except SourceUnsupported as exc:  # (what the server sent us would add lines)
            raise self._violation(exc) from None
        self._sock.sendall(msg)
        self._last_sent = time.monotonic()
        return self._cseq

    def _violation(self, exc: SourceUnsupported) -> SourceOpenError:
        """What the parser could not take: the server breaks the protocol. Another backend would
        be fed the same bytes, so this is no reason to try one (not SourceUnsupported)."""
        return SourceOpenError(f"{self.label}: {exc}")

    def _next_message(self) -> Interleaved | Response | ServerRequest | None:
        try:
            return self._parser.next()
        except SourceUnsupported as exc:
            raise self._violation(exc) from None

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
            if resp.status in _REDIRECTS and resp.header("location"):
                raise _Redirect(resp.header("location"))
            if resp.status == 401 and attempt == 0 and self._user is not None:
                self._challenge, self._nc = resp.headers.get("www-authenticate", []), 0
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
        if resp.status in _UNSUPPORTED:
            return SourceUnsupported(f"{self.label}: the server answered {method} with {said}")
        return SourceOpenError(f"{self.label}: the server answered {method} with {said}")

    def _await_response(self, cseq: int) -> Response:
        """Read until the response to ``cseq`` comes (interleaved data before it is dropped)."""
        assert self._sock is not None
        deadline = time.monotonic() + self.open_timeout
        while True:
            msg = self._next_message()
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
        """The next RTP packet of the video stream. Raises SourceUnreachable if none comes
        within ``read_timeout`` (silence, or bytes that never make one) or the server closes
        the connection; SourceAuthError if it refuses :data:`MAX_REAUTH` answers in a row."""
        sock = self._sock
        assert sock is not None
        channel = self._rtp_channel
        deadline = time.monotonic() + self.read_timeout
        quiet = True  # nothing at all came since the deadline was set
        while True:
            msg = self._next_message()
            if msg is None:
                now = time.monotonic()
                if now >= self._next_keepalive:
                    self._keepalive()
                left = deadline - now
                if left <= 0:
                    what = "data" if quiet else "video"
                    raise SourceUnreachable(f"{self.label}: no {what} for {self.read_timeout:g} s")
                try:
                    sock.settimeout(max(0.001, min(left, self._next_keepalive - now)))
                    data = sock.recv(_RECV)
                except TimeoutError:
                    continue
                except OSError as exc:
                    raise SourceUnreachable(
                        f"{self.label}: connection lost ({exc.strerror or exc})"
                    ) from None
                if not data:
                    raise SourceUnreachable(f"{self.label}: the server closed the connection")
                quiet = False
                self._parser.feed(data)
            elif isinstance(msg, Interleaved):
                if msg.channel == channel and (pkt := parse_rtp(msg.payload)) is not None:
                    self.arrival = time.time()
                    return pkt
                if msg.channel == channel + 1:  # RTCP: the sender reports map RTP to wall time
                    self.reports.extend(parse_sender_reports(msg.payload))
            elif isinstance(msg, ServerRequest):
                self._answer(msg)
            elif msg.status == 401:
                self._refused(msg)
            elif 200 <= msg.status < 300:
                self._refusals = 0

    def _refused(self, msg: Response) -> None:
        """A 401 while playing: a Digest nonce went stale, or the credentials are refused.
        The new challenge is answered by the next keep-alive, at most once per
        :data:`REAUTH_INTERVAL` (a server that answers every request with a fresh nonce is
        not asked 4,000 times a second), and the stream fails after :data:`MAX_REAUTH`."""
        self._refusals += 1
        if self._refusals >= MAX_REAUTH:
            if self._user is None:
                raise SourceAuthError(
                    f"{self.label}: the server wants credentials (user:password@ in the URL)"
                )
            raise SourceAuthError(
                f"{self.label}: the server refused the credentials {self._refusals} times in a "
                "row while playing"
            )
        challenge = msg.headers.get("www-authenticate")
        if challenge and self._user is not None:
            self._challenge, self._nc = challenge, 0  # (nc counts uses of one nonce)
            soon = max(time.monotonic(), self._last_sent + REAUTH_INTERVAL)
            self._next_keepalive = min(self._next_keepalive, soon)

    def _answer(self, req: ServerRequest) -> None:
        """Some cameras ping their clients (GET_PARAMETER, OPTIONS): say we are here."""
        ok = req.method in ("GET_PARAMETER", "SET_PARAMETER", "OPTIONS")
        status = "200 OK" if ok else "551 Option not supported"
        cseq = small_number(req.headers.get("cseq", ["0"])[0], 0, 999_999_999) or 0  # echoed
        assert self._sock is not None
        with contextlib.suppress(OSError):
            self._sock.settimeout(self.read_timeout)  # (reads set their own)
            self._sock.sendall(f"RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n\r\n".encode())

    def _keepalive(self) -> None:
        self._next_keepalive = time.monotonic() + self._keepalive_every
        with contextlib.suppress(OSError):  # the read that follows reports a lost connection
            assert self._sock is not None
            self._sock.settimeout(self.read_timeout)  # (reads set their own)
            self._send(self._keepalive_method, self._play_url or self.url)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._session:
            with contextlib.suppress(OSError, SourceError):  # polite, not required: no waiting
                sock.settimeout(0.2)
                self._cseq += 1
                headers = self._headers("TEARDOWN", self._play_url or self.url, None)
                sock.sendall(format_request("TEARDOWN", self._play_url, self._cseq, headers))
        sock.close()
