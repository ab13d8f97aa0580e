"""``python -m framebus.capture``: the capture process (its spec arrives as JSON on stdin).

Started by the publisher for built-in sources: a fresh interpreter, so no fork hazards and no
re-import of the user's ``__main__``. The spec travels through a pipe, not argv (argv is
readable by every user, and URLs may hold credentials); nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from framebus.bus import Control, State, remove_orphaned
from framebus.capture._loop import capture_loop, record_failure
from framebus.sources import open_spec, secrets_of, spec_from_json


def main() -> int:
    args = json.loads(sys.stdin.read())  # from the publisher, through a pipe: not in argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the publisher's to handle
    logging.basicConfig(level=logging.WARNING, format="framebus capture: %(message)s")
    parent = os.getppid()
    ctl = Control.open(args["name"])
    ctl.claim_writer()

    def stop() -> bool:
        return os.getppid() != parent or ctl.state in (State.CLOSED, State.FAILED)

    # FFmpeg and OpenCV logs can print URLs with credentials: keep them quiet unless asked
    if not os.environ.get("FRAMEBUS_DEBUG"):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

    # one frame at a time: OpenCV's thread pool would cost more CPU than the latency it saves
    # (cvtColor of 720p: 0.5 ms on one thread; two threads used 0.7 ms more CPU per frame)
    import cv2

    cv2.setNumThreads(1)
    ok = False
    secrets: tuple[str, ...] = ()
    try:
        spec = spec_from_json(args["spec"])
        secrets = secrets_of(getattr(spec, "target", None))
        source = open_spec(spec)
        ok = capture_loop(ctl, source, realtime=bool(args["realtime"]), stop=stop, secrets=secrets)
    except Exception as exc:  # e.g. a backend that cannot be imported
        record_failure(ctl, exc, secrets)
    finally:
        if os.getppid() != parent:  # the publisher died without closing: clean up for it
            remove_orphaned(ctl)
        ctl.close()
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
