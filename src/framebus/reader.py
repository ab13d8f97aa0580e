"""The reading side: :func:`attach` to a named stream, here or on another machine, with the
``cv2.VideoCapture`` API. One :class:`StreamReader` over a feed (:mod:`framebus.feeds`): the
shared-memory ring of a local stream, or a ZeroMQ connection for ``zmq://HOST:PORT/NAME``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, cast

import numpy as np

from .bus import Control, validate_name
from .errors import FramebusError, PublisherLost, StreamEnded, StreamNotFound
from .feeds import Feed, RemoteOptions
from .feeds.ring import RingFeed
from .stats import FrameInfo, StreamStats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .net.feed import ZmqFeed
    from .net.receiver import ReceiverStats

__all__ = ["RemoteReader", "StreamReader", "attach"]

Transform = Callable[[np.ndarray], np.ndarray]

# cv2.CAP_PROP_* values (numbers are OpenCV's stable public constants)
_POS_MSEC, _POS_FRAMES, _WIDTH, _HEIGHT, _FPS, _FRAME_COUNT = 0, 1, 3, 4, 5, 7


class StreamReader:
    """Reads a stream the way ``cv2.VideoCapture`` reads a camera, but always fresh.

    ``read()`` returns the newest frame this reader has not returned yet (in ``every`` mode: the
    next frame), waiting for one without spinning. Subclasses may override
    :meth:`process_image`; a ``transform`` callable does the same without subclassing.
    Not thread-safe: use one reader per thread.

    ``grab()`` takes the frame ``read()`` would return without copying it (a local stream's
    stays pinned in its slot) and ``retrieve()`` copies it out: between the two the capture
    leaves that one slot alone, so with ``slots=2`` a latest-mode capture waits for
    ``retrieve()``; with the default 4 it does not.

    Every call behaves the same whatever the feed; what a feed cannot do is answered the cv2
    way: ``set()`` returns False (a remote stream cannot seek), ``get()`` 0.0 for what is not
    known.
    """

    def __init__(
        self,
        feed: Feed | None,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
    ) -> None:
        self._feed: Feed | None = feed  # None: nothing open (released, or cv2's VideoCapture())
        self._transform = transform
        self.timeout = timeout
        self.info: FrameInfo | None = None
        """Describes the frame last returned (None before the first)."""
        self.last_error: FramebusError | None = None
        """Why the last ``read()`` returned ``(False, None)``."""
        self._grabbed: np.ndarray | None = None  # the frame lent between grab() and retrieve()
        self._retrieved: np.ndarray | None = None  # what retrieve() returned for this grab
        self._seek_pos: int | None = None  # POS_FRAMES after a seek, until a frame is read
        self._seek_media: float | None = None  # ... and the media time the source reported
        self._at_end = False  # the last read found the stream's end (cv2: POS_MSEC 0)
        self._remote: RemoteOptions = {}  # keywords open() gives a zmq:// URL (its keys)

    @property
    def name(self) -> str:
        return self._require().name

    def _require(self) -> Feed:
        if self._feed is None:
            raise StreamEnded("this reader was released")
        return self._feed

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
    def _lent(self, timeout: float | None) -> Iterator[np.ndarray]:
        """The next frame, lent by the feed (a ring slot stays pinned) until the block ends."""
        feed = self._require()
        self._drop_grab()  # as cv2's read() after grab(): the grabbed frame is passed over
        view, info = self._acquire(feed, self.timeout if timeout is None else timeout)
        try:
            self._seek_pos = None
            self.info = info
            yield view
        finally:
            feed.release()

    def _acquire(self, feed: Feed, timeout: float | None) -> tuple[np.ndarray, FrameInfo]:
        try:
            got = feed.acquire(timeout)
        except StreamEnded:
            self._at_end = True
            raise
        self._at_end = False
        return got

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
        with self._lent(timeout) as view:
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
        """Zero-copy: lend a read-only array of the next frame, valid inside the block only.

        For a local stream it is the shared slot itself, which the capture never writes while
        it is lent. ``process_image`` is not applied. Raises StreamEnded, PublisherLost or
        ReadTimeout when no frame comes.
        """
        return self._lent(timeout)

    # -- grab() / retrieve(): take the frame now, copy it later ----------------------------------

    def grab(self) -> bool:
        """Take the frame :meth:`read` would return (the newest unseen one; in ``every`` mode
        the next one), without copying it: it stays lent (pinned in its slot) for
        :meth:`retrieve`.

        Cheap (no copy, no processing), so grabbing several streams one after the other and
        then retrieving them takes frames captured as close together as the streams allow.
        :attr:`info` describes the grabbed frame at once. Returns False at the end of the
        stream or if its publisher died (:attr:`last_error` says which).
        """
        feed = self._feed
        if feed is None:
            self.last_error = StreamEnded("this reader was released")
            return False
        self._drop_grab()
        try:
            view, info = self._acquire(feed, self.timeout)
        except FramebusError as exc:
            self.last_error = exc
            return False
        self._seek_pos = None
        self.info = info
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
            if self._feed is not None:
                self._feed.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames until the stream ends; raises PublisherLost if its publisher dies."""
        while True:
            try:
                yield self.read_frame()
            except StreamEnded:
                return

    # -- cv2.VideoCapture compatibility --------------------------------------------------------

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        if self._feed is None:
            return False
        return self._feed.alive() and not isinstance(self.last_error, PublisherLost)

    def get(self, prop: int) -> float:
        """``CAP_PROP_FRAME_WIDTH``/``HEIGHT``/``FPS``/``POS_FRAMES``/``POS_MSEC``/
        ``FRAME_COUNT``; 0.0 for properties a stream does not have, and for every property
        once released or before anything is open (as cv2: ``get()`` never raises)."""
        feed = self._feed
        if feed is None:
            return 0.0
        info = self.info
        if prop in (_WIDTH, _HEIGHT):
            width, height = (info.width, info.height) if info is not None else feed.size()
            return float(width if prop == _WIDTH else height)
        if prop == _FPS:
            return feed.fps()
        if prop == _POS_FRAMES:
            if self._seek_pos is not None:
                return float(self._seek_pos)
            return float(info.pos + 1) if info else 0.0
        if prop == _POS_MSEC:
            rate = feed.nominal_fps()
            if self._at_end:
                return 0.0  # as cv2 at the end of a file
            if self._seek_pos is not None:
                if self._seek_media is not None:
                    return self._seek_media * 1000
                # cv2 reports the time of the frame before the one a seek goes to
                return max(self._seek_pos - 1, 0) * 1000 / rate if rate else 0.0
            if info is not None and info.media_time is not None:
                return info.media_time * 1000  # the backend's own, as cv2's
            return info.pos * 1000 / rate if info and rate else 0.0
        if prop == _FRAME_COUNT:
            count = feed.frame_count()
            return float(count) if count is not None else -1.0
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        """``CAP_PROP_POS_FRAMES`` / ``CAP_PROP_POS_MSEC``: seek a file (or a finite source that
        can seek); the capture process seeks, and the next frame read comes from the new
        position, for this reader at once and for the stream's other readers after the frames
        they had in the ring. The position is clamped to the source, as cv2 clamps it.

        At the end of a file, too: ``set(CAP_PROP_POS_FRAMES, 0)`` after ``read()`` failed
        plays it again. False for a live stream or a remote one, and for every other property
        (a stream's size, rate or camera settings are not a reader's to change): what cv2
        returns for a property its backend does not support.
        """
        if prop in (_POS_FRAMES, _POS_MSEC) and not math.isfinite(value):
            return False
        if prop == _POS_FRAMES:
            return self._seek(int(value))
        if prop == _POS_MSEC:
            rate = self._feed.nominal_fps() if self._feed is not None else None
            # rounded to the nearest frame, as OpenCV's FFmpeg backend does
            return rate is not None and self._seek(int(value * rate / 1000 + 0.5))
        return False

    def _seek(self, frame: int) -> bool:
        feed = self._feed
        if feed is None:
            return False
        frame = max(frame, 0)
        count = feed.frame_count()
        if count is not None:
            frame = min(frame, count)
        self._drop_grab()
        landing = feed.seek(frame)
        if landing is None:
            return False
        self._seek_pos = frame if landing.pos is None else landing.pos
        self._seek_media = landing.media_time
        self._at_end = False
        return True

    def getBackendName(self) -> str:  # noqa: N802 - cv2's name
        """The backend that reads the source: ``"FRAMEBUS_RTSP"`` (framebus's RTSP client),
        ``"FFMPEG"`` or ``"V4L2"`` (OpenCV's), ``"PYAV"``, ``"TESTPATTERN"``, the
        ``backend_name`` of a user :class:`~framebus.Source` (``"PYTHON"`` by default), or
        ``"ZMQ"`` for a stream of another machine (read directly or relayed); it changes when
        the RTSP client hands a stream over to FFmpeg. Raises StreamEnded once released (cv2
        raises too when nothing is open)."""
        return self._require().backend()

    def open(
        self, name: str, /, *, transform: Transform | None = None, timeout: float | None = None
    ) -> bool:
        """Release, then attach to the stream ``name`` (as :func:`attach`: a local name or a
        ``zmq://`` URL, with the keys and options a remote reader was made with); True if that
        worked (as cv2's ``open()``, an error is not raised: it
        is kept in :attr:`last_error`). ``transform`` and ``timeout`` keep their values unless
        given."""
        transform = transform if transform is not None else self._transform
        timeout = timeout if timeout is not None else self.timeout
        self.release()
        try:
            feed = _open_feed(name, self._remote if name.startswith("zmq://") else {})
        except FramebusError as exc:
            self.last_error = exc
            return False
        self._attach(feed, transform, timeout)
        return True

    def _attach(self, feed: Feed, transform: Transform | None, timeout: float | None) -> None:
        self._feed = feed
        self._transform = transform
        self.timeout = timeout
        self.info = None
        self.last_error = None
        self._seek_pos = None

    def stats(self) -> StreamStats:
        """Stream counters, with this reader's own ``delivered`` and ``skipped``."""
        return self._require().stats()

    def release(self) -> None:
        """Detach (idempotent). The stream goes on for its other readers."""
        self._grabbed = self._retrieved = None
        feed, self._feed = getattr(self, "_feed", None), None
        if feed is not None:
            feed.close()

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


