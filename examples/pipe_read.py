"""Seed 004's ``read.py`` with framebus: frames from another program through a pipe.

    python examples/pipe_write.py | python examples/pipe_read.py
    framebus cat cam | python examples/pipe_read.py

Each frame comes with its info (seq, capture time, size); the loop ends when the writer closes
the pipe. A truncated or garbled stream raises framebus.PipeFormatError, naming the byte offset.
"""

import sys

import framebus

for frame, info in framebus.pipe.frames(sys.stdin.buffer):
    print(f"frame {info.seq}: {frame.shape}, {info.age * 1000:.0f} ms old", flush=True)
    # cv2.imshow("frame", frame); cv2.waitKey(1)  # with opencv-python (not headless)
