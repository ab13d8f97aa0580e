"""The frame wire format: one frame as a fixed 64-byte header then its payload (no I/O).

One format serves every wing that moves frames off the machine's shared memory: a network
transport sends one message per frame, ``framebus cat`` writes a byte stream of frames to
stdout and ``framebus serve cam=-`` reads one from stdin. This module only turns frames into
bytes and bytes into frames; the wings own the sockets and the pipes.

Byte layout
-----------

Every integer is little-endian and unsigned; the header is :data:`HEADER_SIZE` (64) bytes::

    offset  size  field         meaning
    ------  ----  ------------  ---------------------------------------------------------------
         0     4  magic         b"\\x89FBW" (the high first byte catches 7-bit and text mangling)
         4     1  version       1 (:data:`VERSION`)
         5     1  codec         1 RAW: the payload is the pixels, row after row
                                2 JPEG: the payload is one JPEG image (baseline, 8-bit)
         6     1  pixel_format  :class:`PixelFormat` code: numpy dtype and channels (table below)
         7     1  flags         reserved, 0
         8     4  width         pixels per row, 1..16384 (:data:`MAX_DIMENSION`)
        12     4  height        rows, 1..16384
        16     4  stride        bytes from one row to the next in a RAW payload
        20     4  payload_len   bytes of payload after the header
        24     8  seq           the producer's frame counter
        32     8  session       random per producer (:func:`new_session`): a new one means the
                                producer restarted and seq starts over
        40     8  capture_ns    time.time_ns() when the frame was captured
        48     8  send_ns       time.time_ns() when the frame was packed for sending
        56     4  reserved      0
        60     4  header_crc    zlib.crc32 of bytes 0..59
        64     -  payload       payload_len bytes

Pixel formats (an explicit table: no dtype string ever comes from the wire)::

    code  name      dtype    channels     code  name      dtype    channels
       1  GRAY8     uint8    1               7  GRAY16S   int16    1
       2  BGR24     uint8    3               8  BGR48S    int16    3
       3  BGRA32    uint8    4               9  BGRA64S   int16    4
       4  GRAY16    uint16   1              10  GRAYF32   float32  1
       5  BGR48     uint16   3              11  BGRF32    float32  3
       6  BGRA64    uint16   4              12  BGRAF32   float32  4

Multi-byte pixels are little-endian. One-channel formats are 2-D ``HxW`` arrays.

Validation
----------

:func:`parse_header` checks every field before anything uses it, in this order, and raises
:class:`~framebus.errors.WireFormatError` (a ``ValueError``) with one line naming the field
and its value at the first violation:

1. at least :data:`HEADER_SIZE` bytes;
2. magic; 3. version == :data:`VERSION`; 4. header_crc; 5. flags and reserved are 0;
6. codec is RAW or JPEG; 7. pixel_format is in the table; JPEG carries only GRAY8 or BGR24;
8. 1 <= width, height <= :data:`MAX_DIMENSION`;
9. width * bytes per pixel <= stride <= :data:`MAX_STRIDE`, stride a multiple of the dtype's
   size; a JPEG's stride is exactly width * bytes per pixel (the decoded image is packed);
10. RAW: payload_len == stride * height exactly; JPEG: payload_len >= 2;
11. payload_len <= ``max_payload`` (default :data:`MAX_PAYLOAD`, 64 MiB): the reader's bound.

seq, session and the times are u64 by construction on the wire; :class:`FrameHeader` checks
rules 6-10 and the u64 ranges whenever one is built, so a header object is always valid and
:func:`encode_header` never writes bytes that :func:`parse_header` would refuse. Payload checks
(:func:`unpack_frame`, :func:`unpack_parts`, :class:`StreamDecoder`): the payload is exactly
payload_len bytes, and a JPEG payload starts with the SOI marker ``FF D8``. The payload itself
carries no checksum: TCP, ZeroMQ and pipes deliver bytes intact, and the CRC exists to find
frame boundaries again after garbage, not to detect damaged pixels.

Byte streams: :class:`StreamDecoder`
------------------------------------

A sans-I/O push parser: ``feed(chunk)`` whatever was read, then call ``next()`` until it returns
None. It looks for the magic with ``bytearray.find``; a header that fails validation (garbage
that happens to contain the magic, a foreign writer's output on the same pipe) is skipped one
byte past its magic and the search goes on, counted in ``resyncs`` (times sync was lost) and
``skipped_bytes``. ``strict=True`` raises WireFormatError instead. Buffering is bounded: once
a valid header is found the decoder waits for its payload (at most ``max_payload`` bytes, rule
11), garbage is dropped as soon as it is known to be garbage (only a tail that may be the start
of a magic is kept), and ``feed`` refuses (``BufferError``) to add to a buffer that already holds
``HEADER_SIZE + max_payload`` bytes, which only happens when the caller stopped calling
``next()`` early. So the buffer never exceeds ``HEADER_SIZE + max_payload + len(chunk)``.
A frame whose bytes were cut short (a producer killed mid-frame) takes the next bytes as the
rest of its payload: the frame after it is lost too, then the decoder resynchronises.

Tests: tests/test_wire.py; set ``FRAMEBUS_FUZZ_SECONDS=N`` to run each of its property tests for
about N seconds of fresh Hypothesis examples instead of its short default run.
"""

