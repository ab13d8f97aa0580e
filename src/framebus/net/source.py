"""A remote stream as a :class:`~framebus.Source`: the relay's (``framebus serve
cam=zmq://host:5555/cam``, ``VideoCapture("zmq://...")``), re-published into this machine's
shared memory."""

from __future__ import annotations

import numpy as np

from ..errors import ReadTimeout, RemoteUnreachable, SourceNotFound, StreamEnded, StreamNotFound
from ..sources.base import Source
from ..sources.spec import Remote
from .receiver import BACKEND, Receiver, receiver_for

__all__ = ["ZmqSource"]


class ZmqSource(Source):
    """A remote stream as a source: the relay's (``framebus serve cam=zmq://host:5555/cam``).

    ``open()`` connects and waits for the exporter's first answer (its errors: SourceNotFound
    for a name it does not export, RemoteAuthError, RemoteUnreachable). ``read()`` returns
    the newest frame (decoded), skipping bad ones, stamped with its remote capture time
    (:meth:`frame_time_ns`); None once the remote stream ended; it
    raises RemoteUnreachable after ``read_timeout`` s without a frame, so the publisher's
    supervisor reconnects with backoff (the stream shows ``reconnecting``).
    """

    backend_name = BACKEND

    live = True

    def __init__(self, spec: Remote) -> None:
        self.spec = spec
        self._receiver: Receiver | None = None
        self._stamp = 0

    def open(self) -> None:
        receiver = receiver_for(self.spec)
        self._receiver = receiver
        receiver.start()
        try:
            receiver.wait_ready(self.spec.open_timeout)
        except StreamNotFound as exc:
            raise SourceNotFound(str(exc)) from None

    def read(self) -> np.ndarray | None:
        receiver = self._receiver
        assert receiver is not None, "open() first"
        try:
            frame, msg = receiver.take(self.spec.read_timeout)
        except StreamEnded:
            return None
        except ReadTimeout:
            raise RemoteUnreachable(
                f"no frame from {self.spec.url} for {self.spec.read_timeout:g} s "
                f"(state {receiver.state()})"
            ) from None
        self._stamp = msg.header.capture_ns
        return frame

    def frame_time_ns(self) -> int | None:
        """The remote capture time: ages in the relay's ring count from the camera (on the
        camera host's clock: keep the hosts' clocks synchronised, NTP or PTP)."""
        return self._stamp or None

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
