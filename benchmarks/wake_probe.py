"""Wake-up latency without the copy: frame committed -> a waiting reader in another process
holds it (``view()``), 640x480 at 10 fps so the reader always waits.

    .venv/bin/python -m benchmarks.wake_probe [--frames N]
"""

from __future__ import annotations

import argparse
import os

import framebus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    name = f"wake-probe-{os.getpid()}"
    source = framebus.TestPattern(640, 480, 10, pattern="counter")
    # the capture runs in its own process; this process is the waiting reader
    with framebus.publish(name, source), framebus.attach(name, timeout=10) as reader:
        reader.read()  # the first frame may have been waiting already: not a wake-up
        lat = []
        for _ in range(args.frames):
            with reader.view():
                info = reader.info
                assert info is not None
                lat.append(info.age * 1000)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"wake-up latency over {len(lat)} frames (view, 640x480 @ 10 fps): "
        f"median {lat[len(lat) // 2]:.3f} ms, p99 {p99:.3f} ms, max {lat[-1]:.3f} ms"
    )


if __name__ == "__main__":
    main()
