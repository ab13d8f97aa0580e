"""Seed 004, the shared-memory reader: frames from a stream another program writes.

The seed opens the writer's two ``SharedMemory`` blocks by name, builds an array over the
pixels (which the writer overwrites while it is shown) and must unlink them itself, after the
writer has closed. Here: attach by name, ``read()`` (a copy, never torn) or ``view()`` (zero
copy, the slot is not written while lent), and just leave; the writer removes the stream.

    python examples/shm_reader.py [--name frames] [--frames N]
"""

from __future__ import annotations

import argparse
import time

import framebus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="frames", help="the stream's name")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the writer")
    args = parser.parse_args()
    deadline = time.monotonic() + args.wait
    while True:  # the writer may start after us
        try:
            cam = framebus.attach(args.name)
            break
        except framebus.StreamNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    n, t0 = 0, time.monotonic()
    with cam:
        try:
            while args.frames is None or n < args.frames:
                with cam.view() as frame:  # zero copy: cv2.imshow("frame", frame) would go here
                    shape, mean = frame.shape, float(frame.mean())
                    pos = cam.info.pos if cam.info is not None else -1
                n += 1
                if n % 30 == 1:
                    print(f"frame {pos}: {shape}, mean {mean:.1f}", flush=True)
        except framebus.StreamEnded:
            pass  # the writer finished its file
        except KeyboardInterrupt:
            pass
    rate = n / max(time.monotonic() - t0, 1e-9)
    print(f"{n} frames read, {rate:.0f} frames/s", flush=True)


if __name__ == "__main__":
    main()