from __future__ import annotations

import enum
import operator
import secrets
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from .errors import WireFormatError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "MAX_DIMENSION",
    "MAX_PAYLOAD",
    "MAX_STRIDE",
    "VERSION",
    "Codec",
    "FrameHeader",
    "PixelFormat",
    "StreamDecoder",
    "encode_header",
    "looks_like_wire",
    "new_session",
    "pack_frame",
    "pack_frame_bytes",
    "parse_header",
    "raw_array",
    "unpack_frame",
    "unpack_parts",
]

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


def _check_payload(header: FrameHeader, payload: Buffer) -> None:
    if len(payload) != header.payload_len:
        raise WireFormatError(
            f"wire: payload of {len(payload)} bytes, header says payload_len {header.payload_len}"
        )
    if header.codec is Codec.JPEG and payload[:2] != _JPEG_SOI:
        raise WireFormatError(
            f"wire: JPEG payload starts with {bytes(payload[:2])!r}, not the SOI marker FF D8"
        )


def _bytes_view(data: Buffer | np.ndarray) -> memoryview:
    view = data.data if isinstance(data, np.ndarray) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")  # TypeError if not contiguous
    return view


def unpack_frame(
    message: Buffer, *, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameHeader, memoryview]:
    """Header and payload of one whole frame message (header + payload, nothing more)."""
    view = _bytes_view(message)
    header = parse_header(view, max_payload=max_payload)
    if len(view) != header.message_size:
        raise WireFormatError(
            f"wire: message of {len(view)} bytes, header says {header.message_size} "
            f"({HEADER_SIZE} + payload_len {header.payload_len})"
        )
    payload = view[HEADER_SIZE:]
    _check_payload(header, payload)
    return header, payload


def unpack_parts(
    header: Buffer, payload: Buffer, *, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameHeader, memoryview]:
    """Like :func:`unpack_frame` for a frame received in two parts (:func:`pack_frame`'s)."""
    head = _bytes_view(header)
    if len(head) != HEADER_SIZE:
        raise WireFormatError(f"wire: header part of {len(head)} bytes, need {HEADER_SIZE}")
    parsed = parse_header(head, max_payload=max_payload)
    body = _bytes_view(payload)
    _check_payload(parsed, body)
    return parsed, body


