"""Which keyframes of a file are fresh starts: decoding can begin there, after skipped packets,
and give every frame after it exactly (no I/O).

A container's keyframe flag promises less than that. In H.264 and HEVC it is set on IDR
pictures (nothing after them references anything before) but also on recovery points and CRA
pictures (open GOPs, intra refresh), where frames after the keyframe may still reference frames
before it; starting there after skipped packets loses or damages frames (seen in trials with
x264's ``open-gop`` and ``intra-refresh``). So for these codecs the keyframe packet's first
picture NAL unit is read: only an IDR is a fresh start. In VP8 and VP9 a key frame resets
every reference, every frame of an intra-only codec (MJPEG, ProRes, …) stands alone, and in
MPEG-1/2/4 part 2 a frame after an I-frame references nothing before it except the B-frames
shown before the I-frame (handled by the plan as leading frames). Other codecs: no keyframe is
trusted (every reference frame is decoded).
"""

from __future__ import annotations

__all__ = ["FRESH_KEYFRAME_CODECS", "SENT_WHEN_SKIPPED", "checks_keyframes", "starts_fresh"]

# a codec's keyframes are fresh starts as they are; h264/hevc: when they are IDR pictures
FRESH_KEYFRAME_CODECS = frozenset({"vp8", "vp9", "mpeg1video", "mpeg2video", "mpeg4"})
_IDR_CODECS = frozenset({"h264", "hevc"})
# codecs whose skipped packets still go to the decoder, with skip_frame = ALL: it discards their
# pictures but still reads the parameter sets and sequence headers they may carry. Other
# codecs' skipped packets are not sent (VP9 ignores ALL; its key frames, and intra-only
# frames, carry all they need).
SENT_WHEN_SKIPPED = frozenset({"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"})
# NAL units read at most before the packet's first picture (parameter sets, SEI, delimiters)
_MAX_NAL_UNITS = 64


def checks_keyframes(codec: str, intra_only: bool) -> bool:
    """Whether any keyframe of ``codec`` can be a fresh start (if not, none is looked at)."""
    return intra_only or codec in FRESH_KEYFRAME_CODECS or codec in _IDR_CODECS


def starts_fresh(
    codec: str, extradata: bytes | None, packet: bytes, *, intra_only: bool = False
) -> bool:
    """Whether a keyframe packet of ``codec`` is a fresh start (see the module's text).
    Malformed data gives False: decoding more than needed is slower, never wrong."""
    if intra_only or codec in FRESH_KEYFRAME_CODECS:
        return True
    if codec not in _IDR_CODECS:
        return False
    hevc = codec == "hevc"
    for header in _nal_headers(packet, _length_size(extradata, hevc)):
        if hevc:
            kind = (header >> 1) & 0x3F
            if kind < 32:  # the first picture (VCL) unit: IDR_W_RADL or IDR_N_LP
                return kind in (19, 20)
        else:
            kind = header & 0x1F
            if 1 <= kind <= 5:  # the first slice: an IDR slice
                return kind == 5
    return False


def _length_size(extradata: bytes | None, hevc: bool) -> int | None:
    """The NAL length prefix size of an avcC/hvcC configuration (MP4, Matroska), or None for
    Annex B start codes (MPEG-TS, raw streams: no such configuration)."""
    if not extradata or extradata[0] != 1:
        return None
    at = 21 if hevc else 4
    if len(extradata) <= at:
        return None
    return (extradata[at] & 3) + 1


def _nal_headers(data: bytes, length_size: int | None) -> list[int]:
    """The first header byte of the packet's NAL units, in order (at most _MAX_NAL_UNITS)."""
    headers: list[int] = []
    if length_size is None:
        at = data.find(b"\x00\x00\x01")
        while at >= 0 and len(headers) < _MAX_NAL_UNITS:
            if at + 3 < len(data):
                headers.append(data[at + 3])
            at = data.find(b"\x00\x00\x01", at + 3)
        return headers
    at = 0
    while at + length_size < len(data) and len(headers) < _MAX_NAL_UNITS:
        size = int.from_bytes(data[at : at + length_size], "big")
        if size == 0 or at + length_size + size > len(data):
            break  # malformed: trust nothing after it
        headers.append(data[at + length_size])
        at += length_size + size
    return headers
