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
           "nal_types", "nal_units", "picture_size"]  # fmt: skip

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


class _Bits:
    """Exp-Golomb reading of an RBSP (emulation prevention removed); IndexError past its end."""

    def __init__(self, rbsp: bytes) -> None:
        self.data, self.pos = rbsp, 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        self.pos += 1
        return (byte >> (7 - ((self.pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def picture_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) of the pictures the first SPS of ``data`` describes (cropping applied),
    or None without a readable one. Bounded: a forged SPS is read within its bytes."""
    for nal in nal_units(data):
        if len(nal) >= 4 and nal[0] & 0x1F == NAL_SPS:
            rbsp = bytes(nal[1:]).replace(b"\x00\x00\x03", b"\x00\x00")
            try:
                return _sps_size(_Bits(rbsp))
            except (IndexError, ValueError):
                return None
    return None


def _sps_size(b: _Bits) -> tuple[int, int] | None:
    profile = b.bits(8)
    b.bits(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in _HIGH_PROFILES:
        chroma = b.ue()
        if chroma > 3:
            return None
        if chroma == 3:
            b.bit()  # separate_colour_plane_flag
        b.ue()  # bit depths
        b.ue()
        b.bit()  # qpprime_y_zero_transform_bypass_flag
        if b.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if b.bit():  # a scaling list: its deltas until next is 0
                    last = following = 8
                    for _ in range(16 if i < 6 else 64):
                        if following:
                            following = (last + b.se() + 256) % 256
                        last = following or last
    b.ue()  # log2_max_frame_num_minus4
    poc = b.ue()
    if poc == 0:
        b.ue()
    elif poc == 1:
        b.bit()
        b.se()
        b.se()
        cycle = b.ue()
        if cycle > 255:
            return None
        for _ in range(cycle):
            b.se()
    b.ue()  # max_num_ref_frames
    b.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.bit()
    if not frame_mbs_only:
        b.bit()  # mb_adaptive_frame_field_flag
    b.bit()  # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if b.bit():  # frame_cropping_flag
        sub_w, sub_h = (1, 1) if chroma in (0, 3) else (2, 2 if chroma == 1 else 1)
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        width -= sub_w * (left + right)
        height -= sub_h * (2 - frame_mbs_only) * (top + bottom)
    if not (0 < width <= 16384 and 0 < height <= 16384):
        return None
    return width, height
