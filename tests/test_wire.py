"""The frame wire format: round trips, one test per validation rule, the stream decoder, and
Hypothesis property tests (any bytes in: a valid frame or WireFormatError out, never anything
else; frames among garbage are all recovered, in order).

The default run is short. FRAMEBUS_FUZZ_SECONDS=N runs each property test for about N seconds
of fresh examples (and lifts its timeout): ``FRAMEBUS_FUZZ_SECONDS=300 pytest tests/test_wire.py``.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from framebus import errors, wire
from framebus.errors import FramebusError, WireFormatError
from framebus.wire import (
    HEADER_SIZE,
    MAGIC,
    MAX_DIMENSION,
    Codec,
    FrameHeader,
    PixelFormat,
    StreamDecoder,
)
from fuzzing import fuzz

U64 = 2**64 - 1

# The layout of the module docstring, written out independently of wire.py's own struct.
LAYOUT = struct.Struct("<4s B B B B I I I I Q Q Q Q I")
FIELDS = [
    "magic", "version", "codec", "pixel_format", "flags", "width", "height", "stride",
    "payload_len", "seq", "session", "capture_ns", "send_ns", "reserved",
]  # fmt: skip


def raw_header(crc: int | None = None, **fields: Any) -> bytes:
    """Header bytes from the documented layout: a valid 4x2 BGR24 RAW header unless overridden;
    the CRC is computed unless ``crc`` is given."""
    values: dict[str, Any] = dict(
        magic=MAGIC, version=1, codec=1, pixel_format=2, flags=0, width=4, height=2, stride=12,
        payload_len=24, seq=7, session=0xABCDEF, capture_ns=10**18, send_ns=10**18 + 5,
        reserved=0,
    )  # fmt: skip
    values.update(fields)
    body = LAYOUT.pack(*(values[name] for name in FIELDS))
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


def frame_of(fmt: PixelFormat, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if fmt.channels == 1 else (height, width, fmt.channels)
    if fmt.dtype.kind == "f":
        return rng.standard_normal(shape).astype(fmt.dtype)
    info = np.iinfo(fmt.dtype)
    return rng.integers(info.min, info.max, shape, dtype=fmt.dtype, endpoint=True)


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality, bit for bit (NaN and -0.0 included)."""
    return (
        a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).astype(a.dtype).tobytes()
    )


def pack(frame: np.ndarray, **kw: Any) -> bytes:
    kw.setdefault("seq", 1)
    kw.setdefault("session", 2)
    kw.setdefault("capture_ns", 3)
    return wire.pack_frame_bytes(frame, **kw)


def valid_header(**kw: Any) -> FrameHeader:
    fields: dict[str, Any] = dict(
        codec=Codec.RAW, pixel_format=PixelFormat.BGR24, width=4, height=2, stride=12,
        payload_len=24, seq=7, session=0xABCDEF, capture_ns=10**18, send_ns=10**18 + 5,
    )  # fmt: skip
    fields.update(kw)
    return FrameHeader(**fields)


# --- layout and round trips -----------------------------------------------------------------


def test_encode_header_is_the_documented_layout() -> None:
    header = valid_header()
    data = wire.encode_header(header)
    assert len(data) == HEADER_SIZE == 64
    assert data == raw_header()
    assert data[:4] == MAGIC and data[4] == 1 and data[5] == Codec.RAW and data[6] == 2
    assert int.from_bytes(data[8:12], "little") == 4  # width
    assert int.from_bytes(data[12:16], "little") == 2  # height
    assert int.from_bytes(data[24:32], "little") == 7  # seq
    assert int.from_bytes(data[60:64], "little") == zlib.crc32(data[:60])
    assert wire.parse_header(data) == header


def test_pixel_format_table() -> None:
    expected = {
        "GRAY8": ("uint8", 1), "BGR24": ("uint8", 3), "BGRA32": ("uint8", 4),
        "GRAY16": ("uint16", 1), "BGR48": ("uint16", 3), "BGRA64": ("uint16", 4),
        "GRAY16S": ("int16", 1), "BGR48S": ("int16", 3), "BGRA64S": ("int16", 4),
        "GRAYF32": ("float32", 1), "BGRF32": ("float32", 3), "BGRAF32": ("float32", 4),
    }  # fmt: skip
    assert {f.name: (str(f.dtype), f.channels) for f in PixelFormat} == expected
    assert [int(f) for f in PixelFormat] == list(range(1, 13))
    for f in PixelFormat:
        assert f.bytes_per_pixel == f.dtype.itemsize * f.channels


