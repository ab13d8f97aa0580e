"""Wire frames in a byte stream (no I/O): :class:`StreamDecoder`, a push parser that finds
each frame, and skips garbage up to the next valid header unless told to be strict."""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import WireFormatError
from .frames import _check_payload
from .header import (
    _JPEG_SOI,
    _U32,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    Buffer,
    Codec,
    FrameHeader,
    parse_header,
)

__all__ = ["StreamDecoder", "looks_like_wire"]


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
