"""RTSP and RTP with no I/O: messages, SDP, authentication, interleaved framing, and the
depacketization of H.264/H.265 into whole access units (frames).

Why framebus speaks RTSP itself: FFmpeg's RTSP demuxer (behind OpenCV and PyAV) passes H.264 and
H.265 through a parser that finds the end of a frame only when the *next* frame begins, so every
frame waits one frame interval (40 ms at 25 fps) before it can be decoded. RTP marks the last
packet of each frame with the marker bit (RFC 6184 and 7798); assembling access units here lets a
frame be decoded the moment its last packet arrives.

Everything here works on bytes and strings; the socket layer is :mod:`framebus._rtsp_client`.
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
    "MAX_ACCESS_UNIT",
    "MAX_NALS",
    "START_CODE",
    "Depacketizer",
    "Interleaved",
    "MessageParser",
    "Response",
    "RtpPacket",
    "ServerRequest",
    "VideoMedia",
    "authorization",
    "control_url",
    "format_request",
    "parse_rtp",
    "parse_sdp",
    "small_number",
    "split_credentials",
]

START_CODE = b"\x00\x00\x00\x01"
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


# --- RTP -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtpPacket:
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket | None:
    """An RTP packet (RFC 3550), or None if ``data`` is not one (e.g. too short, version != 2)."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    cc, has_ext, padded = data[0] & 0x0F, data[0] & 0x10, data[0] & 0x20
    start = 12 + 4 * cc
    if has_ext:
        if len(data) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(data[start + 2 : start + 4], "big")
    end = len(data) - (data[-1] if padded else 0)
    if start > end:
        return None
    return RtpPacket(
        bool(data[1] & 0x80),
        data[1] & 0x7F,
        int.from_bytes(data[2:4], "big"),
        int.from_bytes(data[4:8], "big"),
        data[start:end],
    )


# The largest frames cameras send are keyframes: 0.1-1 MB at 1080p, 1-3 MB at 4K even at high
# bitrates. 8 MiB leaves room for 8K and intra-only streams, and is what a server can make us hold
# when it never ends a frame (an FU-A start and endless middles; NAL units with one timestamp and
# no marker bit), which would otherwise take memory as fast as the network brings it.
MAX_ACCESS_UNIT = 8 * 1024 * 1024
# A frame is a few NAL units: parameter sets, SEI, slices (one per macroblock row is many: 68 at
# 1080p). Each NAL unit costs ~50 bytes of bookkeeping besides its bytes, and one aggregation
# packet can hold 20,000 of one byte: their number is bounded too.
MAX_NALS = 16384


