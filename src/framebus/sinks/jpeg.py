"""JPEG encoding of frames, off the event loop and without the GIL, and the JPEG sink.

The encoder is simplejpeg (libjpeg-turbo, releases the GIL) when installed (``framebus[web]``),
else OpenCV's ``cv2.imencode`` (also releases the GIL; always there). Both use 4:2:0 chroma
subsampling, as cameras and browsers do: simplejpeg's default 4:4:4 costs about twice the time
for a difference nobody sees in a live view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from framebus import FrameInfo

from .base import FrameSink, Pick

__all__ = ["MAX_WIDTH", "MIN_WIDTH", "JpegSink", "encode_jpeg", "encoder_name", "resize"]

MIN_WIDTH = 16
MAX_WIDTH = 8192

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - the web extra brings it
    _simplejpeg = None


def encoder_name() -> str:
    """``"simplejpeg"`` or ``"opencv"``: which library encodes."""
    return "simplejpeg" if _simplejpeg is not None else "opencv"


def _as_bgr8(frame: np.ndarray) -> np.ndarray:
    """An 8-bit BGR or grey (H x W x 1) view or copy of ``frame``; ValueError if it has none."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)  # 16-bit cameras: the top byte is the picture
    elif frame.dtype != np.uint8:
        raise ValueError(f"JPEG needs 8-bit or 16-bit frames, not {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"JPEG needs grey, BGR or BGRA frames, not shape {frame.shape}")
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """``frame`` (BGR, BGRA or grey; 8 or 16 bits) as JPEG bytes."""
    img = _as_bgr8(frame)
    if _simplejpeg is not None:
        grey = img.shape[2] == 1
        data: bytes = _simplejpeg.encode_jpeg(
            img,
            quality=quality,
            colorspace="GRAY" if grey else "BGR",
            colorsubsampling="Gray" if grey else "420",
            fastdct=True,
        )
        return data
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit image
        raise ValueError("OpenCV could not encode the frame")
    return bytes(buf)


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
