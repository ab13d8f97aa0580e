"""``framebus.VideoCapture``: a drop-in for ``cv2.VideoCapture`` that never serves stale frames."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING, Any

from .bus import Control
from .errors import FramebusError
from .feeds.ring import RingFeed
from .publisher import Publisher, StreamOptions
from .reader import StreamReader, Transform
from .sources import SourceLike

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["VideoCapture"]

_counter = itertools.count(1)


class VideoCapture(StreamReader):
    """Capture ``source`` in a separate process and read its newest frames.

    ``cap = framebus.VideoCapture(0)`` then ``ok, frame = cap.read()`` as with OpenCV, but the
    capture runs continuously in its own process into a shared-memory ring, so ``read()`` returns
    the newest frame however slow the caller is (``mode="latest"``, the default for cameras and
    URLs), or every frame in order (``mode="every"``, the default for files). The stream is
    published under ``name`` (generated if not given) so other processes can :func:`attach` to it.

    Unlike ``cv2.VideoCapture``, a source that cannot be opened raises a
    :class:`framebus.SourceError` instead of returning an unopened object (:meth:`open`
    returns False instead, as cv2's does).

    ``transform``: a callable applied to every frame read (as :meth:`process_image`);
    ``timeout``: the default for each read; the other options are :func:`framebus.publish`'s
    (``mode``, ``slots``, ``max_readers``, ``realtime``, ``reconnect``, ``start_timeout``).
    """

    def __init__(
        self,
        source: SourceLike,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        name: str | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self._options: dict[str, Any] = dict(options)
        self._start(source, transform, timeout, name, first=True)

    def _start(
        self,
        source: SourceLike,
        transform: Transform | None,
        timeout: float | None,
        name: str | None,
        *,
        first: bool,
    ) -> None:
        name = name or f"vc-{os.getpid()}-{next(_counter)}"
        self._publisher: Publisher | None = Publisher(name, source, start=False, **self._options)
        try:
            # registered before capture starts, so mode="every" gets the very first frame
            ctl = Control.open(name)
            try:
                feed = RingFeed(ctl, from_start=True)
            except BaseException:
                ctl.close()
                raise
            if first:
                super().__init__(feed, transform=transform, timeout=timeout)
            else:
                self._attach(feed, transform, timeout)
            self._publisher.start()
        except BaseException:
            self._publisher.close()
            self._publisher = None
            StreamReader.release(self)
            raise

    def open(
        self,
        source: SourceLike,
        /,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        name: str | None = None,
        **options: Unpack[StreamOptions],
    ) -> bool:
        """Release, then capture ``source`` (as ``cv2.VideoCapture.open``): True if it opened,
        False if not (the error is in :attr:`last_error`). Options not given keep the values
        given before; ``transform`` and ``timeout`` too."""
        keep_transform, keep_timeout = self._transform, self.timeout
        self.release()
        self._options.update(options)
        try:
            self._start(
                source,
                transform if transform is not None else keep_transform,
                timeout if timeout is not None else keep_timeout,
                name,
                first=False,
            )
        except FramebusError as exc:
            self.last_error = exc
            return False
        return True

    @property
    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise RuntimeError("this VideoCapture is not open")
        return self._publisher

    def release(self) -> None:
        """Stop the capture and free everything (idempotent)."""
        super().release()
        if getattr(self, "_publisher", None) is not None:
            assert self._publisher is not None
            self._publisher.close()
            self._publisher = None
