"""RTP (RFC 3550) and the depacketization of H.264 (RFC 6184) and H.265 (RFC 7798) into whole
access units (frames), with no I/O.

RTP marks the last packet of each frame with the marker bit: assembling access units here lets
a frame be decoded the moment its last packet arrives (see :mod:`framebus.sources._rtsp`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SourceUnsupported

__all__ = ["MAX_ACCESS_UNIT", "MAX_NALS", "START_CODE", "Depacketizer", "RtpPacket", "parse_rtp"]

START_CODE = b"\x00\x00\x00\x01"


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
        self._keys: list[bool] = []  # whether each unit the last push returned is a key
        self._times: list[int] = []  # and its RTP time
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

    def push_units(self, pkt: RtpPacket) -> list[tuple[bytes, bool, int]]:
        """:meth:`push`, each access unit with whether it starts a picture a decoder can begin
        with (IDR/IRAP: its parameter sets are in front of it) and its RTP time."""
        units = self.push(pkt)
        return list(zip(units, self._keys, self._times, strict=True))

    def push(self, pkt: RtpPacket) -> list[bytes]:
        out: list[bytes] = []
        self._keys, self._times = [], []
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
        self._keys.append(key)
        self._times.append(self._ts or 0)  # (a marker's packet, or the frame a new time ended)
        return [b"".join(START_CODE + n for n in nals)]
