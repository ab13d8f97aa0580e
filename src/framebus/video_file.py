"""A video file written as ``cv2.VideoWriter`` writes one — every frame, in order, at a constant
rate — but encoded off the caller's thread: :class:`VideoFileWriter` (what
``framebus.VideoWriter("out.mp4", fourcc, fps, size)`` uses).

Buffer policy: every frame is kept (a file must not skip any); ``write()`` copies the frame into
a queue of at most :data:`QUEUE` frames and returns, and waits only when the encoder is that far
behind (as cv2's ``write()`` waits for its encoder every time).
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DiskFull, RecordError, StreamEnded

__all__ = ["CODECS", "QUEUE", "VideoFileWriter", "codec_for"]

QUEUE = 8
"""Frames that may wait for the encoder before ``write()`` waits too."""

# fourcc -> FFmpeg encoder (the ones Debian's FFmpeg and PyAV's wheels have)
CODECS = {
    "avc1": "libx264", "h264": "libx264", "x264": "libx264",
    "mp4v": "mpeg4", "fmp4": "mpeg4", "xvid": "mpeg4", "divx": "mpeg4", "dx50": "mpeg4",
    "mjpg": "mjpeg", "mpg1": "mpeg1video", "pim1": "mpeg1video", "mpg2": "mpeg2video",
    "hevc": "libx265", "hev1": "libx265", "hvc1": "libx265", "vp80": "libvpx", "vp90": "libvpx-vp9",
    "ffv1": "ffv1", "iyuv": "rawvideo", "i420": "rawvideo",
}  # fmt: skip
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def codec_for(fourcc: int | str | None) -> str:
    """The FFmpeg encoder for a fourcc (``cv2.VideoWriter_fourcc(*"mp4v")`` or ``"mp4v"``);
    None, 0 or -1: H.264. ValueError for one framebus does not know."""
    if fourcc is None or fourcc in (0, -1):
        return "libx264"
    if isinstance(fourcc, int):
        fourcc = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4))
    key = fourcc.strip().lower()
    if key not in CODECS:
        known = ", ".join(sorted({k.upper() for k in CODECS}))
        raise ValueError(f"fourcc {fourcc!r} is not one framebus writes (known: {known})")
    return CODECS[key]


class VideoFileWriter:
    """Writes ``path`` (its container from the suffix: .mp4, .mkv, .avi, .mov...) with the
    ``fourcc``'s encoder at ``fps`` frames a second; frames are ``frame_size`` = (width,
    height), BGR (or grey with ``is_color=False``). Raises RecordError if it cannot be made."""

    def __init__(
        self,
        path: str | Path,
        fourcc: int | str | None,
        fps: float,
        frame_size: tuple[int, int],
        is_color: bool = True,
    ) -> None:
        import av

        width, height = (int(v) for v in frame_size)
        if width <= 0 or height <= 0:
            raise ValueError(f"frameSize must be (width, height) > 0, not {frame_size!r}")
        if not (fps > 0 and np.isfinite(fps)):
            raise ValueError(f"a file needs fps > 0, not {fps!r}")
        codec = codec_for(fourcc)
        self.path = Path(path)
        folder = self.path.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise RecordError(f"{self.path}: cannot write there (no such directory, or no right)")
        self.size, self.is_color = (width, height), is_color
        self.frames = 0
        try:
            container: Any = av.open(str(self.path), "w")
        except (OSError, ValueError, av.error.FFmpegError) as exc:
            raise RecordError(f"{self.path}: cannot write it: {exc}") from None
        try:
            rate = Fraction(fps).limit_denominator(1001)
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = width, height
            pix = {"mjpeg": "yuvj420p", "rawvideo": "yuv420p", "ffv1": "yuv420p"}
            stream.pix_fmt = pix.get(codec, "yuv420p")
            if codec == "libx264":
                stream.options = {"preset": "veryfast"}
            if codec in ("mpeg4", "mjpeg", "mpeg1video", "mpeg2video"):
                stream.codec_context.qscale = 3  # cv2's quality, about (its default bit rate
                stream.codec_context.flags |= 2  # is tiny): a fixed quantiser (QSCALE flag)
        except (ValueError, av.error.FFmpegError) as exc:
            container.close()
            self.path.unlink(missing_ok=True)
            raise RecordError(f"{self.path}: cannot encode {codec} into it: {exc}") from None
        self._container, self._stream = container, stream
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(QUEUE)
        self.error: RecordError | None = None
        self._told = False  # the error was raised to the caller already
        self._put_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._encode, name="framebus-file-writer",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def write(self, frame: np.ndarray) -> None:
        """Queue ``frame`` (copied) to be encoded; waits while :data:`QUEUE` frames wait.
        ValueError for a frame of another size or kind (cv2 drops it without a word)."""
        if self._closed:
            raise StreamEnded(f"the writer of {self.path} was released")
        if self.error is not None:
            self._told = True
            raise self.error
        width, height = self.size
        channels = frame.shape[2] if frame.ndim == 3 else 1
        if (
            frame.dtype != np.uint8
            or frame.ndim not in (2, 3)
            or frame.shape[:2] != (height, width)
            or channels != (3 if self.is_color else 1)
        ):
            raise ValueError(
                f"{self.path}: frames are {width}x{height} uint8 "
                f"{'BGR' if self.is_color else 'grey'}, not {frame.dtype} {frame.shape}"
            )
        item = np.ascontiguousarray(frame).copy()
        with self._put_lock:  # (release() puts the end mark under it: no frame goes after it)
            while True:
                if self._closed:
                    raise StreamEnded(f"the writer of {self.path} was released")
                try:
                    self._queue.put(item, timeout=0.5)
                    return
                except queue.Full:
                    if self.error is not None:
                        self._told = True
                        raise self.error from None
                    if not self._thread.is_alive():
                        raise StreamEnded(f"the writer of {self.path} stopped") from None

    def _encode(self) -> None:
        import av

        fmt = "bgr24" if self.is_color else "gray"
        try:
            while (frame := self._queue.get()) is not None:
                if self.error is not None:
                    continue  # (drain: the writer is failing)
                image = frame if self.is_color else frame.reshape(frame.shape[:2])
                picture = av.VideoFrame.from_ndarray(image, format=fmt)
                picture.pts = self.frames
                for packet in self._stream.encode(picture):
                    self._container.mux(packet)
                self.frames += 1
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        except Exception as exc:
            self.error = _error(exc, self.path)
        finally:
            try:
                self._container.close()
            except (OSError, av.error.FFmpegError) as exc:
                self.error = self.error or _error(exc, self.path)

    def release(self) -> None:
        """Encode what is queued, finish the file (idempotent). Raises the encoder's error if
        ``write()`` has not raised it already."""
        with self._put_lock:
            if self._closed:
                first = False
            else:
                first = self._closed = True
                while self._thread.is_alive():  # (an encoder that failed takes nothing more)
                    try:
                        self._queue.put(None, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        if first:
            self._thread.join()
        if self.error is not None and not self._told:
            self._told = True
            raise self.error


def _error(exc: BaseException, path: Path) -> RecordError:
    code = getattr(exc, "errno", None)
    if code in _FULL:
        return DiskFull(f"{path}: the disk is full")
    return RecordError(f"{path}: {exc}")
