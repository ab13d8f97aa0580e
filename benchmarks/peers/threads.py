"""Thread readers in the consumer process: imutils ``VideoStream``, a thread that overwrites the
last frame (a synthetic producer thread, or ``cv2.VideoCapture`` on a real stream)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..common import Frame, Params
from .base import Consumer, Handle, Peer, _BarcodeConsumer, _produce, _url
from .decoders import _open_cv2

__all__ = ["LatestThreadPeer"]


# --- imutils VideoStream: a thread that keeps the last frame ------------------------------------


class _LatestThreadConsumer(Consumer):
    def __init__(self, params: Params) -> None:
        self.item: tuple[int, float, np.ndarray] | None = None
        self.new = threading.Event()
        self.stop = threading.Event()
        self.last_seq = 0
        self.last: np.ndarray | None = None
        self.thread = threading.Thread(
            target=_produce, args=(params, self._emit, None, self.stop), daemon=True
        )
        self.thread.start()

    def _emit(self, seq: int, ts: float, frame: np.ndarray) -> None:
        self.item = (seq, ts, frame)  # imutils: self.frame = frame (overwrite)
        self.new.set()

    def get(self, timeout: float) -> Frame | None:
        deadline = time.perf_counter() + timeout
        while True:
            if not self.new.wait(max(0.0, deadline - time.perf_counter())):
                return None
            self.new.clear()
            item = self.item
            if item is not None and item[0] != self.last_seq:  # never the same frame twice
                seq, ts, self.last = item
                self.last_seq = seq
                return Frame(seq, ts)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)


class _CvThreadConsumer(_BarcodeConsumer):
    """imutils ``VideoStream`` around ``cv2.VideoCapture``: a thread reads and overwrites the
    last frame; ``read_frame`` waits for a frame it has not returned yet."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.cap = _open_cv2(url, threads=1)
        self.item: tuple[int, np.ndarray] | None = None
        self.new = threading.Event()
        self.stop = threading.Event()
        self.last_n = 0
        self.thread = threading.Thread(target=self._run, name="bench-cv2-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            ok, frame = self.cap.read()
            if not ok:
                time.sleep(0.01)  # a broken stream fails at once: do not spin
                continue
            n += 1
            self.item = (n, frame)
            self.new.set()

    def read_frame(self, timeout: float) -> np.ndarray | None:
        deadline = time.perf_counter() + timeout
        while True:
            if not self.new.wait(max(0.0, deadline - time.perf_counter())):
                return None
            self.new.clear()
            item = self.item
            if item is not None and item[0] != self.last_n:  # never the same frame twice
                self.last_n = item[0]
                return item[1]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10.0)
        if not self.thread.is_alive():  # never release under a read in progress
            self.cap.release()


@dataclass(frozen=True)
class LatestThreadPeer(Peer):
    """imutils ``VideoStream``: a thread overwrites ``self.frame``; plus a new-frame event. On a
    real stream the thread reads ``cv2.VideoCapture`` with one decoder thread."""

    key: str = "latest-thread"
    label: str = "thread + last frame (imutils)"
    scenarios: frozenset[str] = frozenset({"age", "throughput", "idle", "rtsp"})

    def settings(self, params: Params) -> str:
        if _url(params) is not None:
            return (
                "a thread in the consumer process loops `cv2.VideoCapture(url, cv2.CAP_FFMPEG, "
                "[cv2.CAP_PROP_N_THREADS, 1]).read()` and overwrites `self.frame` (imutils "
                "`VideoStream`), plus a `threading.Event` new-frame signal so no frame is "
                "returned twice; `read()` hands out a reference (no copy)"
            )
        return (
            "a producer thread in the consumer process overwrites `self.frame` (imutils "
            "`VideoStream`), plus a `threading.Event` new-frame signal so no frame is returned "
            "twice"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        url = _url(params)
        c = _CvThreadConsumer(url) if url is not None else _LatestThreadConsumer(params)
        try:
            yield c
        finally:
            c.close()
