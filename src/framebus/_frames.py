"""Frames between numpy and codecs (no I/O): decoded PyAV frames as BGR arrays, for every part
that decodes video itself (the RTSP backend, file sampling), and any frame as the 8-bit BGR or
the I420 picture an encoder takes (JPEG, H.264).

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

__all__ = ["as_bgr8", "bgr24", "i420"]

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


def as_bgr8(frame: np.ndarray) -> np.ndarray:
    """An 8-bit BGR or grey (H x W x 1) view or copy of ``frame`` (grey, BGR or BGRA; 8 or 16
    bits); ValueError for any other."""
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)  # 16-bit cameras: the top byte is the picture
    elif frame.dtype != np.uint8:
        raise ValueError(f"an encoder needs 8-bit or 16-bit frames, not {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"an encoder needs grey, BGR or BGRA frames, not shape {frame.shape}")
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def i420(frame: np.ndarray) -> np.ndarray:
    """``frame`` (as :func:`as_bgr8` takes) as I420 (planar 4:2:0, BT.601 limited range, the
    (H * 3 / 2) x W array PyAV's ``yuv420p`` takes). 4:2:0 needs even sizes: an odd last row or
    column is left out. ValueError for a frame under 2 x 2."""
    import cv2

    img = as_bgr8(frame)
    h, w = img.shape[0] & ~1, img.shape[1] & ~1
    if not h or not w:
        raise ValueError(f"a frame of {img.shape[1]}x{img.shape[0]} is too small for 4:2:0")
    img = img[:h, :w]
    if img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif not img.flags.c_contiguous:
        img = np.ascontiguousarray(img)
    out: np.ndarray = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
    return out
