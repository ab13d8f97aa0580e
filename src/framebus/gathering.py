"""Many streams at once: :func:`gather` yields batches of the newest frame of each stream,
aligned by capture time, and never waits for a stream that is down.

How a batch is made. Each stream has a thread of its own that only *waits* (on the ring's
futex, or a ``zmq://`` receiver's event) and says when its stream has a new frame; the
frames themselves are taken by the gathering thread, so a batch copies nothing it does not
return (:meth:`Gather.read` copies each entry once; :meth:`Gather.view` lends the shared
slots). A batch is taken when every live stream has a frame newer than its last entry, or
one frame interval after the first of them had one (a slower stream's entry is then its last
frame again); a stream that missed its last frames (2.5 intervals) is not waited for. With
``max_skew``, a batch whose capture times are further apart than that waits (up to one frame
interval more) for the streams that are behind to bring a fresher frame, and
``Gather.batch.aligned`` says whether it managed. A stream without a new frame for ``timeout``
seconds, ended, or whose publisher is gone, is ``None`` in the batches and attached again by
its thread (every second) until it comes back.

gather is for live streams: a stream read in order (``mode="every"``, a file's default) gives
its next frame to each batch, not its newest.

Buffers: each stream's newest frame taken stays pinned in its slot (one per stream) until a
newer one replaces it; nothing else is held, whatever the run time.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from . import _exit
from .errors import FramebusError, ReadTimeout
from .feeds import Feed
from .reader import _open_feed
from .stats import FrameInfo

__all__ = ["DEFAULT_TIMEOUT", "BatchInfo", "Gather", "gather"]

DEFAULT_TIMEOUT = 2.0
"""Seconds without a new frame after which a stream's entry is None."""
_LOOK_AGAIN = 1.0  # seconds between attempts to attach a stream that is down
_WAIT = 0.25  # a waiting thread looks at its stop flag this often
_DEFAULT_INTERVAL = 1 / 25  # a stream's frame interval while its rate is not known
_KEEPING_UP = 2.5  # intervals since a stream's last frame after which a batch does not wait


class _Member:
    """One stream of a gather: its feed (made and closed by its own thread, used for taking
    frames by the gathering thread), and what the gatherer holds of it."""

    def __init__(self, name: str, cond: threading.Condition, connect_timeout: float) -> None:
        self.name = name
        self.cond = cond
        self.connect_timeout = connect_timeout
        self.feed: Feed | None = None
        self.ready = False  # a frame waits to be taken (or acquire will raise)
        self.failed = False  # the gatherer found the feed ended: the thread closes it
        self.stop = False
        self.view: np.ndarray | None = None  # the frame held (pinned), the batch's entry
        self.info: FrameInfo | None = None
        self.taken_at = -math.inf  # monotonic time a new frame was last taken
        self.interval = _DEFAULT_INTERVAL
        self.error = "not attached yet"
        self.tried = False  # the first attempt to attach was made
        self.thread = threading.Thread(target=self._run, name=f"framebus-gather-{name}",
                                       daemon=True)  # fmt: skip

    # -- the waiting thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stop:
            try:
                self._turn()
            except Exception as exc:
                with self.cond:  # header...: said in errors(), looked at again in a second)
                    self.error, self.tried, self.failed, self.ready = str(exc), True, True, False
                    self._detach()
                    self.cond.notify_all()
                    self.cond.wait_for(lambda: self.stop, _LOOK_AGAIN)
        with self.cond:  # (the gatherer may be taking from the feed: not under its feet)
            self._detach()

    def _turn(self) -> None:
        feed = self.feed
        if feed is None or self.failed:
            self._reattach()
            return
        if self.ready:
            with self.cond:  # taken or not, look again when told (or now and then)
                self.cond.wait_for(lambda: not self.ready or self.stop or self.failed, _WAIT)
            return
        if feed.wait(_WAIT):
            with self.cond:
                if not self.failed:
                    self.ready = True
                    self.cond.notify_all()

    def _reattach(self) -> None:
        with self.cond:
            failed = self.failed
            self._detach()
            if failed:  # (an ended stream, a dead publisher: not again at once)
                self.cond.wait_for(lambda: self.stop, _LOOK_AGAIN)
            if self.stop:
                return
        try:
            feed = _open_feed(self.name, {"connect_timeout": self.connect_timeout}
                              if self.name.startswith("zmq://") else {})  # fmt: skip
        except FramebusError as exc:
            with self.cond:
                self.error, self.tried = str(exc), True
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.stop, _LOOK_AGAIN)
            return
        if not feed.alive() or feed.stats().state in ("ended", "failed"):  # (a file at its end:
            feed.close()  # its publisher stays, its last frame is not news again and again)
            with self.cond:
                self.error, self.tried = f"stream {self.name!r} has ended", True
                self.cond.notify_all()
                self.cond.wait_for(lambda: self.stop, _LOOK_AGAIN)
            return
        rate = feed.fps()
        with self.cond:
            self.feed, self.failed, self.ready, self.error = feed, False, False, ""
            self.tried = True
            self.cond.notify_all()
            self.interval = 1 / rate if 1 <= rate <= 1000 else _DEFAULT_INTERVAL
            if self.stop:
                self._detach()

    def _detach(self) -> None:
        """Close the feed (the waiting thread's job: it may be inside :meth:`Feed.wait`);
        under the condition's lock, so that the gatherer does not use it meanwhile."""
        feed, self.feed = self.feed, None
        self.view, self.info, self.ready = None, None, False
        if feed is not None:
            feed.close()  # (releases the frame held)

    # -- the gathering thread (under the condition's lock) -----------------------------------

    def take(self) -> bool:
        """Take the newest frame if one is ready (releasing the one held); True if taken."""
        feed = self.feed
        if feed is None or not self.ready or self.failed or self.stop:
            return False
        if self.view is not None:
            feed.release()
            self.view = None
        try:
            view, info = feed.acquire(0.0)
        except ReadTimeout:
            self.ready = False  # (a latest-mode ring moved on: nothing newer after all)
            if not feed.alive():  # (or its publisher is gone: acquire(0) does not look)
                self.failed, self.error = True, f"the publisher of {self.name!r} stopped"
            self.cond.notify_all()
            return False
        except FramebusError as exc:  # ended, or its publisher died: the thread attaches again
            self.failed, self.error, self.info, self.ready = True, str(exc), None, False
            self.cond.notify_all()
            return False
        self.view, self.info, self.ready = view, info, False
        self.taken_at = time.monotonic()
        self.cond.notify_all()
        return True

    def entry(self, now: float, timeout: float) -> tuple[np.ndarray | None, FrameInfo | None]:
        """The frame held, or None if the stream is down or gave nothing for ``timeout``."""
        if self.view is None or self.feed is None or self.failed:
            if not self.error:
                self.error = "no frame yet"
            return None, None
        if now - self.taken_at > timeout:
            if not self.error:
                self.error = f"no new frame for {timeout:g} s"
            return None, None
        return self.view, self.info


