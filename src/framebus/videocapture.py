"""``framebus.VideoCapture``: a drop-in for ``cv2.VideoCapture`` that never serves stale frames."""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from .bus import Control
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
    :class:`framebus.SourceError` instead of returning an unopened object.

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
        name = name or f"vc-{os.getpid()}-{next(_counter)}"
        self._publisher = Publisher(name, source, start=False, **options)
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
