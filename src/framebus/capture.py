"""``framebus.VideoCapture``: a drop-in for ``cv2.VideoCapture`` that never serves stale frames."""

from __future__ import annotations

import itertools
import os

from ._supervision import Reconnect
from .bus._protocol import Control
from .publisher import ModeName, Publisher
from .reader import StreamReader, Transform
from .sources import SourceLike

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
    :class:`framebus.SourceError` instead of returning an unopened object.
    """

    def __init__(
        self,
        source: SourceLike,
        *,
        mode: ModeName | None = None,
        realtime: bool = False,
        reconnect: Reconnect | bool | None = None,
        transform: Transform | None = None,
        timeout: float | None = None,
        slots: int = 4,
        max_readers: int = 64,
        name: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        name = name or f"vc-{os.getpid()}-{next(_counter)}"
        self._publisher = Publisher(
            name,
            source,
            mode=mode,
            slots=slots,
            max_readers=max_readers,
            realtime=realtime,
            reconnect=reconnect,
            start_timeout=start_timeout,
            start=False,
        )
        try:
            # registered before capture starts, so mode="every" gets the very first frame
            super().__init__(
                Control.open(name), transform=transform, timeout=timeout, from_start=True
            )
            self._publisher.start()
        except BaseException:
            self._publisher.close()
            if getattr(self, "_ring", None) is not None:
                StreamReader.release(self)
            raise

    @property
    def publisher(self) -> Publisher:
        return self._publisher

    def release(self) -> None:
        """Stop the capture and free everything (idempotent)."""
        super().release()
        if getattr(self, "_publisher", None) is not None:
            self._publisher.close()
