"""RTSP with no I/O: messages, SDP, URLs with credentials, Basic/Digest authentication — for
framebus's RTSP client (:mod:`framebus.sources._rtsp`) and its push (:mod:`framebus.mediaserver`).

Everything here works on bytes and strings; the sockets are the client's and the push's. Every
number a server sends is parsed strictly (ASCII digits, bounded length and range), every size
bounded.
What cannot be taken raises SourceUnsupported (this parser cannot take it); the client reports
that as the server's protocol violation, a SourceOpenError, since FFmpeg would get the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import SourceUnsupported

__all__ = [
    "Interleaved",
    "MessageParser",
    "Response",
    "ServerRequest",
    "VideoMedia",
    "authorization",
    "control_url",
    "format_request",
    "interleaved_channel",
    "parse_sdp",
    "parse_session",
    "small_number",
    "split_credentials",
]

_MAX_HEADER = 64 * 1024  # an RTSP message head larger than this is not RTSP
_MAX_BODY = 1024 * 1024  # nor a body (an SDP is a few KiB)

# Every byte from the server is untrusted. Numbers are read only from short runs of ASCII digits:
# str.isdigit() and int() also take '²' or '٣', and int() of 5,000 digits raises ValueError.
_DIGITS = re.compile(r"[0-9]{1,9}")


def small_number(text: str, low: int, high: int) -> int | None:
    """``text`` (surrounding blanks allowed) as an integer in [low, high], else None."""
    text = text.strip()
    if not _DIGITS.fullmatch(text):
        return None
    n = int(text)
    return n if low <= n <= high else None


MAX_SESSION_ID = 256  # echoed in every request we send: a server may not make it megabytes


def parse_session(value: str) -> tuple[str, int | None]:
    """The id and timeout of a ``Session:`` header (RFC 2326, 12.37): the timeout in seconds
    when it is given and within 1 s..1 day, else None. ValueError for an id that is empty but
    followed by parameters, over :data:`MAX_SESSION_ID` characters, or not printable ASCII."""
    ident, _, params = value.partition(";")
    ident = ident.strip()
    if len(ident) > MAX_SESSION_ID or not (ident.isascii() and ident.isprintable()):
        raise ValueError(f"bad session id {ident[:20]!r}")
    if not ident and params:
        raise ValueError("session parameters without a session id")
    timeout = None
    for param in params.split(";"):
        key, _, number = param.strip().partition("=")
        if key.strip().lower() == "timeout":
            timeout = small_number(number, 1, 86400)
    return ident, timeout


def interleaved_channel(transport: str) -> int | None:
    """The RTP channel of a ``Transport:`` reply with ``interleaved=a-b`` (0..255); None when it
    names no interleaving (the server chose UDP). ValueError for a bad channel."""
    lowered = transport.lower()
    if "interleaved=" not in lowered:
        return None
    value = lowered.split("interleaved=", 1)[1].split(";")[0].split(",")[0]
    channel = small_number(value.split("-")[0], 0, 255)
    if channel is None:
        raise ValueError(f"bad interleaved channel {value[:20]!r}")
    return channel


# --- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """An RTSP response. Header names are lower-case; repeated headers keep every value."""

    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default

    @property
    def cseq(self) -> int:
        n = small_number(self.header("cseq"), 0, 999_999_999)
        return -1 if n is None else n


@dataclass(frozen=True)
class ServerRequest:
    """A request the server sent us (some cameras send GET_PARAMETER or ANNOUNCE)."""

    method: str
    headers: dict[str, list[str]]


@dataclass(frozen=True)
class Interleaved:
    """A ``$``-framed binary packet on the RTSP connection (RFC 2326, 10.12)."""

    channel: int
    payload: bytes


def format_request(method: str, url: str, cseq: int, headers: dict[str, str]) -> bytes:
    if any("\r" in v or "\n" in v for v in (url, *headers.values())):
        # a URL (Content-Base, a=control) or session id from the server must not add lines
        raise SourceUnsupported("the server sent a URL or session id with a line break")
    lines = [f"{method} {url} RTSP/1.0", f"CSeq: {cseq}", "User-Agent: framebus"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class MessageParser:
    """Splits the bytes of an RTSP connection into responses, server requests and interleaved
    packets. ``feed`` bytes as they arrive; ``next()`` returns None until a message is whole.

    Whatever the bytes, ``next()`` returns or raises SourceUnsupported, and holds at most one
    incomplete message (a head of 64 KiB, a body of 1 MiB, an interleaved packet of 64 KiB) on
    top of what was fed since it last returned None. Work per byte is bounded too: a head that
    arrives a byte at a time is searched once, and parsed once while its body arrives.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._searched = 0  # bytes after _pos known to hold no end of head
        self._head: tuple[int, list[str], dict[str, list[str]], int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held (consumed ones are dropped now and then, not on every message)."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._pos > 1 << 20:  # drop consumed bytes now and then, not on every message
            del self._buf[: self._pos]
            self._pos = 0
            self._head = None  # (holds offsets into the buffer)
        self._buf += data

    def _consume(self, to: int) -> None:
        self._pos, self._searched, self._head = to, 0, None

    def next(self) -> Interleaved | Response | ServerRequest | None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None
        if buf[pos] == 0x24:  # '$'
            if len(buf) - pos < 4:
                return None
            n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            if len(buf) - pos < 4 + n:
                return None
            self._pos = pos + 4 + n  # (no head was searched for at a '$')
            return Interleaved(buf[pos + 1], bytes(buf[pos + 4 : pos + 4 + n]))
        head = self._head
        if head is None:
            head = self._parse_head(buf, pos)
            if head is None:
                return None
        end, lines, headers, length = head
        body_at = end + 4
        if len(buf) - body_at < length:
            self._head = head  # parsed once, however slowly the body comes
            return None
        body = bytes(buf[body_at : body_at + length])
        self._consume(body_at + length)
        first = lines[0].split(" ", 2)
        if first[0].startswith("RTSP/"):
            code = first[1] if len(first) > 1 else ""
            status = small_number(code, 100, 999) if len(code) == 3 else None  # 3DIGIT
            if status is None:
                bad = lines[0][:80]
                raise SourceUnsupported(f"the server sent a bad status line: {bad!r}")
            return Response(status, first[2] if len(first) > 2 else "", headers, body)
        if len(first) == 3 and first[2].startswith("RTSP/"):
            return ServerRequest(first[0], headers)
        raise SourceUnsupported(f"the server sent something that is not RTSP: {lines[0][:80]!r}")

    def _parse_head(
        self, buf: bytearray, pos: int
    ) -> tuple[int, list[str], dict[str, list[str]], int] | None:
        """The head at ``pos`` (end, lines, headers, body length), or None if it is not whole."""
        # the 4 bytes of the end must lie within _MAX_HEADER; 3 bytes already searched may
        # begin one that the bytes fed since complete
        end = buf.find(b"\r\n\r\n", pos + max(0, self._searched - 3), pos + _MAX_HEADER)
        if end < 0:
            if len(buf) - pos >= _MAX_HEADER:
                raise SourceUnsupported("the server sent an RTSP message head over 64 KiB")
            self._searched = len(buf) - pos
            return None
        lines = bytes(buf[pos:end]).decode("utf-8", "replace").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers.setdefault(key.strip().lower(), []).append(value.strip())
        text = headers.get("content-length", ["0"])[0]
        length = small_number(text, 0, 999_999_999)
        if length is None:
            raise SourceUnsupported(f"the server sent a bad Content-Length: {text[:20]!r}")
        if length > _MAX_BODY:
            raise SourceUnsupported(f"the server sent an RTSP body of {length} bytes")
        return end, lines, headers, length


# --- SDP and URLs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoMedia:
    """The first video stream of a session description."""

    payload_type: int
    codec: str  # upper case, e.g. "H264", "H265", "JPEG"
    clock_rate: int
    control: str
    session_control: str
    fmtp: dict[str, str] = field(default_factory=dict)
    framerate: float | None = None

    def parameter_sets(self) -> list[bytes]:
        """The SPS/PPS (and VPS) the SDP carries, for decoders that start before they arrive."""
        keys = {"H264": ("sprop-parameter-sets",), "H265": ("sprop-vps", "sprop-sps", "sprop-pps")}
        out: list[bytes] = []
        for key in keys.get(self.codec, ()):
            for item in self.fmtp.get(key, "").split(","):
                try:
                    nal = base64.b64decode(item.strip(), validate=False)
                except (binascii.Error, ValueError):
                    continue
                if nal:
                    out.append(nal)
        return out


_RTPMAP = re.compile(r"([0-9]+)\s+([^/\s]+)/([0-9]+)")  # [0-9], not \d: ASCII digits only
_MAX_CLOCK = 10_000_000  # Hz; RTP video uses 90 kHz
_MAX_FRAMERATE = 1000.0


def _payload_type(text: str) -> int | None:
    return small_number(text, 0, 127)


def _framerate(text: str) -> float | None:
    """``a=framerate`` if it is a plausible rate: not nan, inf, 1e400, -25 or 0."""
    if len(text) > 32:
        return None
    try:
        rate = float(text)
    except ValueError:
        return None
    return rate if math.isfinite(rate) and 0 < rate <= _MAX_FRAMERATE else None


def parse_sdp(text: str) -> VideoMedia | None:
    """The first ``m=video`` of an SDP description (RFC 4566), or None if it has none."""
    session_control = ""
    media: dict[str, str] | None = None  # the video section being read
    in_session = True  # before the first m= line
    found: dict[str, str] | None = None
    rtpmap: dict[int, tuple[str, int]] = {}
    fmtp: dict[int, dict[str, str]] = {}
    framerate: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if media is not None:
                break  # only the first video stream
            in_session = False
            parts = line[2:].split()
            if parts and parts[0] == "video" and len(parts) >= 4:
                media = {"pt": parts[3], "control": ""}
                found = media
            continue
        if not line.startswith("a="):
            continue
        key, _, value = line[2:].partition(":")
        if key == "control":
            if in_session:
                session_control = value.strip()
            elif media is not None:
                media["control"] = value.strip()
        elif media is not None and key == "rtpmap":
            m = _RTPMAP.match(value)
            pt_number = _payload_type(m.group(1)) if m else None
            if m and pt_number is not None:
                clock = small_number(m.group(3), 1, _MAX_CLOCK) or 90000
                rtpmap[pt_number] = (m.group(2).upper(), clock)
        elif media is not None and key == "fmtp":
            pt, _, params = value.partition(" ")
            pt_number = _payload_type(pt)
            if pt_number is not None:
                fmtp[pt_number] = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (p.partition("=") for p in params.split(";"))
                    if k.strip()
                }
        elif media is not None and key == "framerate":
            framerate = _framerate(value)
    ptype = _payload_type(found["pt"]) if found is not None else None
    if found is None or ptype is None:
        return None
    codec, clock = rtpmap.get(ptype, ("H264" if ptype == 96 else "", 90000))
    if ptype == 26:  # static payload type of RTP/JPEG
        codec, clock = "JPEG", 90000
    if codec == "HEVC":
        codec = "H265"
    return VideoMedia(
        ptype, codec, clock, found["control"], session_control, fmtp.get(ptype, {}), framerate
    )


