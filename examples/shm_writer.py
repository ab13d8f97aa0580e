"""Seed 004, the shared-memory writer: decode a video into shared memory for other programs.

The seed creates two ``SharedMemory`` blocks by hand (the frame shape, the pixels), waits for
Enter until the reader is ready, has ``cap.read()`` decode into the shared buffer with no lock
(so the reader may see a half-written, torn frame), and must be closed before the reader
unlinks. framebus's named stream is that, done safely: a ring of slots (no torn frames), the
shape and frame counters in its header, readers that may come and go in any order, and
everything removed when the writer exits (Ctrl-C and SIGTERM included).

    python examples/shm_writer.py [SOURCE] [--name frames] [--seconds S]
    python examples/shm_reader.py [--name frames]        # in another terminal, any number

A file goes at full decoding speed and every reader gets every frame (``mode="every"``); add
``--realtime`` to pace it at its frame rate, or give a camera and readers get the newest frame.
"""

from __future__ import annotations

import argparse
import time

import framebus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:1280x688@30")
    parser.add_argument("--name", default="frames", help="the stream's name")
    parser.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--realtime", action="store_true", help="pace a file at its frame rate")
    args = parser.parse_args()
    with framebus.publish(args.name, args.source, realtime=args.realtime) as pub:
        print(f"writer is ready: stream {args.name!r}", flush=True)  # no need to wait for Enter
        end = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while pub.stats().state not in ("ended", "failed") and (
                end is None or time.monotonic() < end
            ):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:  # also on SIGTERM (framebus turns it into SystemExit)
            s = pub.stats()
            print(f"{s.captured} frames captured, state {s.state}", flush=True)


if __name__ == "__main__":
    main()
