"""One measurement session: a peer's producer in this process, its consumer in a spawned worker.

Every consumer runs in a fresh worker process (started with 'spawn'), so each peer is measured
from a clean interpreter, its CPU and memory can be sampled on their own, and nothing a peer
leaves behind (threads, file descriptors, shared memory) can affect the next one. The worker
runs *loops* (:data:`LOOPS`) on the consumer and sends their results back through a pipe.
"""

from __future__ import annotations

import contextlib
import random
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

import psutil

from .common import SPAWN, BenchError, Params, busy_cores, exit_with_parent, stop_process
from .peers import Consumer, Handle, Peer

__all__ = ["LOOPS", "Monitor", "RssMonitor", "run_session"]

Job = tuple[str, dict[str, Any]]


# --- loops (run in the consumer process) -------------------------------------------------------


def loop_age(
    consumer: Consumer,
    *,
    sleep: float,
    duration: float,
    jitter: float = 0.0,
    seed: int = 1,
    discard: int = 0,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """Get a frame, note its age (now - capture time), 'process' it by sleeping; repeat.

    "Now" is ``Frame.received`` when the consumer took it itself, else ``time.time()`` when
    ``get`` returns. The consumer's :meth:`~Consumer.counters` over the loop join the result.

    Each sleep is ``sleep + uniform(-jitter/2, +jitter/2)`` seconds, from a generator seeded with
    ``seed`` (every peer gets the same sequence). The first ``discard`` frames are not recorded
    (a new reader's first frame may be one that was waiting already: not a wake-up).
    ``warmup`` > 0: the measurement proper starts ``warmup`` s after the first frame came
    (``counted_from``, in the time base of ``t``) and lasts ``duration`` from there; the
    frames before it are recorded too, for plots.
    """
    rng = random.Random(seed)
    t, ages, seqs = [], [], []
    timeouts = 0
    counted_from = 0.0
    counts0 = consumer.counters()
    t0 = time.perf_counter()
    t_end = t0 + warmup + duration  # moved once the first frame is in (warmup > 0)
    while (now := time.perf_counter()) < t_end:
        frame = consumer.get(timeout=max(0.05, min(2.0, t_end - now)))
        got = time.time()
        if frame is None:
            timeouts += 1
            continue
        if discard > 0:
            discard -= 1
            continue
        t.append(time.perf_counter() - t0)
        if warmup and len(t) == 1:
            counted_from = t[0] + warmup
            t_end = t0 + counted_from + duration
        ages.append((got if frame.received is None else frame.received) - frame.timestamp)
        seqs.append(frame.seq)
        if sleep:
            time.sleep(max(0.0, sleep + jitter * (rng.random() - 0.5)))
    counts = {k: v - counts0.get(k, 0) for k, v in consumer.counters().items()}
    return {
        "t": t,
        "age": ages,
        "seq": seqs,
        "timeouts": timeouts,
        "counted_from": counted_from,
        **counts,
    }


def loop_rate(consumer: Consumer, *, duration: float, warmup: float) -> dict[str, Any]:
    """Frames per second the consumer receives when it takes them as fast as it can."""
    t_warm = time.perf_counter() + warmup
    while time.perf_counter() < t_warm:
        consumer.get(timeout=1.0)
    n = 0
    lo = hi = None
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    t_end = t0 + duration
    while time.perf_counter() < t_end:
        frame = consumer.get(timeout=0.5)
        if frame is None:
            continue
        n += 1
        lo = frame.seq if lo is None else min(lo, frame.seq)
        hi = frame.seq if hi is None else max(hi, frame.seq)
    elapsed = time.perf_counter() - t0
    produced = (hi - lo + 1) if lo is not None and hi is not None else 0
    return {
        "frames": n,
        "elapsed": elapsed,
        "fps": n / elapsed,
        "produced_fps": produced / elapsed,
        "cpu": (time.process_time() - cpu0) / elapsed,
    }


def loop_idle(consumer: Consumer, *, duration: float) -> dict[str, Any]:
    """CPU use of this (waiting) consumer process and of the whole machine over ``duration``."""
    first = consumer.get(timeout=10.0)
    if first is None:
        raise BenchError("no first frame within 10 s")
    frames = 0
    cpu0 = time.process_time()
    sys0 = psutil.cpu_times()
    t0 = time.perf_counter()
    t_end = t0 + duration
    while (now := time.perf_counter()) < t_end:
        if consumer.get(timeout=min(1.0, t_end - now)) is not None:
            frames += 1
    elapsed = time.perf_counter() - t0
    sys1 = psutil.cpu_times()
    return {
        "cpu": (time.process_time() - cpu0) / elapsed,
        "machine": busy_cores(sys0, sys1),
        "frames": frames,
        "elapsed": elapsed,
    }


LOOPS: dict[str, Callable[..., dict[str, Any]]] = {
    "age": loop_age,
    "rate": loop_rate,
    "idle": loop_idle,
}


def _worker(peer: Peer, params: Params, handle: Handle, jobs: list[Job], conn: Connection) -> None:
    exit_with_parent()
    try:
        with peer.consumer(params, handle) as consumer:
            conn.send(("ready", consumer.pids()))
            results = [LOOPS[name](consumer, **kwargs) for name, kwargs in jobs]
        conn.send(("done", results))  # after the consumer closed: nothing left running
    except (BrokenPipeError, SystemExit):
        pass  # the benchmark process stopped us, or is gone: nobody to report to
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# --- the benchmark-process side -----------------------------------------------------------------


class Monitor(Protocol):
    """Samples the processes of a session while its loops run."""

    period: float

    def begin(self, pids: dict[str, int]) -> None: ...

    def sample(self) -> None: ...


class RssMonitor:
    """Resident set size of every process of a session, every ``period`` seconds."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.t0 = 0.0
        self.procs: dict[str, psutil.Process] = {}
        self.samples: dict[str, list[tuple[float, float]]] = {}

    def begin(self, pids: dict[str, int]) -> None:
        self.t0 = time.perf_counter()
        for role, pid in pids.items():
            try:
                self.procs[role] = psutil.Process(pid)
                self.samples[role] = []
            except psutil.Error:
                pass
        self.sample()

    def sample(self) -> None:
        t = time.perf_counter() - self.t0
        for role, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                self.samples[role].append((t, proc.memory_info().rss / 2**20))


def run_session(
    peer: Peer,
    params: Params,
    jobs: list[Job],
    *,
    timeout: float,
    monitor: Monitor | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` on ``peer``'s consumer in a spawned worker; return one result per job.

    Raises BenchError if the worker fails or does not finish within ``timeout`` seconds. The
    worker and everything the peer started are stopped on every path.
    """
    with peer.producer(params) as handle:
        here, there = SPAWN.Pipe()
        proc = SPAWN.Process(
            target=_worker,
            args=(peer, params, handle, jobs, there),
            name=f"bench-consumer-{peer.key}",
            daemon=True,
        )
        finished = False
        try:
            proc.start()
            there.close()
            deadline = time.monotonic() + timeout
            monitoring = False
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{peer.key}: no result within {timeout:.0f} s")
                wait = min(left, monitor.period) if monitor is not None and monitoring else left
                if here.poll(wait):
                    try:
                        kind, payload = here.recv()
                    except EOFError:
                        raise BenchError(
                            f"{peer.key}: consumer process died (exit code {proc.exitcode})"
                        ) from None
                    if kind == "ready" and monitor is not None:
                        assert proc.pid is not None
                        monitor.begin({"consumer": proc.pid, **handle.pids, **payload})
                        monitoring = True
                    elif kind == "done":
                        finished = True
                        return list(payload)
                    elif kind == "error":
                        raise BenchError(f"{peer.key}: consumer failed:\n{payload}")
                elif monitor is not None and monitoring:
                    monitor.sample()
        finally:
            here.close()
            stop_process(proc, grace=2.0 if finished else 0.0)  # failed: no waiting
