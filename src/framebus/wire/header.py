"""The wire header (no I/O): its fields, pixel formats and codecs, :class:`FrameHeader` (valid
whenever built), :func:`encode_header` and :func:`parse_header` (every field checked, in the
order the package docstring gives)."""

from __future__ import annotations

import enum
import operator
import secrets
import struct
import zlib
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from ..errors import WireFormatError

__all__ = ["HEADER_SIZE", "MAGIC", "MAX_DIMENSION", "MAX_PAYLOAD", "MAX_STRIDE", "VERSION",
           "Buffer", "Codec", "FrameHeader", "PixelFormat", "encode_header", "new_session",
           "parse_header"]  # fmt: skip


Buffer: TypeAlias = bytes | bytearray | memoryview

MAGIC = b"\x89FBW"
VERSION = 1
HEADER_SIZE = 64
MAX_DIMENSION = 16384
MAX_PAYLOAD = 64 * 1024 * 1024
MAX_STRIDE = MAX_DIMENSION * 16  # the widest row of the widest pixel (BGRAF32)
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_JPEG_SOI = b"\xff\xd8"

# magic, version, codec, pixel_format, flags, width, height, stride, payload_len,
# seq, session, capture_ns, send_ns, reserved, header_crc
_HEADER = struct.Struct("<4sBBBBIIIIQQQQII")
_BODY = struct.Struct(_HEADER.format[:-1])  # all but header_crc
_CRC = struct.Struct("<I")
_CRC_AT = _BODY.size
assert _HEADER.size == HEADER_SIZE and _CRC_AT == HEADER_SIZE - 4


class Codec(enum.IntEnum):
    """How the payload holds the pixels."""

    RAW = 1
    JPEG = 2


class PixelFormat(enum.IntEnum):
    """What one pixel is: a numpy dtype and a channel count (see the module's table)."""

    GRAY8 = 1
    BGR24 = 2
    BGRA32 = 3
    GRAY16 = 4
    BGR48 = 5
    BGRA64 = 6
    GRAY16S = 7
    BGR48S = 8
    BGRA64S = 9
    GRAYF32 = 10
    BGRF32 = 11
    BGRAF32 = 12

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return _FORMATS[self][0]

    @property
    def channels(self) -> int:
        return _FORMATS[self][1]

    @property
    def bytes_per_pixel(self) -> int:
        return _BPP[self]

    @classmethod
    def of(cls, frame: np.ndarray) -> PixelFormat:
        """The format of ``frame`` (``HxW`` or ``HxWxC``); ValueError if the wire has none."""
        if frame.ndim == 2:
            channels = 1
        elif frame.ndim == 3:
            channels = int(frame.shape[2])
        else:
            raise ValueError(f"frames must be HxW or HxWxC arrays, got shape {frame.shape}")
        fmt = _BY_DTYPE.get((frame.dtype.newbyteorder("<"), channels))
        if fmt is None:
            supported = ", ".join(f"{f.name} ({f.dtype} x{f.channels})" for f in cls)
            raise ValueError(
                f"frames of dtype {frame.dtype} with {channels} channels have no wire pixel "
                f"format (use {supported})"
            )
        return fmt


_LE = {name: np.dtype(name).newbyteorder("<") for name in ("uint8", "uint16", "int16", "float32")}
_FORMATS: dict[int, tuple[np.dtype[np.generic], int]] = {
    PixelFormat.GRAY8: (_LE["uint8"], 1),
    PixelFormat.BGR24: (_LE["uint8"], 3),
    PixelFormat.BGRA32: (_LE["uint8"], 4),
    PixelFormat.GRAY16: (_LE["uint16"], 1),
    PixelFormat.BGR48: (_LE["uint16"], 3),
    PixelFormat.BGRA64: (_LE["uint16"], 4),
    PixelFormat.GRAY16S: (_LE["int16"], 1),
    PixelFormat.BGR48S: (_LE["int16"], 3),
    PixelFormat.BGRA64S: (_LE["int16"], 4),
    PixelFormat.GRAYF32: (_LE["float32"], 1),
    PixelFormat.BGRF32: (_LE["float32"], 3),
    PixelFormat.BGRAF32: (_LE["float32"], 4),
}
_BPP = {fmt: dt.itemsize * ch for fmt, (dt, ch) in _FORMATS.items()}
_BY_DTYPE = {(dt, ch): PixelFormat(fmt) for fmt, (dt, ch) in _FORMATS.items()}
_CODEC_BY_CODE = {int(c): c for c in Codec}
_FORMAT_BY_CODE = {int(f): f for f in PixelFormat}
_JPEG_FORMATS = frozenset({PixelFormat.GRAY8, PixelFormat.BGR24})
assert set(_FORMATS) == set(PixelFormat)