def layouts(fmt: PixelFormat) -> Iterator[tuple[str, np.ndarray]]:
    base = frame_of(fmt, 9, 11, seed=int(fmt))
    yield "contiguous", base
    yield "every-other", base[::2, ::3]
    yield "crop", base[2:7, 3:10]
    yield "fortran", np.asfortranarray(base)
    yield "one-row", base[4:5]
    if fmt.channels == 1:
        yield "hxwx1", base[:, :, None]
    if fmt.dtype.itemsize > 1:
        yield "big-endian", base.astype(base.dtype.newbyteorder(">"))


@pytest.mark.parametrize("fmt", list(PixelFormat), ids=lambda f: f.name)
def test_raw_round_trip(fmt: PixelFormat) -> None:
    for name, frame in layouts(fmt):
        head, body = wire.pack_frame(frame, seq=5, session=6, capture_ns=7, send_ns=8)
        header, payload = wire.unpack_frame(head + bytes(body))
        assert header.pixel_format is fmt and header.codec is Codec.RAW, name
        assert (header.seq, header.session, header.capture_ns, header.send_ns) == (5, 6, 7, 8)
        assert (header.height, header.width) == frame.shape[:2]
        assert header.stride == frame.shape[1] * fmt.bytes_per_pixel
        array = wire.raw_array(header, payload)
        assert array.dtype == fmt.dtype and array.shape == header.shape, name
        assert array.ndim == (2 if fmt.channels == 1 else 3)
        assert same_pixels(array, frame.reshape(header.shape)), name
        # the two-part form a network transport sends
        header2, payload2 = wire.unpack_parts(head, body)
        assert header2 == header and same_pixels(wire.raw_array(header2, payload2), array)


def test_raw_payload_is_a_view_of_a_contiguous_frame() -> None:
    frame = frame_of(PixelFormat.BGR24, 6, 8)
    head, body = wire.pack_frame(frame, seq=1, session=2, capture_ns=3)
    assert np.shares_memory(np.frombuffer(body, np.uint8), frame)  # no copy
    assert body.nbytes == frame.nbytes and len(head) == HEADER_SIZE
    strided = frame[:, ::2]
    _, copied = wire.pack_frame(strided, seq=1, session=2, capture_ns=3)
    assert not np.shares_memory(np.frombuffer(copied, np.uint8), frame)
    before = time.time_ns()
    header, _ = wire.unpack_frame(pack(frame))
    assert before <= header.send_ns <= time.time_ns()  # send_ns defaults to now
    assert pack(frame, send_ns=9)[48:56] == (9).to_bytes(8, "little")


@pytest.mark.parametrize("fmt", [PixelFormat.GRAY16, PixelFormat.BGRAF32, PixelFormat.BGR24])
def test_raw_array_honours_the_stride(fmt: PixelFormat) -> None:
    frame = frame_of(fmt, 5, 7, seed=3)
    row = 7 * fmt.bytes_per_pixel
    stride = row + 4 * fmt.dtype.itemsize
    padded = np.full((5, stride), 0xEE, np.uint8)
    padded[:, :row] = np.ascontiguousarray(frame).view(np.uint8).reshape(5, row)
    header = FrameHeader(Codec.RAW, fmt, 7, 5, stride, padded.nbytes, 1, 2, 3, 4)
    got_header, payload = wire.unpack_frame(wire.encode_header(header) + padded.tobytes())
    assert got_header == header
    array = wire.raw_array(got_header, payload)
    assert array.strides[0] == stride and not array.flags.writeable
    assert same_pixels(array, frame)


