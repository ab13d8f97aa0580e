"""``framebus.VideoCapture``: a drop-in for ``cv2.VideoCapture`` that never serves stale frames."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .bus import Control
from .errors import FramebusError
from .feeds.ring import RingFeed
from .publisher import Publisher, StreamOptions
from .reader import StreamReader, Transform
from .sources import Media, Source, SourceLike, TestPattern

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["VideoCapture", "with_api"]

# cv2.CAP_* API preferences and CAP_PROP_* open parameters (OpenCV's stable public constants)
_CAP_ANY, _CAP_V4L2, _CAP_FFMPEG = 0, 200, 1900
_OPEN_TIMEOUT_MSEC, _READ_TIMEOUT_MSEC, _N_THREADS = 53, 54, 70

_counter = itertools.count(1)


def with_api(source: SourceLike, api: int | None, params: Sequence[int] | None) -> SourceLike:
    """``source`` with cv2's ``apiPreference`` and ``params`` applied, as a :class:`Media`.

    API preferences with a framebus backend: ``CAP_ANY`` (auto), ``CAP_FFMPEG`` and
    ``CAP_V4L2`` (OpenCV's ``cv2.VideoCapture``); any other is ignored (auto), as cv2 ignores
    what a backend does not support. ``params`` (``[prop, value, ...]``):
    ``CAP_PROP_OPEN_TIMEOUT_MSEC``, ``CAP_PROP_READ_TIMEOUT_MSEC`` and ``CAP_PROP_N_THREADS``
    become the source's timeouts and decoder threads; the others go to OpenCV as they are
    (which makes the backend OpenCV's). Test patterns and :class:`Source` objects are their own
    backend: both are ignored for them. ValueError for params that are not pairs of ints."""
    if api is None and not params:
        return source
    if isinstance(source, (TestPattern, Source)):
        return source
    settings: dict[str, Any] = {}
    if api in (_CAP_FFMPEG, _CAP_V4L2):
        settings["backend"] = "opencv"
    flat = list(params or ())
    if len(flat) % 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        raise ValueError(f"params must be pairs of ints (prop, value, ...), not {params!r}")
    rest: list[int] = []
    for prop, value in zip(flat[::2], flat[1::2], strict=True):
        if prop == _OPEN_TIMEOUT_MSEC and value > 0:
            settings["open_timeout"] = value / 1000
        elif prop == _READ_TIMEOUT_MSEC and value > 0:
            settings["read_timeout"] = value / 1000
        elif prop == _N_THREADS and value > 0:
            settings["decoder_threads"] = value
        else:
            rest += [prop, value]
    if rest:
        settings["cv2_params"] = tuple(rest)
    if isinstance(source, Media):
        return replace(source, **settings)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, (str, int)) or isinstance(source, bool):
        return source  # to_spec says what is wrong with it
    return Media(source, **settings)


class VideoCapture(StreamReader):
    """Capture ``source`` in a separate process and read its newest frames.

    ``cap = framebus.VideoCapture(0)`` then ``ok, frame = cap.read()`` as with OpenCV, but the
    capture runs continuously in its own process into a shared-memory ring, so ``read()`` returns
    the newest frame however slow the caller is (``mode="latest"``, the default for cameras and
    URLs), or every frame in order (``mode="every"``, the default for files). The stream is
    published under ``name`` (generated if not given) so other processes can :func:`attach` to it.

    Unlike ``cv2.VideoCapture``, a source that cannot be opened raises a
    :class:`framebus.SourceError` instead of returning an unopened object (:meth:`open`
    returns False instead, as cv2's does). cv2's other forms work too: ``VideoCapture()`` (then
    :meth:`open`), ``VideoCapture(source, apiPreference)`` and ``VideoCapture(source,
    apiPreference, params)`` (see :func:`with_api`). A file object or buffer (cv2 5's stream
    source) is refused with a TypeError: give a path, or pipe the bytes to ``cam=-``.

    ``transform``: a callable applied to every frame read (as :meth:`process_image`);
    ``timeout``: the default for each read; the other options are :func:`framebus.publish`'s
    (``mode``, ``slots``, ``max_readers``, ``realtime``, ``reconnect``, ``start_timeout``).
    """

    def __init__(
        self,
        source: SourceLike | None = None,
        apiPreference: int | None = None,  # noqa: N803 - cv2's name
        params: Sequence[int] | None = None,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        name: str | None = None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self._options: dict[str, Any] = dict(options)
        if source is None:  # cv2's VideoCapture(): nothing open until open()
            super().__init__(None, transform=transform, timeout=timeout)
            self._publisher: Publisher | None = None
            return
        self._start(with_api(source, apiPreference, params), transform, timeout, name, first=True)

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
        self._publisher = Publisher(name, source, start=False, **self._options)
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
        apiPreference: int | None = None,  # noqa: N803 - cv2's name
        params: Sequence[int] | None = None,
        /,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        name: str | None = None,
        **options: Unpack[StreamOptions],
    ) -> bool:
        """Release, then capture ``source`` (as ``cv2.VideoCapture.open``, with its
        ``apiPreference`` and ``params``): True if it opened, False if not (the error is in
        :attr:`last_error`). Options not given keep the values given before; ``transform`` and
        ``timeout`` too."""
        keep_transform, keep_timeout = self._transform, self.timeout
        self.release()
        self._options.update(options)
        try:
            self._start(
                with_api(source, apiPreference, params),
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
