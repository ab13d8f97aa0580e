"""A hostile ZeroMQ peer: floods an exporter with requests, then vanishes abruptly.

usage: zmq_flood.py ENDPOINT ROUNDS SECONDS [HEARTBEAT_MS]
Each round: a DEALER connects (with its own ZMTP heartbeats if HEARTBEAT_MS is given), sends
requests as fast as it can for SECONDS (the exporter's ROUTER throttles it at its receive
high-water mark) and closes with no linger, its unsent requests thrown away. Prints
"round N sent M" per round. Against libzmq 4.3.5 with heartbeats on the ROUTER this made the
exporter's process abort (`!_io_error`, stream_engine_base.cpp:310) within a few rounds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import zmq


def main() -> None:
    endpoint, rounds, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    heartbeat = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    for n in range(rounds):
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        if heartbeat:
            sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat)
        sock.connect(endpoint)
        sent, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sock.send(b"GET nosuch 0 0", zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.0001)
        sock.close(0)
        ctx.term()
        print(f"round {n} sent {sent}", flush=True)


if __name__ == "__main__":
    main()
