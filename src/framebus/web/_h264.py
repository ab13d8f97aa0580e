"""The messages of the H.264 WebSocket (no I/O): one binary message per access unit, and the
few text messages a page may send.

A server message is a 28-byte header, the codec string, then the access unit (Annex-B, as
WebCodecs' ``VideoDecoder`` takes it with no ``description``)::

    offset  size  little-endian field
    0       1     version (1)
    1       1     flags: bit 0 keyframe, bit 1 passthrough (the camera's own encoding)
    2       2     width
    4       2     height
    6       1     length of the codec string (0..255, ASCII)
    7       1     reserved (0)
    8       8     capture time, seconds since the epoch (float64)
    16      8     sequence number of the frame in its stream
    24      4     index of the access unit: consecutive unless frames were dropped
                  (then the next message is a keyframe)

For Media Source Extensions (``?format=fmp4``: a page without WebCodecs) a message is instead
a 24-byte header, the codec string, an init segment when the access unit is a keyframe, and the
access unit as one fragment (:mod:`framebus._fmp4`)::

    offset  size  little-endian field
    0       1     version (2)
    1       1     flags: bit 0 keyframe, bit 1 passthrough, bit 2 an init segment follows
    2       1     length of the codec string
    3       1     reserved (0)
    4       4     length of the init segment (0 without one)
    8       8     the origin of the decode times, seconds since the epoch (float64): a
                  fragment decoded at t was captured at origin + t
    16      8     this fragment's decode time t, seconds (float64): where the page keeps the
                  video (the newest frame), whatever the samples' long durations buffer

A page sends text only, each message at most :data:`MAX_CLIENT_MESSAGE` bytes (the server
closes a connection that sends more); :data:`KEY_REQUEST` asks for a keyframe (its decoder
failed), anything else is ignored.
"""

from __future__ import annotations

import struct

from framebus import FrameInfo, _fmp4
from framebus._h264 import AccessUnit

__all__ = ["HEADER", "KEY_REQUEST", "MAX_CLIENT_MESSAGE", "MSE_HEADER", "VERSION", "message",
           "mse_message", "parse", "parse_mse", "unframe", "websocket_frame"]  # fmt: skip

VERSION = 1
HEADER = struct.Struct("<BBHHBxdQI")
KEY_REQUEST = "key"
MAX_CLIENT_MESSAGE = 1024


def message(au: AccessUnit, info: FrameInfo, *, passthrough: bool = False) -> bytes:
    """The binary message carrying ``au``, captured as ``info`` says."""
    codec = au.codec.encode("ascii", "replace")[:255]
    flags = (1 if au.key else 0) | (2 if passthrough else 0)
    head = HEADER.pack(
        VERSION, flags, min(au.width, 0xFFFF), min(au.height, 0xFFFF),
        len(codec), info.timestamp, info.seq & 0xFFFF_FFFF_FFFF_FFFF, au.index & 0xFFFF_FFFF,
    )  # fmt: skip
    return b"".join((head, codec, au.data))


MSE_VERSION = 2
MSE_HEADER = struct.Struct("<BBBxIdd")


def mse_message(au: AccessUnit, info: FrameInfo, *, passthrough: bool = False) -> bytes:
    """The fMP4 message carrying ``au`` (an init segment first if it is a keyframe); empty for
    an access unit with no picture."""
    codec = au.codec.encode("ascii", "replace")[:255]
    init = (_fmp4.init_segment(au) or b"") if au.key else b""
    fragment = _fmp4.fragment(au, info.timestamp, au.index)
    if not fragment:
        return b""  # no picture in it: nothing to send
    flags = (1 if au.key else 0) | (2 if passthrough else 0) | (4 if init else 0)
    when = _fmp4.decode_time(info.timestamp) / _fmp4.TIMESCALE
    head = MSE_HEADER.pack(MSE_VERSION, flags, len(codec), len(init), _fmp4.ORIGIN, when)
    return b"".join((head, codec, init, fragment))


def parse_mse(data: bytes) -> tuple[bool, str, bytes, bytes, float]:
    """(keyframe, codec, init segment, fragment, origin) of an fMP4 message (tests, tools)."""
    if len(data) < MSE_HEADER.size:
        raise ValueError("too short for an fMP4 message")
    version, flags, n, init_len, origin, _ = MSE_HEADER.unpack_from(data)
    if version != MSE_VERSION:
        raise ValueError(f"unknown fMP4 message version {version}")
    start = MSE_HEADER.size
    if len(data) < start + n + init_len:
        raise ValueError("the codec string or the init segment runs past the message")
    codec = data[start : start + n].decode("ascii", "replace")
    init = data[start + n : start + n + init_len]
    return bool(flags & 1), codec, init, data[start + n + init_len :], origin


def websocket_frame(payload: bytes) -> bytes:
    """``payload`` as one unmasked binary WebSocket frame (RFC 6455 §5.2), as a server sends
    it: made once per access unit and written to every viewer's socket as it is."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, n))
    elif n < 1 << 16:
        head = bytes((0x82, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 127)) + n.to_bytes(8, "big")
    return head + payload


def unframe(frame: bytes) -> memoryview:
    """The payload of a frame :func:`websocket_frame` made (no copy)."""
    n = frame[1] & 0x7F
    return memoryview(frame)[2 + {126: 2, 127: 8}.get(n, 0) :]


def parse(data: bytes) -> tuple[AccessUnit, float, int]:
    """(access unit, capture time, seq) from a message (the page's parser, in Python, for
    tests and tools). ValueError if ``data`` is not one."""
    if len(data) < HEADER.size:
        raise ValueError(f"an H.264 message has at least {HEADER.size} bytes, not {len(data)}")
    version, flags, width, height, n, timestamp, seq, index = HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"unknown H.264 message version {version}")
    end = HEADER.size + n
    if len(data) < end:
        raise ValueError("the codec string runs past the message")
    codec = data[HEADER.size : end].decode("ascii", "replace")
    au = AccessUnit(data[end:], bool(flags & 1), codec, width, height, index)
    return au, timestamp, seq
