"""Many cameras, one loop: the newest frame of each, aligned in time, never held up by a dead one.

What people write instead is a thread per camera and a loop that waits for all of them
(ultralytics' ``LoadStreams``): the batches come at the slowest camera's rate, and one camera
that dies stops the rest. Here each camera is a named stream (its capture in a process of its
own) and ``framebus.gather`` takes the batches: one entry per camera, ``None`` while it is
down, the capture times of a batch within ``--max-skew``.

``--unplug`` shows a dead camera: the second one is closed a third of the way through and
published again at two thirds; the others' batches keep their rate meanwhile.

    python examples/many_cameras.py [SOURCE ...] [--seconds 10] [--max-skew 0.04] [--unplug]

With no SOURCE, four test patterns at 25 fps. A line a second says the batch rate, which
cameras were present, and the spread of the capture times.
"""

from __future__ import annotations

import argparse
import time

import framebus

DEFAULT = ["testpattern:640x360@25"] * 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", default=DEFAULT, metavar="SOURCE")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-skew", type=float, default=0.04, help="seconds (default 0.04)")
    ap.add_argument("--unplug", action="store_true", help="close the second camera for a while")
    ap.add_argument("--prefix", default="cam", help="stream names: PREFIX0, PREFIX1, ...")
    args = ap.parse_args()

    names = [f"{args.prefix}{i}" for i in range(len(args.sources))]
    pubs = [framebus.publish(n, s) for n, s in zip(names, args.sources, strict=True)]
    try:
        run(names, pubs, args)
    finally:
        for p in pubs:
            p.close()


def run(names: list[str], pubs: list[framebus.Publisher], args: argparse.Namespace) -> None:
    start = time.monotonic()
    unplug_at, replug_at = start + args.seconds / 3, start + 2 * args.seconds / 3
    second, unplugged, replugged = 0, False, False
    batches, present, spreads = 0, [0] * len(names), []
    with framebus.gather(names, max_skew=args.max_skew, timeout=1.0) as g:
        for frames in g:
            batches += 1
            present = [p + (f is not None) for p, f in zip(present, frames, strict=True)]
            if g.batch is not None and g.batch.spread is not None:
                spreads.append(g.batch.spread)
            now = time.monotonic()
            if args.unplug and len(pubs) > 1:
                if now >= unplug_at and not unplugged:
                    pubs[1].close()  # the second camera goes away...
                    unplugged = True
                    print(f"{names[1]} unplugged", flush=True)
                elif now >= replug_at and not replugged:
                    pubs[1] = framebus.publish(names[1], args.sources[1])  # ...and comes back
                    replugged = True
                    print(f"{names[1]} back", flush=True)
            if now - start >= second + 1:
                second += 1
                spread = f"{1000 * max(spreads):.1f} ms" if spreads else "-"
                seen = " ".join(f"{n}:{c}" for n, c in zip(names, present, strict=True))
                print(f"{second:3d} s: {batches} batches, frames {seen}, spread max {spread}",
                      flush=True)  # fmt: skip
                batches, present, spreads = 0, [0] * len(names), []
            if now - start >= args.seconds:
                break


if __name__ == "__main__":
    main()