def raw_array(header: FrameHeader, payload: Buffer) -> np.ndarray:
    """The numpy array of a RAW frame: a view of ``payload`` (read-only if it is), honouring the
    stride. 2-D for one-channel formats."""
    if header.codec is not Codec.RAW:
        raise WireFormatError(f"wire: codec {header.codec.name} has no raw pixels (decode it)")
    view = _bytes_view(payload)
    _check_payload(header, view)
    dtype, channels = _FORMATS[header.pixel_format]
    size = dtype.itemsize
    if channels == 1:
        strides: tuple[int, ...] = (header.stride, size)
    else:
        strides = (header.stride, channels * size, size)
    return np.ndarray(header.shape, dtype, buffer=view, strides=strides)


def pack_frame(
    frame: np.ndarray,
    *,
    seq: int,
    session: int,
    capture_ns: int,
    send_ns: int | None = None,
    codec: Codec = Codec.RAW,
    payload: Buffer | np.ndarray | None = None,
) -> tuple[bytes, memoryview]:
    """One frame as ``(header, payload)``: send both, in order (``send_multipart``, ``writev``,
    ``writelines``), or join them with :func:`pack_frame_bytes`.

    RAW: the payload is a view of ``frame``'s pixels, with no copy when ``frame`` is C-contiguous
    (else one packed copy): send it before anything overwrites the frame. JPEG: ``payload`` is
    the JPEG the caller encoded from ``frame``, whose shape and dtype the header describes.
    ``send_ns`` defaults to now. ValueError for a frame the wire cannot carry."""
    fmt = PixelFormat.of(frame)
    height, width = int(frame.shape[0]), int(frame.shape[1])
    if codec is Codec.RAW:
        if payload is not None:
            raise ValueError("payload= is for JPEG frames: a RAW payload is the frame itself")
        dtype = _FORMATS[fmt][0]
        pixels = frame if frame.dtype == dtype else frame.astype(dtype)
        pixels = np.ascontiguousarray(pixels)
        view = pixels.reshape(-1).view(np.uint8).data
    elif codec is Codec.JPEG:
        if payload is None:
            raise ValueError("a JPEG frame needs payload=, the JPEG encoded from the frame")
        view = _bytes_view(payload)
        if view[:2] != _JPEG_SOI:
            raise ValueError("payload= does not start with the JPEG SOI marker FF D8")
    else:
        raise ValueError(f"unknown codec {codec!r}")
    header = FrameHeader(
        codec,
        fmt,
        width,
        height,
        width * _BPP[fmt],
        view.nbytes,
        seq,
        session,
        capture_ns,
        time.time_ns() if send_ns is None else send_ns,
    )
    return encode_header(header), view


def pack_frame_bytes(
    frame: np.ndarray,
    *,
    seq: int,
    session: int,
    capture_ns: int,
    send_ns: int | None = None,
    codec: Codec = Codec.RAW,
    payload: Buffer | np.ndarray | None = None,
) -> bytes:
    """:func:`pack_frame` joined into one message (one copy of the payload)."""
    head, body = pack_frame(
        frame,
        seq=seq,
        session=session,
        capture_ns=capture_ns,
        send_ns=send_ns,
        codec=codec,
        payload=payload,
    )
    return b"".join((head, body))


def looks_like_wire(first_bytes: Buffer) -> bool:
    """Whether a byte stream starting with ``first_bytes`` is framebus frames: true only for
    a complete valid header, so pass at least :data:`HEADER_SIZE` bytes (fewer: False)."""
    try:
        parse_header(first_bytes, max_payload=_U32)
    except WireFormatError:
        return False
    return True


