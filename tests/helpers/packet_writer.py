"""Writes access units into a packet ring as fast as it can, for the torn-read test.

usage: packet_writer.py NAME INSTANCE SECONDS
Each record's bytes are a pattern of its index (so a reader can check it is not torn): length
1000 + (index * 7919) % 20000, every byte (index + position) % 251; every 10th is a keyframe.
Prints "READY" once the ring exists, "DONE n" at the end.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from framebus.bus import PacketCodec, PacketRingWriter


def payload(index: int) -> bytes:
    n = 1000 + (index * 7919) % 20000
    return ((np.arange(n) + index) % 251).astype(np.uint8).tobytes()


def main() -> None:
    name, instance, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    ring = PacketRingWriter.create(name, instance, PacketCodec.H264, capacity=256 * 1024)
    print("READY", flush=True)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        ring.write(payload(n), n % 10 == 0)
        n += 1
    ring.close()
    print("DONE", n, flush=True)


if __name__ == "__main__":
    main()
