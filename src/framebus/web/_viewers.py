"""A viewer of a stream awaited from an event loop: the encoder's thread wakes it, and a timer
bounds each wait (shared by the MJPEG responses and the H.264 WebSocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from framebus import ReadTimeout
from framebus.sinks import Encoded, FrameSink, Subscription

from ._hub import EncoderHub, Variant

__all__ = ["Deadline", "Viewer"]


class Deadline:
    """``async with Deadline(s):`` raises TimeoutError if the block takes over ``s`` seconds.

    One timer per block, where ``asyncio.wait_for`` (before Python 3.12) wraps each awaited
    call in a task of its own: per viewer and frame, that was most of the server's CPU.
    """

    __slots__ = ("_fired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._fired = False

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._fire)

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._handle.cancel()
        if self._fired and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            raise TimeoutError


class _Wakeups:
    """Wakes the viewers of one event loop from the encoders' threads: one thread-safe call
    per batch of woken viewers (a wake-up of the loop costs a write to its self-pipe), not
    one per viewer and frame."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._due: list[asyncio.Event] = []

    def wake(self, event: asyncio.Event) -> None:
        with self._lock:
            self._due.append(event)
            if len(self._due) > 1:
                return  # a flush is already scheduled and will see this one
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            due, self._due = self._due, []
        for event in due:
            event.set()


_wakeups: dict[asyncio.AbstractEventLoop, _Wakeups] = {}
_wakeups_lock = threading.Lock()


def _wakeups_of(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    with _wakeups_lock:
        for old in [old for old in _wakeups if old.is_closed()]:
            del _wakeups[old]
        if loop not in _wakeups:
            _wakeups[loop] = _Wakeups(loop)
        return _wakeups[loop]


class Viewer:
    """A subscription awaited from an event loop: the sink's worker thread wakes it."""

    def __init__(self, hub: EncoderHub, name: str, variant: Variant) -> None:
        wakeups = _wakeups_of(asyncio.get_running_loop())
        self._hub = hub
        self._event = asyncio.Event()
        event = self._event
        self.sink: FrameSink[Any]
        self.sub: Subscription[Any]
        self.sink, self.sub = hub.subscribe_sink(name, variant, lambda: wakeups.wake(event))

    async def next(self, timeout: float) -> Encoded[Any] | None:
        """The newest item, or None after ``timeout`` seconds without one."""
        self._event.clear()
        try:
            return self.sub.get(timeout=0)  # cleared first: a put after this wakes the wait
        except ReadTimeout:
            pass
        with contextlib.suppress(TimeoutError):
            async with Deadline(timeout):
                await self._event.wait()
        try:
            return self.sub.get(timeout=0)
        except ReadTimeout:
            return None

    def close(self) -> None:
        self.sub.close()
        # an encoder left without viewers may be closed: in the loop's executor, never here
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().run_in_executor(None, self._hub.sweep)