@pytest.mark.parametrize("fmt", [PixelFormat.BGR24, PixelFormat.GRAY8], ids=lambda f: f.name)
def test_jpeg_round_trip(fmt: PixelFormat) -> None:
    ramp = np.add.outer(np.arange(48), np.arange(64)).astype(np.uint8) * 2
    frame = ramp if fmt.channels == 1 else np.dstack([ramp, ramp[::-1], 255 - ramp])
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    message = pack(frame, codec=Codec.JPEG, payload=jpeg, seq=42)
    header, payload = wire.unpack_frame(message)
    assert header.codec is Codec.JPEG and header.pixel_format is fmt and header.seq == 42
    assert header.payload_len == jpeg.nbytes and bytes(payload) == jpeg.tobytes()
    flag = cv2.IMREAD_GRAYSCALE if fmt.channels == 1 else cv2.IMREAD_COLOR
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), flag)
    assert decoded.shape == header.shape
    assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 3
    with pytest.raises(WireFormatError, match="codec JPEG has no raw pixels"):
        wire.raw_array(header, payload)


def test_pack_frame_refuses_what_the_wire_cannot_carry() -> None:
    for frame in (
        np.zeros((2, 2), np.float64),
        np.zeros((2, 2), np.int32),
        np.zeros((2, 2), bool),
        np.zeros((2, 2, 2), np.uint8),
        np.zeros((2, 2, 5), np.uint8),
        np.zeros(4, np.uint8),
    ):
        with pytest.raises(ValueError, match="frames"):
            pack(frame)
    gray = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match="needs payload="):
        pack(gray, codec=Codec.JPEG)
    with pytest.raises(ValueError, match="SOI"):
        pack(gray, codec=Codec.JPEG, payload=b"not a jpeg")
    with pytest.raises(ValueError, match="RAW payload is the frame"):
        pack(gray, payload=b"\xff\xd8")
    with pytest.raises(WireFormatError, match="cannot be JPEG"):
        pack(np.zeros((2, 2), np.uint16), codec=Codec.JPEG, payload=b"\xff\xd8\xff\xd9")
    with pytest.raises(WireFormatError, match="width 0"):
        pack(np.zeros((2, 0), np.uint8))
    with pytest.raises(WireFormatError, match="height 16385"):
        pack(np.zeros((MAX_DIMENSION + 1, 1), np.uint8))
    with pytest.raises(WireFormatError, match="seq -1"):
        pack(gray, seq=-1)
    with pytest.raises(WireFormatError, match="capture_ns 18446744073709551616"):
        pack(gray, capture_ns=2**64)


def test_frame_header_validates_and_coerces() -> None:
    header = FrameHeader(1, 1, np.int64(3), 2, 3, 6, np.uint64(U64), 0, 0, 0)  # type: ignore[arg-type]
    assert header.codec is Codec.RAW and header.pixel_format is PixelFormat.GRAY8
    assert type(header.width) is int and header.seq == U64 and header.shape == (2, 3)
    assert header.dtype == np.uint8 and header.message_size == HEADER_SIZE + 6
    with pytest.raises(TypeError):
        valid_header(width=4.0)


def test_wire_format_error_is_a_framebus_value_error() -> None:
    assert issubclass(WireFormatError, FramebusError)
    assert issubclass(WireFormatError, ValueError)
    assert "WireFormatError" in errors.__all__


# --- validation: one test per rule ----------------------------------------------------------


def rejects(buf: bytes, match: str, **kw: Any) -> None:
    with pytest.raises(WireFormatError, match=match) as info:
        wire.parse_header(buf, **kw)
    assert "\n" not in str(info.value) and str(info.value).startswith("wire: ")
    assert not wire.looks_like_wire(buf) or "max_payload" in match


def test_valid_default_header() -> None:
    header = wire.parse_header(raw_header())
    assert header == valid_header()


def test_rejects_short_header() -> None:
    rejects(raw_header()[:63], "header of 63 bytes, need 64")
    rejects(b"", "header of 0 bytes")


def test_rejects_bad_magic() -> None:
    rejects(raw_header(magic=b"FBW\x89"), r"bad magic b'FBW\\x89'")


def test_rejects_other_version() -> None:
    rejects(raw_header(version=2), "unsupported version 2")


