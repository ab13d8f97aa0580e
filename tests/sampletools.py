"""Test videos for the sampling tests (tests/sinks/test_sample.py, tests/cli/test_sample_cli.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