class StreamDecoder:
    """Frames out of a byte stream: ``feed()`` the bytes read, then ``next()`` until None.

    Lenient by default: garbage is skipped up to the next valid header and counted
    (``resyncs``, ``skipped_bytes``, ``last_error``). ``strict=True`` raises WireFormatError
    at the first byte that does not start a valid frame; discard the decoder then. See the
    module docstring for the buffering bound."""

    def __init__(self, *, max_payload: int = MAX_PAYLOAD, strict: bool = False) -> None:
        if not 0 <= max_payload <= _U32:
            raise ValueError(f"max_payload must be 0..{_U32}, got {max_payload}")
        self.max_payload = max_payload
        self.strict = strict
        self.frames = 0  # frames returned
        self.resyncs = 0  # times the decoder lost sync and skipped bytes to find a frame
        self.skipped_bytes = 0
        self.last_error: str | None = None  # why the last bad header was skipped
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]
        self._header: FrameHeader | None = None  # the valid header at _buf[0], if any
        self._synced = True
        self._limit = HEADER_SIZE + max_payload

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned or skipped."""
        return len(self._buf)

    @property
    def offset(self) -> int:
        """Stream offset of the first buffered byte (bytes fed so far minus ``buffered``)."""
        return self._offset

    def feed(self, data: Buffer) -> None:
        if len(self._buf) >= self._limit:
            raise BufferError(
                f"wire: feed() with {len(self._buf)} bytes buffered: call next() until None first"
            )
        self._buf += data

    def __iter__(self) -> Iterator[tuple[FrameHeader, bytes]]:
        """The complete frames buffered now (``next()`` until None)."""
        while (item := self.next()) is not None:
            yield item

    def next(self) -> tuple[FrameHeader, bytes] | None:
        """The next complete frame, or None until more bytes are fed."""
        buf = self._buf
        while True:
            header = self._header
            if header is None:
                if not self._find_magic():
                    return None
                if len(buf) < HEADER_SIZE:
                    return None
                try:
                    header = parse_header(buf, max_payload=self.max_payload)
                except WireFormatError as exc:
                    self._bad(exc)
                    continue
                self._header = header
            if header.codec is Codec.JPEG:
                # the payload's first bytes are checked as soon as they are here, not after
                # the whole announced payload arrived and was copied: a valid-looking header
                # every few bytes must not cost a payload's copy each (quadratic resync)
                if len(buf) < HEADER_SIZE + 2:
                    return None
                start = bytes(buf[HEADER_SIZE : HEADER_SIZE + 2])
                if start != _JPEG_SOI:
                    self._header = None
                    self._bad(
                        WireFormatError(
                            f"wire: JPEG payload starts with {start!r}, not the SOI marker FF D8"
                        )
                    )
                    continue
            end = HEADER_SIZE + header.payload_len
            if len(buf) < end:
                return None
            with memoryview(buf) as view:
                payload = view[HEADER_SIZE:end].tobytes()
            try:
                _check_payload(header, payload)
            except WireFormatError as exc:
                self._header = None
                self._bad(exc)
                continue
            del buf[:end]
            self._offset += end
            self._header = None
            self._synced = True
            self.frames += 1
            return header, payload

    def _find_magic(self) -> bool:
        """Drop the bytes before the first magic; False if there is none yet."""
        buf = self._buf
        at = buf.find(MAGIC)
        if at == 0:
            return True
        if self.strict:
            head = bytes(buf[: len(MAGIC)])
            if at < 0 and MAGIC.startswith(head):
                return False  # a magic may be arriving
            raise WireFormatError(
                f"wire: bad magic {head!r} at stream offset {self._offset} (expected {MAGIC!r})"
            )
        if at < 0:
            keep = len(MAGIC) - 1  # the longest tail that may be the start of a magic
            while keep and not buf.endswith(MAGIC[:keep]):
                keep -= 1
            self._skip(len(buf) - keep)
            return False
        self._skip(at)
        return True

    def _bad(self, exc: WireFormatError) -> None:
        """A bad header (or payload) at _buf[0]: skip its first byte, or raise if strict."""
        if self.strict:
            raise WireFormatError(f"{exc} at stream offset {self._offset}") from None
        self.last_error = f"{exc} at stream offset {self._offset}"
        self._skip(1)

    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        if self._synced:
            self.resyncs += 1
            self._synced = False
        del self._buf[:n]
        self._offset += n
        self.skipped_bytes += n
