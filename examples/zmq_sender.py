"""The sending half of seed 004's ZeroMQ hand-off, the framebus way.

The seed's writer captured, resized, JPEG-encoded and base64-encoded every frame and
PUBlished it: a slow reader fell seconds behind, and nothing said when the writer was gone.
Here the capture runs on its own (a named stream) and the exporter sends each receiver the
newest frame when it is ready for one, encoded once for all of them.

    python examples/zmq_sender.py [--source testpattern:640x480@30] [--zmq tcp://127.0.0.1:5563]

Equivalent command: framebus serve camera_A=testpattern:640x480@30 --zmq tcp://127.0.0.1:5563
"""

from __future__ import annotations

import argparse
import time

import framebus
from framebus.net import export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="testpattern:640x480@30", help="camera index, URL, ...")
    ap.add_argument("--zmq", default="tcp://127.0.0.1:5563", help="where to listen")
    ap.add_argument("--name", default="camera_A")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    args = ap.parse_args()
    with framebus.publish(args.name, args.source) as pub, export(args.zmq, [pub.name]) as ex:
        print(f"sending {pub.name} on {ex.url(pub.name)}; Ctrl-C stops", flush=True)
        end = None if args.duration is None else time.monotonic() + args.duration
        try:
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