class Depacketizer:
    """Rebuilds H.264 (RFC 6184) or H.265 (RFC 7798) access units from RTP packets.

    :meth:`push` returns the access units a packet completes, in Annex-B form: a frame is
    complete at the packet with the marker bit (or, for senders that never set it, when the next
    frame's timestamp appears). After a lost packet the damaged frame and everything up to the
    next keyframe are dropped, so the decoder never shows a torn or smeared picture; the stream
    also starts at a keyframe. The SDP's parameter sets go before every keyframe that lacks them.

    A frame that grows past :data:`MAX_ACCESS_UNIT` bytes or :data:`MAX_NALS` NAL units is
    dropped as damaged the moment it does, and the rest of it is discarded as it comes: the
    depacketizer never holds more than that, whatever the server sends.
    """

    def __init__(self, codec: str, parameter_sets: list[bytes] | None = None) -> None:
        if codec not in ("H264", "H265"):
            raise ValueError(f"no depacketizer for {codec}")
        self.h265 = codec == "H265"
        self._params = list(parameter_sets or [])
        self._nals: list[bytes] = []
        self._frag: bytearray | None = None
        self._ts: int | None = None
        self._seq: int | None = None
        self._damaged = False
        self._need_key = True
        self._size = 0  # payload bytes of the frame so far (kept or not): >= what is held
        self._discard = False  # the frame grew too large: ignore the rest of it
        self.lost = 0
        """Packets missing from the sequence so far."""
        self.dropped = 0
        """Access units dropped (damaged, too large, or waiting for a keyframe)."""
        self.oversized = 0
        """Times a frame grew past the bounds (one that never ends counts again for every
        MAX_ACCESS_UNIT bytes of it)."""
        self.oversized_streak = 0
        """``oversized`` since the last access unit delivered: a server that sends nothing
        else is not sending video this client can take."""

    @property
    def pending_bytes(self) -> int:
        """Bytes of the unfinished frame held now (at most MAX_ACCESS_UNIT)."""
        frag = len(self._frag) if self._frag is not None else 0
        return sum(map(len, self._nals)) + frag

    @property
    def pending_nals(self) -> int:
        """NAL units of the unfinished frame held now (at most MAX_NALS)."""
        return len(self._nals)

    def _type(self, nal: bytes) -> int:
        return (nal[0] >> 1) & 0x3F if self.h265 else nal[0] & 0x1F

    def _is_key(self, t: int) -> bool:
        return 16 <= t <= 21 if self.h265 else t == 5

    def _is_param(self, t: int) -> bool:
        return 32 <= t <= 34 if self.h265 else t in (7, 8)

    def push(self, pkt: RtpPacket) -> list[bytes]:
        out: list[bytes] = []
        lost = False
        if self._seq is not None:
            gap = (pkt.seq - self._seq - 1) & 0xFFFF
            if gap and gap < 0x8000:
                self.lost += gap
                lost = True
            elif gap:  # old or duplicate packet
                return out
        self._seq = pkt.seq
        if self._ts is not None and pkt.timestamp != self._ts:
            if self._nals or self._frag is not None or self._damaged or lost:
                self._damaged |= lost
                out += self._finish()  # the sender does not set the marker bit, or a loss
            self._size = 0
        self._ts = pkt.timestamp
        if lost:  # the lost packets belonged to this frame, or to one it refers to
            self._damaged, self._frag = True, None
        self._size += len(pkt.payload)  # counted before it is kept: never more is held
        if self._size > MAX_ACCESS_UNIT:
            self._oversize()
        elif pkt.payload and not self._discard:
            self._payload(pkt.payload)
            if len(self._nals) > MAX_NALS:
                self._oversize()
        if pkt.marker:
            out += self._finish()
        return out

    def _oversize(self) -> None:
        """Drop the frame being assembled (too large) and ignore the rest of it."""
        if not self._discard:
            self.dropped += 1
        self.oversized += 1
        self.oversized_streak += 1
        self._nals, self._frag, self._size = [], None, 0
        self._damaged = self._discard = self._need_key = True  # as after a loss

    def _payload(self, p: bytes) -> None:
        hdr = 2 if self.h265 else 1
        if len(p) <= hdr:
            return
        t = self._type(p)
        if (self.h265 and t == 48) or (not self.h265 and t == 24):  # aggregation packet
            i = hdr
            while i + 2 <= len(p):
                n = int.from_bytes(p[i : i + 2], "big")
                if n == 0 or i + 2 + n > len(p):
                    self._damaged = True
                    break
                self._nals.append(p[i + 2 : i + 2 + n])
                i += 2 + n
        elif (self.h265 and t == 49) or (not self.h265 and t == 28):  # fragmentation unit
            if len(p) <= hdr + 1:
                return
            fu = p[hdr]
            start, end, inner = fu & 0x80, fu & 0x40, fu & (0x3F if self.h265 else 0x1F)
            if start:
                if self._frag is not None:
                    self._damaged = True  # the end of the previous fragmented NAL was lost
                if self.h265:
                    head = bytes([(p[0] & 0x81) | (inner << 1), p[1]])
                else:
                    head = bytes([(p[0] & 0xE0) | inner])
                self._frag = bytearray(head)
            elif self._frag is None:
                self._damaged = True  # a middle piece whose start was lost
                return
            self._frag += p[hdr + 1 :]
            if end:
                self._nals.append(bytes(self._frag))
                self._frag = None
        elif not self.h265 and t in (25, 26, 27, 29):
            raise SourceUnsupported(f"unsupported H.264 RTP packetization (NAL type {t})")
        else:
            self._nals.append(p)

    def _finish(self) -> list[bytes]:
        nals, damaged = self._nals, self._damaged or self._frag is not None
        self._nals, self._frag, self._damaged = [], None, False
        self._size, self._discard = 0, False
        if damaged:
            self._need_key = True  # later frames refer to this one
        if not nals:
            return []
        types = [self._type(n) for n in nals]
        key = any(self._is_key(t) for t in types)
        if damaged or (self._need_key and not key):
            self.dropped += 1
            return []
        self._need_key = False
        self.oversized_streak = 0
        if key and not any(self._is_param(t) for t in types):
            nals = self._params + nals
        return [b"".join(START_CODE + n for n in nals)]
