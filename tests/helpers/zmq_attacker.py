"""A hostile ZeroMQ peer without keys, from its own source address.

usage: zmq_attacker.py MODE ENDPOINT SOURCE_ADDRESS SECONDS [ARG]
  list     8 connections send LIST as fast as they can
  unknown  8 connections ask for streams that do not exist, a new name each time
  slots    ARG identities (default 64) each ask for stream NAME (from the endpoint's
           /NAME) as a receiver would, keeping their slots
Prints "sent N" at the end. SOURCE_ADDRESS (e.g. 127.0.0.2) makes the exporter see another
host than the legitimate receivers on 127.0.0.1.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import zmq


def main() -> None:
    mode, endpoint, source, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    name = ""
    if mode == "slots":
        endpoint, _, name = endpoint.rpartition("/")
    host_port = endpoint.removeprefix("tcp://")
    count = int(sys.argv[5]) if len(sys.argv) > 5 else (64 if mode == "slots" else 8)
    ctx: zmq.Context[Any] = zmq.Context()
    socks = []
    for _ in range(count):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(f"tcp://{source}:0;{host_port}")
        socks.append(sock)
    time.sleep(0.3)
    sent, n, end = 0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for sock in socks:
            if mode == "list":
                request = b"LIST"
            elif mode == "unknown":
                n += 1
                request = f"GET nosuch{n} 0 0".encode()
            else:
                request = f"GET {name} 0 0".encode()  # "I have nothing": send me a frame
            try:
                sock.send(request, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                pass
            while sock.poll(0):
                sock.recv()
        if mode == "slots":
            time.sleep(0.02)  # as often as a receiver of a 50 fps stream asks
    print(f"sent {sent}", flush=True)
    for sock in socks:
        sock.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