def test_rejects_bad_crc() -> None:
    good = raw_header()
    rejects(raw_header(crc=zlib.crc32(good[:60]) ^ 1), "header_crc 0x")
    damaged = bytearray(good)
    damaged[9] ^= 0x40  # width flipped, CRC left as it was
    rejects(bytes(damaged), r"header_crc 0x.* != 0x.* \(damaged header\)")


def test_rejects_reserved_bits() -> None:
    rejects(raw_header(flags=1), "reserved flags 1")
    rejects(raw_header(reserved=5), "reserved 5")


@pytest.mark.parametrize("code", [0, 3, 255])
def test_rejects_unknown_codec(code: int) -> None:
    rejects(raw_header(codec=code), f"unknown codec {code} ")


@pytest.mark.parametrize("code", [0, 13, 255])
def test_rejects_unknown_pixel_format(code: int) -> None:
    rejects(raw_header(pixel_format=code), f"unknown pixel_format {code} ")


def test_rejects_width_zero() -> None:
    rejects(raw_header(width=0, stride=0, payload_len=0), "width 0 is outside 1..16384")


def test_rejects_width_a_million() -> None:
    rejects(raw_header(width=10**6, stride=3 * 10**6), "width 1000000 is outside 1..16384")


def test_rejects_height_out_of_range() -> None:
    rejects(raw_header(height=0, payload_len=0), "height 0 is outside")
    rejects(raw_header(height=16385, payload_len=12 * 16385), "height 16385 is outside")


def test_rejects_stride_below_the_row() -> None:
    rejects(raw_header(stride=11, payload_len=22), r"stride 11 is outside 12\.\.")


def test_rejects_stride_too_large() -> None:
    rejects(raw_header(stride=2**20, payload_len=2**21), "stride 1048576 is outside")


def test_rejects_stride_not_a_multiple_of_the_sample() -> None:
    # GRAY16, width 4: rows of 8 bytes; a stride of 9 would misalign every other row
    rejects(raw_header(pixel_format=4, stride=9, payload_len=18), "stride 9 is not a multiple")


def test_rejects_raw_length_mismatch() -> None:
    rejects(raw_header(payload_len=23), r"RAW payload_len 23 != stride 12 x height 2")
    rejects(raw_header(payload_len=25), r"RAW payload_len 25 != stride 12 x height 2")


def test_rejects_jpeg_of_a_format_jpeg_cannot_hold() -> None:
    rejects(
        raw_header(codec=2, pixel_format=3, stride=16, payload_len=100), "BGRA32 cannot be JPEG"
    )


def test_rejects_jpeg_with_a_stride() -> None:
    rejects(raw_header(codec=2, stride=16, payload_len=100), "JPEG stride 16 != width x bpp 12")


def test_rejects_jpeg_too_short() -> None:
    rejects(raw_header(codec=2, payload_len=1), "JPEG payload_len 1 is too short")


def test_rejects_payload_over_max() -> None:
    header = raw_header(codec=2, payload_len=wire.MAX_PAYLOAD + 1)
    rejects(header, "payload_len 67108865 exceeds max_payload 67108864")
    assert wire.parse_header(raw_header(codec=2, payload_len=1000)).payload_len == 1000
    rejects(raw_header(codec=2, payload_len=1000), "exceeds max_payload 999", max_payload=999)
    rejects(raw_header(), "payload_len 24 exceeds max_payload 23", max_payload=23)


def test_rejects_short_payload() -> None:
    message = raw_header() + bytes(23)
    with pytest.raises(WireFormatError, match="message of 87 bytes, header says 88"):
        wire.unpack_frame(message)
    with pytest.raises(WireFormatError, match="payload of 23 bytes, header says payload_len 24"):
        wire.unpack_parts(raw_header(), bytes(23))


def test_rejects_trailing_bytes() -> None:
    with pytest.raises(WireFormatError, match="message of 89 bytes, header says 88"):
        wire.unpack_frame(raw_header() + bytes(25))


def test_rejects_jpeg_payload_without_soi() -> None:
    message = raw_header(codec=2, payload_len=4) + b"JFIF"
    with pytest.raises(WireFormatError, match="not the SOI marker"):
        wire.unpack_frame(message)
    _, payload = wire.unpack_frame(raw_header(codec=2, payload_len=4) + b"\xff\xd8\xff\xd9")
    assert bytes(payload) == b"\xff\xd8\xff\xd9"


