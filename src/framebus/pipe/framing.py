"""Bytes from a pipe (no sockets, no processes): reading through a ``readinto`` function with
bounded buffers (:class:`FdInput` for a descriptor, :func:`fill`), and framebus wire frames
framed exactly (:func:`wire_records`: each header validated, then its payload read whole) or
resynchronised past garbage (``resync=True``), each frame's pixels decoded by
:func:`decode_wire`. Errors are :class:`~framebus.errors.PipeFormatError` naming the byte offset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import PipeFormatError, WireFormatError
from ..limits import check_pixels
from ..wire import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Codec,
    FrameHeader,
    PixelFormat,
    StreamDecoder,
    parse_header,
    raw_array,
    unpack_parts,
)
from .mjpeg import decode_jpeg

__all__ = ["CHUNK", "FdInput", "ReadInto", "decode_wire", "fill", "wire_records"]

CHUNK = 1 << 20
"""The most bytes asked of the input in one read."""


# -- byte input --------------------------------------------------------------------------------


class FdInput:
    """Reads from a file descriptor with a small read-ahead, counting the stream offset."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0  # stream offset of the next byte to be consumed
        self._ahead = bytearray()  # bytes read but not consumed (peek, line)

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes (whatever one read returns); b"" at end of input."""
        if self._ahead:
            chunk = bytes(self._ahead[:n])
            del self._ahead[:n]
        else:
            chunk = os.read(self.fd, min(n, CHUNK))
        self.offset += len(chunk)
        return chunk

    def readinto(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes into ``view`` (one read); 0 at end of input."""
        if self._ahead:
            n = min(len(view), len(self._ahead))
            view[:n] = self._ahead[:n]
            del self._ahead[:n]
        else:
            n = os.readv(self.fd, [view])
        self.offset += n
        return n

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes without consuming them (fewer at end of input)."""
        while len(self._ahead) < n:
            chunk = os.read(self.fd, CHUNK)
            if not chunk:
                break
            self._ahead += chunk
        return bytes(self._ahead[:n])

    def line(self, limit: int, what: str) -> bytes | None:
        """One line without its newline, at most ``limit`` bytes with it; None at end of
        input before any byte. PipeFormatError when longer, or cut short."""
        start = self.offset
        while True:
            at = self._ahead.find(b"\n", 0, limit)
            if at >= 0:
                line = bytes(self._ahead[:at])
                del self._ahead[: at + 1]
                self.offset += at + 1
                return line
            if len(self._ahead) >= limit:
                raise PipeFormatError(
                    f"pipe: {what} at byte offset {start} is longer than {limit} bytes "
                    "(expected a line ending in a newline)"
                )
            chunk = os.read(self.fd, 4096)
            if not chunk:
                if not self._ahead:
                    return None
                raise PipeFormatError(
                    f"pipe: truncated {what} at byte offset {start}: the input ended after "
                    f"{len(self._ahead)} bytes, before its newline"
                )
            self._ahead += chunk

    def exact(self, n: int, what: str, out: bytearray | None = None) -> memoryview:
        """Exactly ``n`` bytes, read into ``out`` (reused when it is big enough);
        PipeFormatError when the input ends first."""
        start = self.offset
        buf = out if out is not None and len(out) >= n else bytearray(n)
        view = memoryview(buf)[:n]
        got = fill(self.readinto, view)
        if got < n:
            raise PipeFormatError(
                f"pipe: truncated {what} at byte offset {start}: expected {n} bytes, "
                f"the input ended after {got}"
            )
        return view


# -- framebus wire frames ----------------------------------------------------------------------


ReadInto = Callable[[memoryview], "int | None"]


def fill(readinto: ReadInto, view: memoryview) -> int:
    """Read into all of ``view``; the bytes read (fewer only at end of input)."""
    got = 0
    while got < len(view):
        n = readinto(view[got:])
        if not n:
            break
        got += n
    return got


def wire_records(
    readinto: ReadInto,
    *,
    max_payload: int = MAX_PAYLOAD,
    resync: bool = False,
) -> Iterator[tuple[FrameHeader, bytearray, int]]:
    """``(header, payload, offset)`` for each wire frame of a byte stream, until end of input.

    ``readinto(view)`` reads up to ``len(view)`` bytes into ``view`` and returns how many (0 at
    the end), as ``BufferedReader.readinto`` does. ``resync=False``: frames follow each other
    exactly, so each header is read and validated (:func:`framebus.wire.unpack_parts`), then
    its payload is read straight into a buffer of its own (no search, no extra copy); the first
    header that is not valid is a PipeFormatError naming its offset and why. ``resync=True``:
    :class:`~framebus.wire.StreamDecoder` skips garbage up to the next valid header. A frame
    cut short by the end of input is a PipeFormatError either way. Buffering: one frame
    (at most ``max_payload`` bytes, checked before it is allocated) plus, with ``resync``, one
    read of :data:`CHUNK` bytes.
    """
    if resync:
        yield from _resync_records(readinto, max_payload)
        return
    offset = 0
    while True:
        head = bytearray(HEADER_SIZE)
        got = fill(readinto, memoryview(head))
        if got == 0:
            return
        if got < HEADER_SIZE:
            raise PipeFormatError(
                f"pipe: truncated frame at byte offset {offset}: the input ended {got} bytes "
                f"into its {HEADER_SIZE}-byte header"
            )
        try:
            header = parse_header(head, max_payload=max_payload)
        except WireFormatError as exc:
            raise PipeFormatError(f"pipe: {exc} at byte offset {offset}") from None
        payload = bytearray(header.payload_len)
        got = fill(readinto, memoryview(payload))
        if got < header.payload_len:
            raise PipeFormatError(
                f"pipe: truncated frame at byte offset {offset}: the input ended {got} bytes "
                f"into its payload of {header.payload_len} (expected the whole payload)"
            )
        try:
            unpack_parts(head, payload, max_payload=max_payload)
        except WireFormatError as exc:
            raise PipeFormatError(f"pipe: {exc} at byte offset {offset}") from None
        yield header, payload, offset
        offset += header.message_size


def _resync_records(
    readinto: ReadInto, max_payload: int
) -> Iterator[tuple[FrameHeader, bytearray, int]]:
    decoder = StreamDecoder(max_payload=max_payload)
    chunk = bytearray(CHUNK)
    while True:
        while (item := decoder.next()) is not None:
            header, payload = item
            yield header, bytearray(payload), decoder.offset - header.message_size
        n = readinto(memoryview(chunk))
        if not n:
            if decoder.buffered:
                raise PipeFormatError(
                    f"pipe: truncated frame at byte offset {decoder.offset}: the input ended "
                    f"{decoder.buffered} bytes into it (expected a {HEADER_SIZE}-byte header "
                    "and its payload)"
                )
            return
        decoder.feed(memoryview(chunk)[:n])


def decode_wire(header: FrameHeader, payload: bytearray, offset: int) -> np.ndarray:
    """The pixels of one wire frame: a view of ``payload`` (RAW, packed rows) or the decoded
    JPEG, which must have the header's size."""
    if header.codec is Codec.RAW:
        return raw_array(header, payload)
    grey = header.pixel_format is PixelFormat.GRAY8
    check_pixels(header.width, header.height, f"pipe: the JPEG frame at byte offset {offset}")
    frame = decode_jpeg(bytes(payload), offset, max_pixels=header.width * header.height, grey=grey)
    if frame.shape[:2] != (header.height, header.width):
        raise PipeFormatError(
            f"pipe: the JPEG of the frame at byte offset {offset} is "
            f"{frame.shape[1]}x{frame.shape[0]}, its header says {header.width}x{header.height}"
        )
    return frame
