"""A writer process: a framebus.VideoWriter fed by this process's own loop.

usage: writer.py NAME [--count N] [--mode latest|every] [--size WxH] [--interval S] [--readers N]
       writer.py NAME --relay SOURCE [--delay S]

Without --relay it writes counter frames (every byte of frame n is n % 256, written with no
``like=``, so its position is n) until --count frames were written, then releases; without
--count until killed. With --relay it reads stream or URL SOURCE and writes each frame,
unchanged, with ``like=info`` after sleeping --delay seconds (a slow detector), and prints
one JSON line per frame: the source frame's pos and timestamp. Prints "ready <pid>" once the
stream exists, and a JSON line of the writer's stats at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict

import numpy as np

import framebus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--count", type=int)
    ap.add_argument("--mode", default="latest")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--relay")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--readers", type=int, default=0, help="wait for this many readers first")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with framebus.VideoWriter(args.name, mode=args.mode) as out:
        print(f"ready {os.getpid()}", flush=True)
        deadline = time.monotonic() + 60
        while out.stats().readers < args.readers and time.monotonic() < deadline:
            time.sleep(0.01)
        if args.relay:
            with framebus.attach(args.relay, timeout=20) as cam:
                for n, frame in enumerate(cam):
                    time.sleep(args.delay)
                    assert cam.info is not None
                    out.write(frame, like=cam.info)
                    print(json.dumps({"pos": cam.info.pos, "ts": cam.info.timestamp}), flush=True)
                    if args.count is not None and n + 1 >= args.count:
                        break
        else:
            frame = np.empty((h, w, 3), np.uint8)
            n = 0
            while args.count is None or n < args.count:
                frame.fill(n % 256)
                out.write(frame)
                n += 1
                if args.interval:
                    time.sleep(args.interval)
        stats = asdict(out.stats())
    print(json.dumps({"stats": stats}), flush=True)


if __name__ == "__main__":
    main()
