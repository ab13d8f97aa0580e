"""Images to a folder: file name templates, atomic writes, and a bounded pool of encoders.

Each image is written to a temporary name in the destination folder
(``.<final name>.framebus-<pid>.tmp``: hidden, and never matching ``*.jpg``), optionally
fsynced, then ``os.replace``\\ d onto its final name. An interrupted run therefore never
leaves a half-written image under a final name; its temporary files are removed on every exit
path the process sees (an exception, Ctrl-C), and those of a killed process (SIGKILL, a power
cut) are removed by the next :class:`ImageWriter` of the folder once that pid is gone. Only
files that are surely framebus's are removed: that name pattern, a final name of an image
format framebus writes, a regular file owned by this user (another program's ``.x.123.tmp``
is left alone).

Buffering policy of :class:`ImageWriter`: at most ``workers`` images being converted, encoded
and written, plus ``workers`` waiting for a worker; :meth:`ImageWriter.submit` blocks while that
many are in flight, so a fast decoder waits for the encoders instead of queueing frames
(at 1080p, ``2 * workers`` frames of 3-6 MB). Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import string
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from framebus import FrameInfo

from .base import FrameSink, Pick
from .jpeg import encode_jpeg

__all__ = [
    "DEFAULT_TEMPLATE",
    "IMAGE_FORMATS",
    "ImageFormat",
    "ImageSink",
    "ImageWriter",
    "NameTemplate",
    "default_quality",
    "encode_image",
]

log = logging.getLogger("framebus.sinks")

ImageFormat = Literal["jpg", "png"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpg", "png")
DEFAULT_TEMPLATE = "{index:08d}.{ext}"

_TEMP = re.compile(
    rf"\.(?P<name>.+\.(?:{'|'.join(IMAGE_FORMATS)}))\.framebus-(?P<pid>\d{{1,10}})\.tmp"
)


def default_quality(fmt: ImageFormat) -> int:
    """cv2.imwrite's defaults: JPEG quality 95, PNG compression level 1."""
    return 95 if fmt == "jpg" else 1


def check_quality(fmt: ImageFormat, quality: int) -> None:
    lo, hi = (1, 100) if fmt == "jpg" else (0, 9)
    what = "JPEG quality" if fmt == "jpg" else "PNG compression level"
    if isinstance(quality, bool) or not isinstance(quality, int) or not lo <= quality <= hi:
        raise ValueError(f"{what} must be {lo}..{hi}, not {quality!r}")


def encode_image(frame: np.ndarray, fmt: ImageFormat, quality: int) -> bytes:
    """``frame`` (BGR or grey, 8-bit) as JPEG (quality 1..100) or PNG (compression 0..9)."""
    if fmt == "jpg":
        return encode_jpeg(frame, quality)
    import cv2

    ok, buf = cv2.imencode(".png", frame, [cv2.IMWRITE_PNG_COMPRESSION, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 8/16-bit image
        raise ValueError("OpenCV could not encode the frame as PNG")
    return bytes(buf)


# Python's standard format spec; for {index}, only what keeps one index one name is allowed
_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?\d*[,_]?(?:\.(?P<precision>\d+))?(?P<type>[bcdeEfFgGnosxX%])?"
)


class NameTemplate:
    """A file name template: ``str.format`` fields ``{index}`` (required: the frame index, an
    int, with an integer format spec such as ``{index:08d}`` or ``{index:x}``: no precision,
    no float or character types, which could give two indexes one name) and ``{ext}`` (``jpg``
    or ``png``). The name must be a plain file name (no ``/``, not hidden, at most 200 bytes)."""

    def __init__(self, template: str, ext: ImageFormat) -> None:
        self.template = template
        self.ext = ext
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"invalid template {template!r}: {exc}") from None
        fields = [(f, spec or "") for _, f, spec, _ in parsed if f is not None]
        unknown = sorted({f for f, _ in fields if f not in ("index", "ext")})
        if unknown:
            raise ValueError(
                f"invalid template {template!r}: unknown field {{{unknown[0]}}} "
                "(use {index} and {ext})"
            )
        if "index" not in [f for f, _ in fields]:
            raise ValueError(f"invalid template {template!r}: it needs the frame index, {{index}}")
        for f, spec in fields:
            m = _SPEC.fullmatch(spec)
            if f == "index" and (
                m is None or m["precision"] is not None or (m["type"] or "d") in "ceEfFgG%"
            ):
                raise ValueError(
                    f"invalid template {template!r}: {{index:{spec}}} is not an integer format "
                    "(such as {index:08d})"
                )
        try:
            names = [self.name(i) for i in (0, 1, 99_999_999)]
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ValueError(f"invalid template {template!r}: {exc}") from None
        for n in names:
            if "/" in n or "\0" in n or n.startswith(".") or not n:
                raise ValueError(
                    f"invalid template {template!r}: {n!r} is not a plain file name "
                    "(no '/', not starting with '.')"
                )
            try:
                size = len(os.fsencode(n))
            except UnicodeEncodeError:
                raise ValueError(f"invalid template {template!r}: not a file name") from None
            if size > 200:  # the temporary name adds a pid and 15 bytes
                raise ValueError(f"invalid template {template!r}: file names too long")
        if len(set(names)) != len(names):  # pragma: no cover - the spec check prevents it
            raise ValueError(f"invalid template {template!r}: two indexes give one file name")

    def name(self, index: int) -> str:
        return self.template.format(index=index, ext=self.ext)