def new_session() -> int:
    """A random 64-bit session id for a producer: receivers see a restart as a new session."""
    return secrets.randbits(64)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One frame's header. Building one validates every field (WireFormatError otherwise)."""

    codec: Codec
    pixel_format: PixelFormat
    width: int
    height: int
    stride: int  # bytes from one row to the next (RAW); width * bytes per pixel for JPEG
    payload_len: int
    seq: int
    session: int
    capture_ns: int
    send_ns: int

    def __post_init__(self) -> None:
        codec = _CODEC_BY_CODE.get(self.codec)
        if codec is None:
            raise WireFormatError(f"wire: unknown codec {self.codec!r} (1 RAW, 2 JPEG)")
        fmt = _FORMAT_BY_CODE.get(self.pixel_format)
        if fmt is None:
            raise WireFormatError(f"wire: unknown pixel_format {self.pixel_format!r} (1..12)")
        if codec is Codec.JPEG and fmt not in _JPEG_FORMATS:
            raise WireFormatError(
                f"wire: pixel_format {fmt.name} cannot be JPEG (GRAY8 or BGR24 only)"
            )
        if codec is not self.codec or fmt is not self.pixel_format:  # plain ints given
            object.__setattr__(self, "codec", codec)
            object.__setattr__(self, "pixel_format", fmt)
        width, height, stride, length = self.width, self.height, self.stride, self.payload_len
        seq, session, capture_ns, send_ns = self.seq, self.session, self.capture_ns, self.send_ns
        if not (  # the fast path: ints from struct.unpack, within u64
            int is type(width) is type(height) is type(stride) is type(length)
            and int is type(seq) is type(session) is type(capture_ns) is type(send_ns)
            and 0 <= seq <= _U64
            and 0 <= session <= _U64
            and 0 <= capture_ns <= _U64
            and 0 <= send_ns <= _U64
            and 0 <= length <= _U32
        ):
            for name in ("width", "height", "stride", "payload_len"):
                _check_int(self, name, _U32)
            for name in ("seq", "session", "capture_ns", "send_ns"):
                _check_int(self, name, _U64)
            width, height, stride, length = self.width, self.height, self.stride, self.payload_len
        if not 1 <= width <= MAX_DIMENSION:
            raise WireFormatError(f"wire: width {width} is outside 1..{MAX_DIMENSION}")
        if not 1 <= height <= MAX_DIMENSION:
            raise WireFormatError(f"wire: height {height} is outside 1..{MAX_DIMENSION}")
        row = width * _BPP[fmt]
        if not row <= stride <= MAX_STRIDE:
            raise WireFormatError(
                f"wire: stride {stride} is outside {row}..{MAX_STRIDE} "
                f"(width {width} of {fmt.name})"
            )
        if stride % _FORMATS[fmt][0].itemsize:
            raise WireFormatError(
                f"wire: stride {stride} is not a multiple of the {fmt.name} sample size"
            )
        if codec is Codec.RAW:
            if length != stride * height:
                raise WireFormatError(
                    f"wire: RAW payload_len {length} != stride {stride} x height {height}"
                )
        else:
            if stride != row:
                raise WireFormatError(f"wire: JPEG stride {stride} != width x bpp {row}")
            if length < len(_JPEG_SOI):
                raise WireFormatError(f"wire: JPEG payload_len {length} is too short")

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy shape of the frame: ``(height, width)`` for gray, else with channels."""
        channels = _FORMATS[self.pixel_format][1]
        if channels == 1:
            return (self.height, self.width)
        return (self.height, self.width, channels)

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return _FORMATS[self.pixel_format][0]

    @property
    def message_size(self) -> int:
        """Header plus payload: the bytes of the whole frame message."""
        return HEADER_SIZE + self.payload_len


def _check_int(header: FrameHeader, name: str, top: int) -> None:
    value = getattr(header, name)
    if type(value) is not int:
        value = operator.index(value)  # numpy integers; TypeError for anything else
        object.__setattr__(header, name, value)
    if not 0 <= value <= top:
        raise WireFormatError(f"wire: {name} {value} is outside 0..{top}")


def encode_header(header: FrameHeader) -> bytes:
    """The :data:`HEADER_SIZE` bytes of ``header``, CRC included."""
    body = _BODY.pack(
        MAGIC,
        VERSION,
        header.codec,
        header.pixel_format,
        0,
        header.width,
        header.height,
        header.stride,
        header.payload_len,
        header.seq,
        header.session,
        header.capture_ns,
        header.send_ns,
        0,
    )
    return body + _CRC.pack(zlib.crc32(body))


def parse_header(buf: Buffer, *, max_payload: int = MAX_PAYLOAD) -> FrameHeader:
    """The header in the first :data:`HEADER_SIZE` bytes of ``buf``, validated (see the module
    docstring for the rules); WireFormatError at the first violation."""
    if type(buf) is memoryview:
        buf = _bytes_view(buf)  # lengths and slices in bytes
    if len(buf) < HEADER_SIZE:
        raise WireFormatError(f"wire: header of {len(buf)} bytes, need {HEADER_SIZE}")
    (
        magic,
        version,
        codec,
        fmt,
        flags,
        width,
        height,
        stride,
        length,
        seq,
        session,
        capture_ns,
        send_ns,
        reserved,
        crc,
    ) = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise WireFormatError(f"wire: bad magic {magic!r} (expected {MAGIC!r})")
    if version != VERSION:
        raise WireFormatError(
            f"wire: unsupported version {version} (this framebus reads {VERSION})"
        )
    actual = zlib.crc32(buf[:_CRC_AT])
    if crc != actual:
        raise WireFormatError(f"wire: header_crc {crc:#010x} != {actual:#010x} (damaged header)")
    if flags or reserved:
        raise WireFormatError(f"wire: reserved flags {flags} / reserved {reserved} are not 0")
    header = FrameHeader(
        _CODEC_BY_CODE.get(codec, codec),  # an unknown code stays an int: __post_init__ refuses
        _FORMAT_BY_CODE.get(fmt, fmt),
        width,
        height,
        stride,
        length,
        seq,
        session,
        capture_ns,
        send_ns,
    )
    if length > max_payload:
        raise WireFormatError(f"wire: payload_len {length} exceeds max_payload {max_payload}")
    return header


def _bytes_view(data: Buffer | np.ndarray) -> memoryview:
    view = data.data if isinstance(data, np.ndarray) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")  # TypeError if not contiguous
    return view
