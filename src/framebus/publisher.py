"""The publishing side: :func:`publish` starts a named stream and owns all of its resources.

The publisher process owns the stream's shared-memory segments and its capture (a process, or
a thread for user sources), kept running by a :class:`~framebus.capture.Supervisor`. It removes
them on :meth:`Publisher.close`, at interpreter exit, on an exception leaving a ``with`` block,
on Ctrl-C, and on SIGTERM (converted to a normal exit when no other handler is installed). A
capture process whose publisher is killed removes them itself.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypedDict

from . import _exit
from .bus import Mode, State, create_stream, remove_stream, validate_name
from .capture import CaptureHost, Reconnect, Supervisor, ThreadHost, launch
from .sources import Source, SourceLike, to_spec
from .stats import StreamStats, read_stats

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ModeName", "Publisher", "Reconnect", "StreamOptions", "publish"]

ModeName = Literal["latest", "every"]


class StreamOptions(TypedDict, total=False):
    """The options of a stream, shared by :func:`publish`, :class:`Publisher` and
    :class:`~framebus.VideoCapture` (their docstrings say what each does)."""

    mode: ModeName | None
    slots: int
    max_readers: int
    realtime: bool
    reconnect: Reconnect | bool | None
    start_timeout: float


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
        self._source = source if isinstance(source, Source) else None
        self._spec = None if isinstance(source, Source) else to_spec(source)
        live = self._source.live if self._source is not None else self._spec.is_live  # type: ignore[union-attr]
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
        desc = self._spec.label if self._spec is not None else f"source:{type(source).__name__}"
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._final: StreamStats | None = None
        self.ctl = create_stream(name, slots, max_readers, Mode[mode.upper()], desc)
        self._supervisor = Supervisor(
            self.name,
            self.ctl,
            self._launch,
            self.reconnect,
            open_timeout=self._spec.open_timeout if self._spec is not None else 10.0,
        )
        _exit.close_at_exit(self)
        if start:
            self.start()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing and wait until the source is open (raises its error if it is not)."""
        if self._started or self._closed:
            raise RuntimeError("a publisher starts once")
        self._started = True
        try:
            self._supervisor.start(self.start_timeout)
        except BaseException:
            self.close()
            raise

    def _launch(self) -> CaptureHost:
        if self._source is not None:
            return ThreadHost(self.name, self._source, self.realtime)
        assert self._spec is not None
        return launch(self.ctl, self._spec, self.realtime)

    @property
    def capture_pid(self) -> int:
        """The pid of the current capture process (0 for a source run in a thread)."""
        host = self._supervisor.host
        return host.pid if host is not None else 0

    def close(self) -> None:
        """Stop capturing and remove the stream. Idempotent; readers see the stream end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        ctl = self.ctl
        if ctl.state is not State.FAILED:
            ctl.set_state(State.CLOSED)
        else:
            ctl.notify()
        ctl.wake_writer()
        self._supervisor.stop()
        self._final = read_stats(ctl)
        remove_stream(self.name, ctl.seg.inode, ctl.instance)
        if not self._supervisor.watching:
            ctl.close()  # else the watcher still holds it; the mapping dies with the process
        _exit.forget(self)

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


def publish(name: str, source: SourceLike, **options: Unpack[StreamOptions]) -> Publisher:
    """Start the named stream ``name`` capturing from ``source``; any process may attach to it.

    ``source``: a camera index, a file path, a URL, a :class:`TestPattern` or a :class:`Source`.
    ``mode``: ``"latest"`` (default for live sources: readers get the newest frame, older ones
    are skipped) or ``"every"`` (default for files and finite sources: capture waits for the
    slowest reader, and holds frames until a first reader attaches). ``realtime=True`` paces a
    file at its native frame rate. ``slots`` frames are kept in shared memory (default 4),
    for at most ``max_readers`` readers (default 64).
    ``reconnect``: a :class:`Reconnect` policy (default for live sources), or False to stop at
    the first failure. Returns once the source is open (within ``start_timeout``, default
    30 s); raises its error otherwise (a bad URL, wrong credentials, a missing file:
    :class:`SourceError` subclasses).
    """
    return Publisher(name, source, **options)
