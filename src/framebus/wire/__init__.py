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

from .frames import pack_frame, pack_frame_bytes, raw_array, unpack_frame, unpack_parts
from .header import (
    HEADER_SIZE,
    MAGIC,
    MAX_DIMENSION,
    MAX_PAYLOAD,
    MAX_STRIDE,
    VERSION,
    Codec,
    FrameHeader,
    PixelFormat,
    encode_header,
    new_session,
    parse_header,
)
from .stream import StreamDecoder, looks_like_wire

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
