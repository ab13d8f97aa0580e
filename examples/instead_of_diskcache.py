"""Seed 004, the diskcache hand-off: one program pushes images, another pulls the newest.

The seed pushes ``cv2.imread("cat.jpg")`` into a ``diskcache.Cache`` every 10 s with
``expire=5`` and the reader polls ``cache.pull()`` ten times a second: every image is pickled
to a SQLite file on disk and unpickled again, and the reader spins. A framebus named stream
hands the pixels over in shared memory instead: the writer's ``framebus.VideoWriter.write()``
copies each image into it, the reader sleeps until a new image is there, and ``info.age``
says how old it is (the seed's ``expire``). No ``Source`` subclass, no thread. Nothing is
pickled, nothing touches the disk.

    python examples/instead_of_diskcache.py write [--image cat.jpg] [--interval 10]
    python examples/instead_of_diskcache.py read [--expire 5]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

import framebus


def write(args: argparse.Namespace) -> None:
    image = cv2.imread(args.image) if args.image else None
    if image is None:  # no cat.jpg at hand: a picture of our own
        image = np.full((480, 640, 3), 90, np.uint8)
        cv2.putText(image, "cat.jpg", (200, 250), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    with framebus.VideoWriter(args.name) as cache:
        print(f"[+] Ready to push data to stream {args.name!r}.", flush=True)
        pushed = 0
        while args.count is None or pushed < args.count:
            if pushed:
                time.sleep(args.interval)
            cache.write(image)  # the seed's cache.push(image): one copy into shared memory
            pushed += 1
        time.sleep(args.linger)  # let readers take the last image before the stream goes


def read(args: argparse.Namespace) -> None:
    with framebus.attach(args.name) as cache:
        print(f"[+] Ready to pull data from stream {args.name!r}", flush=True)
        for image in cache:  # waits (no polling) for each new image; ends with the writer
            assert cache.info is not None
            if cache.info.age > args.expire:  # the seed's expire=5: too old, skip it
                continue
            print(f"image {cache.info.seq}: {image.shape}, {cache.info.age:.2f} s old", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["write", "read"])
    parser.add_argument("--name", default="stream", help="the stream's name")
    parser.add_argument("--image", help="the image to push (write)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between images")
    parser.add_argument("--count", type=int, default=None, help="images to push, then stop")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds to stay after the last")
    parser.add_argument("--expire", type=float, default=5.0, help="skip older images (read)")
    args = parser.parse_args()
    (write if args.role == "write" else read)(args)


if __name__ == "__main__":
    main()
