"""framebus's own consumers: ``VideoCapture`` (copy or zero-copy ``view()``, on a test pattern
or a real stream) and ``publish()`` + ``attach()`` from another process."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

import framebus

from ..common import STREAM_PREFIX, Frame, Params, capture_pids
from .base import Consumer, Handle, Peer, _BarcodeConsumer, _url

__all__ = ["FramebusAttachPeer", "FramebusPeer"]


def _pattern(params: Params, pattern: str = "bars") -> framebus.TestPattern:
    kind: Literal["bars", "counter"] = "counter" if pattern == "counter" else "bars"
    return framebus.TestPattern(params.width, params.height, params.fps, pattern=kind)


class _FramebusStreamConsumer(_BarcodeConsumer):
    def __init__(self, cap: framebus.StreamReader) -> None:
        super().__init__()
        self.cap = cap

    def read_frame(self, timeout: float) -> np.ndarray | None:
        cap = self.cap
        cap.timeout = timeout
        ok, frame = cap.read()
        if not ok:
            if isinstance(cap.last_error, framebus.ReadTimeout):
                return None
            raise cap.last_error or RuntimeError("read() failed without an error")
        return frame

    def pids(self) -> dict[str, int]:
        return capture_pids()


# --- framebus ---------------------------------------------------------------------------------


class _ReaderConsumer(Consumer):
    def __init__(self, cap: framebus.StreamReader, view: bool) -> None:
        self.cap = cap
        self.view = view
        self.last: np.ndarray | None = None  # held like a user holds the frame being processed

    def get(self, timeout: float) -> Frame | None:
        cap = self.cap
        if self.view:
            try:
                with cap.view(timeout) as f:
                    f[0, 0, 0]  # touch the shared pixels: zero-copy, but read
            except framebus.ReadTimeout:
                return None
        else:
            cap.timeout = timeout
            ok, frame = cap.read()
            if not ok:
                if isinstance(cap.last_error, framebus.ReadTimeout):
                    return None
                raise cap.last_error or RuntimeError("read() failed without an error")
            self.last = frame
        info = cap.info
        assert info is not None
        return Frame(info.seq, info.timestamp, info.skipped)

    def pids(self) -> dict[str, int]:
        return capture_pids()


@dataclass(frozen=True)
class FramebusPeer(Peer):
    """``framebus.VideoCapture(TestPattern)`` in the consumer process (capture in a child); on a
    real stream, ``framebus.VideoCapture(url)`` (``backend="av"``: through ``Media``)."""

    key: str = "framebus"
    label: str = "framebus VideoCapture"
    scenarios: frozenset[str] = frozenset({"age", "throughput", "idle", "memory", "rtsp"})
    view: bool = False
    pattern: str = "bars"
    backend: Literal["auto", "opencv", "av"] = "auto"

    def _source(self, url: str) -> str | framebus.Media:
        return url if self.backend == "auto" else framebus.Media(url, backend=self.backend)

    def settings(self, params: Params) -> str:
        if _url(params) is not None:
            how = {
                "auto": "`framebus.VideoCapture(url)` (default backend for `rtsp://`: "
                "framebus's RTSP client, RTP over TCP, a frame decoded when its last packet "
                "arrives, PyAV's H.264 decoder with 1 slice thread and `low_delay`)",
                "opencv": '`framebus.VideoCapture(framebus.Media(url, backend="opencv"))` '
                "(OpenCV/FFmpeg with framebus's live defaults: 1 decoder thread, RTSP over TCP, "
                "`fflags=nobuffer`, `flags=low_delay`)",
                "av": '`framebus.VideoCapture(framebus.Media(url, backend="av"))` '
                "(PyAV's RTSP demuxer, framebus's live defaults: `thread_type=SLICE`, 1 thread, "
                "TCP, `nobuffer`, `low_delay`)",
            }[self.backend]
            return (
                f"{how} in the consumer process, capture in its own process, mode=latest, "
                "slots=4; `ok, frame = cap.read()` (a copy)"
            )
        how = "`with cap.view() as f: f[0,0,0]` (zero-copy)" if self.view else "`cap.read()` (copy)"
        pattern = ', pattern="counter"' if self.pattern == "counter" else ""
        return (
            f"`framebus.VideoCapture(TestPattern({params.width}, {params.height}, "
            f"{params.fps}{pattern}))` in the consumer process, capture in its own process, "
            f"mode=latest, slots=4; {how}"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        name = f"{STREAM_PREFIX}vc-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        if (url := _url(params)) is not None:
            with framebus.VideoCapture(self._source(url), name=name) as cap:
                yield _FramebusStreamConsumer(cap)
            return
        with framebus.VideoCapture(_pattern(params, self.pattern), name=name) as cap:
            yield _ReaderConsumer(cap, self.view)


@dataclass(frozen=True)
class FramebusAttachPeer(Peer):
    """``framebus.publish()`` in the benchmark process, ``framebus.attach()`` in the consumer."""

    key: str = "framebus-attach"
    label: str = "framebus attach (other process)"
    scenarios: frozenset[str] = frozenset({"age", "idle", "rtsp"})

    def settings(self, params: Params) -> str:
        source = (
            "url"
            if _url(params) is not None
            else f"TestPattern({params.width}, {params.height}, {params.fps})"
        )
        return (
            f"`framebus.publish(name, {source})` in the benchmark process (capture in its "
            "child), `framebus.attach(name)` + `read()` in a spawned consumer process"
        )

    @contextlib.contextmanager
    def producer(self, params: Params) -> Iterator[Handle]:
        name = f"{STREAM_PREFIX}pub-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        url = _url(params)
        with framebus.publish(name, url if url is not None else _pattern(params)):
            yield Handle({"name": name, "stream": url is not None}, capture_pids())

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        with framebus.attach(handle.data["name"]) as cap:
            if handle.data.get("stream"):
                yield _FramebusStreamConsumer(cap)
            else:
                yield _ReaderConsumer(cap, view=False)