def test_rejects_wrong_header_part() -> None:
    with pytest.raises(WireFormatError, match="header part of 65 bytes"):
        wire.unpack_parts(raw_header() + b"x", bytes(24))


def test_raw_array_checks_its_payload() -> None:
    header = valid_header()
    with pytest.raises(WireFormatError, match="payload of 23 bytes"):
        wire.raw_array(header, bytes(23))
    assert wire.raw_array(header, bytearray(24)).flags.writeable  # a view of a writable buffer


def test_looks_like_wire() -> None:
    message = pack(frame_of(PixelFormat.BGR24, 4, 4))
    assert wire.looks_like_wire(message) and wire.looks_like_wire(message[:HEADER_SIZE])
    assert not wire.looks_like_wire(message[: HEADER_SIZE - 1])
    assert not wire.looks_like_wire(b"")
    assert not wire.looks_like_wire(b"YUV4MPEG2 W640 H480 F25:1 Ip A1:1 C420jpeg\n" + bytes(64))
    assert not wire.looks_like_wire(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(64))
    assert not wire.looks_like_wire(b"garbage" + message)
    # the receiver's max_payload is a limit, not a format question
    big = raw_header(codec=2, payload_len=wire.MAX_PAYLOAD * 2)
    assert wire.looks_like_wire(big)


# --- the stream decoder ---------------------------------------------------------------------


def messages_of(n: int, fmt: PixelFormat = PixelFormat.BGR24) -> list[bytes]:
    return [pack(frame_of(fmt, 3 + i % 3, 4 + i % 5, seed=i), seq=i) for i in range(n)]


def drain(dec: StreamDecoder) -> list[tuple[FrameHeader, bytes]]:
    return list(dec)


def test_decoder_whole_and_byte_by_byte() -> None:
    msgs = messages_of(5)
    stream = b"".join(msgs)
    for step in (len(stream), 1, 7, 64, 65):
        dec = StreamDecoder()
        got = []
        for i in range(0, len(stream), step):
            dec.feed(stream[i : i + step])
            got += drain(dec)
        assert [h.seq for h, _ in got] == list(range(5)), step
        assert [wire.encode_header(h) + p for h, p in got] == msgs
        assert (dec.frames, dec.resyncs, dec.skipped_bytes, dec.buffered) == (5, 0, 0, 0)
        assert dec.offset == len(stream) and dec.last_error is None


def test_decoder_skips_garbage_and_counts_it() -> None:
    a, b, c = messages_of(3)
    fake = MAGIC + b"\x01" + bytes(59)  # a magic, then a header whose CRC fails
    stream = b"hello\n" + a + fake + b"\x89FB" + b + b"log line\n" + MAGIC + c + b"\x89F"
    dec = StreamDecoder()
    dec.feed(stream)
    got = drain(dec)
    assert [h.seq for h, _ in got] == [0, 1, 2]
    assert dec.resyncs == 3  # before a, between a and b, between b and c
    assert dec.skipped_bytes == 6 + len(fake) + 3 + 9 + 4
    assert dec.buffered == 2  # b"\x89F" may be the start of a magic
    # the last bad header: the lone magic before c, read with c's magic as its version
    assert "unsupported version 137" in (dec.last_error or "")
    assert dec.offset + dec.buffered == len(stream)
    dec.feed(b"BWxyz")  # it was not: a magic with a short header, then waits
    assert dec.next() is None and dec.buffered == 7


def test_decoder_skips_a_header_over_max_payload() -> None:
    big = pack(frame_of(PixelFormat.BGR24, 40, 40))
    small = pack(frame_of(PixelFormat.GRAY8, 2, 2))
    dec = StreamDecoder(max_payload=1000)
    dec.feed(big + small)
    got = drain(dec)
    assert [h.pixel_format for h, _ in got] == [PixelFormat.GRAY8]
    assert dec.resyncs == 1 and dec.skipped_bytes == len(big)
    assert "exceeds max_payload 1000" in (dec.last_error or "")


