"""``python -m framebus.capture``: the capture process (its spec arrives as JSON on stdin), or
the fork server that forks capture processes (:mod:`framebus.capture._forkserver`).

Started by the publisher for built-in sources: a fresh interpreter (or a fork of one that has
only imported framebus, numpy and OpenCV), so no fork hazards from the user's process and no
re-import of the user's ``__main__``. The spec travels through a pipe or a socket, not argv
(argv is readable by every user, and URLs may hold credentials); nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any

from framebus.bus import Control, State, remove_orphaned
from framebus.capture._loop import capture_loop, record_failure
from framebus.sources import Pipe, open_spec, secrets_of, spec_from_json


def main() -> int:
    args = json.loads(sys.stdin.read())  # from the publisher, through a pipe: not in argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the publisher's to handle
    _quiet()
    if "fork_server" in args:
        from framebus.capture._forkserver import serve

        return serve(int(args["fork_server"]), run_forked)
    return run(args)


def _quiet() -> None:
    # FFmpeg and OpenCV logs can print URLs with credentials: keep them quiet unless asked
    if not os.environ.get("FRAMEBUS_DEBUG"):
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")


def run_forked(message: dict[str, Any], fd: int | None) -> int:
    """A capture forked by the fork server: the publisher's environment and directory (at the
    time it asked), then :func:`run`. ``fd``: a pipe source's descriptor, sent with it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(message.get("env", {})).items()})
    _quiet()
    with contextlib.suppress(OSError):  # a directory removed since: relative paths fail then
        os.chdir(str(message.get("cwd", "/")))
    return run(message, fd)


def run(args: dict[str, Any], fd: int | None = None) -> int:
    """Capture ``args["spec"]`` into stream ``args["name"]`` until it ends or is closed."""
    logging.basicConfig(level=logging.WARNING, format="framebus capture: %(message)s")
    ctl = Control.open(args["name"])
    if not ctl.claim_launch(int(args["ticket"])):
        ctl.close()  # the publisher gave up on this launch (or forged bytes): not ours to write
        return 4
    ctl.claim_writer()
    orphaned = _Orphaned(ctl)

    def stop() -> bool:
        return ctl.state in (State.CLOSED, State.FAILED) or orphaned()

    # one frame at a time: OpenCV's thread pool would cost more CPU than the latency it saves
    # (cvtColor of 720p: 0.5 ms on one thread; two threads used 0.7 ms more CPU per frame)
    import cv2

    cv2.setNumThreads(1)
    ok = False
    secrets: tuple[str, ...] = ()
    try:
        spec = spec_from_json(args["spec"])
        if fd is not None and isinstance(spec, Pipe):
            spec = replace(spec, fd=fd)  # the descriptor as this process received it
        secrets = secrets_of(getattr(spec, "target", None))
        source = open_spec(spec)
        ok = capture_loop(ctl, source, realtime=bool(args["realtime"]), stop=stop, secrets=secrets)
    except Exception as exc:  # e.g. a backend that cannot be imported
        record_failure(ctl, exc, secrets)
    finally:
        if orphaned.now():  # the publisher died without closing: clean up for it
            remove_orphaned(ctl)
        ctl.close()
    return 0 if ok else 3


class _Orphaned:
    """Whether the publisher died. Our parent is the publisher, or the fork server (which exits
    when its socket to the publisher closes: the publisher died or exited): while the parent is
    there, nothing to ask; once it is gone, the header's publisher is looked up, at most four
    times a second (this runs for every frame)."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.parent = os.getppid()
        self.dead = False
        self.next_look = 0.0

    def __call__(self) -> bool:
        if self.dead:
            return True
        if os.getppid() == self.parent:
            return False
        now = time.monotonic()
        if now >= self.next_look:
            self.next_look = now + 0.25
            self.dead = not self.ctl.publisher_alive()
        return self.dead

    def now(self) -> bool:
        """The same, looked up now."""
        self.next_look = 0.0
        return self()


if __name__ == "__main__":
    sys.exit(main())
