"""H.264 access units in one place (no I/O): what a browser needs to know about one — whether
it starts a picture the decoder can begin with, and the codec string that configures a decoder.

Access units are Annex-B byte streams (NAL units behind ``00 00 01`` / ``00 00 00 01`` start
codes), as framebus's RTSP client assembles them and as libx264 writes them. Every byte may come
from a camera: the parsers here read within bounds and never fail on garbage (they find no NAL
unit, no keyframe, or no codec string).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["NAL_IDR", "NAL_PPS", "NAL_SPS", "AccessUnit", "codec_string", "is_keyframe",
           "nal_types", "nal_units"]  # fmt: skip

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


@dataclass(frozen=True)
class AccessUnit:
    """One encoded picture, as sent to a viewer."""

    data: bytes
    """Annex-B NAL units; a keyframe carries its SPS and PPS in front."""
    key: bool
    """A decoder can start here (an IDR picture with its parameter sets)."""
    codec: str
    """The WebCodecs/MSE codec string of the stream, e.g. ``avc1.42C01F`` ("" if unknown)."""
    width: int
    height: int
    index: int = 0
    """The number of this access unit in its sink or source: consecutive within a stream of
    them, so that a consumer sees a gap (a frame it never got, and so cannot decode after)."""


def nal_units(data: bytes | memoryview) -> Iterator[memoryview]:
    """The NAL units of an Annex-B byte stream (without start codes), as views of ``data``."""
    view = memoryview(data)
    raw = bytes(view) if not isinstance(data, bytes) else data
    start = -1
    i = raw.find(b"\x00\x00\x01")
    while i >= 0:
        if start >= 0:
            end = i - 1 if i > start and raw[i - 1] == 0 else i  # a 4-byte start code
            if end > start:
                yield view[start:end]
        start = i + 3
        i = raw.find(b"\x00\x00\x01", start)
    if 0 <= start < len(raw):
        yield view[start:]


def nal_types(data: bytes | memoryview) -> list[int]:
    """The ``nal_unit_type`` of each NAL unit of ``data``, in order."""
    return [nal[0] & 0x1F for nal in nal_units(data) if len(nal)]


def is_keyframe(data: bytes | memoryview) -> bool:
    """Whether ``data`` holds an IDR picture with an SPS and a PPS: a decoder may start here."""
    types = set(nal_types(data))
    return {NAL_IDR, NAL_SPS, NAL_PPS} <= types


def codec_string(data: bytes | memoryview) -> str:
    """``avc1.PPCCLL`` from the first SPS of ``data`` (profile, constraint flags, level, as
    RFC 6381 spells them), or "" when it holds no SPS."""
    for nal in nal_units(data):
        if len(nal) >= 4 and nal[0] & 0x1F == NAL_SPS:
            return f"avc1.{nal[1]:02X}{nal[2]:02X}{nal[3]:02X}"
    return ""
