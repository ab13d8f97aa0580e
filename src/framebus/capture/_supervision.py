"""How a live stream recovers: the reconnect policy, its backoff, and the supervisor that
watches a capture and restarts it."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..bus import Control, State
from ..errors import FramebusError, SharedMemoryFull, SourceUnreachable, SourceUnsupported
from ._host import STOP_GRACE, CaptureHost

__all__ = ["Backoff", "Reconnect", "Supervisor"]

log = logging.getLogger("framebus")

_WATCH_PERIOD = 0.25  # how often the supervisor looks at its capture

# Errors another attempt would meet again: no shared memory for the ring, a stream the chosen
# backend cannot read (its codec or packetization; the automatic choice falls back instead).
_PERMANENT: tuple[type[FramebusError], ...] = (SharedMemoryFull, SourceUnsupported)


@dataclass(frozen=True)
class Reconnect:
    """Reconnect policy of a live stream (``publish(..., reconnect=Reconnect(...))``).

    The capture is restarted when its process dies, when its source fails, and when no frame
    arrived for ``stall_timeout`` seconds (a capture hung inside native code is killed, not
    waited on). Restarts wait ``backoff_initial * backoff_factor**n`` seconds, at most
    ``backoff_max``, each spread by ``±jitter`` (a fraction) so that many cameras behind one
    switch do not reconnect in lockstep. ``max_attempts=None`` retries for as long as the
    publisher runs; readers stay attached and simply wait for frames meanwhile.
    """

    stall_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    jitter: float = 0.25
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.stall_timeout <= 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("stall_timeout must be > 0 and backoff times >= 0")
        if self.backoff_factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff_factor must be >= 1 and jitter in [0, 1)")


class Backoff:
    """The delays before successive restarts; :meth:`reset` once frames flow again."""

    def __init__(self, policy: Reconnect, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when attempts are exhausted."""
        p = self.policy
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return None
        base = min(p.backoff_max, p.backoff_initial * p.backoff_factor**self.attempts)
        self.attempts += 1
        return max(0.0, base * (1 + self._rng.uniform(-p.jitter, p.jitter)))

    def reset(self) -> None:
        self.attempts = 0


