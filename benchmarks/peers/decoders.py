"""Plain decode loops on a real stream, in the consumer process (a FIFO of decoded frames):
``cv2.VideoCapture`` and PyAV."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common import Params
from .base import Consumer, Handle, Peer, _BarcodeConsumer, _url

__all__ = ["PYAV_OPTIONS", "OpenCVPeer", "PyAVPeer"]


# --- plain decoders reading the stream in the consumer process (FIFO) --------------------------


def _open_cv2(url: str, threads: int | None) -> Any:
    import cv2

    if threads is None:
        cap = cv2.VideoCapture(url)
    else:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not cap.isOpened():
        cap.release()
        raise RuntimeError(f"cv2.VideoCapture could not open {url}")
    return cap


class _OpenCVConsumer(_BarcodeConsumer):
    def __init__(self, cap: Any) -> None:
        super().__init__()
        self.cap = cap

    def read_frame(self, timeout: float) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok:
            time.sleep(0.01)  # a broken stream fails at once: do not spin
            return None
        return frame  # type: ignore[no-any-return]


@dataclass(frozen=True)
class OpenCVPeer(Peer):
    """``cv2.VideoCapture(url)``, read in the consumer's loop: a FIFO of decoded frames."""

    key: str = "cv2"
    label: str = "cv2.VideoCapture default"
    scenarios: frozenset[str] = frozenset({"rtsp"})
    threads: int | None = None

    def settings(self, params: Params) -> str:
        opened = (
            "`cv2.VideoCapture(url)`"
            if self.threads is None
            else "`cv2.VideoCapture(url, cv2.CAP_FFMPEG, "
            f"[cv2.CAP_PROP_N_THREADS, {self.threads}])`"
        )
        return (
            f"{opened}, OpenCV's default FFmpeg options (`OPENCV_FFMPEG_CAPTURE_OPTIONS` "
            "unset), `ok, frame = cap.read()` in the consumer's loop"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        url = _url(params)
        assert url is not None, "a peer of real streams only"
        cap = _open_cv2(url, self.threads)
        try:
            yield _OpenCVConsumer(cap)
        finally:
            cap.release()


PYAV_OPTIONS = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}


class _PyAVConsumer(_BarcodeConsumer):
    def __init__(self, frames: Iterator[Any]) -> None:
        super().__init__()
        self.frames = frames

    def read_frame(self, timeout: float) -> np.ndarray | None:
        try:
            frame = next(self.frames)
        except StopIteration:
            time.sleep(0.01)
            return None
        return frame.to_ndarray(format="bgr24")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PyAVPeer(Peer):
    """A plain PyAV decode loop with low-latency options, in the consumer process."""

    key: str = "pyav"
    label: str = "PyAV loop (SLICE, low delay)"
    scenarios: frozenset[str] = frozenset({"rtsp"})

    def settings(self, params: Params) -> str:
        opts = ", ".join(f'"{k}": "{v}"' for k, v in PYAV_OPTIONS.items())
        return (
            f'`av.open(url, options={{{opts}}})`, `stream.thread_type = "SLICE"` (thread '
            'count left to FFmpeg), `frame.to_ndarray(format="bgr24")` for each frame of '
            "`container.decode(stream)` in the consumer's loop"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        import av

        url = _url(params)
        assert url is not None, "a peer of real streams only"
        container = av.open(url, options=dict(PYAV_OPTIONS))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            yield _PyAVConsumer(iter(container.decode(stream)))
        finally:
            container.close()
