"""The JPEG sink: one encoder per stream and variant, off the event loop and without the GIL.
The codec itself (simplejpeg, else OpenCV; 4:2:0) is :mod:`framebus._jpeg`, shared by every
wing that sends or receives JPEG.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framebus import FrameInfo, _jpeg

from .base import FrameSink, Pick

__all__ = ["MAX_WIDTH", "MIN_WIDTH", "JpegSink", "encode_jpeg", "encoder_name", "resize"]

MIN_WIDTH = 16
MAX_WIDTH = 8192


def encoder_name() -> str:
    """``"simplejpeg"`` or ``"opencv"``: which library encodes."""
    return _jpeg.encoder_name()


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """``frame`` (BGR, BGRA or grey; 8 or 16 bits) as JPEG bytes."""
    return _jpeg.encode(frame, quality)


def resize(frame: np.ndarray, width: int) -> np.ndarray:
    """``frame`` scaled to ``width`` pixels wide, keeping its aspect (never enlarged)."""
    h, w = frame.shape[:2]
    if width >= w:
        return frame
    import cv2

    height = max(1, round(h * width / w))
    out: Any = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(out)


class JpegSink(FrameSink[bytes]):
    """One JPEG encoder for one stream and one variant (``width``, ``quality``).

    Buffering: :class:`FrameSink`'s — each consumer holds the newest JPEG only; a slow one
    skips frames. The encode runs in the sink's worker thread (never on an event loop), once
    per frame whatever the number of consumers, and only while someone is subscribed.
    """

    def __init__(
        self,
        name: str,
        *,
        width: int | None = None,
        quality: int = 80,
        pick: Pick | None = None,
    ) -> None:
        if width is not None and not MIN_WIDTH <= width <= MAX_WIDTH:
            raise ValueError(f"width must be {MIN_WIDTH}..{MAX_WIDTH}, not {width}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        self.width = width
        self.quality = quality
        super().__init__(name, pick=pick)

    def encode(self, frame: np.ndarray, info: FrameInfo) -> bytes:
        if self.width is not None:
            frame = resize(frame, self.width)
        return encode_jpeg(frame, self.quality)
