"""The feed of a stream of another machine: ``zmq://HOST:PORT/NAME``, over ZeroMQ.

A :class:`~framebus.net.receiver.Receiver` keeps one frame in flight and the newest one received
waiting (see its module for who drops what); :meth:`ZmqFeed.acquire` takes that frame and
decodes it (JPEG) in the reading thread, only for the frames the reader takes.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import numpy as np

from ..feeds import Landing, RemoteOptions
from ..sources.spec import Remote
from ..stats import FrameInfo, StreamStats
from .receiver import BACKEND, Receiver, ReceiverStats, receiver_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ZmqFeed"]


class ZmqFeed:
    """Frames of the stream at ``url``, as the exporter sends them; connected when built.

    Raises StreamNotFound, RemoteUnreachable, RemoteBusy, RemoteAuthError or KeyFileError."""

    def __init__(self, url: str, **options: Unpack[RemoteOptions]) -> None:
        curve = options.get("curve")
        server_key = options.get("server_key")
        client_key = options.get("client_key")
        max_message = options.get("max_message")
        connect_timeout = options.get("connect_timeout", 5.0)
        spec = Remote(
            url,
            curve=None if curve is None else os.fspath(curve),
            server_key=None if server_key is None else os.fspath(server_key),
            client_key=None if client_key is None else os.fspath(client_key),
            open_timeout=connect_timeout,
            **({} if max_message is None else {"max_message": max_message}),
        )
        self.url = url
        self._delivered = 0
        self._skipped = 0
        self._last: FrameInfo | None = None
        self._started = time.monotonic()
        self.receiver: Receiver = receiver_for(spec)
        try:
            self.receiver.start()
            self.receiver.wait_ready(connect_timeout)
        except BaseException:
            self.receiver.close()
            raise

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def acquire(self, timeout: float | None) -> tuple[np.ndarray, FrameInfo]:
        frame, msg = self.receiver.take(timeout)
        header = msg.header
        self._delivered += 1
        self._skipped += msg.skipped
        if frame.flags.writeable:
            frame.flags.writeable = False  # as a ring's view: read-only
        info = FrameInfo(
            header.seq, header.capture_ns / 1e9, header.seq - 1, msg.skipped,
            header.width, header.height,
        )  # fmt: skip
        self._last = info
        return frame, info

    def release(self) -> None:
        """Nothing to give back: the decoded frame is the reader's own."""

    def wait(self, timeout: float) -> bool:
        return self.receiver.wait_frame(timeout)

    def counters(self) -> tuple[int, int]:
        return self._delivered, self._skipped

    def alive(self) -> bool:
        return self.receiver.state() not in ("ended", "closed")

    def backend(self) -> str:
        return BACKEND

    def fps(self) -> float:
        described = self.receiver.description()
        if described is None:
            return 0.0
        return described.source_fps or described.fps

    def nominal_fps(self) -> float | None:
        described = self.receiver.description()
        return described.source_fps if described is not None else None

    def frame_count(self) -> int | None:
        """None: a remote reader gets the newest frames, never a file's every frame."""
        return None

    def size(self) -> tuple[int, int]:
        if self._last is not None:
            return self._last.width, self._last.height
        described = self.receiver.description()
        return (described.width, described.height) if described is not None else (0, 0)

    def seek(self, frame: int) -> Landing | None:
        """None: a remote stream is read live, at the exporter's newest frame."""
        return None

    def stats(self) -> StreamStats:
        """This reader's view of the remote stream: ``state``, ``captured`` (the newest remote
        seq received), this reader's ``delivered``/``skipped``, the receive rate as
        ``capture_fps``, ``reconnects`` and the last transport error."""
        net = self.receiver.stats()
        info = self._last
        described = self.receiver.description()
        elapsed = max(1e-9, time.monotonic() - self._started)
        width, height = self.size()
        return StreamStats(
            name=self.name,
            state=net.state,
            mode="latest",
            source=self.url,
            captured=info.seq if info else 0,
            delivered=self._delivered,
            skipped=self._skipped,
            readers=1,
            capture_fps=net.received / elapsed,
            source_fps=described.source_fps if described is not None else None,
            width=width,
            height=height,
            last_frame_age=info.age if info else None,
            reconnects=net.reconnects,
            error=net.last_error,
            publisher_pid=0,
            clock="local",  # (the capture host's: the wire carries no clock of the camera's)
            clock_offset=None,
            clock_jitter=None,
        )

    def net_stats(self) -> ReceiverStats:
        return self.receiver.stats()

    def close(self) -> None:
        """The thread, sockets and context are gone when it returns (idempotent)."""
        self.receiver.close()
