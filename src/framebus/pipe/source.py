"""Standard input as a source: framebus wire frames, y4m or MJPEG, told apart by their first bytes.

``framebus serve cam=-`` and ``framebus.VideoCapture("-")`` read what another program writes:

* **framebus wire frames** (``framebus cat``, :func:`framebus.pipe.write`): the first bytes are
  the wire magic ``89 46 42 57``; each header is validated, then its payload read whole
  (:func:`.framing.wire_records`). Their capture times are kept (:meth:`PipeSource.frame_time_ns`).
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

import time
from collections.abc import Iterator

import numpy as np

from ..errors import PipeFormatError
from ..sources.base import Source
from ..sources.spec import Pipe
from ..wire import (
    MAGIC,
    MAX_PAYLOAD,
    FrameHeader,
)
from .framing import CHUNK, FdInput, decode_wire, wire_records
from .mjpeg import JpegSplitter, decode_jpeg
from .y4m import (
    MAX_Y4M_LINE,
    Y4M_MAGIC,
    Y4MHeader,
    parse_y4m_frame_line,
    parse_y4m_header,
    y4m_to_bgr,
)

__all__ = ["PipeSource", "detect"]

_SOI = b"\xff\xd8"


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
    if first[:4] == Y4M_MAGIC[:4]:
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
        return y4m_to_bgr(header, planes, out)

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