def test_decoder_skips_a_jpeg_without_soi() -> None:
    bad = raw_header(codec=2, payload_len=4) + b"JFIF"
    good = raw_header(codec=2, payload_len=4, seq=9) + b"\xff\xd8\xff\xd9"
    dec = StreamDecoder()
    dec.feed(bad + good)
    assert [h.seq for h, _ in drain(dec)] == [9]
    assert dec.skipped_bytes == len(bad) and "SOI" in (dec.last_error or "")


def test_decoder_strict_raises() -> None:
    (a,) = messages_of(1)
    dec = StreamDecoder(strict=True)
    dec.feed(a + a[:3])
    assert len(drain(dec)) == 1 and dec.next() is None  # a magic may be arriving
    dec.feed(b"X")
    with pytest.raises(WireFormatError, match=r"bad magic .* at stream offset \d+"):
        dec.next()
    dec = StreamDecoder(strict=True)
    damaged = bytearray(a)
    damaged[20] ^= 1
    dec.feed(bytes(damaged))
    with pytest.raises(WireFormatError, match=r"header_crc .* at stream offset 0"):
        dec.next()
    dec = StreamDecoder(strict=True, max_payload=10)
    dec.feed(a)
    with pytest.raises(WireFormatError, match="exceeds max_payload 10"):
        dec.next()
    dec = StreamDecoder(strict=True)
    dec.feed(b"garbage" + a)
    with pytest.raises(WireFormatError, match="bad magic b'garb' at stream offset 0"):
        dec.next()


def test_decoder_refuses_to_buffer_without_next() -> None:
    msgs = messages_of(4, PixelFormat.GRAY8)
    dec = StreamDecoder(max_payload=20)  # GRAY8 payloads of 12, 20, 30, 21 bytes: some too big
    with pytest.raises(BufferError, match="call next"):
        for m in msgs * 10:
            dec.feed(m)
    assert dec.buffered >= HEADER_SIZE + 20
    drain(dec)
    assert dec.buffered < HEADER_SIZE + 20
    with pytest.raises(ValueError, match="max_payload"):
        StreamDecoder(max_payload=-1)


def test_decoder_large_frame_in_pipe_sized_chunks() -> None:
    frame = frame_of(PixelFormat.BGR24, 480, 640, seed=1)
    message = pack(frame)
    dec = StreamDecoder(max_payload=frame.nbytes)
    got = []
    for i in range(0, len(message) * 2, 65536):
        dec.feed((message * 2)[i : i + 65536])
        assert dec.buffered <= HEADER_SIZE + frame.nbytes + 65536
        got += drain(dec)
    assert len(got) == 2
    for header, payload in got:
        assert same_pixels(wire.raw_array(header, payload), frame)


# --- property tests -------------------------------------------------------------------------

u64 = st.integers(0, U64)


@st.composite
def frames(draw: st.DrawFn) -> tuple[FrameHeader, bytes]:
    """A valid frame of any format, with a padded stride sometimes, and its payload."""
    fmt = draw(st.sampled_from(list(PixelFormat)))
    jpeg = fmt in (PixelFormat.GRAY8, PixelFormat.BGR24) and draw(st.booleans())
    width, height = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    row = width * fmt.bytes_per_pixel
    if jpeg:
        stride, payload = row, b"\xff\xd8" + draw(st.binary(max_size=40))
    else:
        stride = row + fmt.dtype.itemsize * draw(st.sampled_from([0, 0, 1, 3]))
        payload = draw(st.binary(min_size=stride * height, max_size=stride * height))
    header = FrameHeader(
        Codec.JPEG if jpeg else Codec.RAW, fmt, width, height, stride, len(payload),
        draw(u64), draw(u64), draw(u64), draw(u64),
    )  # fmt: skip
    return header, payload


def message(frame: tuple[FrameHeader, bytes]) -> bytes:
    return wire.encode_header(frame[0]) + frame[1]