def control_url(base: str, control: str) -> str:
    """Resolve an SDP ``a=control`` against the base URL (as FFmpeg and live555 do)."""
    if not control or control == "*":
        return base
    if "://" in control:
        return control
    return base + control if base.endswith("/") else f"{base}/{control}"


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``rtsp://user:pass@host/p`` -> (``rtsp://host/p``, user, password), percent-decoded."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)), user, password


# --- authentication -------------------------------------------------------------------------------


_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _challenges(values: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
        out.setdefault(scheme.lower(), params)
    return out


def authorization(
    challenges: list[str], method: str, uri: str, user: str, password: str, nc: int = 1
) -> str | None:
    """The ``Authorization`` header answering a 401's ``WWW-Authenticate`` values: Digest
    (RFC 2617, MD5, qop=auth or none) when offered, else Basic. None if neither is offered."""
    offered = _challenges(challenges)
    digest = offered.get("digest")
    if digest is not None and digest.get("algorithm", "MD5").upper() in ("MD5", ""):
        realm, nonce = digest.get("realm", ""), digest.get("nonce", "")

        def md5(s: str) -> str:
            return hashlib.md5(s.encode("utf-8"), usedforsecurity=False).hexdigest()

        ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
        fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qops = [q.strip() for q in digest.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            cnonce = os.urandom(8).hex()
            count = f"{nc:08x}"
            resp = md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", f"nc={count}", f'cnonce="{cnonce}"']
        else:
            resp = md5(f"{ha1}:{nonce}:{ha2}")
        fields.append(f'response="{resp}"')
        if "opaque" in digest:
            fields.append(f'opaque="{digest["opaque"]}"')
        return "Digest " + ", ".join(fields)
    if "basic" in offered:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return f"Basic {token}"
    return None
