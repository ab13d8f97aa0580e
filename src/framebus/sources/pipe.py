"""Standard input as a source: framebus wire frames, y4m or MJPEG, told apart by their first bytes.

``framebus serve cam=-`` and ``framebus.VideoCapture("-")`` read what another program writes:

* **framebus wire frames** (``framebus cat``, :func:`framebus.pipe.write`): the first bytes are
  the wire magic ``89 46 42 57``; each header is validated, then its payload read whole
  (:func:`wire_records`). Their capture times are kept (:meth:`PipeSource.frame_time_ns`).
* **y4m** (``ffmpeg ... -f yuv4mpegpipe -``): the first bytes are ``YUV4MPEG2``. Colour spaces
  ``420jpeg``, ``420mpeg2``, ``420paldv`` and ``420`` (8-bit 4:2:0, converted to BGR with
  OpenCV's I420 conversion, BT.601 limited range as ffmpeg writes it; chroma siting is
  ignored) and ``mono`` (a grey ``HxW`` frame). Anything else (``444``, ``422``, ``420p10``,
  ...) is a :class:`PipeFormatError` naming it: add ``-pix_fmt yuv420p`` to ffmpeg.
* **MJPEG** (``ffmpeg ... -f mjpeg -``, or JPEG files one after another): the first bytes are
  the SOI marker ``FF D8``. Each JPEG ends where its marker structure says it ends (an EXIF
  thumbnail's ``FF D9`` does not end it); images are decoded to BGR.

Everything read is untrusted. Bounds: a y4m header or frame line is at most
:data:`MAX_Y4M_LINE` bytes; a frame (wire payload, y4m frame, one JPEG) at most ``max_payload``
bytes (64 MiB) and 16384 pixels a side, checked *before* anything is allocated or decoded (a
JPEG's size is read from its SOF marker before OpenCV sees it). Reads are bounded too: at most
:data:`CHUNK` bytes at a time, a frame read into one buffer of its size (no quadratic
concatenation). Errors are :class:`PipeFormatError` naming the byte offset and what was
expected there. End of input at a frame boundary ends the stream cleanly; anywhere else it is a
truncated record. An empty input is an error (``standard input is empty``): a pipeline whose
producer failed would otherwise look like an empty video.

Buffering: the capture process reads one frame ahead at most; what else waits is in the kernel
pipe (64 KiB by default), and the producer blocks when that is full (every mode: paced by the
slowest reader; latest mode: by the capture).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import PipeFormatError, WireFormatError
from ..limits import check_pixels
from ..wire import (
    HEADER_SIZE,
    MAGIC,
    MAX_DIMENSION,
    MAX_PAYLOAD,
    Codec,
    FrameHeader,
    PixelFormat,
    StreamDecoder,
    parse_header,
    raw_array,
    unpack_parts,
)
from .base import Source
from .spec import Pipe

__all__ = [
    "CHUNK",
    "MAX_Y4M_LINE",
    "Y4M_COLORSPACES",
    "FdInput",
    "JpegSplitter",
    "PipeSource",
    "Y4MHeader",
    "decode_jpeg",
    "decode_wire",
    "detect",
    "fill",
    "parse_y4m_frame_line",
    "parse_y4m_header",
    "wire_records",
]

CHUNK = 1 << 20
"""The most bytes asked of the input in one read."""
MAX_Y4M_LINE = 256
"""The longest y4m stream header or frame header line accepted, newline included (ffmpeg
writes about 60 bytes and reads at most about 96)."""
Y4M_COLORSPACES = ("420jpeg", "420mpeg2", "420paldv", "420", "mono")
"""The y4m colour spaces framebus converts (``C`` absent means ``420jpeg``)."""

_Y4M_MAGIC = b"YUV4MPEG2"
_SOI = b"\xff\xd8"


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
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if frame is None:
        raise PipeFormatError(f"pipe: the JPEG at byte offset {offset} cannot be decoded")
    return np.asarray(frame)


# -- y4m ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Y4MHeader:
    """A parsed y4m stream header."""

    width: int
    height: int
    fps: float | None
    colorspace: str

    @property
    def frame_size(self) -> int:
        """Bytes of one frame's planes."""
        if self.colorspace == "mono":
            return self.width * self.height
        chroma = ((self.width + 1) // 2) * ((self.height + 1) // 2)
        return self.width * self.height + 2 * chroma


_DIGITS = re.compile(rb"[0-9]{1,9}")
_RATIO = re.compile(rb"([0-9]{1,9}):([0-9]{1,9})")


def parse_y4m_header(line: bytes, *, offset: int = 0, max_frame: int = MAX_PAYLOAD) -> Y4MHeader:
    """The stream header ``line`` (without its newline): ``YUV4MPEG2`` then space-separated
    tagged parameters (W, H, F, I, A, C, X; others ignored). PipeFormatError naming what is
    wrong: a bad magic, a missing or out-of-range size, a bad ratio, an unknown colour space."""

    def bad(what: str) -> PipeFormatError:
        return PipeFormatError(f"pipe: y4m stream header at byte offset {offset}: {what}")

    if len(line) >= MAX_Y4M_LINE:
        raise bad(f"longer than {MAX_Y4M_LINE} bytes")
    tokens = line.split(b" ")
    if tokens[0] != _Y4M_MAGIC:
        raise bad(f"expected {_Y4M_MAGIC.decode()}, got {tokens[0][:16]!r}")
    width = height = None
    fps: float | None = None
    colorspace = "420jpeg"
    for token in tokens[1:]:
        if not token:
            raise bad("an empty parameter (two spaces in a row, or a trailing space)")
        tag, value = chr(token[0]), token[1:]
        if tag in "WH":
            if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_DIMENSION:
                raise bad(f"{tag}{value[:16].decode('latin-1')!r}: expected 1..{MAX_DIMENSION}")
            if tag == "W":
                width = int(value)
            else:
                height = int(value)
        elif tag in "FA":
            m = _RATIO.fullmatch(value)
            if m is None:
                raise bad(f"{tag}{value[:16].decode('latin-1')!r}: expected a ratio N:D")
            num, den = int(m[1]), int(m[2])
            if tag == "F":
                fps = num / den if num and den else None  # 0:0 means unknown
        elif tag == "I":
            if value not in (b"p", b"t", b"b", b"m", b"?"):
                raise bad(f"I{value[:16].decode('latin-1')!r}: expected p, t, b, m or ?")
        elif tag == "C":
            colorspace = value[:32].decode("latin-1")
            if colorspace not in Y4M_COLORSPACES:
                raise bad(
                    f"colour space C{colorspace} is not supported (framebus reads C"
                    + ", C".join(Y4M_COLORSPACES)
                    + "; give ffmpeg -pix_fmt yuv420p)"
                )
        # X (extensions) and unknown tags are ignored, as the format says
    if width is None or height is None:
        raise bad("no W (width) or no H (height) parameter")
    check_pixels(width, height, f"pipe: y4m stream at byte offset {offset}: frames")
    header = Y4MHeader(width, height, fps, colorspace)
    if header.frame_size > max_frame:
        raise bad(f"frames of {header.frame_size} bytes, more than the {max_frame} allowed")
    return header


def parse_y4m_frame_line(line: bytes, *, offset: int = 0) -> None:
    """Check a frame header line (without its newline): ``FRAME``, then optional parameters."""
    if line[:5] != b"FRAME" or (len(line) > 5 and line[5:6] != b" "):
        raise PipeFormatError(
            f"pipe: y4m frame at byte offset {offset}: expected FRAME, got {line[:16]!r}"
        )


def _y4m_to_bgr(header: Y4MHeader, planes: memoryview, out: np.ndarray | None) -> np.ndarray:
    import cv2

    w, h = header.width, header.height
    data = np.frombuffer(planes, np.uint8)
    if header.colorspace == "mono":
        grey = data.reshape(h, w)
        if out is not None and out.shape == (h, w) and out.dtype == np.uint8:
            np.copyto(out, grey)
            return out
        return grey.copy()
    if w % 2 or h % 2:  # cv2's I420 needs even sizes: pad the luma, convert, crop
        w2, h2 = w + w % 2, h + h % 2
        luma = np.pad(data[: w * h].reshape(h, w), ((0, h2 - h), (0, w2 - w)), mode="edge")
        data = np.concatenate([luma.reshape(-1), data[w * h :]])
        bgr = cv2.cvtColor(data.reshape(h2 * 3 // 2, w2), cv2.COLOR_YUV2BGR_I420)
        return np.ascontiguousarray(bgr[:h, :w])
    i420 = data.reshape(h * 3 // 2, w)
    if out is not None and out.shape == (h, w, 3) and out.dtype == np.uint8:
        cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420, dst=out)
        return out
    return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))


# -- the source --------------------------------------------------------------------------------


def detect(first: bytes) -> str:
    """``"framebus"``, ``"y4m"`` or ``"mjpeg"`` from the first bytes of an input (at least 4
    unless it is shorter); PipeFormatError otherwise, and for an empty input."""
    if not first:
        raise PipeFormatError(
            "pipe: the input is empty at byte offset 0 (expected framebus frames, a y4m "
            "stream or JPEG images)"
        )
    if first[:4] == MAGIC:
        return "framebus"
    if first[:4] == _Y4M_MAGIC[:4]:
        return "y4m"
    if first[:2] == _SOI:
        return "mjpeg"
    raise PipeFormatError(
        f"pipe: unknown input at byte offset 0: {first[:8]!r} (expected framebus frames "
        f"{MAGIC!r}, a y4m stream 'YUV4MPEG2' or a JPEG FF D8)"
    )


class PipeSource(Source):
    """Frames from a readable descriptor (standard input), in the format its first bytes show.

    Finite (``live = False``): end of input at a frame boundary ends the stream.
    """

    backend_name = "PIPE"  # what getBackendName() reports

    live = False

    def __init__(self, pipe: Pipe, *, max_payload: int = MAX_PAYLOAD) -> None:
        self.pipe = pipe
        self.label = pipe.label
        self.max_payload = max_payload
        self.format = ""
        self._input = FdInput(pipe.fd)
        self._y4m: Y4MHeader | None = None
        self._planes: bytearray | None = None
        self._wire: Iterator[tuple[FrameHeader, bytearray, int]] | None = None
        self._jpegs: JpegSplitter | None = None
        self._stamp: int | None = None  # capture time of the last wire frame read

    def frame_time_ns(self) -> int | None:
        """The capture time the last framebus wire frame carried (so ``framebus cat cam |
        framebus serve copy=-`` keeps the original capture times and ages), if it is not in
        the future; None for y4m and MJPEG, which carry none (the capture stamps them)."""
        stamp = self._stamp
        if stamp is None or not 0 < stamp <= time.time_ns() + 1_000_000_000:
            return None
        return stamp

    def open(self) -> None:
        inp = self._input
        try:
            self.format = detect(inp.peek(4))
        except PipeFormatError as exc:
            raise PipeFormatError(f"{exc} on {self.label}") from None
        if self.format == "y4m":
            line = inp.line(MAX_Y4M_LINE, "y4m stream header")
            assert line is not None  # peek saw bytes
            self._y4m = parse_y4m_header(line, max_frame=self.max_payload)
            self.fps = self._y4m.fps
            self._planes = bytearray(self._y4m.frame_size)  # one buffer, reused for each frame
        elif self.format == "framebus":
            self._wire = wire_records(inp.readinto, max_payload=self.max_payload)
        else:
            self._jpegs = JpegSplitter(max_size=self.max_payload)

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        if self._y4m is not None:
            return self._read_y4m(self._y4m, out)
        if self._wire is not None:
            item = next(self._wire, None)
            if item is None:
                return None
            self._stamp = item[0].capture_ns
            return decode_wire(*item)
        assert self._jpegs is not None
        return self._read_jpeg(self._jpegs)

    def _read_y4m(self, header: Y4MHeader, out: np.ndarray | None) -> np.ndarray | None:
        inp = self._input
        at = inp.offset
        line = inp.line(MAX_Y4M_LINE, "y4m frame header")
        if line is None:
            return None
        parse_y4m_frame_line(line, offset=at)
        planes = inp.exact(header.frame_size, "y4m frame", self._planes)
        return _y4m_to_bgr(header, planes, out)

    def _read_jpeg(self, splitter: JpegSplitter) -> np.ndarray | None:
        while (found := splitter.next()) is None:
            chunk = self._input.read_some(CHUNK)
            if not chunk:
                if splitter.buffered:
                    raise PipeFormatError(
                        f"pipe: truncated JPEG at byte offset {splitter.offset}: the input "
                        f"ended {splitter.buffered} bytes into it (expected its EOI marker)"
                    )
                return None
            splitter.feed(chunk)
        jpeg, _size = found
        return decode_jpeg(jpeg, splitter.offset - len(jpeg))

    def close(self) -> None:
        self._wire = None  # the descriptor belongs to the capture process: it exits next
