"""Peers over ``multiprocessing``: the seeds' ``Manager().list()`` stack and ``mp.Queue`` FIFOs
(unbounded and bounded), each fed by a producer process."""

from __future__ import annotations

import contextlib
import gc
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.managers import SyncManager
from typing import Any

import numpy as np
import psutil

from ..common import SPAWN, Frame, Params, exit_with_parent, stop_process
from .base import Consumer, Handle, Peer, _produce

__all__ = ["ManagerStackPeer", "QueuePeer"]


# --- the seeds' Manager().list() stack --------------------------------------------------------


def _stack_producer(params: Params, stack: Any, top: int, start: Any, stop: Any) -> None:
    exit_with_parent()

    def emit(seq: int, ts: float, frame: np.ndarray) -> None:
        stack.append((seq, ts, frame))
        if len(stack) >= top:  # the seeds' "clear the stack at capacity, then gc.collect()"
            del stack[:]
            gc.collect()

    with contextlib.suppress(BrokenPipeError, EOFError, ConnectionError):
        _produce(params, emit, start, stop)


class _StackConsumer(Consumer):
    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.last: np.ndarray | None = None

    def get(self, timeout: float) -> Frame | None:
        deadline = time.perf_counter() + timeout
        stack = self.stack
        while True:  # the seeds poll len() in a busy loop
            if len(stack) != 0:
                try:
                    seq, ts, frame = stack.pop()
                except IndexError:  # cleared between len() and pop(): not process-safe
                    continue
                self.last = frame
                return Frame(seq, ts)
            if time.perf_counter() > deadline:
                return None


def _new_children(before: set[int]) -> dict[str, int]:
    found = {}
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.pid not in before and "resource_tracker" not in " ".join(child.cmdline()):
                found["manager"] = child.pid
    return found


@dataclass(frozen=True)
class ManagerStackPeer(Peer):
    """The seeds' (000-002) design: a ``Manager().list()`` used as a stack."""

    key: str = "manager-stack"
    label: str = "Manager().list() stack (seeds)"
    scenarios: frozenset[str] = frozenset({"age", "throughput", "idle", "memory"})
    top: int = 100

    def settings(self, params: Params) -> str:
        return (
            "`multiprocessing.Manager().list()`; a producer process `append((seq, ts, frame))` "
            f"and, at `len() >= {self.top}` (the seeds' `top`), `del stack[:]` + `gc.collect()`; "
            "the consumer busy-polls `len(stack) != 0` and `pop()`s the top, as in the seeds"
        )

    @contextlib.contextmanager
    def producer(self, params: Params) -> Iterator[Handle]:
        start, stop = SPAWN.Event(), SPAWN.Event()  # (creates the resource tracker first)
        before = {c.pid for c in psutil.Process().children()}
        mgr = SyncManager(ctx=SPAWN)
        mgr.start(exit_with_parent)  # the manager server goes if the benchmark dies
        with mgr:
            pids = _new_children(before)
            stack = mgr.list()
            proc = SPAWN.Process(
                target=_stack_producer,
                args=(params, stack, self.top, start, stop),
                name="bench-stack-producer",
                daemon=True,
            )
            proc.start()
            try:
                assert proc.pid is not None
                yield Handle({"stack": stack}, {"producer": proc.pid, **pids}, start)
            finally:
                stop.set()
                stop_process(proc)

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        handle.start.set()
        yield _StackConsumer(handle.data["stack"])


# --- multiprocessing.Queue ----------------------------------------------------------------------


def _queue_producer(params: Params, q: Any, start: Any, stop: Any) -> None:
    exit_with_parent()

    def emit(seq: int, ts: float, frame: np.ndarray) -> None:
        while True:  # a bounded queue blocks the producer (back-pressure); stop still works
            try:
                q.put((seq, ts, frame), timeout=0.2)
                return
            except queue.Full:
                if stop.is_set():
                    return

    _produce(params, emit, start, stop)
    q.cancel_join_thread()  # do not wait at exit to flush frames nobody will read


class _QueueConsumer(Consumer):
    def __init__(self, q: Any) -> None:
        self.q = q
        self.last: np.ndarray | None = None

    def get(self, timeout: float) -> Frame | None:
        try:
            seq, ts, frame = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        self.last = frame
        return Frame(seq, ts)


@dataclass(frozen=True)
class QueuePeer(Peer):
    """A ``multiprocessing.Queue`` FIFO from a producer process."""

    key: str = "mpqueue"
    label: str = "mp.Queue FIFO (unbounded)"
    scenarios: frozenset[str] = frozenset({"age", "idle", "memory"})
    maxsize: int = 0

    def settings(self, params: Params) -> str:
        bound = (
            "unbounded (`maxsize=0`)"
            if self.maxsize <= 0
            else f"`maxsize={self.maxsize}`, `put()` blocks the producer when full"
        )
        return (
            f"`multiprocessing.Queue`, {bound}; a producer process `put((seq, ts, frame))`, "
            "the consumer `get()`s in FIFO order"
        )

    @contextlib.contextmanager
    def producer(self, params: Params) -> Iterator[Handle]:
        q = SPAWN.Queue(self.maxsize)
        start, stop = SPAWN.Event(), SPAWN.Event()
        proc = SPAWN.Process(
            target=_queue_producer,
            args=(params, q, start, stop),
            name="bench-queue-producer",
            daemon=True,
        )
        proc.start()
        try:
            assert proc.pid is not None
            yield Handle({"queue": q}, {"producer": proc.pid}, start)
        finally:
            stop.set()
            stop_process(proc, grace=1.0)
            q.close()
            q.cancel_join_thread()

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        handle.start.set()
        yield _QueueConsumer(handle.data["queue"])