def prepare_dir(out: str | os.PathLike[str]) -> Path:
    """Create ``out`` if needed and prove it is writable (by writing there): a one-line
    ``ValueError`` otherwise. Root passes ``os.access`` everywhere, so the check writes."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".framebus-probe.{os.getpid()}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: a liveness probe, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path) -> int:
    """Remove temporary files that killed writers left in ``folder``; how many."""
    removed = 0
    me = os.getpid()
    with os.scandir(folder) as it:
        for entry in it:
            m = _TEMP.fullmatch(entry.name)
            if m is None or not entry.is_file(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue  # not a file this user's writers made
            pid = int(m["pid"])
            if pid != me and _pid_alive(pid):
                continue  # another run writes here right now
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


Image = np.ndarray | Callable[[], np.ndarray]
"""A frame, or a function that makes it (a colour conversion run in the pool)."""


class ImageWriter:
    """Encodes images and writes each one atomically into ``folder``, in a bounded pool.

    ``workers`` threads (default: 2, this is a 2-core class of machine, and the decoder has
    its own threads) convert, encode and write; see the module docstring for the bound. The
    encoders (simplejpeg, ``cv2.imencode``) and PyAV's colour conversion release the GIL.
    ``fsync=True`` flushes each file to disk before its rename (survives a power cut, costs a
    disk flush per file); without it a rename is still atomic for every process on the
    machine. The first error of a worker (a full disk) is raised by the next :meth:`submit` or
    by :meth:`close`.
    """

    def __init__(
        self,
        folder: Path,
        template: NameTemplate,
        fmt: ImageFormat,
        quality: int,
        *,
        workers: int = 2,
        fsync: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.folder = folder
        self.template = template
        self.fmt = fmt
        self.quality = quality
        self.fsync = fsync
        self.written = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="framebus-sample")
        self._error: BaseException | None = None
        remove_stale_temps(folder)

    def path(self, index: int) -> Path:
        return self.folder / self.template.name(index)

    def exists(self, index: int) -> bool:
        return self.path(index).exists()

    def submit(self, index: int, image: Image) -> None:
        """Queue one image (blocks while the pool is full). ``image`` must stay valid until it
        is written: pass a copy of a shared view, or a function that makes the frame."""
        self._raise_error()
        self._slots.acquire()
        try:
            future = self._pool.submit(self._write, index, image)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        self._slots.release()
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            with self._lock:
                if self._error is None:
                    self._error = exc

    def _raise_error(self) -> None:
        with self._lock:
            err = self._error
        if err is not None:
            raise err

    def write_encoded(self, index: int, data: bytes) -> None:
        """Write one already encoded image now, in the calling thread."""
        self._store(index, data)

    def _write(self, index: int, image: Image) -> None:
        frame = image() if callable(image) else image
        self._store(index, encode_image(frame, self.fmt, self.quality))

    def _store(self, index: int, data: bytes) -> None:
        final = self.path(index)
        tmp = final.with_name(f".{final.name}.framebus-{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            self.written += 1

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the images in flight (``cancel``: drop the ones not started), remove any
        temporary file, and raise the first worker error (not when cancelling). May be called
        again, e.g. with ``cancel`` after a close that Ctrl-C interrupted."""
        try:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        finally:
            remove_stale_temps(self.folder)
        if not cancel:
            self._raise_error()


class ImageSink(FrameSink[bytes]):
    """Encodes the chosen frames of stream ``name`` as JPEG or PNG bytes, for one consumer that
    writes them (``lossless``: the consumer paces the sink, never the capture of a latest-mode
    stream, whose ring skips for this reader as for any other).

    Buffering: :class:`FrameSink`'s with ``lossless=True``: one encoded image waiting for the
    consumer, one in the worker's hand.
    """

    def __init__(self, name: str, *, pick: Pick, fmt: ImageFormat, quality: int) -> None:
        check_quality(fmt, quality)
        self.fmt = fmt
        self.quality = quality
        super().__init__(name, pick=pick, lossless=True)

    def encode(self, frame: np.ndarray, info: FrameInfo) -> bytes:
        return encode_image(frame, self.fmt, self.quality)
