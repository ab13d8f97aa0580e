"""JPEG images one after another (MJPEG) from a pipe: each JPEG ends where its marker structure
says it ends (an EXIF thumbnail's ``FF D9`` does not end it), its size read from its SOF marker
before anything is decoded (:class:`JpegSplitter`); :func:`decode_jpeg` decodes one whole JPEG."""

from __future__ import annotations

import numpy as np

from .. import _jpeg
from ..errors import PipeFormatError
from ..limits import check_pixels
from ..wire import (
    MAX_DIMENSION,
    MAX_PAYLOAD,
)

__all__ = ["JpegSplitter", "decode_jpeg"]

_SOI = b"\xff\xd8"


# -- JPEG / MJPEG ------------------------------------------------------------------------------

# SOF markers (C0..CF except DHT C4, JPG C8, DAC CC) carry the image size
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


class JpegSplitter:
    """Where each JPEG of a concatenation ends, found by walking its markers (searching for
    ``FF D9`` would stop at an EXIF thumbnail's end). A push parser: :meth:`feed` bytes, then
    :meth:`next` until None.

    Buffering: at most one JPEG of ``max_size`` bytes plus one fed chunk; each byte is
    examined once (the walk resumes where it stopped). A JPEG larger than ``max_size``, wider
    or taller than 16384 pixels, or bytes that are not JPEG markers where markers must be, are
    a PipeFormatError naming the stream offset.
    """

    def __init__(self, *, max_size: int = MAX_PAYLOAD, offset: int = 0) -> None:
        self.max_size = max_size
        self.offset = offset  # stream offset of _buf[0]
        self._buf = bytearray()
        self._pos = 0  # where the walk goes on
        self._scan = False  # inside entropy-coded data (after SOS)
        self._size: tuple[int, int] | None = None  # (width, height) from the SOF

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def _error(self, at: int, what: str) -> PipeFormatError:
        return PipeFormatError(f"pipe: {what} at byte offset {self.offset + at}")

    def next(self) -> tuple[bytes, tuple[int, int]] | None:
        """The next complete JPEG and its (width, height), or None until more is fed."""
        buf = self._buf
        if len(buf) < 2:
            return None
        if self._pos == 0:
            if buf[:2] != _SOI:
                raise self._error(0, f"expected a JPEG SOI marker FF D8, got {bytes(buf[:2])!r}")
            self._pos = 2
        while True:
            pos = self._pos
            if pos > self.max_size:
                raise self._error(0, f"a JPEG larger than {self.max_size} bytes")
            if self._scan:  # entropy-coded data: skip to the next marker that is not RSTn/FF00
                at = buf.find(b"\xff", pos)
                if at < 0 or at + 1 >= len(buf):
                    self._pos = len(buf) if at < 0 else at
                    return None
                code = buf[at + 1]
                if code == 0x00 or code in _STANDALONE or code == 0xFF:
                    self._pos = at + (1 if code == 0xFF else 2)
                    continue
                self._scan, self._pos = False, at
                continue
            if pos + 2 > len(buf):
                return None
            if buf[pos] != 0xFF:
                raise self._error(pos, f"expected a JPEG marker, got byte {buf[pos]:#04x}")
            code = buf[pos + 1]
            if code == 0xFF:  # fill byte
                self._pos = pos + 1
                continue
            if code == 0xD9:  # EOI
                end = pos + 2
                size = self._size
                if size is None:
                    raise self._error(0, "a JPEG without a frame header (SOF marker)")
                jpeg = bytes(buf[:end])
                del buf[:end]
                self.offset += end
                self._pos, self._scan, self._size = 0, False, None
                return jpeg, size
            if code == 0xD8:
                raise self._error(pos, "a JPEG SOI marker inside a JPEG (expected its end)")
            if code in _STANDALONE:
                self._pos = pos + 2
                continue
            if pos + 4 > len(buf):
                return None
            length = buf[pos + 2] << 8 | buf[pos + 3]
            if length < 2:
                raise self._error(pos, f"a JPEG marker segment of length {length} (at least 2)")
            if code in _SOF:
                if pos + 10 > len(buf):
                    return None
                height = buf[pos + 5] << 8 | buf[pos + 6]
                width = buf[pos + 7] << 8 | buf[pos + 8]
                if length < 8 or not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
                    raise self._error(
                        pos, f"a JPEG of {width}x{height} pixels (expected 1..{MAX_DIMENSION})"
                    )
                if self._size is not None:
                    raise self._error(pos, "a second JPEG frame header (SOF marker)")
                check_pixels(width, height, f"pipe: the JPEG at byte offset {self.offset + pos}")
                self._size = (width, height)
            self._pos = pos + 2 + length
            if code == 0xDA:  # SOS: entropy-coded data follows the header
                if self._size is None:
                    raise self._error(pos, "JPEG scan data before its frame header (SOF)")
                self._scan = True


def decode_jpeg(
    data: bytes, offset: int, *, max_pixels: int | None = None, grey: bool = False
) -> np.ndarray:
    """One whole JPEG decoded to BGR (grey: ``HxW``), after checking its markers and size."""
    splitter = JpegSplitter(max_size=max(len(data), 2), offset=offset)
    splitter.feed(data)
    found = splitter.next()
    if found is None or splitter.buffered:
        raise PipeFormatError(f"pipe: the JPEG at byte offset {offset} is not one whole JPEG")
    width, height = found[1]
    if max_pixels is not None and width * height > max_pixels:
        raise PipeFormatError(
            f"pipe: the JPEG at byte offset {offset} is {width}x{height}, larger than its header"
        )
    try:
        return _jpeg.decode(data, grey=grey)
    except ValueError:
        raise PipeFormatError(f"pipe: the JPEG at byte offset {offset} cannot be decoded") from None
