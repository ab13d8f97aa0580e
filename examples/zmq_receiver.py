"""The receiving half of seed 004's ZeroMQ hand-off, the framebus way.

The seed's reader took whatever the PUB socket had queued, oldest first, base64 and all.
Here ``framebus.attach("zmq://...")`` gives the same reading API as a local stream: ``read()``
returns the newest frame, ``info`` says how old it is and how many frames were skipped.

    python examples/zmq_receiver.py [--url zmq://127.0.0.1:5563/camera_A] [--frames N] [--show]
"""

from __future__ import annotations

import argparse

import framebus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="zmq://127.0.0.1:5563/camera_A")
    ap.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    ap.add_argument("--show", action="store_true", help="show the frames in a window")
    args = ap.parse_args()
    with framebus.attach(args.url, timeout=5, connect_timeout=10) as reader:
        count = 0
        for frame in reader:
            info = reader.info
            assert info is not None
            count += 1
            print(
                f"frame {info.seq} {frame.shape[1]}x{frame.shape[0]} age {info.age * 1000:.1f} ms"
                f" skipped {info.skipped}",
                flush=True,
            )
            if args.show:
                import cv2

                cv2.imshow("Frames", frame)
                if cv2.waitKey(1) == 27:  # Esc
                    break
            if args.frames and count >= args.frames:
                break
        print(f"state {reader.stats().state}, received {count} frames", flush=True)


if __name__ == "__main__":
    main()
