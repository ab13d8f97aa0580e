"""Seed 004's ``write.py`` with framebus: frames to another program through a pipe.

    python examples/pipe_write.py | python examples/pipe_read.py
    python examples/pipe_write.py 100 | python examples/pipe_read.py    # 100 frames, then end

Each frame goes out in framebus's wire format (a header with its size, pixel format, seq and
capture time, then the pixels), so the reader knows where each frame ends: nothing waits for
the end of input (the seed's hang) and no zero-padded length is needed. Writing blocks while the
pipe is full; for a camera that must never wait for a slow reader, publish a stream and run
``framebus cat NAME | python examples/pipe_read.py`` instead.
"""

import os
import sys

import framebus

count = int(sys.argv[1]) if len(sys.argv) > 1 else None
cap = framebus.VideoCapture("testpattern:640x480@30")  # or 0, "video.mp4", "rtsp://..."
try:
    written = 0
    while count is None or written < count:
        ok, frame = cap.read()
        if not ok:
            break
        framebus.pipe.write(sys.stdout.buffer, frame, cap.info)
        written += 1
except BrokenPipeError:  # the reader went away: stop quietly, as cat does
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
finally:
    cap.release()
