"""The reading side: :func:`attach` to a named stream, with the ``cv2.VideoCapture`` API."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from types import TracebackType

import numpy as np

from .bus import Control, FrameMeta, RingReader, validate_name
from .errors import FramebusError, PublisherLost, StreamEnded, StreamNotFound
from .stats import FrameInfo, StreamStats, read_stats

__all__ = ["StreamReader", "attach"]

Transform = Callable[[np.ndarray], np.ndarray]

# cv2.CAP_PROP_* values (numbers are OpenCV's stable public constants)
_POS_MSEC, _POS_FRAMES, _WIDTH, _HEIGHT, _FPS, _FRAME_COUNT = 0, 1, 3, 4, 5, 7

SEEK_TIMEOUT = 10.0  # seconds set(CAP_PROP_POS_FRAMES) waits for the capture to seek


class StreamReader:
    """Reads a stream the way ``cv2.VideoCapture`` reads a camera, but always fresh.

    ``read()`` returns the newest frame this reader has not returned yet (in ``every`` mode: the
    next frame), waiting for one without spinning. Subclasses may override
    :meth:`process_image`; a ``transform`` callable does the same without subclassing.
    Not thread-safe: use one reader per thread.

    ``grab()`` pins the frame ``read()`` would return (no copy) and ``retrieve()`` copies it
    out: between the two the capture leaves that one slot alone, so with ``slots=2`` a
    latest-mode capture waits for ``retrieve()``; with the default 4 it does not.
    """

    def __init__(
        self,
        ctl: Control,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        from_start: bool = False,
    ) -> None:
        self._ctl: Control | None = ctl
        self._ring: RingReader | None = RingReader(ctl, from_start=from_start)
        self._transform = transform
        self.timeout = timeout
        self.info: FrameInfo | None = None
        """Describes the frame last returned (None before the first)."""
        self.last_error: FramebusError | None = None
        """Why the last ``read()`` returned ``(False, None)``."""
        self._grabbed: np.ndarray | None = None  # the pinned slot between grab() and retrieve()
        self._retrieved: np.ndarray | None = None  # what retrieve() returned for this grab
        self._seek_pos: int | None = None  # POS_FRAMES after a seek, until a frame is read

    @property
    def name(self) -> str:
        return self._require().name

    def _require(self) -> Control:
        if self._ctl is None:
            raise StreamEnded("this reader was released")
        return self._ctl

    # -- the extension point -------------------------------------------------------------------

    def process_image(self, frame: np.ndarray) -> np.ndarray:
        """Applied to every frame returned by :meth:`read` and iteration. Default: ``transform``."""
        return self._transform(frame) if self._transform is not None else frame

    def _processing(self) -> bool:
        return self._transform is not None or (
            type(self).process_image is not StreamReader.process_image
        )

    # -- reading -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _pinned(self, timeout: float | None) -> Iterator[np.ndarray]:
        """The next frame's slot, pinned (the capture will not write it) until the block ends."""
        ring = self._ring
        if ring is None:
            raise StreamEnded("this reader was released")
        self._drop_grab()  # as cv2's read() after grab(): the grabbed frame is passed over
        meta = ring.acquire(self.timeout if timeout is None else timeout)
        try:
            arr = ring.view(meta)
            self._set_info(meta, arr)
            yield arr
        finally:
            ring.release()

    def _output(self, view: np.ndarray, image: np.ndarray | None) -> np.ndarray:
        """The frame returned for ``view``: processed, copied (into ``image`` if it fits)."""
        if self._processing():
            result = self.process_image(view.copy())
            if image is None or image.shape != result.shape:
                return result  # as cv2 does when the caller's array does not fit
            np.copyto(image, result)
            return image
        if image is not None and image.shape == view.shape and image.dtype == view.dtype:
            np.copyto(image, view)
            return image
        return view.copy()

    def read_frame(
        self, image: np.ndarray | None = None, timeout: float | None = None
    ) -> np.ndarray:
        """Return the next frame, or raise StreamEnded, PublisherLost or ReadTimeout."""
        with self._pinned(timeout) as view:
            return self._output(view, image)

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        """``ok, frame = reader.read()``; ``(False, None)`` once the stream ended or its publisher
        died (the reason is in :attr:`last_error`). ``image``: an array to copy the frame into.
        """
        try:
            return True, self.read_frame(image)
        except FramebusError as exc:
            self.last_error = exc
            return False, None

    def view(self, timeout: float | None = None) -> contextlib.AbstractContextManager[np.ndarray]:
        """Zero-copy: lend a read-only array over the shared slot, valid inside the block only.

        The capture never writes a slot lent out. ``process_image`` is not applied. Raises
        StreamEnded, PublisherLost or ReadTimeout when no frame comes.
        """
        return self._pinned(timeout)

    # -- grab() / retrieve(): take the frame now, copy it later ----------------------------------

    def grab(self) -> bool:
        """Take the frame :meth:`read` would return (the newest unseen one; in ``every`` mode
        the next one), without copying it: it stays pinned in its slot for :meth:`retrieve`.

        Cheap (no copy, no processing), so grabbing several streams one after the other and
        then retrieving them takes frames captured as close together as the streams allow.
        :attr:`info` describes the grabbed frame at once. Returns False at the end of the
        stream or if its publisher died (:attr:`last_error` says which).
        """
        ring = self._ring
        if ring is None:
            self.last_error = StreamEnded("this reader was released")
            return False
        self._drop_grab()
        try:
            meta = ring.acquire(self.timeout)
            try:
                view = ring.view(meta)
            except BaseException:
                ring.release()
                raise
        except FramebusError as exc:
            self.last_error = exc
            return False
        self._set_info(meta, view)
        self._grabbed = view
        return True

    def retrieve(
        self, image: np.ndarray | None = None, flag: int = 0
    ) -> tuple[bool, np.ndarray | None]:
        """``ok, frame`` for the frame :meth:`grab` took (processed as :meth:`read` does);
        ``(False, None)`` if nothing was grabbed. Called again, it returns the same frame
        again, as cv2 does. ``flag`` (a camera channel in cv2) is ignored.
        """
        if self._grabbed is None:
            if self._retrieved is None:
                return False, None
            again = self._retrieved.copy()
            if image is not None and image.shape == again.shape and image.dtype == again.dtype:
                np.copyto(image, again)
                return True, image
            return True, again
        try:
            frame = self._output(self._grabbed, image)
        finally:
            self._drop_grab()
        self._retrieved = frame
        return True, frame

    def _drop_grab(self) -> None:
        """Let go of a grabbed frame (it counts as consumed, as in cv2)."""
        self._retrieved = None
        if self._grabbed is not None:
            self._grabbed = None
            if self._ring is not None:
                self._ring.release()

    def _set_info(self, meta: FrameMeta, view: np.ndarray) -> None:
        self._seek_pos = None
        self.info = FrameInfo(
            meta.seq, meta.timestamp_ns / 1e9, meta.pos, meta.skipped, view.shape[1], view.shape[0]
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames until the stream ends; raises PublisherLost if its publisher dies."""
        while True:
            try:
                yield self.read_frame()
            except StreamEnded:
                return

    # -- cv2.VideoCapture compatibility --------------------------------------------------------

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        if self._ctl is None:
            return False
        return self._ctl.publisher_alive() and not isinstance(self.last_error, PublisherLost)

    def get(self, prop: int) -> float:
        """``CAP_PROP_FRAME_WIDTH``/``HEIGHT``/``FPS``/``POS_FRAMES``/``POS_MSEC``/
        ``FRAME_COUNT``; 0.0 for properties a stream does not have (as cv2 does)."""
        ctl = self._require()
        info = self.info
        if prop in (_WIDTH, _HEIGHT):
            if info is not None:
                return float(info.width if prop == _WIDTH else info.height)
            s = read_stats(ctl)
            return float(s.width if prop == _WIDTH else s.height)
        if prop == _FPS:
            return ctl.source_fps or ctl.capture_fps
        if prop == _POS_FRAMES:
            if self._seek_pos is not None:
                return float(self._seek_pos)
            return float(info.pos + 1) if info else 0.0
        if prop == _POS_MSEC:
            rate = ctl.source_fps
            if self._seek_pos is not None:
                return self._seek_pos * 1000 / rate if rate else 0.0
            return info.pos * 1000 / rate if info and rate else 0.0
        if prop == _FRAME_COUNT:
            count = ctl.frame_count
            return float(count) if count is not None else -1.0
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """``CAP_PROP_POS_FRAMES`` / ``CAP_PROP_POS_MSEC``: seek a file (or a finite source that
        can seek); the capture process seeks, and the next frame read comes from the new
        position, for this reader at once and for the stream's other readers after the frames
        they had in the ring. The position is clamped to the source, as cv2 clamps it.

        At the end of a file, too: ``set(CAP_PROP_POS_FRAMES, 0)`` after ``read()`` failed
        plays it again. False for a live stream, and for every other property (a
        stream's size, rate or camera settings are not a reader's to change): what cv2 returns
        for a property its backend does not support.
        """
        if prop in (_POS_FRAMES, _POS_MSEC) and not math.isfinite(value):
            return False
        if prop == _POS_FRAMES:
            return self._seek(int(value))
        if prop == _POS_MSEC:
            rate = self._ctl.source_fps if self._ctl is not None else None
            # rounded to the nearest frame, as OpenCV's FFmpeg backend does
            return rate is not None and self._seek(int(value * rate / 1000 + 0.5))
        return False

    def _seek(self, frame: int) -> bool:
        ctl, ring = self._ctl, self._ring
        if ctl is None or ring is None or not ctl.seekable:
            return False
        frame = max(frame, 0)
        count = ctl.frame_count
        if count is not None:
            frame = min(frame, count)
        self._drop_grab()
        first = ctl.seek(frame, SEEK_TIMEOUT, ring.skip_to)
        if first is None:
            return False
        ring.skip_to(first)
        self._seek_pos = frame
        return True

    def getBackendName(self) -> str:  # noqa: N802 - cv2's name
        """The backend that reads the source: ``"FRAMEBUS_RTSP"`` (framebus's RTSP client),
        ``"FFMPEG"`` or ``"V4L2"`` (OpenCV's), ``"PYAV"``, ``"TESTPATTERN"``, or the
        ``backend_name`` of a user :class:`~framebus.Source` (``"PYTHON"`` by default); it
        changes when the RTSP client hands a stream over to FFmpeg. Raises StreamEnded once
        released (cv2 raises too when nothing is open)."""
        return self._require().backend

    def open(
        self, name: str, /, *, transform: Transform | None = None, timeout: float | None = None
    ) -> bool:
        """Release, then attach to the stream ``name``; True if that worked (as cv2's
        ``open()``, an error is not raised: it is kept in :attr:`last_error`). ``transform``
        and ``timeout`` keep their values unless given."""
        transform = transform if transform is not None else self._transform
        timeout = timeout if timeout is not None else self.timeout
        self.release()
        try:
            ctl = _open_control(name)
            try:
                self._attach(ctl, transform, timeout, from_start=False)
            except BaseException:
                ctl.close()
                raise
        except FramebusError as exc:
            self.last_error = exc
            return False
        return True

    def _attach(
        self, ctl: Control, transform: Transform | None, timeout: float | None, from_start: bool
    ) -> None:
        self._ring = RingReader(ctl, from_start=from_start)
        self._ctl = ctl
        self._transform = transform
        self.timeout = timeout
        self.info = None
        self.last_error = None
        self._seek_pos = None

    def stats(self) -> StreamStats:
        """Stream counters, with this reader's own ``delivered`` and ``skipped``."""
        ring = self._ring
        own = (ring.delivered, ring.skipped) if ring is not None else (0, 0)
        return read_stats(self._require(), own)

    def release(self) -> None:
        """Detach (idempotent). The stream goes on for its other readers."""
        self._grabbed = self._retrieved = None
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def attach(
    name: str, *, transform: Transform | None = None, timeout: float | None = None
) -> StreamReader:
    """Attach to the named stream published by any process on this machine.

    ``timeout``: the default for each read, in seconds (None: wait as long as the publisher
    lives). Raises StreamNotFound if no live publisher serves ``name``.
    """
    ctl = _open_control(name)
    try:
        return StreamReader(ctl, transform=transform, timeout=timeout)
    except BaseException:
        ctl.close()
        raise


def _open_control(name: str) -> Control:
    ctl = Control.open(validate_name(name))
    if not ctl.publisher_alive():
        ctl.close()
        raise StreamNotFound(
            f"stream {name!r} was left by a publisher that died (`framebus prune` removes it)"
        )
    return ctl
