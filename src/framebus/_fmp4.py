"""Fragmented MP4 (no I/O): an H.264 stream's init segment and one fragment per access unit, for
browsers without WebCodecs (Media Source Extensions; a page on plain HTTP from another machine)
and for recordings (:mod:`framebus.recording`: every complete fragment stays playable after a
crash).

PyAV's mp4 muxer holds each frame until the next one (``frag_every_frame``) or a whole group of
pictures (``frag_keyframe``); this writer makes each fragment the moment its access unit is
there. One track (id 1), timescale 90 kHz; a fragment's decode time is the frame's capture time
since :data:`ORIGIN` (so that fragments made once serve every viewer), each sample lasting
:data:`SAMPLE_DURATION`: long, since MSE treats a step of more than twice the last duration as
a discontinuity and drops frames up to the next keyframe (a stream at 2 fps, a hiccup of the
network); a later sample cuts it short, and the page keeps the video at the newest sample's
time (which the message says), not at the end of what is buffered. Parameter sets go in the
init segment (``avc1``, every SPS and PPS of the keyframe), not in the samples. No
composition offsets: a camera stream with B-frames is shown in decode order.
"""

from __future__ import annotations

import struct
import time

from framebus._h264 import NAL_PPS, NAL_SPS, AccessUnit, nal_units

__all__ = ["ORIGIN", "SAMPLE_DURATION", "TIMESCALE", "decode_time", "fragment", "init_segment",
           "mime_type", "sample_fragment"]  # fmt: skip

TIMESCALE = 90_000
SAMPLE_DURATION = 2 * TIMESCALE
ORIGIN = time.time() - 3600.0
"""Decode times count from an hour before this process started (every viewer's timeline is the
same; a remote capture whose clock is somewhat behind still has positive times)."""
_AUD, _SEI = 9, 6


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def parameter_sets(au: AccessUnit) -> tuple[list[bytes], list[bytes]] | None:
    """(every SPS, every PPS) of a keyframe (at most 31 and 255, each under 64 KiB), or None if
    it lacks either."""
    sps: list[bytes] = []
    pps: list[bytes] = []
    for nal in nal_units(au.data):
        kind = nal[0] & 0x1F if len(nal) else 0
        if len(nal) > 0xFFFF:
            continue
        if kind == NAL_SPS and len(nal) >= 4 and len(sps) < 31:
            sps.append(bytes(nal))
        elif kind == NAL_PPS and len(pps) < 255:
            pps.append(bytes(nal))
    return (sps, pps) if sps and pps else None


def mime_type(codec: str) -> str:
    return f'video/mp4; codecs="{codec}"'


def init_segment(au: AccessUnit) -> bytes | None:
    """The init segment (``ftyp`` + ``moov``) for the stream a keyframe starts, or None if the
    keyframe carries no parameter sets."""
    sets = parameter_sets(au)
    if sets is None:
        return None
    spss, ppss = sets
    sps = spss[0]
    width, height = max(au.width, 2) & 0xFFFF, max(au.height, 2) & 0xFFFF
    high = b""
    if sps[1] in (100, 110, 122, 144):  # High profiles: chroma format and bit depths (4:2:0, 8)
        high = bytes((0xFC | 1, 0xF8, 0xF8, 0))
    avcc = _box(
        b"avcC",
        bytes((1, sps[1], sps[2], sps[3], 0xFF, 0xE0 | len(spss))),
        *(struct.pack(">H", len(x)) + x for x in spss),
        bytes((len(ppss),)),
        *(struct.pack(">H", len(x)) + x for x in ppss),
        high,
    )
    avc1 = _box(
        b"avc1",
        bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
        struct.pack(">II", 0x00480000, 0x00480000), bytes(4), struct.pack(">H", 1), bytes(32),
        struct.pack(">Hh", 0x18, -1), avcc,
    )  # fmt: skip
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, 0, struct.pack(">I", 0)),
        _full(b"stsc", 0, 0, struct.pack(">I", 0)),
        _full(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        _full(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = _box(
        b"minf",
        _full(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, 0, 0x55C4, 0)),
        _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"framebus\x00"),
        minf,
    )
    tkhd = _full(
        b"tkhd", 0, 3,
        struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX, struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mvhd = _full(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0), struct.pack(">IH", 0x10000, 0x0100), bytes(10),
        _MATRIX, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    mvex = _box(b"mvex", _full(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    ftyp = _box(b"ftyp", b"iso5", struct.pack(">I", 512), b"iso5iso6mp41avc1")
    return ftyp + _box(b"moov", mvhd, _box(b"trak", tkhd, mdia), mvex)


def decode_time(timestamp: float) -> int:
    """A capture time as a decode time, in :data:`TIMESCALE` units."""
    return max(0, round((timestamp - ORIGIN) * TIMESCALE))


def fragment(au: AccessUnit, timestamp: float, sequence: int) -> bytes:
    """One ``moof`` + ``mdat`` with ``au`` as its one sample (length-prefixed NAL units, the
    parameter sets, access unit delimiters and SEI left out), decoded at ``timestamp`` for
    :data:`SAMPLE_DURATION` (what MSE needs: see above); empty for an access unit with nothing
    else (no picture to show)."""
    return sample_fragment(au.data, au.key, decode_time(timestamp), SAMPLE_DURATION, sequence)


def sample_fragment(data: bytes, key: bool, decode: int, duration: int, sequence: int) -> bytes:
    """One ``moof`` + ``mdat``: access unit ``data`` (Annex-B) as one sample decoded at
    ``decode`` for ``duration`` (both in :data:`TIMESCALE` units); empty if it holds no picture."""
    nals = [n for n in nal_units(data) if len(n) and n[0] & 0x1F not in (NAL_SPS, NAL_PPS,
                                                                        _AUD, _SEI)]  # fmt: skip
    if not nals:
        return b""
    sample = b"".join(struct.pack(">I", len(n)) + bytes(n) for n in nals)
    flags = 0x02000000 if key else 0x01010000
    trun_size = 8 + 4 + 4 + 4 + 12
    tfhd = _full(b"tfhd", 0, 0x020000, struct.pack(">I", 1))
    tfdt = _full(b"tfdt", 1, 0, struct.pack(">Q", max(0, decode)))
    mfhd = _full(b"mfhd", 0, 0, struct.pack(">I", sequence & 0xFFFFFFFF))
    moof_size = 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trun_size
    trun = _full(
        b"trun", 0, 0x000701,
        struct.pack(">Ii", 1, moof_size + 8),
        struct.pack(">III", max(1, min(duration, 0xFFFFFFFF)), len(sample), flags),
    )  # fmt: skip
    moof = _box(b"moof", mfhd, _box(b"traf", tfhd, tfdt, trun))
    assert len(moof) == moof_size
    return moof + _box(b"mdat", sample)