class RemoteReader(StreamReader):
    """A stream exported by another machine, ``zmq://HOST:PORT/NAME``, read with the same API
    as a local one (``framebus[zmq]``).

    Frames arrive in a thread of the reader (one frame on the wire, the newest kept: see
    :mod:`framebus.net.receiver`); JPEG frames are decoded by the read that takes them, into BGR
    (or grey) arrays as a local stream gives. ``info.skipped`` counts frames of the remote
    stream this reader never got; ``stats().state`` is connecting, live, busy, stalled,
    reconnecting, ended or closed; :meth:`net_stats` has the transport's counters (bad
    messages, stale frames, bytes). Keywords are :func:`attach`'s.
    """

    def __init__(
        self,
        url: str,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        **remote: Unpack[RemoteOptions],
    ) -> None:
        from .net.feed import ZmqFeed  # pyzmq is an extra

        super().__init__(ZmqFeed(url, **remote), transform=transform, timeout=timeout)
        self._remote = remote
        self._url = url

    @property
    def url(self) -> str:
        """The URL last opened."""
        return self._url

    def open(
        self, name: str, /, *, transform: Transform | None = None, timeout: float | None = None
    ) -> bool:
        if not super().open(name, transform=transform, timeout=timeout):
            return False
        self._url = name
        return True

    def net_stats(self) -> ReceiverStats:
        """The transport's counters (received, dropped, bad_messages, stale, sessions, ...)."""
        return cast("ZmqFeed", self._require()).net_stats()

    def __enter__(self) -> RemoteReader:
        return self


