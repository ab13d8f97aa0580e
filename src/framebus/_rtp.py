"""RTP out, with no I/O: access units into RTP packets (H.264, RFC 6184; H.265, RFC 7798),
RTCP sender reports (RFC 3550) and the session description a push announces (RFC 4566).

The reading side (RTP in) is :mod:`framebus.sources._rtsp.depacketize`; what both need of an
access unit (its NAL units, keyframes) is :mod:`framebus._h264`'s.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ._h264 import nal_units

__all__ = [
    "CLOCK_RATE",
    "SenderReport",
    "MAX_PAYLOAD",
    "PAYLOAD_TYPE",
    "Packetizer",
    "announce_sdp",
    "parameter_sets",
    "parse_sender_reports",
    "sender_report",
]

CLOCK_RATE = 90_000  # RTP's video clock (RFC 6184, 7798)
PAYLOAD_TYPE = 96  # dynamic
MAX_PAYLOAD = 1400
"""Bytes of payload per RTP packet: under an Ethernet MTU with IP, UDP and RTP headers, so the
same packets go over UDP; media servers take no larger ones over TCP either (MediaMTX: 1472)."""

_NTP_EPOCH = 2_208_988_800  # seconds from 1900 to 1970


def _h264_type(nal: bytes | memoryview) -> int:
    return nal[0] & 0x1F


def _h265_type(nal: bytes | memoryview) -> int:
    return (nal[0] >> 1) & 0x3F


_AUD = {"h264": 9, "h265": 35}  # access unit delimiters: RTP's marker bit does their work


@dataclass
class Packetizer:
    """Makes the RTP packets of one stream (one SSRC, consecutive sequence numbers)."""

    codec: str  # "h264" or "h265"
    ssrc: int
    seq: int = 0
    packets: int = 0  # sent so far, for the sender reports
    octets: int = 0  # payload bytes sent so far

    def __post_init__(self) -> None:
        if self.codec not in _AUD:
            raise ValueError(f"cannot packetize {self.codec!r}")

    def _header(self, timestamp: int, marker: bool) -> bytes:
        head = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | PAYLOAD_TYPE,
            self.seq,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        return head

    def packetize(self, access_unit: bytes, timestamp: int) -> list[bytes]:
        """The RTP packets of one access unit (Annex-B), the last one marked."""
        h265 = self.codec == "h265"
        kind = _h265_type if h265 else _h264_type
        nals = [
            bytes(n) for n in nal_units(access_unit) if len(n) > (2 if h265 else 1)
            and kind(n) != _AUD[self.codec]
        ]  # fmt: skip
        payloads = [p for nal in nals for p in self._fragments(nal, h265)]
        out = []
        for i, payload in enumerate(payloads):
            out.append(self._header(timestamp, i == len(payloads) - 1) + payload)
            self.octets += len(payload)
        self.packets += len(out)
        return out

    @staticmethod
    def _fragments(nal: bytes, h265: bool) -> Iterator[bytes]:
        if len(nal) <= MAX_PAYLOAD:
            yield nal  # a single NAL unit packet
            return
        if h265:  # FU (type 49): the NAL header's F, layer and TID kept, the type moved out
            head = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
            kind, body = _h265_type(nal), nal[2:]
        else:  # FU-A (type 28): F and NRI kept
            head = bytes([(nal[0] & 0xE0) | 28])
            kind, body = _h264_type(nal), nal[1:]
        step = MAX_PAYLOAD - len(head) - 1
        for at in range(0, len(body), step):
            start, end = at == 0, at + step >= len(body)
            fu = (0x80 if start else 0) | (0x40 if end else 0) | kind
            yield head + bytes([fu]) + body[at : at + step]


def sender_report(p: Packetizer, wall_time: float, timestamp: int) -> bytes:
    """An RTCP sender report (no report blocks): ``wall_time`` (seconds since the epoch) is the
    moment RTP time ``timestamp`` stands for — what lets a reader recover capture times."""
    ntp = wall_time + _NTP_EPOCH
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack(
        "!BBHIIIIII",
        0x80,
        200,
        6,  # length in 32-bit words, minus one
        p.ssrc,
        seconds & 0xFFFFFFFF,
        fraction,
        timestamp & 0xFFFFFFFF,
        p.packets & 0xFFFFFFFF,
        p.octets & 0xFFFFFFFF,
    )


@dataclass(frozen=True)
class SenderReport:
    """What an RTCP sender report says: RTP time ``rtp`` of source ``ssrc`` stands for
    ``wall`` (seconds since the epoch, by the sender's clock)."""

    ssrc: int
    wall: float
    rtp: int


_MAX_REPORTS = 16  # sender reports taken from one compound packet at most


def parse_sender_reports(data: bytes) -> list[SenderReport]:
    """The sender reports of an RTCP compound packet (RFC 3550, 6.4.1), in order. Bytes that
    are not RTCP end the walk (what came before is kept); nothing here raises, whatever the
    bytes, and work is bounded by their length."""
    out: list[SenderReport] = []
    pos, end = 0, len(data)
    while pos + 4 <= end and len(out) < _MAX_REPORTS:
        first, kind = data[pos], data[pos + 1]
        size = (int.from_bytes(data[pos + 2 : pos + 4], "big") + 1) * 4
        if first >> 6 != 2 or pos + size > end:
            break
        if kind == 200 and size >= 28:
            ssrc, seconds, fraction, rtp = struct.unpack_from("!IIII", data, pos + 4)
            if seconds:  # 0: the sender has no wall clock (RFC 3550: "may be zero")
                if seconds < 1 << 31:  # NTP's era 1 (from 2036): RFC 5905
                    seconds += 1 << 32
                out.append(SenderReport(ssrc, seconds - _NTP_EPOCH + fraction / (1 << 32), rtp))
        pos += size
    return out


def parameter_sets(codec: str, access_unit: bytes) -> dict[str, bytes]:
    """The parameter sets in front of a keyframe: ``sps``, ``pps`` (and ``vps`` for H.265)."""
    names = {"h264": {7: "sps", 8: "pps"}, "h265": {32: "vps", 33: "sps", 34: "pps"}}[codec]
    kind = _h265_type if codec == "h265" else _h264_type
    out: dict[str, bytes] = {}
    for nal in nal_units(access_unit):
        if len(nal) > 2 and kind(nal) in names:
            out.setdefault(names[kind(nal)], bytes(nal))
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def announce_sdp(codec: str, sets: dict[str, bytes], address: str, control: str) -> str:
    """The session description an ANNOUNCE carries: one H.264 or H.265 video stream, its
    parameter sets (so a server or player can start before the first keyframe), ``control``
    the track's name for the SETUP."""
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=- 0 0 IN {family} {address}",
        "s=framebus",
        f"c=IN {family} {address}",
        "t=0 0",
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
    ]
    if codec == "h265":
        lines.append(f"a=rtpmap:{PAYLOAD_TYPE} H265/{CLOCK_RATE}")
        params = [f"sprop-{k}={_b64(sets[k])}" for k in ("vps", "sps", "pps") if k in sets]
    else:
        lines.append(f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}")
        params = ["packetization-mode=1"]
        sps = sets.get("sps")
        if sps is not None and len(sps) >= 4:
            params.append(f"profile-level-id={sps[1:4].hex().upper()}")
        if "sps" in sets and "pps" in sets:
            params.append(f"sprop-parameter-sets={_b64(sets['sps'])},{_b64(sets['pps'])}")
    if params:
        lines.append(f"a=fmtp:{PAYLOAD_TYPE} " + "; ".join(params))
    lines.append(f"a=control:{control}")
    return "\r\n".join(lines) + "\r\n"
