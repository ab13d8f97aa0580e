"""The publishing side: :func:`publish` starts a named stream and owns all of its resources.

The publisher process owns the stream's shared-memory segments and its capture process (or
thread). It removes them on :meth:`Publisher.close`, at interpreter exit, on an exception
leaving a ``with`` block, on Ctrl-C, and on SIGTERM (converted to a normal exit when no other
handler is installed). A capture process whose publisher is killed removes them itself.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from types import FrameType, TracebackType
from typing import Literal

from . import _platform as plat
from ._layout import CONTROL_PREFIX, Hdr, Mode, State, control_name, validate_name
from ._ring import Control, create_control
from ._worker import capture_loop
from .errors import SourceError, SourceOpenError, StreamExists, error_class
from .sources import Source, SourceLike, describe, is_live, to_spec
from .stats import StreamStats, read_stats

__all__ = ["ModeName", "Publisher", "publish", "remove_stream"]

log = logging.getLogger("framebus")

ModeName = Literal["latest", "every"]

_open_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()
_STOP_GRACE = 2.0  # seconds a capture process gets to exit before it is killed


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
        self.start_timeout = start_timeout
        desc = describe(self._spec) if self._spec else f"source:{type(source).__name__}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.ctl = _create(name, slots, max_readers, Mode[mode.upper()], desc)
        _open_publishers.add(self)
        _install_sigterm_exit()
        if start:
            self.start()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing and wait until the source is open (raises its error if it is not)."""
        try:
            if self._source is not None:
                self._start_thread(self._source)
            else:
                self._start_process()
            self._wait_started()
        except BaseException:
            self.close()
            raise

    def _start_process(self) -> None:
        args = json.dumps({"name": self.name, "spec": self._spec, "realtime": self.realtime})
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "framebus._capture_process", args],
            stdin=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        threading.Thread(
            target=self._watch_process, name=f"framebus-watch-{self.name}", daemon=True
        ).start()

    def _start_thread(self, source: Source) -> None:
        ctl = self.ctl
        me = os.getpid()
        ctl.put(Hdr.WRITER_START, plat.process_start_time(me) or 0)
        ctl.put(Hdr.WRITER_PID, me)
        self._thread = threading.Thread(
            target=capture_loop,
            args=(ctl, source),
            kwargs={"realtime": self.realtime, "stop": lambda: ctl.state is State.CLOSED},
            name=f"framebus-capture-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def _watch_process(self) -> None:
        proc = self._proc
        assert proc is not None
        code = proc.wait()
        if self._closed:
            return
        state = self.ctl.state
        if state in (State.STARTING, State.LIVE):
            self.ctl.set_text(Hdr.ERROR_MSG, f"capture process exited with code {code}")
            self.ctl.set_state(State.FAILED)
            log.warning("stream %s: capture process exited with code %s", self.name, code)

    def _wait_started(self) -> None:
        ctl = self.ctl
        deadline = time.monotonic() + self.start_timeout
        futex = ctl.seg.address + Hdr.FRAME_FUTEX
        while True:
            token = ctl.words.load32(Hdr.FRAME_FUTEX)
            state = ctl.state
            if state is State.FAILED:
                kind = error_class(ctl.get(Hdr.ERROR_KIND))
                raise kind(ctl.text(Hdr.ERROR_MSG) or "the source failed")
            if state is not State.STARTING:
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise SourceError(f"capture process exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise SourceOpenError(
                    f"stream {self.name!r}: source did not open within {self.start_timeout} s"
                )
            plat.futex_wait(futex, token, 0.05)

    def close(self) -> None:
        """Stop capturing and remove the stream. Idempotent; readers see the stream end."""
        if self._closed:
            return
        self._closed = True
        ctl = self.ctl
        if ctl.state is not State.FAILED:
            ctl.set_state(State.CLOSED)
        else:
            ctl.notify()
        ctl.wake_writer()
        if self._proc is not None:
            _stop_process(self._proc)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(_STOP_GRACE)
        remove_stream(self.name, ctl.seg.inode)
        ctl.close()
        _open_publishers.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> StreamStats:
        """Counters of the stream; ``delivered``/``skipped`` summed over its readers."""
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
    start_timeout: float = 30.0,
) -> Publisher:
    """Start the named stream ``name`` capturing from ``source``; any process may attach to it.

    ``source``: a camera index, a file path, a URL, a :class:`TestPattern` or a :class:`Source`.
    ``mode``: ``"latest"`` (default for live sources: readers get the newest frame, older ones
    are skipped) or ``"every"`` (default for files and finite sources: capture waits for the
    slowest reader, and holds frames until a first reader attaches). ``realtime=True`` paces a
    file at its native frame rate. ``slots`` frames are kept in shared memory.
    Returns once the source is open; raises its error otherwise.
    """
    return Publisher(
        name,
        source,
        mode=mode,
        slots=slots,
        max_readers=max_readers,
        realtime=realtime,
        start_timeout=start_timeout,
    )


def _create(name: str, slots: int, max_readers: int, mode: Mode, desc: str) -> Control:
    for _ in range(2):
        try:
            return create_control(name, slots, max_readers, mode, desc)
        except FileExistsError:
            pass
        if _owner_alive(name):
            raise StreamExists(f"stream {name!r} is already published by a running process")
        remove_stream(name)  # left by a publisher that was killed: take the name over
    raise StreamExists(f"stream {name!r} is being published by another process")


def _owner_alive(name: str) -> bool:
    try:
        seg = plat.Segment.open(control_name(name))
    except FileNotFoundError:
        return False
    try:
        w = seg.words
        pid, start = w.load(Hdr.OWNER_PID), w.load(Hdr.OWNER_START)
        if pid == 0:  # still being created
            return time.time() - os.stat(os.path.join(plat.SHM_DIR, seg.name)).st_mtime < 5
        return plat.process_alive(pid, start)
    finally:
        seg.close()


def remove_stream(name: str, inode: int | None = None) -> None:
    """Unlink the segments of stream ``name`` (the control one only if its inode matches)."""
    for seg in plat.list_segments(f"{CONTROL_PREFIX}{name}."):
        plat.unlink_segment(seg)
    if inode is None:
        plat.unlink_segment(control_name(name))
    else:
        plat.unlink_if_same(control_name(name), inode)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(_STOP_GRACE)
        return
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        proc.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
