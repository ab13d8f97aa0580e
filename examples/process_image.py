"""Seed 002, ``ABVideoCapture``: a VideoCapture that runs your image algorithm on each frame.

The seed wraps a writer process, a ``Manager().list()`` stack and a generator into an abstract
base class whose subclasses implement ``process_image(image)``. ``framebus.VideoCapture``
already has that hook (and ``transform=`` for a plain function): subclass it, override
``process_image``, and use it as a ``cv2.VideoCapture`` -- the classic loop, or ``with`` and
iteration -- while the capture runs in its own process and ``read()`` returns the newest frame.

    python examples/process_image.py [SOURCE] [--frames N]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

import framebus


class EdgeCapture(framebus.VideoCapture):
    """The seed's ``VideoCapture(ABVideoCapture)``: only the algorithm is left to write."""

    def process_image(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        edges: np.ndarray = cv2.Canny(grey, 100, 200)
        return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:640x480@30")
    parser.add_argument("--frames", type=int, default=100, help="frames to read in each example")
    args = parser.parse_args()

    # example 1, the classic loop (cv2.imshow left out: this runs without a display)
    cap = EdgeCapture(args.source)
    for _ in range(args.frames):
        ok, img = cap.read()
        if not ok or cap.info is None:
            break
        print(f"classic: frame {cap.info.seq}, {np.count_nonzero(img)} edge pixels")
    cap.release()

    # example 2, context manager and iterator
    with EdgeCapture(args.source) as cap:
        for n, img in enumerate(cap, 1):
            print(f"iterator: {img.shape}")
            if n == args.frames:
                break


if __name__ == "__main__":
    main()
