"""Seeds 000/001, "a stack of the newest frames": one process captures, another processes.

The seeds push every frame onto a ``multiprocessing.Manager().list()`` (a "stack"), pop the top
one in the reader process, and empty the list with ``gc.collect()`` when it grows too long.
framebus does that job with a named stream: the capture runs in a process of its own into a
small ring in shared memory, and a reader in any other process gets the newest frame, waiting
for it without spinning; there is nothing to empty and no lock to forget.

    python examples/manager_stack.py [SOURCE] [--seconds S]

SOURCE is a camera index, a file, a URL or ``testpattern:640x480@30`` (the default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import framebus


def read(name: str, seconds: float) -> None:
    """The seeds' ``read(stack)``: any process, attached by name."""
    print(f"Process to read: {os.getpid()}", flush=True)
    with framebus.attach(name) as cam:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                frame = cam.read_frame()  # the newest frame, waiting for one without spinning
            except framebus.StreamEnded:
                break
            time.sleep(0.1)  # a slow detector: the frames it had no time for are skipped
            info = cam.info
            assert info is not None  # describes the frame just read
            print(
                f"frame {info.seq} {frame.shape}: skipped {info.skipped}, "
                f"{info.age * 1000:.0f} ms old",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:640x480@30")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the reader runs")
    parser.add_argument("--name", default=f"stack-{os.getpid()}", help="the stream's name")
    args = parser.parse_args()
    # the seeds' write(stack, cam, top): framebus's capture process, started by publish()
    with framebus.publish(args.name, args.source) as pub:
        print(f"Process to write: {pub.capture_pid}", flush=True)
        # spawn: a fresh interpreter, as framebus's own capture process
        reader = multiprocessing.get_context("spawn").Process(
            target=read, args=(args.name, args.seconds)
        )
        reader.start()
        reader.join()
    # leaving the block stops the capture and removes the stream (no terminate() needed)


if __name__ == "__main__":
    main()