def attach(
    name: str,
    *,
    transform: Transform | None = None,
    timeout: float | None = None,
    **remote: Unpack[RemoteOptions],
) -> StreamReader:
    """Attach to stream ``name`` of this machine, or to ``zmq://HOST:PORT/NAME`` of another.

    ``timeout``: the default for each read, in seconds (None: wait forever). Local: raises
    StreamNotFound if no live publisher serves ``name``. Remote (``framebus[zmq]``): a
    :class:`RemoteReader`; more keywords: ``connect_timeout`` (seconds to wait for the
    exporter's first answer, default 5), ``curve`` (a key directory: its ``server.key`` and
    ``client.key_secret``) or ``server_key`` (the exporter's public key file) and
    ``client_key`` (this receiver's key pair file), ``max_message`` (bytes). Raises
    StreamNotFound (not exported there), RemoteUnreachable (no answer in time: wrong host,
    closed port), RemoteBusy, RemoteAuthError (CURVE keys refused or missing), KeyFileError.
    """
    if name.startswith("zmq://"):
        return RemoteReader(name, transform=transform, timeout=timeout, **remote)
    feed = _open_feed(name, remote)
    try:
        return StreamReader(feed, transform=transform, timeout=timeout)
    except BaseException:
        feed.close()
        raise


def _open_feed(name: str, remote: RemoteOptions) -> Feed:
    """The feed ``name`` names: ``zmq://`` a remote stream, anything else a local one."""
    if name.startswith("zmq://"):
        from .net.feed import ZmqFeed  # pyzmq is an extra

        return ZmqFeed(name, **remote)
    if remote:
        raise TypeError(f"attach() of a local stream takes no {', '.join(sorted(remote))}")
    ctl = _open_control(name)
    try:
        return RingFeed(ctl)
    except BaseException:
        ctl.close()
        raise


def _open_control(name: str) -> Control:
    """The control segment of the local stream ``name``, whose publisher must be alive."""
    ctl = Control.open(validate_name(name))
    if not ctl.publisher_alive():
        ctl.close()
        raise StreamNotFound(
            f"stream {name!r} was left by a publisher that died (`framebus prune` removes it)"
        )
    return ctl
