"""A publisher process: publish NAME from a counter TestPattern until killed.

usage: publisher.py NAME [--fps FPS] [--mode latest|every] [--warm]
Prints "ready <capture pid>" once the stream is live. ``--warm``: start the capture fork
server first, so that the capture is forked by it (else the first capture of a process is a
fresh interpreter while the server starts).
"""

from __future__ import annotations

import argparse
import time

import framebus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--mode", default="latest")
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--warm", action="store_true")
    args = ap.parse_args()
    if args.warm:
        from framebus.capture._forkserver import fork_server

        assert fork_server() or fork_server()
    w, h = (int(v) for v in args.size.split("x"))
    pattern = framebus.TestPattern(w, h, fps=args.fps or None, pattern="counter")
    with framebus.publish(args.name, pattern, mode=args.mode) as pub:
        print(f"ready {pub.capture_pid}", flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
