"""The publishing side: :func:`publish` starts a named stream and owns all of its resources.

The publisher process owns the stream's shared-memory segments and its capture process (or
thread). It removes them on :meth:`Publisher.close`, at interpreter exit, on an exception
leaving a ``with`` block, on Ctrl-C, and on SIGTERM (converted to a normal exit when no other
handler is installed). A capture process whose publisher is killed removes them itself.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import weakref
from types import FrameType, TracebackType
from typing import Any, Literal

from . import _platform as plat
from ._supervision import Backoff, Reconnect
from ._worker import capture_loop
from .bus._layout import (
    CONTROL_PREFIX,
    MAGIC,
    Hdr,
    Mode,
    State,
    control_name,
    data_name,
    validate_name,
)
from .bus._protocol import MAX_CONTROL_SIZE, MIN_CONTROL_SIZE, Control, create_control
from .errors import SharedMemoryFull, SourceUnreachable, StreamExists, error_class
from .sources import Source, SourceLike, describe, is_live, to_spec
from .stats import StreamStats, read_stats

__all__ = ["ModeName", "Publisher", "Reconnect", "dead_stream", "publish", "remove_stream"]

log = logging.getLogger("framebus")

ModeName = Literal["latest", "every"]

_open_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()
_STOP_GRACE = 2.0  # seconds a capture process gets to exit before it is killed
CAPTURE_MODULE = "framebus._capture_process"  # the capture process runs `python -m` this
_WATCH_PERIOD = 0.25  # how often the supervisor looks at its capture


class _ProcessCapture:
    """The capture loop in a fresh interpreter: killable even when hung inside native code."""

    killable = True

    def __init__(self, name: str, spec: dict[str, Any], realtime: bool) -> None:
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", CAPTURE_MODULE],
            stdin=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        # the spec goes through a pipe, not argv: URLs may hold credentials, and argv is public
        assert self.proc.stdin is not None
        with self.proc.stdin:
            self.proc.stdin.write(
                json.dumps({"name": name, "spec": spec, "realtime": realtime}).encode()
            )

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
            self.proc.wait(_STOP_GRACE)
            return
        except subprocess.TimeoutExpired:
            self.proc.terminate()
        try:
            self.proc.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.kill()


class _ThreadCapture:
    """The capture loop in a thread, for user Source objects (which cannot travel as JSON)."""

    killable = False

    def __init__(self, name: str, source: Source, realtime: bool) -> None:
        # a mapping of its own: a thread stuck in the source may outlive Publisher.close()
        ctl = Control.open(name)
        me = os.getpid()
        ctl.put(Hdr.WRITER_START, plat.process_start_time(me) or 0)
        ctl.put(Hdr.WRITER_PID, me)

        def run() -> None:
            try:
                capture_loop(ctl, source, realtime=realtime, stop=lambda: ctl.state is State.CLOSED)
            finally:
                ctl.close()

        self.thread = threading.Thread(target=run, name=f"framebus-capture-{name}", daemon=True)
        self.thread.start()

    pid = 0

    def running(self) -> bool:
        return self.thread.is_alive()

    def kill(self) -> None:
        pass  # a thread cannot be killed: a hung custom source stays stalled

    def stop(self) -> None:
        if self.thread is not threading.current_thread():
            self.thread.join(_STOP_GRACE)


_Capture = _ProcessCapture | _ThreadCapture


class Publisher:
    """A running stream. Create it with :func:`publish`; close it (or use ``with``) to end it."""

    def __init__(
        self,
        name: str,
        source: SourceLike,
        *,
        mode: ModeName | None = None,
        slots: int = 4,
        max_readers: int = 64,
        realtime: bool = False,
        reconnect: Reconnect | bool | None = None,
        start_timeout: float = 30.0,
        start: bool = True,
    ) -> None:
        self.name = validate_name(name)
        self._spec = None if isinstance(source, Source) else to_spec(source)
        self._source = source if isinstance(source, Source) else None
        live = self._source.live if self._source is not None else is_live(self._spec or {})
        if mode is None:
            mode = "latest" if live else "every"
        if mode not in ("latest", "every"):
            raise ValueError(f"mode must be 'latest' or 'every', not {mode!r}")
        self.mode: ModeName = mode
        self.realtime = realtime
        if reconnect is None:
            reconnect = live
        if reconnect is True:
            reconnect = Reconnect()
        self.reconnect: Reconnect | None = reconnect or None
        self.start_timeout = start_timeout
        self._open_timeout = float((self._spec or {}).get("open_timeout") or 10.0)
        desc = describe(self._spec) if self._spec else f"source:{type(source).__name__}"
        self._capture: _Capture | None = None
        self._supervisor: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._final: StreamStats | None = None
        self.ctl = _create(name, slots, max_readers, Mode[mode.upper()], desc)
        _open_publishers.add(self)
        _install_sigterm_exit()
        if start:
            self.start()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing and wait until the source is open (raises its error if it is not)."""
        if self._started or self._closed:
            raise RuntimeError("a publisher starts once")
        self._started = True
        try:
            self._capture = self._launch()
            self._wait_started()
        except BaseException:
            self.close()
            raise
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"framebus-supervisor-{self.name}", daemon=True
        )
        self._supervisor.start()

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        """The current capture process (None for a thread-hosted source)."""
        cap = self._capture
        return cap.proc if isinstance(cap, _ProcessCapture) else None

    def _launch(self) -> _Capture:
        if self._source is not None:
            return _ThreadCapture(self.name, self._source, self.realtime)
        assert self._spec is not None
        return _ProcessCapture(self.name, self._spec, self.realtime)

    def _wait_started(self) -> None:
        ctl, cap = self.ctl, self._capture
        assert cap is not None
        deadline = time.monotonic() + self.start_timeout
        futex = ctl.seg.address + Hdr.FRAME_FUTEX
        while True:
            token = ctl.words.load32(Hdr.FRAME_FUTEX)
            if ctl.state is not State.CONNECTING:
                return
            if not cap.running():
                kind = error_class(ctl.get(Hdr.ERROR_KIND))
                raise kind(
                    ctl.text(Hdr.ERROR_MSG) or "the capture stopped before the source opened"
                )
            if time.monotonic() > deadline:
                raise SourceUnreachable(
                    f"stream {self.name!r}: source did not open within {self.start_timeout} s"
                )
            plat.futex_wait(futex, token, 0.05)

    # -- supervision ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Watch the capture; restart it with backoff when it dies, fails or stalls."""
        backoff = Backoff(self.reconnect) if self.reconnect else None
        last_logged = ""
        while not self._closing.wait(_WATCH_PERIOD):
            ctl, cap = self.ctl, self._capture
            assert cap is not None
            running = cap.running()
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
            problem = self._problem(cap, state, running)
            if problem is None:
                continue
            if cap.running():
                if not cap.killable:
                    continue  # a hung custom source in a thread: reported as stalled
                cap.kill()
            permanent = error_class(ctl.get(Hdr.ERROR_KIND)) is SharedMemoryFull
            delay = backoff.next_delay() if backoff is not None and not permanent else None
            if delay is None:
                self._fail(problem)
                return
            if problem != last_logged:
                log.warning("stream %s: %s; reconnecting", self.name, problem)
                last_logged = problem
            else:
                log.debug("stream %s: %s; reconnecting", self.name, problem)
            if not ctl.set_state(State.RECONNECTING) or self._closing.wait(delay):
                return
            with self._lock:
                if self._closed:
                    return
                if not ctl.set_state(State.CONNECTING):
                    return  # closed meanwhile
                ctl.put(Hdr.RECONNECTS, ctl.get(Hdr.RECONNECTS) + 1)
                self._connecting_since = time.monotonic()
                self._live_since = None
                self._capture = self._launch()

    _connecting_since = 0.0
    _live_since: float | None = None

    @property
    def _steady(self) -> float:
        """How long a stream must stay live before the backoff starts over."""
        return self.reconnect.stall_timeout if self.reconnect else 5.0

    def _problem(self, cap: _Capture, state: State, running: bool) -> str | None:
        """What is wrong with the capture right now, if anything."""
        ctl = self.ctl
        if not running:
            err = ctl.text(Hdr.ERROR_MSG)
            return err or "the capture process exited"
        if state is State.LIVE and self.reconnect is not None:
            idle = (time.monotonic_ns() - ctl.get(Hdr.HEARTBEAT_NS)) / 1e9
            if idle > self.reconnect.stall_timeout:
                ctl.set_text(Hdr.ERROR_MSG, f"no frame for {idle:.1f} s")
                ctl.set_state(State.STALLED)
                return f"stalled: no frame for {idle:.1f} s"
        if state is State.STALLED and not cap.killable:
            idle = (time.monotonic_ns() - ctl.get(Hdr.HEARTBEAT_NS)) / 1e9
            if idle < (self.reconnect.stall_timeout if self.reconnect else 5.0):
                ctl.set_state(State.LIVE)
        connecting = time.monotonic() - (self._connecting_since or time.monotonic())
        if state is State.CONNECTING and connecting > self._open_timeout + 5:
            ctl.set_text(Hdr.ERROR_MSG, "the source did not open in time")
            return "the source did not open in time"
        return None

    def _fail(self, problem: str) -> None:
        log.error("stream %s: %s; giving up", self.name, problem)
        self.ctl.set_text(Hdr.ERROR_MSG, problem)
        self.ctl.set_state(State.FAILED)

    def close(self) -> None:
        """Stop capturing and remove the stream. Idempotent; readers see the stream end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._closing.set()
        ctl = self.ctl
        if ctl.state is not State.FAILED:
            ctl.set_state(State.CLOSED)
        else:
            ctl.notify()
        ctl.wake_writer()
        if self._capture is not None:
            self._capture.stop()
        sup = self._supervisor
        if sup is not None and sup is not threading.current_thread():
            sup.join(_STOP_GRACE)
        self._final = read_stats(ctl)
        remove_stream(self.name, ctl.seg.inode, ctl.get(Hdr.INSTANCE))
        if sup is None or not sup.is_alive():
            ctl.close()  # else the supervisor still holds it; the mapping dies with the process
        _open_publishers.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> StreamStats:
        """Counters of the stream; ``delivered``/``skipped`` summed over its readers."""
        if self._final is not None:
            return self._final
        return read_stats(self.ctl)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<framebus.Publisher {self.name!r} mode={self.mode} closed={self._closed}>"


def publish(
    name: str,
    source: SourceLike,
    *,
    mode: ModeName | None = None,
    slots: int = 4,
    max_readers: int = 64,
    realtime: bool = False,
    reconnect: Reconnect | bool | None = None,
    start_timeout: float = 30.0,
) -> Publisher:
    """Start the named stream ``name`` capturing from ``source``; any process may attach to it.

    ``source``: a camera index, a file path, a URL, a :class:`TestPattern` or a :class:`Source`.
    ``mode``: ``"latest"`` (default for live sources: readers get the newest frame, older ones
    are skipped) or ``"every"`` (default for files and finite sources: capture waits for the
    slowest reader, and holds frames until a first reader attaches). ``realtime=True`` paces a
    file at its native frame rate. ``slots`` frames are kept in shared memory.
    ``reconnect``: a :class:`Reconnect` policy (default for live sources), or False to stop at
    the first failure. Returns once the source is open; raises its error otherwise (a bad URL,
    wrong credentials, a missing file: :class:`SourceError` subclasses).
    """
    return Publisher(
        name,
        source,
        mode=mode,
        slots=slots,
        max_readers=max_readers,
        realtime=realtime,
        reconnect=reconnect,
        start_timeout=start_timeout,
    )


def _create(name: str, slots: int, max_readers: int, mode: Mode, desc: str) -> Control:
    for _ in range(2):
        try:
            return create_control(name, slots, max_readers, mode, desc)
        except FileExistsError:
            pass
        if not dead_stream(name):
            raise StreamExists(f"stream {name!r} is already published by a running process")
        remove_stream(name)  # left by a publisher that was killed: take the name over
    raise StreamExists(f"stream {name!r} is being published by another process")


_CREATION_GRACE = 5.0  # a control segment this young without a header is still being created


def dead_stream(name: str) -> bool:
    """True if stream ``name`` exists, is this user's, and its publisher died.

    Stops its orphaned capture process too, but only one that provably is that stream's
    capture (see :func:`framebus._platform.is_process`): the pids in a segment are anyone's
    bytes. A file that is not this user's regular file is never judged dead (nor removed).
    """
    path = os.path.join(plat.SHM_DIR, control_name(name))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return False  # a symlink or another user's file: not ours to remove
    old = time.time() - st.st_mtime > _CREATION_GRACE
    if st.st_size < MIN_CONTROL_SIZE:  # empty or truncated: a publisher killed while creating
        return old
    try:
        seg = plat.Segment.open(control_name(name), max_size=MAX_CONTROL_SIZE)
    except plat.SegmentRefused:
        return old  # e.g. oversized: not a stream framebus made
    except OSError:
        return False  # gone meanwhile
    try:
        w = seg.words
        if w.load(Hdr.MAGIC) != MAGIC:  # being created, or garbage left by a crash then
            return old
        if plat.process_alive(w.load(Hdr.OWNER_PID), w.load(Hdr.OWNER_START)):
            return False
        writer, start = w.load(Hdr.WRITER_PID), w.load(Hdr.WRITER_START)
        if plat.is_process(writer, start, seg.uid, ["-m", CAPTURE_MODULE]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)  # an orphaned capture, hung in its source
        return True
    finally:
        seg.close()


def remove_stream(name: str, inode: int | None = None, instance: int | None = None) -> None:
    """Unlink the segments of stream ``name``.

    With ``inode`` and ``instance``: only that stream instance's (a publisher closing its own
    stream); without: everything of the name (removing what a dead publisher left).
    """
    prefix = f"{CONTROL_PREFIX}{name}."
    if instance is not None:
        prefix = data_name(name, instance, 0)[:-1]
    for seg in plat.list_segments(prefix):
        plat.unlink_segment(seg)
    if inode is None:
        plat.unlink_segment(control_name(name))
    else:
        plat.unlink_if_same(control_name(name), inode)


@atexit.register
def _close_all() -> None:
    for pub in list(_open_publishers):
        pub.close()


def _install_sigterm_exit() -> None:
    """Make SIGTERM a normal exit (so cleanup runs) unless the program handles it already."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
