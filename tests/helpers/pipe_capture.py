"""Reads framebus.VideoCapture("-") (this process's stdin) to the end; saves the frames.

Usage: pipe_capture.py OUT.npy — prints one JSON line: frame count, source fps, last error.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import framebus


def main() -> int:
    frames = []
    try:
        cap = framebus.VideoCapture("-", timeout=20)
    except framebus.FramebusError as exc:
        print(json.dumps({"open_error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    with cap:
        fps = cap.get(5)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        error = cap.last_error
    if frames:
        np.save(sys.argv[1], np.stack(frames))
    print(json.dumps({
        "frames": len(frames),
        "fps": fps,
        "error": f"{type(error).__name__}: {error}" if error is not None else None,
    }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
