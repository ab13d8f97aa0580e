"""``cv2.VideoCapture`` as a source: FFmpeg for files and URLs, V4L2 for camera indexes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import FrameTooLarge
from ..limits import check_pixels
from ._diagnose import diagnose
from ._ffmpeg import decoder_threads, ffmpeg_options
from .base import Source
from .spec import Media

__all__ = ["OpenCVSource"]


class OpenCVSource(Source):
    """``cv2.VideoCapture`` (FFmpeg for files and URLs, V4L2 for camera indexes)."""

    def __init__(self, media: Media) -> None:
        self.media = media
        self.label = media.label
        self.live = media.is_live
        self._cap: Any = None
        self._count: int | None = None

    def open(self) -> None:
        import cv2

        m = self.media
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(m.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(m.read_timeout * 1000),
        ]
        threads = decoder_threads(m)
        if threads is not None:
            params += [cv2.CAP_PROP_N_THREADS, threads]
        params += list(m.cv2_params)
        if isinstance(m.target, int):
            cap = cv2.VideoCapture(m.target, cv2.CAP_V4L2, params)
        else:
            # process-global and read at open(): safe, the capture process is ours alone
            opts = ffmpeg_options(m)
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(
                f"{k};{v}" for k, v in opts.items()
            )
            cap = cv2.VideoCapture(m.target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise diagnose(m)
        try:  # the decoded-size budget, from what the stream declares, before frames are read
            check_pixels(
                int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                f"{m.label}: its frames",
            )
        except FrameTooLarge:
            cap.release()
            raise
        self._cap = cap
        self.backend_name = str(cap.getBackendName())  # "FFMPEG" or "V4L2": what OpenCV chose
        self.seekable = not self.live
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._count = count if count > 0 and not self.live else None

    @property
    def frame_count(self) -> int | None:
        return self._count

    def seek(self, frame: int) -> int | None:
        import cv2

        if not self.seekable or not self._cap.set(cv2.CAP_PROP_POS_FRAMES, frame):
            return None
        return int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))  # OpenCV clamps to the file

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        # decodes straight into the shared slot when the size is unchanged
        ok, frame = self._cap.read(out) if out is not None else self._cap.read()
        return frame if ok else None

    def frame_media_time(self) -> float | None:
        import cv2

        if self.live:  # a camera's clock: not a position in anything
            return None
        return float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000

    def frame_index(self) -> int | None:
        import cv2

        if self.live:
            return None
        return int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1  # what cv2 says, after a seek too

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
