"""Decoded PyAV frames as BGR arrays, for every part that decodes video itself (the RTSP
backend, file sampling): no I/O.

swscale on one thread with a context kept from frame to frame, one per thread (PyAV's
``to_ndarray("bgr24")`` makes a new context, with slice threads of its own, for every frame:
several times the CPU for the same bytes; ``cv2.cvtColor`` from I420 took 0.94 ms of CPU per
720p frame against 0.62 ms). The bytes are those ``cv2.VideoCapture`` gives: its FFmpeg
backend converts with swscale too.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .limits import check_pixels

__all__ = ["bgr24"]

_converters = threading.local()


def bgr24(frame: Any) -> np.ndarray:
    """``frame`` converted to BGR: an (h, w, 3) uint8 view of the converted frame's memory
    (rows may be padded: not always C-contiguous; the view keeps that memory alive).
    FrameTooLarge for a frame over the decoded-size budget (a stream whose size changed
    after it was checked: the conversion would triple it)."""
    check_pixels(frame.width, frame.height, "a decoded video frame")
    reformatter = getattr(_converters, "reformatter", None)
    if reformatter is None:
        import av.video.reformatter

        reformatter = _converters.reformatter = av.video.reformatter.VideoReformatter()
    bgr = reformatter.reformat(frame, format="bgr24", threads=1)
    plane = bgr.planes[0]
    height, width = bgr.height, bgr.width
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[:height, : width * 3].reshape(height, width, 3)
