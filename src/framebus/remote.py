"""Reading a stream of another machine: ``framebus.attach("zmq://HOST:PORT/NAME")``.

:func:`attach` is the public ``framebus.attach``: a ``zmq://`` URL gives a
:class:`RemoteReader`, anything else a local :class:`~framebus.StreamReader`. The transport
(one credit per receiver, validation, liveness) is described in :mod:`framebus.sinks.zmq`
and :mod:`framebus.sources.zmq`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FrameTooLarge, ReadTimeout, StreamEnded, WireFormatError
from .reader import StreamReader, Transform
from .reader import attach as attach_local
from .stats import FrameInfo, StreamStats

if TYPE_CHECKING:
    from .sources.zmq import Receiver, ReceiverStats

__all__ = ["RemoteReader", "attach"]

# cv2.CAP_PROP_* values
_WIDTH, _HEIGHT, _FPS, _POS_FRAMES = 3, 4, 5, 1


class RemoteReader(StreamReader):
    """A stream exported by another machine, read with the local reading API.

    ``read()``/``read_frame(timeout=)`` (ReadTimeout), iteration, ``view()``, ``info``
    (seq, capture timestamp, skipped: frames of the remote stream this reader never got),
    ``get()``, ``stats()`` (``state``: connecting, live, stalled, reconnecting, ended, closed)
    and ``release()`` behave as for a local stream. Frames arrive in a thread of the reader
    (one frame on the wire, the newest kept: see :mod:`framebus.sources.zmq`); JPEG frames are
    decoded by the read that takes them, into BGR (or grey) arrays as a local stream gives.
    :meth:`net_stats` has the transport's counters (bad messages, stale frames, bytes).
    Not thread-safe, like every reader.
    """

    def __init__(
        self,
        url: str,
        *,
        transform: Transform | None = None,
        timeout: float | None = None,
        connect_timeout: float = 5.0,
        curve: str | os.PathLike[str] | None = None,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        max_message: int | None = None,
    ) -> None:
        from .sources.spec import Remote
        from .sources.zmq import receiver_for

        spec = Remote(
            url,
            curve=None if curve is None else os.fspath(curve),
            server_key=None if server_key is None else os.fspath(server_key),
            client_key=None if client_key is None else os.fspath(client_key),
            open_timeout=connect_timeout,
            **({} if max_message is None else {"max_message": max_message}),
        )
        # the local reader's state is absent: every method that used it is overridden here
        self._ctl = None
        self._ring = None
        self._transform = transform
        self.timeout = timeout
        self.info = None
        self.last_error = None
        self._url = url
        self._delivered = 0
        self._skipped = 0
        self._started = time.monotonic()
        self._receiver: Receiver | None = receiver_for(spec)
        try:
            self._receiver.start()
            self._receiver.wait_ready(connect_timeout)
        except BaseException:
            self.release()
            raise

    @property
    def name(self) -> str:
        return self._url.rsplit("/", 1)[1]

    @property
    def url(self) -> str:
        return self._url

    def _require_receiver(self) -> Receiver:
        if self._receiver is None:
            raise StreamEnded("this reader was released")
        return self._receiver

    @contextlib.contextmanager
    def _pinned(self, timeout: float | None) -> Iterator[np.ndarray]:
        receiver = self._require_receiver()
        wait = self.timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise ReadTimeout(f"no new frame from {self._url} within {wait:g} s")
            msg = receiver.get(remaining)
            try:
                frame = _decode(msg)
            except (WireFormatError, FrameTooLarge) as exc:
                receiver.bad(str(exc))  # dropped and counted; wait for the next one
                continue
            break
        header = msg.header
        self._delivered += 1
        self._skipped += msg.skipped
        self.info = FrameInfo(
            header.seq, header.capture_ns / 1e9, header.seq - 1, msg.skipped,
            header.width, header.height,
        )  # fmt: skip
        if frame.flags.writeable:
            frame.flags.writeable = False  # as a local view: read-only
        yield frame

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return self._receiver is not None and self._receiver.state() not in ("ended", "closed")

    def get(self, prop: int) -> float:
        """``CAP_PROP_FRAME_WIDTH``/``HEIGHT`` (of the last frame), ``POS_FRAMES``; 0.0 for
        the rest (the remote frame rate is not known here)."""
        self._require_receiver()
        info = self.info
        if prop in (_WIDTH, _HEIGHT):
            if info is None:
                return 0.0
            return float(info.width if prop == _WIDTH else info.height)
        if prop == _POS_FRAMES:
            return float(info.seq) if info else 0.0
        return 0.0

    def stats(self) -> StreamStats:
        """This reader's view of the remote stream: ``state``, ``captured`` (the newest remote
        seq received), this reader's ``delivered``/``skipped``, the receive rate as
        ``capture_fps``, ``reconnects`` and the last transport error."""
        receiver = self._require_receiver()
        net = receiver.stats()
        info = self.info
        elapsed = max(1e-9, time.monotonic() - self._started)
        return StreamStats(
            name=self.name,
            state=net.state,
            mode="latest",
            source=self._url,
            captured=info.seq if info else 0,
            delivered=self._delivered,
            skipped=self._skipped,
            readers=1,
            capture_fps=net.received / elapsed,
            source_fps=None,
            width=info.width if info else 0,
            height=info.height if info else 0,
            last_frame_age=info.age if info else None,
            reconnects=net.reconnects,
            error=net.last_error,
            publisher_pid=0,
        )

    def net_stats(self) -> ReceiverStats:
        """The transport's counters (received, dropped, bad_messages, stale, sessions, ...)."""
        return self._require_receiver().stats()

    def release(self) -> None:
        """Disconnect (idempotent): the thread, sockets and context are gone when it returns."""
        receiver, self._receiver = getattr(self, "_receiver", None), None
        if receiver is not None:
            receiver.close()

    def __enter__(self) -> RemoteReader:
        return self


def _decode(msg: Any) -> np.ndarray:
    from .sources.zmq import decode

    return decode(msg)


def attach(
    name: str,
    *,
    transform: Transform | None = None,
    timeout: float | None = None,
    **remote: Any,
) -> StreamReader:
    """Attach to stream ``name`` of this machine, or to ``zmq://HOST:PORT/NAME`` of another.

    ``timeout``: the default for each read, in seconds (None: wait forever). Local: raises
    StreamNotFound if no live publisher serves ``name``. Remote (``framebus[zmq]``): a
    :class:`RemoteReader`; more keywords: ``connect_timeout`` (seconds to wait for the
    exporter's first answer, default 5), ``curve`` (a key directory: its ``server.key`` and
    ``client.key_secret``) or ``server_key`` (the exporter's public key file) and
    ``client_key`` (this receiver's key pair file), ``max_message`` (bytes). Raises
    StreamNotFound (not exported there), RemoteUnreachable (no answer in time: wrong host,
    closed port), RemoteAuthError (CURVE keys refused or missing), KeyFileError.
    """
    if name.startswith("zmq://"):
        return RemoteReader(name, transform=transform, timeout=timeout, **remote)
    if remote:
        raise TypeError(f"attach() of a local stream takes no {', '.join(sorted(remote))}")
    return attach_local(name, transform=transform, timeout=timeout)
