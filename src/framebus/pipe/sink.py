"""The pipe writer: a stream's frames to a file descriptor (``framebus cat``), in one of four
formats.

* ``framebus``: the wire format (:mod:`framebus.wire`): each frame a 64-byte header (size,
  pixel format, seq, capture time, CRC) and its pixels, lossless; :func:`framebus.pipe.frames`
  and ``framebus serve cam=-`` read it.
* ``y4m``: YUV4MPEG2, which ``ffmpeg -i -``, ``ffplay -i -`` and GStreamer read as they are. A
  stream header ``YUV4MPEG2 W H F Ip A1:1 C420jpeg`` (``Cmono`` for grey frames; ``F`` from
  the stream's source rate, 30:1 when unknown), then ``FRAME`` and the planes per frame,
  converted with OpenCV (``COLOR_BGR2YUV_I420``: BT.601, limited range, what ffmpeg assumes).
  Odd sizes are padded for the conversion and cropped (chroma planes round up, as y4m's do).
  16-bit frames lose their low byte; other dtypes are refused. y4m cannot change size or
  colour mid-stream and no reader accepts a second stream header in one pipe, so a size change
  *ends the output with an error* (use ``framebus`` or ``mjpeg`` for such streams). y4m has no
  timestamps: readers assume ``F`` frames per second, so frames a slow reader skipped on a
  latest-mode stream make the recording play faster than life (record from an every-mode
  stream, or let ffmpeg retime it).
* ``mjpeg``: concatenated JPEGs (``ffplay -f mjpeg -i -``), encoded by
  :func:`framebus.sinks.jpeg.encode_jpeg` at ``quality``.
* ``raw``: the bare pixels of each frame (``ffmpeg -f rawvideo -pix_fmt bgr24 -s WxH -i -``).
  Raw video has no framing, so a size change also ends the output with an error.

Buffer policy (what waits, and where):

* The writer *pulls*: it reads a frame from the ring only when the previous record has been
  written (the pipe had room), encodes it, and writes it. On a latest-mode stream that frame is
  the newest one; frames captured meanwhile are skipped, never queued, so a slow pipe reader
  never slows the capture or other readers, and no CPU goes into encoding frames the pipe
  cannot take. On an every-mode stream (a file) it is the next frame: every frame, in order,
  and the pipe reader paces the capture, as every mode promises.
* Memory: the record being written (one frame in the format), nothing else. The ring slot is
  held only while the frame is encoded (copied out), never while the pipe blocks.
* The kernel pipe buffer is a queue too (64 KiB by default on Linux). When standard output is
  a pipe, :func:`fit_pipe` sets it (``F_SETPIPE_SZ``) to *just under one record*: the largest
  power of two below the record's size, at least 4 KiB, at most
  ``/proc/sys/fs/pipe-max-size`` (1 MiB here). A record then never fits in the pipe whole, so
  the write of frame ``n`` completes only while the reader is reading it, and the writer takes
  frame ``n+1`` (the newest) at that moment: what waits for a slow reader is one frame, the
  one being written, never a second one queued behind it in the kernel. Frames of 4 KiB or
  less share the minimum one-page pipe. An every-mode stream (lossless) gets the largest pipe
  allowed instead: every frame is delivered anyway, and a larger pipe costs fewer wake-ups.

Why not a :class:`~framebus.sinks.FrameSink`: its worker thread encodes every new frame for
consumers that may be busy, which suits many browsers; a pipe has one consumer whose readiness
is the pipe's, so the push thread only added encodes of frames the pipe could not take (a
1080p stream as fast as the capture goes, into :func:`framebus.pipe.frames`: 31 frames/s with
a FrameSink, 63 to 101 with a pull loop, on the project's loaded 2-core machine).

The writer is never the capture loop: the capture runs in its own process, and
:func:`pipe_out` (the caller's thread) reads the ring and does the blocking writes.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

import framebus
from framebus import FrameInfo, StreamEnded, wire
from framebus.sinks.jpeg import encode_jpeg

__all__ = ["FORMATS", "Format", "PipeSink", "Record", "fit_pipe", "pipe_out", "write_all"]

Format = Literal["framebus", "y4m", "mjpeg", "raw"]
FORMATS: tuple[Format, ...] = ("framebus", "y4m", "mjpeg", "raw")

_MIN_PIPE = 4096


@dataclass(frozen=True)
class Record:
    """One frame's bytes in the sink's format, with the frame's shape and seq (for the
    writer's checks)."""

    data: bytes
    shape: tuple[int, ...]
    seq: int
    error: str | None = None
    """Why this frame cannot be written in the format (the writer stops with it)."""


