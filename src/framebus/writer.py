"""The write side of the bus: :class:`VideoWriter` puts the frames your code makes into a
named stream, in ``cv2.VideoWriter``'s idiom.

``write()`` runs in the caller's thread and copies the frame straight into a free slot of the
ring: the pixels cross memory once, with no thread or queue in between. The writer's process
owns the stream (as a publisher does): it is removed on :meth:`VideoWriter.release`, when the
writer is garbage-collected unreleased (as ``cv2.VideoWriter`` releases in its destructor), at
interpreter exit, on an exception leaving a ``with`` block and on SIGTERM; if the process is
killed, readers get :class:`~framebus.PublisherLost` and the next writer or publisher of the
name takes it over.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Literal

import numpy as np

from . import _exit
from ._urls import redact
from .bus import (
    MAX_CHANNELS,
    Control,
    Mode,
    RingWriter,
    State,
    create_stream,
    dtype_code,
    media_ns,
    remove_stream,
    valid_name,
)
from .errors import InvalidStreamName, StreamEnded, WriteTimeout
from .stats import FrameInfo, WriterStats, read_stats

__all__ = ["BACKEND", "VideoWriter"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,15})://")
_pushes = itertools.count()  # streams made for VideoWriter("rtsp://...") in this process

BACKEND = "FRAMEBUS_WRITER"
"""What ``getBackendName()`` says on a reader of a stream a :class:`VideoWriter` writes."""


class VideoWriter:
    """A named stream that your code writes frames into; any process may attach to it.

    ``VideoWriter(name, *, fps=None, mode="latest", slots=4, max_readers=64)``, or cv2's
    positional form ``VideoWriter(name, fourcc, fps, frameSize[, isColor])`` (``fourcc`` is
    ignored: frames travel as pixels; ``frameSize`` = ``(width, height)`` sizes the ring at
    once, so a frame that does not fit shared memory fails here, not at the first write).
    ``VideoWriter()`` then :meth:`open` works too. The stream exists from construction:
    readers may attach before the first write and wait for it. ``fps`` is the rate readers'
    ``get(CAP_PROP_FPS)`` reports (writing is never paced by it).

    Buffer policy: the stream holds ``slots`` frames in shared memory and nothing else; the
    writer copies each frame into a free slot (one copy, in the caller's thread).
    ``mode="latest"``: ``write()`` never waits for a reader; a slow or stopped reader skips to
    the newest frame (counted in its stats). A reader pins one slot only while it holds a
    ``view()``; keep ``slots`` above the number of readers that may hold views at once plus
    one, or a write waits for one of them to let go. ``mode="every"``: ``write()`` waits while
    ``slots`` frames are unread by a reader attached to the stream — and until a first reader
    attaches, as an every-mode publisher holds a file's frames — for at most ``timeout``
    seconds, then raises :class:`~framebus.WriteTimeout`; frames still in the ring at
    :meth:`release` reach the readers attached then. (An every-mode write with no timeout in
    a thread that is not a daemon keeps the program from exiting until a reader comes, as any
    blocking call there would: give it a timeout, or release the writer.)

    Frames may change size, channels and dtype between writes. Thread-safe: writes from
    several threads are serialised.

    **A file** — a ``name`` with a suffix or a directory, ``VideoWriter("out.mp4", fourcc, fps,
    (width, height)[, isColor])`` — is written as ``cv2.VideoWriter`` writes it: every frame,
    in order, at ``fps``, but encoded in a thread of its own (``write()`` copies the frame into
    a queue of 8 and waits only when the encoder is that far behind). ``fourcc`` picks the
    encoder: None/0/-1, ``avc1``/``H264``: H.264 (libx264); ``mp4v``/``XVID``/``DIVX``: MPEG-4
    part 2; ``MJPG``: Motion JPEG; also ``MPG1``, ``MPG2``, ``HEVC``, ``VP80``, ``VP90``,
    ``FFV1``, ``I420``. The container is the suffix's. A frame of another size raises
    ValueError (cv2 drops it silently). :meth:`release` finishes the file.

    **A media server** — ``VideoWriter("rtsp://[user:pass@]host[:port]/path", fps=...)`` —
    writes into a stream of its own (``vw<pid>-<n>``) that :func:`framebus.push` sends, encoded
    once at ``fps`` (25 if not given) whatever the rate of ``write()``: the last frame is sent
    again when the producer is slower, a "no signal" picture after 2 s without one, and the push
    reconnects whenever the server goes away. :attr:`target` is the URL without credentials.
    """

    def __init__(
        self,
        name: str | None = None,
        fourcc: int | str | None = None,
        fps: float | None = None,
        frameSize: tuple[int, int] | None = None,  # noqa: N803 (cv2's name)
        isColor: bool = True,  # noqa: N803 (cv2's name)
        *,
        mode: Literal["latest", "every"] = "latest",
        slots: int = 4,
        max_readers: int = 64,
    ) -> None:
        self.name = ""
        self.mode = mode
        self._ctl: Control | None = None
        self._ring: RingWriter | None = None
        self._lock = threading.Lock()  # one write at a time (the ring has one writer)
        self._release_lock = threading.Lock()  # one release at a time (a thread, atexit)
        self._closing = False
        self._final: WriterStats | None = None
        self._written = 0
        self._last_write = 0.0
        self._rate = 0.0
        self._delay: float | None = None
        self._delay_sum = 0.0
        self._delay_max: float | None = None
        self._delayed = 0
        self._slots, self._max_readers = slots, max_readers
        self._dropped: Any = None  # the finalizer that ends a stream whose writer was dropped
        self._file: Any = None  # a VideoFileWriter: VideoWriter("out.mp4", ...)
        self._push: Any = None  # a Push of this writer's stream: VideoWriter("rtsp://...")
        self.target = ""  # the file or URL (without credentials) written to, if not a stream
        if name is not None:
            self.open(name, fourcc, fps, frameSize, isColor)

    def open(
        self,
        name: str | os.PathLike[str],
        fourcc: int | str | None = None,
        fps: float | None = None,
        frameSize: tuple[int, int] | None = None,  # noqa: N803
        isColor: bool = True,  # noqa: N803
    ) -> bool:
        """Create stream ``name`` (releasing the one this writer had), or open a file or a push
        (see the class's text). Raises :class:`~framebus.StreamExists` if a running process
        serves the name, :class:`~framebus.SharedMemoryFull` if ``frameSize`` does not fit,
        :class:`~framebus.RecordError` if the file cannot be written. Returns True."""
        self.release()
        target = os.fspath(name)
        scheme = _SCHEME.match(target)
        if scheme is not None:
            if scheme[1].lower() != "rtsp":
                raise ValueError(
                    f"VideoWriter pushes to rtsp:// URLs, not {scheme[1]}:// ({redact(target)})"
                )
            return self._open_push(target, fps, frameSize, isColor)
        if not valid_name(target) and ("." in target or "/" in target):
            return self._open_file(target, fourcc, fps, frameSize, isColor)
        if not valid_name(target):
            raise InvalidStreamName(
                f"invalid stream name {target!r}: use 1-48 letters, digits, '_' or '-', "
                "starting with a letter or digit (a file name needs its suffix, e.g. out.mp4; "
                "a media server an rtsp:// URL)"
            )
        return self._open_stream(target, fps, frameSize, isColor)

    def _open_file(
        self,
        path: str,
        fourcc: int | str | None,
        fps: float | None,
        size: tuple[int, int] | None,
        is_color: bool,
    ) -> bool:
        from .video_file import VideoFileWriter

        if size is None or not fps:
            raise ValueError(f"writing {path} needs fps and frameSize, as cv2.VideoWriter does")
        self._file = VideoFileWriter(path, fourcc, fps, size, is_color)
        self.target, self._closing = path, False
        _exit.close_at_exit(self)
        return True

    def _open_push(
        self, url: str, fps: float | None, size: tuple[int, int] | None, is_color: bool
    ) -> bool:
        from .mediaserver import push

        name = f"vw{os.getpid()}-{next(_pushes)}"
        self._open_stream(name, fps, size, is_color)
        try:
            self._push = push(name, url, fps=fps or None, encode=True)
        except BaseException:
            self.release()
            raise
        self.target = self._push.url  # (without the credentials)
        return True

    def _open_stream(
        self,
        name: str,
        fps: float | None,
        frameSize: tuple[int, int] | None,  # noqa: N803
        isColor: bool,  # noqa: N803
    ) -> bool:
        if self.mode not in ("latest", "every"):
            raise ValueError(f"mode must be 'latest' or 'every', not {self.mode!r}")
        if fps is not None and not (fps >= 0 and np.isfinite(fps)):
            raise ValueError(f"fps must be a finite number >= 0, not {fps!r}")
        expected = None
        if frameSize is not None:
            width, height = (int(v) for v in frameSize)
            if width <= 0 or height <= 0:
                raise ValueError(f"frameSize must be (width, height) > 0, not {frameSize!r}")
            expected = height * width * (3 if isColor else 1)
        ctl = create_stream(
            name,
            self._slots,
            self._max_readers,
            Mode[self.mode.upper()],
            f"writer pid {os.getpid()}",
        )
        try:
            ctl.claim_writer()
            ctl.backend = BACKEND
            ctl.source_fps = fps or None
            ring = RingWriter(ctl)
            if expected is not None:
                ring.reserve(expected)
                shape = (height, width, 3) if isColor else (height, width)
                ctl.set_frame_format(shape, np.dtype(np.uint8))  # readers know it at once
            ctl.heartbeat()
            ctl.set_state(State.LIVE)
        except BaseException:
            ctl.set_state(State.CLOSED)
            remove_stream(name, ctl.seg.inode, ctl.instance)
            ctl.close()
            raise
        self.name, self._ctl, self._ring = name, ctl, ring
        self._closing, self._final, self._written = False, None, 0
        _exit.close_at_exit(self)
        # a writer dropped without release() (as cv2's, which releases in its destructor):
        # its stream ends when it is collected, not when the process exits
        self._dropped = weakref.finalize(self, _end_dropped, ctl, name)
        self._dropped.atexit = False  # at exit, _exit releases it (its ring closed first)
        return True

    # -- writing -------------------------------------------------------------------------------

    def write(
        self, frame: np.ndarray, *, like: FrameInfo | None = None, timeout: float | None = None
    ) -> None:
        """Publish ``frame`` (a 2-D or 3-D array of a supported dtype) as the stream's newest.

        ``like``: the :class:`~framebus.FrameInfo` of the frame this one was made from (a
        reader's ``info``): the written frame keeps its capture time and its position, so
        every reader downstream sees its age from the camera, and :meth:`stats` the delay
        (capture to this call). Without it, the frame's time is this call's, its position the
        count of frames written before it.
        ``timeout``: in every mode, the seconds to wait for readers (None: as long as it
        takes; 0: only if a slot is free now); a latest-mode write never waits, so it ignores
        it. Raises ``TypeError``/``ValueError`` for a frame the ring cannot hold or a ``like``
        that is not a frame's, before anything is written; :class:`~framebus.StreamEnded`
        after :meth:`release` (also in another thread, waking a write that waits).
        """
        called_ns = time.time_ns()  # the frame's time when no like= says otherwise
        file = self._file
        if file is not None:
            file.write(frame)  # (a file keeps every frame: like= has nothing to carry)
            return
        image = _checked(frame)
        stamp, pos, media_ns = called_ns, None, None
        if like is not None:
            stamp, pos, media_ns = _like(like)
        every = self.mode == "every"
        deadline = None if timeout is None or not every else time.monotonic() + timeout
        with self._lock:
            ring = self._ring
            if ring is None or self._closing:
                raise StreamEnded(f"VideoWriter {self.name or '(not open)'!r} was released")
            slot = ring.acquire(lambda: self._closing, deadline)
            if slot is None:
                if self._closing:
                    raise StreamEnded(f"VideoWriter {self.name!r} was released while writing")
                raise WriteTimeout(
                    f"stream {self.name!r}: no reader took its frames within {timeout} s"
                )
            try:
                np.copyto(ring.buffer(slot, image.shape, image.dtype), image)
            except BaseException:  # SharedMemoryFull, or an interrupt mid-copy
                ring.abandon(slot)
                raise
            ring.commit(slot, image, stamp, self._written if pos is None else pos, media_ns)
            self._written += 1
            if like is not None:
                self._count_delay((called_ns - stamp) / 1e9)
            self._measure_rate(ring.ctl)

    def _count_delay(self, delay: float) -> None:
        self._delay = delay
        self._delay_sum += delay
        self._delayed += 1
        self._delay_max = delay if self._delay_max is None else max(self._delay_max, delay)

    def _measure_rate(self, ctl: Control) -> None:
        """The write rate, smoothed as a capture's (``capture_fps`` in the stream's stats)."""
        now = time.monotonic()
        if self._last_write:
            inst = 1.0 / max(now - self._last_write, 1e-6)
            self._rate = inst if not self._rate else self._rate + 0.1 * (inst - self._rate)
            ctl.capture_fps = self._rate
        self._last_write = now

    # -- the rest of cv2.VideoWriter's API -----------------------------------------------------

    def isOpened(self) -> bool:  # noqa: N802 (cv2's name)
        if self._file is not None:
            return not self._closing
        return self._ring is not None and not self._closing

    def getBackendName(self) -> str:  # noqa: N802 (cv2's name)
        return "FFMPEG" if self._file is not None else BACKEND

    def release(self) -> None:
        """End the stream: readers get the frames still in it, then StreamEnded; a file is
        finished (every frame written encoded), a push stopped. Idempotent. Raises the file
        encoder's error (RecordError, DiskFull), if it had one."""
        push, self._push = self._push, None
        if push is not None:
            push.close()
        file, self._file = self._file, None
        if file is not None:
            self._closing = True
            _exit.forget(self)
            file.release()
            return
        with self._release_lock:
            ctl = self._ctl
            if ctl is None or self._closing:
                return
            self._closing = True
        if self._dropped is not None:
            self._dropped.detach()
        ctl.set_state(State.CLOSED)
        ctl.wake_writer()  # a write waiting for readers (every mode) sees the release
        with self._lock:
            self._final = self._stats(ctl)
            assert self._ring is not None
            self._ring.close()
            self._ring = None
        remove_stream(self.name, ctl.seg.inode, ctl.instance)
        ctl.close()
        self._ctl = None
        _exit.forget(self)

    close = release  # what framebus's exit handling calls

    @property
    def closed(self) -> bool:
        return self._ctl is None

    def stats(self) -> WriterStats:
        """The stream's counters (``captured`` = frames written, ``capture_fps`` = write
        rate) and the processing delay of frames written with ``like=``."""
        if self._ctl is None:
            if self._final is None:
                raise StreamEnded("this VideoWriter was never opened")
            return self._final
        return self._stats(self._ctl)

    def _stats(self, ctl: Control) -> WriterStats:
        base = read_stats(ctl)
        mean = self._delay_sum / self._delayed if self._delayed else None
        return WriterStats(
            **vars(base), delay=self._delay, delay_mean=mean, delay_max=self._delay_max
        )

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "open" if self.isOpened() else "released"
        where = repr(self.name) + (f" -> {self.target}" if self.target else "")
        return f"<framebus.VideoWriter {where} mode={self.mode} {state}>"


def _end_dropped(ctl: Control, name: str) -> None:
    """The end of a stream whose VideoWriter was collected without release()."""
    ctl.set_state(State.CLOSED)
    remove_stream(name, ctl.seg.inode, ctl.instance)
    ctl.close()


def _like(info: object) -> tuple[int, int, int | None]:
    """(capture time in ns, position, media time in ns) of ``like=``, checked before anything
    is written: a FrameInfo may come from a forged header or be made by hand."""
    if not isinstance(info, FrameInfo):
        raise TypeError(f"like= takes a reader's FrameInfo (its .info), not {type(info).__name__}")
    t, pos, media = info.timestamp, info.pos, info.media_time
    if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 <= t < 1.8e10):
        raise ValueError(f"like= has a capture time that is not a time: {t!r}")
    if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < 1 << 63:
        raise ValueError(f"like= has a position that is not a frame index: {pos!r}")
    return round(t * 1e9), pos, media_ns(media)


def _checked(frame: object) -> np.ndarray:
    """``frame`` if the ring can hold it, else a TypeError/ValueError that says why."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"write() takes a numpy array, not {type(frame).__name__}")
    try:
        dtype_code(frame.dtype)  # the ring's dtypes (byte order included)
    except ValueError as exc:
        raise TypeError(f"{exc}: it cannot be written") from None
    if frame.ndim not in (2, 3):
        raise ValueError(
            f"a frame is (height, width) or (height, width, channels), not {frame.ndim}-D "
            f"{frame.shape}"
        )
    if frame.size == 0:
        raise ValueError(f"an empty frame {frame.shape} cannot be written")
    if frame.ndim == 3 and frame.shape[2] > MAX_CHANNELS:
        raise ValueError(
            f"a frame has at most {MAX_CHANNELS} channels, not {frame.shape[2]} "
            "(is it (channels, height, width)? transpose it)"
        )
    return frame