@st.composite
def header_like(draw: st.DrawFn) -> bytes:
    """64 bytes close to a header: any field values, mostly the right magic, version and CRC,
    so that the field rules (not only the magic) meet hostile values."""
    small = st.integers(0, 20)
    u32 = st.one_of(small, st.integers(0, 2**32 - 1), st.sampled_from([16384, 16385, 2**31]))
    fields = dict(
        magic=draw(st.sampled_from([MAGIC] * 6 + [b"\x89FBX", b"\x00\x00\x00\x00"])),
        version=draw(st.sampled_from([1] * 6 + [0, 2, 255])),
        codec=draw(st.one_of(st.integers(0, 3), st.integers(0, 255))),
        pixel_format=draw(st.one_of(st.integers(0, 13), st.integers(0, 255))),
        flags=draw(st.sampled_from([0] * 6 + [1, 128])),
        width=draw(u32), height=draw(u32), stride=draw(u32), payload_len=draw(u32),
        seq=draw(u64), session=draw(u64), capture_ns=draw(u64), send_ns=draw(u64),
        reserved=draw(st.sampled_from([0] * 6 + [1])),
    )  # fmt: skip
    if draw(st.booleans()):  # a consistent RAW geometry, so that some pass every rule
        fmt = draw(st.sampled_from(list(PixelFormat)))
        w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        stride = w * fmt.bytes_per_pixel + draw(st.sampled_from([0, 1, 2, 4, 8]))
        fields.update(codec=1, pixel_format=int(fmt), width=w, height=h, stride=stride)
        fields.update(payload_len=stride * h + draw(st.sampled_from([0, 0, 0, -1, 1])))
    crc = None if draw(st.integers(0, 9)) else draw(st.integers(0, 2**32 - 1))
    return raw_header(crc=crc, **fields)


any_header_bytes = st.one_of(
    st.binary(max_size=130),
    header_like(),
    st.tuples(header_like(), st.binary(max_size=80)).map(b"".join),
)


@fuzz(200)
@given(buf=any_header_bytes, as_view=st.booleans())
def test_parse_header_any_bytes(buf: bytes, as_view: bool) -> None:
    data: bytes | memoryview = memoryview(buf) if as_view else buf
    try:
        header = wire.parse_header(data)
    except WireFormatError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(header, FrameHeader)
    assert wire.encode_header(header) == buf[:HEADER_SIZE]  # nothing ignored, nothing changed
    assert header.payload_len <= wire.MAX_PAYLOAD


