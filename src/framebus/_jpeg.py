"""JPEG in one place (no I/O): encoding for every wing that sends JPEG (the web, ZeroMQ, pipes,
disk) and decoding for every wing that receives it (a ``zmq://`` receiver, a pipe).

simplejpeg (libjpeg-turbo; releases the GIL) when installed (``framebus[web]``,
``framebus[zmq]``), else OpenCV's ``cv2.imencode``/``imdecode`` (also release the GIL; always
there). Encoding uses 4:2:0 chroma subsampling, as cameras and browsers do: simplejpeg's
default 4:4:4 costs about twice the time for a difference nobody sees in a live view.
Decoding gives OpenCV's pixels exactly (the accurate IDCT), whichever library decodes; a caller
reads the JPEG's own frame header first (:func:`size`), to hold a claimed size against the
decoded-size budget before anything is allocated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._frames import as_bgr8

__all__ = ["decode", "encode", "encoder_name", "size"]

try:
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - the web and zmq extras bring it
    _simplejpeg = None


def encoder_name() -> str:
    """``"simplejpeg"`` or ``"opencv"``: which library encodes and decodes."""
    return "simplejpeg" if _simplejpeg is not None else "opencv"


def encode(frame: np.ndarray, quality: int = 80) -> bytes:
    """``frame`` (BGR, BGRA or grey; 8 or 16 bits) as JPEG bytes; ValueError for others."""
    img = as_bgr8(frame)
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


def size(data: Any) -> tuple[int, int] | None:
    """(width, height) from the JPEG's own frame header, read without decoding; None where only
    OpenCV is there (it has no header reader: callers walk the markers themselves).
    ValueError if the header cannot be read."""
    if _simplejpeg is None:  # pragma: no cover - the extras bring simplejpeg
        return None
    height, width, _, _ = _simplejpeg.decode_jpeg_header(data)
    return int(width), int(height)


def decode(data: Any, *, grey: bool = False) -> np.ndarray:
    """One whole JPEG (bytes or a buffer) as a BGR ``HxWx3`` or grey ``HxW`` array.
    ValueError if it does not decode. Check its :func:`size` against a budget first."""
    if _simplejpeg is not None:
        # the accurate IDCT: the same pixels as cv2.imdecode (both libjpeg-turbo), ~4% slower
        # than fastdct (1.48 vs 1.42 ms for 640x480 here)
        img = _simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "BGR", fastdct=False)
    else:  # pragma: no cover - the extras bring simplejpeg
        import cv2

        flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if img is None:
            raise ValueError("not a JPEG OpenCV can decode")
    img = np.asarray(img)
    if grey and img.ndim == 3:
        img = img[:, :, 0]
    return img
