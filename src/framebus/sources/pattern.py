"""The test pattern source: a camera for demos and tests, no hardware needed."""

from __future__ import annotations

import time

import numpy as np

from .base import Source
from .spec import TestPattern

__all__ = ["PatternSource"]


class PatternSource(Source):
    """Produces :class:`TestPattern` frames, paced at its fps."""

    backend_name = "TESTPATTERN"

    _BARS = np.array(
        [
            [255, 255, 255],
            [0, 255, 255],
            [255, 255, 0],
            [0, 255, 0],
            [255, 0, 255],
            [0, 0, 255],
            [255, 0, 0],
            [16, 16, 16],
        ],
        dtype=np.uint8,
    )

    def __init__(self, pattern: TestPattern) -> None:
        self.pattern = pattern
        self.fps = pattern.fps
        self.live = pattern.frames is None
        self.seekable = not self.live  # a camera cannot seek; a finite pattern can
        self._n = 0
        self._t0 = 0.0
        w, h = pattern.width, pattern.height
        self._period = max(8, w // 2)
        if pattern.pattern == "bars":
            # the bars twice over: frame k is a window of this strip, so moving costs one copy
            cols = np.arange(w + self._period) % self._period * 8 // self._period
            self._strip = np.ascontiguousarray(
                np.broadcast_to(self._BARS[cols], (h, w + self._period, 3))
            )

    @property
    def frame_count(self) -> int | None:
        return self.pattern.frames

    def open(self) -> None:
        self._t0 = time.monotonic()

    def seek(self, frame: int) -> int | None:
        if not self.seekable:
            return None
        assert self.pattern.frames is not None
        self._n = min(max(frame, 0), self.pattern.frames)  # clamped, as OpenCV clamps files
        if self.pattern.fps:
            self._t0 = time.monotonic() - self._n / self.pattern.fps
        return self._n

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        p = self.pattern
        if p.frames is not None and self._n >= p.frames:
            return None
        if p.fps:
            delay = self._t0 + self._n / p.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1 / p.fps:  # fell behind (a pause): a camera does not burst, resync
                self._t0 -= delay
        shape = (p.height, p.width, 3)
        if out is None or out.shape != shape or out.dtype != np.uint8:
            out = np.empty(shape, np.uint8)
        if p.pattern == "counter":
            out.fill(self._n % 256)
        else:
            off = (self._n * 4) % self._period
            np.copyto(out, self._strip[:, off : off + p.width])
            _draw_label(out, f"framebus {self._n}")
        self._n += 1
        return out


def _draw_label(img: np.ndarray, text: str) -> None:
    import cv2

    scale = max(0.5, img.shape[0] / 480)
    org = (int(10 * scale), int(40 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), int(5 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), int(2 * scale))
