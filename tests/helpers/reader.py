"""A reader process started independently of the publisher (fresh interpreter, not forked).

usage: reader.py NAME SECONDS [--every] [--hold-view] [--ready-file PATH]
Reads counter-pattern frames (every byte of source frame n is n % 256) for SECONDS and prints
one JSON line: frames read, torn frames, gaps, ok.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import framebus


def _torn(frame: np.ndarray, pos: int) -> int:
    want = pos % 256
    return int(int(frame.min()) != want or int(frame.max()) != want)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--every", action="store_true", help="expect no gap between frames")
    ap.add_argument("--hold-view", action="store_true", help="pin a slot and sleep forever")
    ap.add_argument("--ready-file")
    ap.add_argument("--copy", action="store_true", help="read copies instead of lent views")
    args = ap.parse_args()
    reader = framebus.attach(args.name, timeout=10)
    if args.ready_file:
        Path(args.ready_file).write_text("ready")
    if args.hold_view:
        with reader.view():
            print(json.dumps({"holding": True}), flush=True)
            time.sleep(3600)
    frames = torn = gaps = 0
    last_pos = None
    end = time.monotonic() + args.seconds
    result: dict[str, object] = {}
    try:
        while time.monotonic() < end:
            if args.copy:
                frame = reader.read_frame()
                info = reader.info
                assert info is not None
                torn += _torn(frame, info.pos)
            else:
                with reader.view() as frame:
                    info = reader.info
                    assert info is not None
                    torn += _torn(frame, info.pos)
            if last_pos is not None and info.pos != last_pos + 1:
                gaps += 1
            last_pos = info.pos
            frames += 1
    except framebus.StreamEnded:
        result["ended"] = True
    result.update(frames=frames, torn=torn, gaps=gaps, last_pos=last_pos)
    reader.release()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
