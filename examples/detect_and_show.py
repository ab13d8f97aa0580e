"""Seeds 002 and 003 end to end: a detector's annotated frames, live in the browser beside the
camera, each with its age from the camera.

The seeds run their algorithm in ``process_image`` and serve ``frame_marked`` to a browser.
Here the camera is a named stream (its capture in a process of its own), the detector is this
program's loop (however slow: it always gets the newest frame), and the annotated frames go
into a second stream with ``framebus.VideoWriter``; ``like=cam.info`` keeps the camera's capture
time on each, so the page's age of the annotated tile is its true age from the camera
(detector + ring + encoding + the browser). Any other program can attach to either stream too.

Detectors that need no downloaded weights:

* ``red`` (default): red regions by colour (HSV threshold and contours); on the test pattern,
  the two red bars;
* ``faces``: the frontal-face Haar cascade that ships with OpenCV;
* ``motion``: background subtraction (MOG2), for a real camera.

    python examples/detect_and_show.py [SOURCE] [--detector red|faces|motion] [--port 8080]

then open http://127.0.0.1:8080/ (needs ``pip install 'framebus[web]'``). ``--delay`` adds
seconds to each detection, as a heavier model would.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import cv2
import numpy as np

import framebus
import framebus.web

Box = tuple[int, int, int, int]
BOX_COLOUR = (0, 128, 255)  # orange (BGR): none of the test pattern's bars has it


def red_regions() -> Callable[[np.ndarray], list[Box]]:
    def detect(frame: np.ndarray) -> list[Box]:
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        mask = cv2.inRange(hsv, (0, 120, 80), (8, 255, 255)) | cv2.inRange(
            hsv, (172, 120, 80), (180, 255, 255)
        )
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = [cv2.boundingRect(c) for c in contours]
        return [b for b in boxes if b[2] * b[3] >= 100]

    return detect


def faces() -> Callable[[np.ndarray], list[Box]]:
    cascade = cv2.CascadeClassifier(
        os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    )

    def detect(frame: np.ndarray) -> list[Box]:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return [tuple(b) for b in cascade.detectMultiScale(grey, 1.1, 5, minSize=(40, 40))]

    return detect


def motion() -> Callable[[np.ndarray], list[Box]]:
    subtractor = cv2.createBackgroundSubtractorMOG2(history=200, detectShadows=False)

    def detect(frame: np.ndarray) -> list[Box]:
        mask = cv2.morphologyEx(subtractor.apply(frame), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return [b for b in (cv2.boundingRect(c) for c in contours) if b[2] * b[3] >= 400]

    return detect


DETECTORS = {"red": red_regions, "faces": faces, "motion": motion}


def draw(frame: np.ndarray, boxes: list[Box], label: str) -> np.ndarray:
    out = frame.copy()  # the camera's frame is a shared, read-only view
    for x, y, w, h in boxes:
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), BOX_COLOUR, 4)
    cv2.putText(out, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, BOX_COLOUR, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:640x360@30")
    parser.add_argument("--detector", choices=sorted(DETECTORS), default="red")
    parser.add_argument("--delay", type=float, default=0.0, help="extra seconds per detection")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default="cam", help="the camera stream's name")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    args = parser.parse_args()
    detect = DETECTORS[args.detector]()
    boxes_name = f"{args.name}-boxes"
    with (
        framebus.publish(args.name, args.source) as camera,
        framebus.VideoWriter(boxes_name, fps=camera.stats().source_fps) as out,
        framebus.attach(args.name) as cam,
    ):
        hub = framebus.web.EncoderHub()  # the page's encoders, closed with the server
        page = framebus.web.app([args.name, boxes_name], hub=hub)
        web = framebus.web.WebServer(page, args.host, args.port, hub=hub)
        web.start()
        print(f"camera and detections at {web.url}", flush=True)
        try:
            end = None if args.seconds is None else time.monotonic() + args.seconds
            while end is None or time.monotonic() < end:
                frame = cam.read_frame()  # the newest frame: a slow detector skips, never lags
                boxes = detect(frame)
                time.sleep(args.delay)
                out.write(draw(frame, boxes, f"{args.detector}: {len(boxes)}"), like=cam.info)
                stats = out.stats()
                if stats.captured % 100 == 1:
                    print(
                        f"{stats.captured} frames annotated, detection "
                        f"{1000 * (stats.delay or 0):.0f} ms after capture",
                        flush=True,
                    )
        except KeyboardInterrupt:
            pass
        finally:
            web.stop()


if __name__ == "__main__":
    main()