class PipeSink:
    """Frames of stream ``name`` encoded for a pipe in ``format``, pulled one at a time (see the
    module docstring): :meth:`next_record` reads the newest frame (every mode: the next one)
    and encodes it. One reader of the stream, through the public API; :meth:`close` releases it.
    """

    def __init__(self, name: str, *, format: Format = "framebus", quality: int = 80) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        self.format: Format = format
        self.quality = quality
        self.session = wire.new_session()
        self.name = name
        self._reader = framebus.attach(name)
        self.every_mode = self._reader.stats().mode == "every"
        self.lossless = self.every_mode
        self.source_fps: float | None = None  # read at the first frame, once the source is open
        self.frames = 0
        self.skipped = 0  # frames the ring skipped for this reader (latest mode: busy writing)

    def next_record(self) -> Record:
        """The next record. Raises StreamEnded after the last frame, PublisherLost."""
        with self._reader.view() as frame:
            info = self._reader.info
            assert info is not None  # view() sets it
            record = self.encode(frame, info)
        self.frames += 1
        self.skipped += info.skipped
        return record

    def close(self) -> None:
        """Release the reader (idempotent)."""
        self._reader.release()

    def __enter__(self) -> PipeSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, frame: np.ndarray, info: FrameInfo) -> Record:
        shape = tuple(int(n) for n in frame.shape)
        if self.source_fps is None:
            self.source_fps = self._reader.stats().source_fps or 0.0
        try:
            if self.format == "framebus":
                data = wire.pack_frame_bytes(
                    frame,
                    seq=info.seq,
                    session=self.session,
                    capture_ns=round(info.timestamp * 1e9),
                )
            elif self.format == "y4m":
                data = b"FRAME\n" + y4m_planes(frame)
            elif self.format == "mjpeg":
                data = encode_jpeg(frame, self.quality)
            else:
                data = np.ascontiguousarray(frame).tobytes()
        except ValueError as exc:  # a frame the format cannot carry: the writer says so
            return Record(b"", shape, info.seq, f"stream {self.name!r}: {exc}")
        return Record(data, shape, info.seq)

    def stream_header(self, first: Record) -> bytes:
        """What comes before the first record: the y4m stream header, else nothing."""
        if self.format != "y4m":
            return b""
        height, width = first.shape[:2]
        grey = len(first.shape) == 2 or first.shape[2] == 1
        rate = Fraction(self.source_fps or 30).limit_denominator(1001)
        colour = "mono" if grey else "420jpeg"
        return (
            f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C{colour}\n"
        ).encode()


def _as_8bit(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    if frame.dtype != np.uint8:
        raise ValueError(f"y4m needs 8-bit or 16-bit frames, not {frame.dtype}")
    return frame


def y4m_planes(frame: np.ndarray) -> bytes:
    """The y4m planes of one BGR, BGRA or grey frame: I420 (Y, U, V), or Y alone for grey."""
    import cv2

    img = _as_8bit(frame)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.ascontiguousarray(img).tobytes()
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"y4m needs grey, BGR or BGRA frames, not shape {frame.shape}")
    h, w = img.shape[:2]
    code = cv2.COLOR_BGR2YUV_I420 if img.shape[2] == 3 else cv2.COLOR_BGRA2YUV_I420
    if w % 2 == 0 and h % 2 == 0:
        return np.asarray(cv2.cvtColor(img, code)).tobytes()
    # cv2's I420 needs even sizes: pad with the edge pixels, convert, crop the luma (the
    # chroma planes of the padded frame are y4m's rounded-up ones)
    w2, h2 = w + w % 2, h + h % 2
    padded = np.pad(img, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
    i420 = np.asarray(cv2.cvtColor(padded, code)).reshape(-1)
    luma = i420[: w2 * h2].reshape(h2, w2)[:h, :w]
    return np.ascontiguousarray(luma).tobytes() + i420[w2 * h2 :].tobytes()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, blocking while the pipe is full.
    BrokenPipeError once the reader has gone."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # a descriptor someone made non-blocking: wait for room
            select.select([], [fd], [])
            continue
        view = view[n:]


def _pipe_max() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def fit_pipe(fd: int, record_size: int, *, lossless: bool = False) -> int | None:
    """Size the kernel buffer of the pipe ``fd`` to just under one record (see the module
    docstring), or, ``lossless`` (every frame, in order: freshness is not the point), to the
    largest size allowed, which costs the fewest wake-ups. Returns the new size, or None when
    ``fd`` is not a pipe or the kernel refused (the buffer then stays as it was: 64 KiB by
    default)."""
    if not hasattr(fcntl, "F_SETPIPE_SZ"):  # pragma: no cover - Linux has it
        return None
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        below = 1 << max(0, (record_size - 1).bit_length() - 1)  # largest power of 2 < size
        size = _pipe_max() if lossless else min(max(below, _MIN_PIPE), _pipe_max())
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:  # EBUSY: more is buffered than the new size; EPERM: over a user limit
        return None


def pipe_out(sink: PipeSink, fd: int, *, limit: int | None = None) -> int:
    """Write the sink's records to ``fd`` until the stream ends, or ``limit`` records; returns
    how many were written. A y4m or raw output whose stream changes size (or colour) ends with
    ValueError, since neither format can say so, and so does a frame the format cannot carry
    (a float frame as y4m or JPEG, a dtype the wire format lacks). BrokenPipeError when the
    reader closes the pipe (the caller decides what that means; ``framebus cat`` ends
    quietly)."""
    written = 0
    first: Record | None = None
    while limit is None or written < limit:
        try:
            record = sink.next_record()
        except StreamEnded:
            break
        if record.error is not None:
            raise ValueError(record.error)
        if first is None:
            first = record
            header = sink.stream_header(record)
            fit_pipe(fd, len(header) + len(record.data), lossless=sink.lossless)
            if header:
                write_all(fd, header)
        elif record.shape != first.shape and sink.format in ("y4m", "raw"):
            raise ValueError(_size_change(sink, first, record))
        write_all(fd, record.data)
        written += 1
    return written


def _size_change(sink: PipeSink, first: Record, record: Record) -> str:
    def size(shape: tuple[int, ...]) -> str:
        channels = 1 if len(shape) == 2 else shape[2]
        return f"{shape[1]}x{shape[0]}x{channels}"

    return (
        f"stream {sink.name!r} changed from {size(first.shape)} to {size(record.shape)} at "
        f"frame {record.seq}: {sink.format} cannot change size mid-stream "
        "(use --format framebus or mjpeg)"
    )
