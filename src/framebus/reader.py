"""The reading side: :func:`attach` to a named stream, with the ``cv2.VideoCapture`` API."""

from __future__ import annotations

import contextlib
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


class StreamReader:
    """Reads a stream the way ``cv2.VideoCapture`` reads a camera, but always fresh.

    ``read()`` returns the newest frame this reader has not returned yet (in ``every`` mode: the
    next frame), waiting for one without spinning. Subclasses may override
    :meth:`process_image`; a ``transform`` callable does the same without subclassing.
    Not thread-safe: use one reader per thread.
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
        meta = ring.acquire(self.timeout if timeout is None else timeout)
        try:
            arr = ring.view(meta)
            self._set_info(meta, arr)
            yield arr
        finally:
            ring.release()

    def read_frame(
        self, image: np.ndarray | None = None, timeout: float | None = None
    ) -> np.ndarray:
        """Return the next frame, or raise StreamEnded, PublisherLost or ReadTimeout."""
        with self._pinned(timeout) as view:
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

    def _set_info(self, meta: FrameMeta, view: np.ndarray) -> None:
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
            return float(info.pos + 1) if info else 0.0
        if prop == _POS_MSEC:
            rate = ctl.source_fps
            return info.pos * 1000 / rate if info and rate else 0.0
        if prop == _FRAME_COUNT:
            count = ctl.frame_count
            return float(count) if count is not None else -1.0
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """Streams cannot be seeked or reconfigured by a reader: always False (as cv2 does)."""
        return False

    def stats(self) -> StreamStats:
        """Stream counters, with this reader's own ``delivered`` and ``skipped``."""
        ring = self._ring
        own = (ring.delivered, ring.skipped) if ring is not None else (0, 0)
        return read_stats(self._require(), own)

    def release(self) -> None:
        """Detach (idempotent). The stream goes on for its other readers."""
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
    ctl = Control.open(validate_name(name))
    if not ctl.publisher_alive():
        ctl.close()
        raise StreamNotFound(
            f"stream {name!r} was left by a publisher that died (`framebus prune` removes it)"
        )
    try:
        return StreamReader(ctl, transform=transform, timeout=timeout)
    except BaseException:
        ctl.close()
        raise
