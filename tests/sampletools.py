"""Test videos, and OpenCV's decode of them as the reference (sampling, pipes, cv2 API)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np


def make_h264(path: Path, frames: int, size: str = "320x240") -> Path:
    """testsrc2 at 25 fps, made by ffmpeg: H.264 with B-frames (presentation order differs
    from decoding order) and a keyframe every 30 frames."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
         "-g", "30", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def opencv_frames(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as ``cv2.VideoCapture.read()`` gives them, in order."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (read := cap.read())[0]:
        frames.append(read[1])
    cap.release()
    return frames
