"""Which JPEG encoder the web wing uses, measured: ``python -m benchmarks.jpeg_encoders``.

Encodes the same 1280x720 and 1920x1080 test-pattern frames (BGR, quality 80, 4:2:0, as the
web wing encodes) with simplejpeg, PyTurboJPEG (if installed: ``pip install PyTurboJPEG`` and
Debian's ``libturbojpeg0``) and ``cv2.imencode``, and reports per frame: the wall time on one
thread, the wall time per frame with two threads encoding at once (a library that holds the
GIL cannot go faster with two), and the size. Prints a Markdown table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

import framebus
from framebus.sources._open import open_spec

__all__ = ["main"]

Encoder = Callable[[np.ndarray], bytes]
QUALITY = 80


def _encoders() -> dict[str, Encoder]:
    out: dict[str, Encoder] = {}
    try:
        import simplejpeg

        out["simplejpeg 4:2:0"] = lambda f: simplejpeg.encode_jpeg(
            f, quality=QUALITY, colorspace="BGR", colorsubsampling="420"
        )
    except ImportError:
        pass
    try:
        from turbojpeg import TJSAMP_420, TurboJPEG

        tj = TurboJPEG()
        out["PyTurboJPEG 4:2:0"] = lambda f: tj.encode(
            f, quality=QUALITY, jpeg_subsample=TJSAMP_420
        )
    except (ImportError, RuntimeError, OSError):
        pass
    params = [cv2.IMWRITE_JPEG_QUALITY, QUALITY]
    out["cv2.imencode 4:2:0"] = lambda f: cv2.imencode(".jpg", f, params)[1].tobytes()
    return out


def _frames(width: int, height: int, n: int = 8) -> list[np.ndarray]:
    source = open_spec(framebus.TestPattern(width, height, fps=None, frames=n))
    source.open()
    try:
        frames = []
        while (frame := source.read_into(None)) is not None:
            frames.append(frame.copy())
        return frames
    finally:
        source.close()


def _per_frame(encode: Encoder, frames: list[np.ndarray], threads: int, seconds: float) -> float:
    """Wall seconds per encoded frame with ``threads`` threads encoding for ``seconds``."""
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        k = 0
        while time.monotonic() < stop:
            encode(frames[k % len(frames)])
            k += 1
        counts[i] = k

    t0 = time.monotonic()
    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (time.monotonic() - t0) / max(1, sum(counts))


def main() -> None:
    encoders = _encoders()
    print("| encoder | size | ms per frame, 1 thread | ms per frame, 2 threads | KiB |")
    print("| :--- | :--- | ---: | ---: | ---: |")
    for width, height in ((1280, 720), (1920, 1080)):
        frames = _frames(width, height)
        for name, encode in encoders.items():
            for f in frames[:2]:
                encode(f)  # warm up
            one = _per_frame(encode, frames, 1, 2.0)
            two = _per_frame(encode, frames, 2, 2.0)
            kib = np.mean([len(encode(f)) for f in frames]) / 1024
            print(
                f"| {name} | {width}x{height} | {1000 * one:.2f} | {1000 * two:.2f} | {kib:.0f} |"
            )


if __name__ == "__main__":
    main()