class Supervisor:
    """Starts the capture of one stream and keeps it running.

    A thread looks at the capture four times a second (no per-frame cost) and restarts it,
    with :class:`Backoff`, when it dies, when its source fails, or after no progress for
    ``stall_timeout`` (a hung capture process is killed). Without a ``reconnect`` policy, or
    once its attempts are exhausted, the stream fails; so it does at once after an error that
    another attempt would meet again (:data:`_PERMANENT`: shared memory ran out, a stream this
    client and FFmpeg cannot read), including a capture that died on its own while the header
    said it was allocating (the OOM killer's SIGKILL, a SIGBUS: see ``Control.capture_died``).
    Every state change is logged once.
    """

    def __init__(
        self,
        name: str,
        ctl: Control,
        launch: Callable[[], CaptureHost],
        reconnect: Reconnect | None,
        open_timeout: float,
    ) -> None:
        self.name = name
        self.ctl = ctl
        self.host: CaptureHost | None = None
        self._launch = launch
        self.reconnect = reconnect
        self._open_timeout = open_timeout
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a restart and stop() do not interleave
        self._thread: threading.Thread | None = None
        self._connecting_since = 0.0
        self._live_since: float | None = None

    def start(self, timeout: float) -> None:
        """Launch the capture and wait until its source is open (raises its error if not)."""
        self.host = self._launch()
        self._wait_started(timeout)
        self._thread = threading.Thread(
            target=self._watch, name=f"framebus-supervisor-{self.name}", daemon=True
        )
        self._thread.start()

    def _wait_started(self, timeout: float) -> None:
        ctl, host = self.ctl, self.host
        assert host is not None
        deadline = time.monotonic() + timeout
        while True:
            token = ctl.change_token()
            if ctl.state is not State.CONNECTING:
                return
            if not host.running():
                ctl.capture_died()
                raise ctl.error_kind(
                    ctl.error_message or "the capture stopped before the source opened"
                )
            if time.monotonic() > deadline:
                raise SourceUnreachable(
                    f"stream {self.name!r}: source did not open within {timeout} s"
                )
            ctl.wait_change(token, 0.05)

    def stop(self) -> None:
        """Stop watching, then stop the capture (the stream state already says closed)."""
        with self._lock:
            self._stopping.set()
        if self.host is not None:
            self.host.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_GRACE)

    @property
    def watching(self) -> bool:
        """True while the watcher thread runs (it holds the control mapping meanwhile)."""
        return self._thread is not None and self._thread.is_alive()

    # -- the watcher thread ------------------------------------------------------------------

    @property
    def _steady(self) -> float:
        """How long a stream must stay live before the backoff starts over."""
        return self.reconnect.stall_timeout if self.reconnect else 5.0

    def _watch(self) -> None:
        backoff = Backoff(self.reconnect) if self.reconnect else None
        last_logged = ""
        while not self._stopping.wait(_WATCH_PERIOD):
            ctl, host = self.ctl, self.host
            assert host is not None
            running = host.running()
            state = ctl.state  # read after running(): a capture sets ENDED before it exits
            if state in (State.CLOSED, State.ENDED, State.FAILED):
                if not running:
                    return
                continue
            if state is State.LIVE and backoff is not None and backoff.attempts:
                if self._live_since is None:
                    self._live_since = time.monotonic()
                    log.warning("stream %s: live again", self.name)
                    last_logged = ""
                elif time.monotonic() - self._live_since > self._steady:
                    backoff.reset()  # only once it held: a camera that drops at once backs off
            problem = self._problem(host, state, running)
            if problem is None:
                continue
            if host.running():
                if not host.killable:
                    continue  # a hung custom source in a thread: reported as stalled
                host.kill()
            # (the capture's own error only: a stall leaves an older error's kind in place)
            permanent = not running and issubclass(ctl.error_kind, _PERMANENT)
            delay = backoff.next_delay() if backoff is not None and not permanent else None
            if delay is None:
                self._fail(problem)
                return
            if problem != last_logged:
                log.warning("stream %s: %s; reconnecting", self.name, problem)
                last_logged = problem
            else:
                log.debug("stream %s: %s; reconnecting", self.name, problem)
            if not ctl.set_state(State.RECONNECTING) or self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                if not ctl.set_state(State.CONNECTING):
                    return  # closed meanwhile
                ctl.count_reconnect()
                self._connecting_since = time.monotonic()
                self._live_since = None
                self.host = self._launch()

    def _problem(self, host: CaptureHost, state: State, running: bool) -> str | None:
        """What is wrong with the capture right now, if anything."""
        ctl = self.ctl
        if not running:
            ctl.capture_died()  # killed while allocating shared memory: SharedMemoryFull
            return ctl.error_message or "the capture process exited"
        if state is State.LIVE and self.reconnect is not None:
            idle = ctl.idle_seconds()
            if idle > self.reconnect.stall_timeout:
                ctl.record_error(None, f"no frame for {idle:.1f} s")
                ctl.set_state(State.STALLED)
                return f"stalled: no frame for {idle:.1f} s"
        stall_over = state is State.STALLED and ctl.idle_seconds() < self._steady
        if stall_over and not host.killable and ctl.set_state(State.LIVE):
            ctl.record_error(None, "")  # the stall is over: so is its error
        connecting = time.monotonic() - (self._connecting_since or time.monotonic())
        if state is State.CONNECTING and connecting > self._open_timeout + 5:
            ctl.record_error(None, "the source did not open in time")
            return "the source did not open in time"
        return None

    def _fail(self, problem: str) -> None:
        log.error("stream %s: %s; giving up", self.name, problem)
        self.ctl.record_error(None, problem)
        self.ctl.set_state(State.FAILED)
