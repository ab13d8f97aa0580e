"""A script that owns a ZeroMQ object and ends without releasing it.

usage: zmq_exit.py NAME WHAT HOW
  WHAT: reader (framebus.attach of zmq://), capture (VideoCapture of zmq://), exporter
        (an Exporter serving NAME)
  HOW:  plain (falls off the end), raise (an uncaught exception), exit (sys.exit(3)),
        wait (sleeps until the parent signals it: SIGINT, or SIGTERM, which framebus
        handles because the script also publishes a stream)
Publishes NAME (a counter pattern), exports it on 127.0.0.1 and makes WHAT from it, reads
one frame, then prints "ending" and ends as HOW says. Nothing is released or closed.
"""

from __future__ import annotations

import sys
import time

import framebus
from framebus.net import Exporter

KEEP: list[object] = []  # a module global: alive until the interpreter finalizes, as in a script


def main() -> None:
    name, what, how = sys.argv[1:4]
    pub = framebus.publish(name, framebus.TestPattern(160, 120, fps=30, pattern="counter"))
    exporter = Exporter("tcp://127.0.0.1:0", [name])
    keep = KEEP
    keep += [pub, exporter]
    if what in ("reader", "exporter"):
        reader = framebus.attach(exporter.url(name), timeout=10)
        reader.read_frame()
        keep.append(reader)
    elif what == "capture":
        cap = framebus.VideoCapture(exporter.url(name))
        assert cap.read()[0]
        keep.append(cap)
    if what == "exporter":
        keep[2:] = []  # the reader goes (its own __del__): the exporter alone is left open
    print("ending", flush=True)
    if how == "raise":
        raise RuntimeError("an uncaught error")
    if how == "exit":
        sys.exit(3)
    if how == "wait":
        time.sleep(60)


if __name__ == "__main__":
    main()