@st.composite
def any_message(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return message(draw(frames()))
    if kind == 2:  # a valid frame, cut or extended
        data = message(draw(frames()))
        cut = draw(st.integers(0, len(data) + 3))
        return (data + draw(st.binary(min_size=3, max_size=3)))[:cut]
    head = draw(header_like())
    length = int.from_bytes(head[20:24], "little")
    body = draw(st.binary(min_size=min(length, 300), max_size=min(length, 300) + 1))
    return head + body


@fuzz(200)
@given(data=any_message(), form=st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_unpack_frame_any_bytes(data: bytes, form: str) -> None:
    buf: bytes | bytearray | memoryview = {
        "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
    }[form]  # fmt: skip
    try:
        header, payload = wire.unpack_frame(buf, max_payload=4096)
    except WireFormatError:
        return
    assert len(data) == HEADER_SIZE + header.payload_len == HEADER_SIZE + len(payload)
    assert header.payload_len <= 4096
    if header.codec is Codec.RAW:
        array = wire.raw_array(header, payload)
        assert array.shape == header.shape and array.dtype == header.dtype
    else:
        assert bytes(payload[:2]) == b"\xff\xd8"


@fuzz(100)
@given(frame=frames())
def test_encoded_frames_round_trip(frame: tuple[FrameHeader, bytes]) -> None:
    header, payload = frame
    data = message(frame)
    assert wire.looks_like_wire(data)
    got, body = wire.unpack_frame(data)
    assert got == header and bytes(body) == payload
    if header.codec is Codec.RAW:
        array = wire.raw_array(got, body)
        again = wire.unpack_frame(pack(array, seq=got.seq))  # repacked: packed rows
        assert same_pixels(wire.raw_array(*again), array)


def feed_in_chunks(
    dec: StreamDecoder, stream: bytes, sizes: list[int], bound: int
) -> list[tuple[FrameHeader, bytes]]:
    """Feed ``stream`` in chunks cycling through ``sizes``, draining after each; checks that
    the buffer stays within ``bound`` plus the chunk."""
    got: list[tuple[FrameHeader, bytes]] = []
    pos, i = 0, 0
    while pos < len(stream):
        chunk = stream[pos : pos + sizes[i % len(sizes)]]
        pos, i = pos + len(chunk), i + 1
        dec.feed(chunk)
        assert dec.buffered <= bound + len(chunk)
        got += drain(dec)
        assert dec.buffered < bound  # drained: at most one incomplete frame
        assert dec.offset + dec.buffered == pos
    return got


chunk_sizes = st.lists(st.integers(1, 200), min_size=1, max_size=8)


@st.composite
def hostile_stream(draw: st.DrawFn) -> bytes:
    parts = st.one_of(
        st.binary(max_size=150),
        frames().map(message),
        st.just(MAGIC),
        st.just(MAGIC + b"\x01"),
        header_like(),
        st.tuples(frames().map(message), st.integers(0, 200)).map(lambda t: t[0][: t[1]]),
    )
    return b"".join(draw(st.lists(parts, max_size=8)))


@fuzz(120)
@given(stream=hostile_stream(), sizes=chunk_sizes, max_payload=st.integers(0, 2048))
def test_decoder_any_bytes_gives_valid_frames_or_nothing(
    stream: bytes, sizes: list[int], max_payload: int
) -> None:
    dec = StreamDecoder(max_payload=max_payload)
    got = feed_in_chunks(dec, stream, sizes, HEADER_SIZE + max_payload)
    for header, payload in got:
        assert isinstance(header, FrameHeader) and isinstance(payload, bytes)
        assert len(payload) == header.payload_len <= max_payload
        reparsed, body = wire.unpack_frame(wire.encode_header(header) + payload)
        assert reparsed == header
        if header.codec is Codec.RAW:
            assert wire.raw_array(header, body).shape == header.shape
    assert sum(HEADER_SIZE + h.payload_len for h, _ in got) + dec.skipped_bytes + dec.buffered == (
        len(stream)
    )
    assert dec.frames == len(got)
    # strict mode: the same frames until the first bad byte, then WireFormatError only
    strict = StreamDecoder(max_payload=max_payload, strict=True)
    strict.feed(stream)
    try:
        first = drain(strict)
    except WireFormatError:
        return
    assert first == got and strict.skipped_bytes == 0


def has_valid_header(data: bytes) -> bool:
    at = data.find(MAGIC)
    while at >= 0:
        if wire.looks_like_wire(data[at:]):
            return True
        at = data.find(MAGIC, at + 1)
    return False


garbage = st.lists(
    st.one_of(
        st.binary(max_size=100),
        st.sampled_from([MAGIC, MAGIC[:1], MAGIC[:2], MAGIC[:3], MAGIC + b"\x01", b"\n"]),
        header_like(),
        # a valid frame with one header byte changed: the CRC catches every such change
        st.tuples(frames().map(message), st.integers(0, 63), st.integers(1, 255)).map(
            lambda t: t[0][: t[1]] + bytes([t[0][t[1]] ^ t[2]]) + t[0][t[1] + 1 :]
        ),
    ),
    max_size=4,
).map(b"".join)


@fuzz(120)
@given(
    items=st.lists(st.tuples(garbage, frames()), max_size=6),
    tail=garbage,
    sizes=chunk_sizes,
)
def test_frames_among_garbage_are_all_recovered_in_order(
    items: list[tuple[bytes, tuple[FrameHeader, bytes]]], tail: bytes, sizes: list[int]
) -> None:
    for junk, _ in items:
        assume(not has_valid_header(junk))
    assume(not has_valid_header(tail))
    stream = b"".join(junk + message(frame) for junk, frame in items) + tail
    dec = StreamDecoder(max_payload=2048)
    got = feed_in_chunks(dec, stream, sizes, HEADER_SIZE + 2048)
    assert got == [frame for _, frame in items]
    junk_total = sum(len(junk) for junk, _ in items) + len(tail)
    assert dec.skipped_bytes + dec.buffered == junk_total
    skipped_in_tail = dec.skipped_bytes - sum(len(junk) for junk, _ in items)
    assert dec.resyncs == sum(1 for junk, _ in items if junk) + (skipped_in_tail > 0)
    if not junk_total:
        assert dec.resyncs == 0 and dec.last_error is None