@dataclass(frozen=True)
class BatchInfo:
    """How the last batch was made."""

    spread: float | None
    """Seconds between the oldest and the newest capture time in it (None: fewer than 2)."""
    aligned: bool
    """``spread`` is within ``max_skew`` (True without ``max_skew``)."""
    fresh: tuple[bool, ...]
    """Whether each entry is a frame newer than the stream's entry in the batch before."""


class Gather:
    """Batches of the newest frame of each of ``names``; see :func:`gather`. Use from one
    thread; :meth:`close` (or ``with``) stops the waiting threads and detaches."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        max_skew: float | None = None,
        fps: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = 5.0,
    ) -> None:
        names = list(names)
        if not names:
            raise ValueError("gather() needs at least one stream")
        if len(set(names)) != len(names):
            raise ValueError("gather() got the same stream twice")
        if max_skew is not None and not max_skew > 0:
            raise ValueError(f"max_skew must be > 0 seconds, not {max_skew!r}")
        if fps is not None and not 0 < fps <= 1000:
            raise ValueError(f"fps must be 0..1000, not {fps!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self.names = names
        self.max_skew, self.fps, self.timeout = max_skew, fps, timeout
        self._cond = threading.Condition()
        self._members = [_Member(n, self._cond, connect_timeout) for n in names]
        self.infos: list[FrameInfo | None] = [None] * len(names)
        """The :class:`FrameInfo` of each entry of the last batch (None where it was None)."""
        self.batch: BatchInfo | None = None
        """How the last batch was made: capture-time spread, aligned, which entries are new."""
        self._last_batch = -math.inf
        self._first = True
        self._connect_timeout = connect_timeout
        self._lent = False
        self._closed = False
        for m in self._members:
            m.thread.start()
        _exit.close_at_exit(self, sigterm=False)

    # -- batches ------------------------------------------------------------------------------

    def errors(self) -> list[str]:
        """Why each stream's entry is None ("" where it is not)."""
        with self._cond:
            return [m.error if self.infos[i] is None else "" for i, m in enumerate(self._members)]

    def _gather(self) -> list[np.ndarray | None]:
        """Make the next batch (the views held, under no lock: the caller lends or copies)."""
        if self._closed:
            raise FramebusError("this gather was closed")
        if self.fps:
            pause = self._last_batch + 1 / self.fps - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        members, cond = self._members, self._cond
        fresh = [False] * len(members)
        with cond:
            if self._first:  # every stream attached (or found down) before the first batch
                self._first = False
                cond.wait_for(lambda: all(m.tried for m in members), self._connect_timeout + 1)
            # 1. the first news (or a timeout's worth of nothing: a batch of what there is)
            cond.wait_for(lambda: any(m.ready and not m.failed for m in members), self.timeout)
            start = time.monotonic()
            live = [m for m in members if m.feed is not None and not m.failed]
            patience = min((m.interval for m in live), default=_DEFAULT_INTERVAL)
            # 2. every live stream's news, for one frame interval at most — not waiting for a
            # stream that missed its last frames (one that stalls holds up one batch, not all)
            keeping_up = [m for m in live if start - m.taken_at < _KEEPING_UP * m.interval
                          or m.taken_at == -math.inf]  # fmt: skip
            cond.wait_for(lambda: all(m.ready for m in keeping_up if not m.failed), patience)
            for i, m in enumerate(members):
                fresh[i] = m.take()
            # 3. with max_skew: the streams behind get one interval more to catch up
            if self.max_skew is not None:
                deadline = start + patience + max(m.interval for m in live) if live else start
                while (behind := self._behind(time.monotonic())) and time.monotonic() < deadline:
                    if not any(m.ready for m in behind):
                        cond.wait_for(lambda b=behind: any(m.ready for m in b),  # type: ignore[misc]
                                      deadline - time.monotonic())  # fmt: skip
                    for m in behind:
                        if m.take():
                            fresh[members.index(m)] = True
            now = time.monotonic()
            entries = [m.entry(now, self.timeout) for m in members]
        self._last_batch = time.monotonic()
        frames = [view for view, _ in entries]
        self.infos = [info for _, info in entries]
        stamps = [info.timestamp for info in self.infos if info is not None]
        spread = max(stamps) - min(stamps) if len(stamps) >= 2 else None
        aligned = self.max_skew is None or spread is None or spread <= self.max_skew
        self.batch = BatchInfo(spread, aligned, tuple(f and v is not None for f, v in
                                                      zip(fresh, frames, strict=True)))  # fmt: skip
        return frames

    def _behind(self, now: float) -> list[_Member]:
        """The live streams whose frame is more than ``max_skew`` older than the newest."""
        assert self.max_skew is not None
        held = [(m, m.info.timestamp) for m in self._members
                if m.entry(now, self.timeout)[1] is not None and m.info is not None]  # fmt: skip
        if len(held) < 2:
            return []
        newest = max(t for _, t in held)
        # (a stream that stalled brings no fresher frame: it is not waited for)
        return [m for m, t in held if newest - t > self.max_skew and m.feed is not None
                and now - m.taken_at < _KEEPING_UP * m.interval]  # fmt: skip

    def read(self) -> list[np.ndarray | None]:
        """The next batch: one entry per stream, in order — a copy of its newest frame, or
        None for a stream that is down or gave nothing for ``timeout`` s. :attr:`infos`
        describes each entry, :attr:`batch` the batch."""
        if self._lent:
            raise RuntimeError("read() inside a view() block: end the block first")
        return [None if f is None else f.copy() for f in self._gather()]

    def view(self) -> contextlib.AbstractContextManager[list[np.ndarray | None]]:
        """Zero copy: the next batch as read-only views of the shared slots, valid inside the
        ``with`` block only (for a ``zmq://`` stream, the decoded frame itself)."""
        return self._view()

    @contextlib.contextmanager
    def _view(self) -> Iterator[list[np.ndarray | None]]:
        if self._lent:
            raise RuntimeError("view() inside a view() block")
        frames = self._gather()
        self._lent = True
        try:
            yield frames
        finally:
            self._lent = False

    def __iter__(self) -> Iterator[list[np.ndarray | None]]:
        """Batches (copies) until :meth:`close`."""
        while not self._closed:
            yield self.read()

    # -- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the waiting threads and detach from every stream (idempotent)."""
        if self._closed:
            return
        if self._lent:
            raise RuntimeError("close() inside a view() block: its frames are still lent")
        self._closed = True
        with self._cond:
            for m in self._members:
                m.stop = True
            self._cond.notify_all()
        for m in self._members:
            m.thread.join(5.0)
        _exit.forget(self)

    def __enter__(self) -> Gather:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def gather(
    names: Sequence[str],
    *,
    max_skew: float | None = None,
    fps: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = 5.0,
) -> Gather:
    """Read the newest frame of several streams at once: local names and ``zmq://`` URLs.

    ``for frames in framebus.gather(["door", "yard", "zmq://gpu-box:5555/gate"]):`` — each
    batch has one entry per name, in order: the stream's newest frame, or ``None`` while the
    stream is down (not published yet, ended, its publisher gone, its host unreachable) or has
    given no new frame for ``timeout`` seconds; such a stream never holds the others up, and
    comes back by itself. ``g.infos`` has each entry's :class:`~framebus.FrameInfo` (capture
    time, age), ``g.batch`` how the batch was made (``spread`` of capture times, ``aligned``,
    which entries are ``fresh``), ``g.errors()`` why an entry is None.

    A batch comes when every live stream has a new frame, or one frame interval after the
    first one did. ``max_skew`` (seconds): a batch whose capture times spread further waits up
    to one more interval for the streams that are behind (``g.batch.aligned`` says whether
    that was enough). ``fps`` caps the batch rate. ``g.view()`` lends the frames without
    copying (a ``with`` block). ``connect_timeout``: seconds each ``zmq://`` attach may take.
    """
    return Gather(names, max_skew=max_skew, fps=fps, timeout=timeout,
                  connect_timeout=connect_timeout)  # fmt: skip
