"""Seed 001, "save every 1000th frame of Test.avi as a JPEG", with framebus.

The seed's loop decodes and colour-converts every frame, encodes on the same thread, prints
nothing for minutes and leaves half-written files when interrupted. ``framebus.sample`` decodes
with frame threads, converts only the frames it keeps, encodes them in parallel with decoding,
writes each file atomically and can resume. The same from a shell:
``framebus sample Test.avi --out image --every 1000``.

Usage: python sample_every_nth.py [VIDEO [OUT_DIR [N]]]   (default: Test.avi image 1000)
"""

import sys

import framebus

video = sys.argv[1] if len(sys.argv) > 1 else "Test.avi"
out = sys.argv[2] if len(sys.argv) > 2 else "image"
every = int(sys.argv[3]) if len(sys.argv) > 3 else 1000

summary = framebus.sample(video, out, every=every, resume=True)  # frames 0, N, 2N, ...
print(summary.line())
