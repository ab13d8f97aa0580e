"""Where a capture runs: a process of its own, or a thread of the publisher. One interface.

Built-in sources (a JSON spec) run in a process of their own, which can be killed when it
hangs inside native code: forked by the fork server (:mod:`._forkserver`) when there is one,
else a fresh interpreter. User :class:`~framebus.Source` objects cannot travel as JSON and run
in a thread instead, which cannot be killed (a hung one shows as stalled).

Every capture process is started with a launch ticket the publisher put in the header, and
claims it before it writes anything (:meth:`~framebus.bus.Control.claim_launch`): a launch the
publisher gave up on (a fork server that did not answer) can never become a second writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Protocol

from .. import _platform as plat
from ..bus import CAPTURE_MODULE, Control, State
from ..errors import FramebusError
from ..sources import Pipe, Source, Spec, spec_to_json
from ._forkserver import ForkServer, ForkServerGone, capture_env, fork_server
from ._loop import capture_loop

__all__ = ["STOP_GRACE", "CaptureHost", "ForkedHost", "ProcessHost", "ThreadHost", "launch"]

STOP_GRACE = 2.0  # seconds a capture gets to exit before it is killed


class CaptureHost(Protocol):
    """A running capture of one source into one stream."""

    killable: bool

    @property
    def pid(self) -> int:
        """The capture process (0 for a thread)."""

    def running(self) -> bool: ...

    def kill(self) -> None:
        """Stop it now, whatever it is doing (a no-op for a thread)."""

    def stop(self) -> None:
        """Wait for it to see the stream closed and exit; then insist."""


class ProcessHost:
    """The capture loop in a fresh interpreter: killable even when hung inside native code."""

    killable = True

    def __init__(self, name: str, spec: Spec, realtime: bool, ticket: int) -> None:
        env = capture_env()
        inherited: tuple[int, ...] = ()
        if isinstance(spec, Pipe):
            # The capture's own stdin carries the spec, so a pipe source (our stdin, fd 0)
            # travels as a duplicate descriptor, the only one passed besides 0-2; the spec
            # names its number. Ours is closed once the child has it.
            child_fd = os.dup(spec.fd)
            spec = replace(spec, fd=child_fd, origin=spec.label)
            inherited = (child_fd,)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", CAPTURE_MODULE],
                stdin=subprocess.PIPE,
                env=env,
                close_fds=True,
                pass_fds=inherited,
            )
        finally:
            for fd in inherited:
                os.close(fd)
        # the spec goes through a pipe, not argv: URLs may hold credentials, and argv is public
        assert self.proc.stdin is not None
        message = {"name": name, "spec": spec_to_json(spec), "realtime": realtime,
                   "ticket": ticket}  # fmt: skip
        with self.proc.stdin:
            self.proc.stdin.write(json.dumps(message).encode())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """Ask nicely (the stream state already says closed), then insist."""
        try:
            self.proc.wait(STOP_GRACE)
            return
        except subprocess.TimeoutExpired:
            self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.kill()


class ForkedHost:
    """The capture loop in a process forked by this process's fork server
    (:mod:`framebus.capture._forkserver`): killable as a fresh interpreter, but it starts in
    milliseconds. Known by pid and start time, which every signal checks first."""

    killable = True

    def __init__(self, pid: int, start: int) -> None:
        self._pid, self._start = pid, start

    @classmethod
    def fork(
        cls, name: str, spec: Spec, realtime: bool, ticket: int, server: ForkServer
    ) -> ForkedHost:
        fds: tuple[int, ...] = ()
        if isinstance(spec, Pipe):
            spec = replace(spec, origin=spec.label)  # the fd travels beside it (SCM_RIGHTS)
            fds = (spec.fd,)
        message = {"name": name, "spec": spec_to_json(spec), "realtime": realtime,
                   "ticket": ticket}  # fmt: skip
        return cls(*server.spawn(message, fds))

    @property
    def pid(self) -> int:
        return self._pid

    def running(self) -> bool:
        return plat.process_alive(self._pid, self._start)

    def _signal(self, sig: signal.Signals) -> None:
        if self._start and plat.process_start_time(self._pid) == self._start:  # ours, still
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._wait(STOP_GRACE)

    def stop(self) -> None:
        """Ask nicely (the stream state already says closed), then insist."""
        if self._wait(STOP_GRACE):
            return
        self._signal(signal.SIGTERM)
        if not self._wait(STOP_GRACE):
            self.kill()


def launch(ctl: Control, spec: Spec, realtime: bool) -> CaptureHost:
    """The capture of a built-in source into ``ctl``'s stream: forked by the fork server when
    there is one, else a fresh interpreter."""
    name = ctl.name
    ticket = ctl.offer_launch()
    server = fork_server()
    if server is not None:
        try:
            return ForkedHost.fork(name, spec, realtime, ticket, server)
        except ForkServerGone:
            pass  # nothing was asked of it: a fresh interpreter, and a new server next time
        except FramebusError:
            # asked, but no answer: it may have forked a capture all the same
            claimant = ctl.withdraw_launch(ticket)
            start = plat.process_start_time(claimant) if claimant else None
            if claimant and start:
                return ForkedHost(claimant, start)  # it did, and runs: adopt it
            ticket = ctl.offer_launch()
    return ProcessHost(name, spec, realtime, ticket)


class ThreadHost:
    """The capture loop in a thread, for user Source objects (which cannot travel as JSON)."""

    killable = False

    def __init__(self, name: str, source: Source, realtime: bool) -> None:
        # a mapping of its own: a thread stuck in the source may outlive Publisher.close()
        ctl = Control.open(name)
        ctl.claim_writer()

        def run() -> None:
            try:
                capture_loop(ctl, source, realtime=realtime, stop=lambda: ctl.state is State.CLOSED)
            finally:
                ctl.close()

        self.thread = threading.Thread(target=run, name=f"framebus-capture-{name}", daemon=True)
        self.thread.start()

    @property
    def pid(self) -> int:
        return 0

    def running(self) -> bool:
        return self.thread.is_alive()

    def kill(self) -> None:
        pass  # a thread cannot be killed: a hung custom source stays stalled

    def stop(self) -> None:
        if self.thread is not threading.current_thread():
            self.thread.join(STOP_GRACE)
