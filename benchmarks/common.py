"""Shared pieces: run configuration, frame parameters, pacing, process and statistics helpers."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import psutil

__all__ = [
    "SPAWN",
    "STREAM_PREFIX",
    "BenchError",
    "Config",
    "Frame",
    "Pacer",
    "Params",
    "Section",
    "Size",
    "StreamParams",
    "busy_cores",
    "capture_children",
    "capture_pids",
    "cpu_seconds",
    "process_cpu_seconds",
    "exit_on_sigterm",
    "exit_with_parent",
    "fmt",
    "leftover_segments",
    "log",
    "make_base_frame",
    "md_table",
    "percentile",
    "pyplot",
    "stop_process",
    "wait_event",
]

STREAM_PREFIX = "bench-"
"""Every framebus stream the benchmarks create is named ``bench-...``."""

SPAWN: SpawnContext = multiprocessing.get_context("spawn")
"""Every helper process is started with 'spawn': a fresh interpreter, no inherited state."""


class BenchError(RuntimeError):
    """A measurement could not be completed (the run goes on and reports it)."""


@dataclass(frozen=True, order=True)
class Size:
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Size:
        try:
            w, h = text.lower().split("x")
            size = cls(int(w), int(h))
        except ValueError:
            raise ValueError(f"a size is WIDTHxHEIGHT, like 1920x1080, not {text!r}") from None
        if size.width < 1 or size.height < 1:
            raise ValueError(f"size must be positive: {text!r}")
        return size

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Config:
    """What one run measures (built by the command line)."""

    scenarios: tuple[str, ...]
    sizes: tuple[Size, ...]
    duration: float
    quick: bool
    out: Path
    peers: tuple[str, ...] | None = None
    """Restrict every scenario to these peer keys (None: every registered peer)."""
    fanout_readers: tuple[int, ...] = (1, 2, 4, 8)
    slowness: tuple[int, ...] = (1, 3, 10)
    source_fps: float = 30.0
    sleep_jitter: float = 1.0
    """Consumer sleeps are spread uniformly over this many frame intervals, centred on
    k intervals (1.0: k +- 0.5 intervals; 0: exact multiples)."""
    rtsp_size: Size = Size(1280, 720)
    """Frame size of the real RTSP stream of the live-source scenarios."""
    rtsp_fps: int = 25
    restarts: int = 20
    """Server kills and restarts in the ``restarts`` scenario."""

    @property
    def frame_size(self) -> Size:
        """The size of the single-size scenarios: the largest of ``sizes``."""
        return max(self.sizes, key=lambda s: s.pixels)


@dataclass(frozen=True)
class Params:
    """What a producer makes: BGR uint8 frames of ``width`` x ``height`` at ``fps`` (None: max)."""

    width: int
    height: int
    fps: float | None

    @classmethod
    def of(cls, size: Size, fps: float | None) -> Params:
        return cls(size.width, size.height, fps)

    def describe(self) -> str:
        rate = "max speed" if self.fps is None else f"{self.fps:g} fps"
        return f"{self.width}x{self.height} BGR uint8 @ {rate}"


@dataclass(frozen=True)
class StreamParams(Params):
    """A real live stream at ``url`` (the RTSP scenarios): the consumer opens the URL itself."""

    url: str

    def describe(self) -> str:
        return f"RTSP H.264 {self.width}x{self.height} @ {self.fps:g} fps"


@dataclass(frozen=True)
class Frame:
    """What a consumer got: the frame's sequence number and capture time (``time.time()``)."""

    seq: int
    timestamp: float
    skipped: int | None = None
    received: float | None = None
    """``time.time()`` the moment the read returned, when the consumer took it itself (before
    decoding the frame's send-time barcode); None: the loop takes it when ``get`` returns."""


def make_base_frame(params: Params) -> np.ndarray:
    """The precomputed frame every peer producer copies (noise: no codec or pickle shortcut)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (params.height, params.width, 3), dtype=np.uint8)


class Pacer:
    """Paces a producer at ``fps`` like a camera: on schedule, resyncing (not bursting) if late."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.t0 = time.monotonic()
        self.n = 0

    def wait(self, stop: Any) -> bool:
        """Sleep until the next frame is due; True if ``stop`` (an Event) was set meanwhile."""
        if self.period:
            delay = self.t0 + self.n * self.period - time.monotonic()
            if delay > 0:
                if stop.wait(delay):
                    return True
            elif delay < -self.period:
                self.t0 -= delay
        self.n += 1
        return bool(stop.is_set())


def wait_event(event: Event, stop: Event, poll: float = 0.1) -> bool:
    """Wait for ``event``; False if ``stop`` is set first."""
    while not event.wait(poll):
        if stop.is_set():
            return False
    return True


def exit_on_sigterm() -> None:
    """Make SIGTERM a normal exit (``SystemExit``), so ``finally`` and ``with`` blocks run."""
    signal.signal(signal.SIGTERM, _raise_exit)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_with_parent() -> None:
    """In a helper process (main thread): exit cleanly on SIGTERM, and SIGTERM ourselves if the
    process that started us dies (even by SIGKILL), so that no helper outlives a benchmark."""
    parent = os.getppid()
    exit_on_sigterm()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()


def stop_process(proc: BaseProcess, grace: float = 2.0) -> None:
    """Make sure ``proc`` is gone: wait ``grace``, then SIGTERM, then SIGKILL; always joined."""
    if proc.pid is None:  # never started
        return
    if grace > 0:
        proc.join(grace)
    if proc.is_alive():
        proc.terminate()
        proc.join(max(grace, 2.0))
    if proc.is_alive():
        proc.kill()
        proc.join()
    with contextlib.suppress(ValueError):
        proc.close()


def capture_children(pid: int | None = None) -> list[psutil.Process]:
    """The framebus capture processes started by process ``pid`` (default: this one)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "framebus.capture" in child.cmdline():  # python -m framebus.capture
                found.append(child)
    return found


def capture_pids(pid: int | None = None) -> dict[str, int]:
    """``{"capture": pid}`` of the framebus capture process under ``pid`` (more: capture2...)."""
    procs = capture_children(pid)
    return {f"capture{i + 1 if i else ''}": p.pid for i, p in enumerate(procs)}


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread, living or exited) of process ``pid`` so far, with
    nanosecond resolution: its POSIX CPU-time clock on Linux (psutil's counts in 10 ms ticks)."""
    clock = ((~pid) << 3) | 2  # the kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    try:
        return time.clock_gettime(clock)
    except (OSError, OverflowError, AttributeError):
        return cpu_seconds(psutil.Process(pid))


def busy_cores(before: Any, after: Any) -> float:
    """Cores busy between two ``psutil.cpu_times()`` snapshots (1.0 = one full core)."""
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    if total <= 0:
        return 0.0
    return float((1.0 - idle / total) * (psutil.cpu_count() or 1))


def leftover_segments(prefix: str = "framebus.") -> list[str]:
    """Names in /dev/shm that start with ``prefix``."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q))


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell ('-' for missing)."""
    if value is None or not np.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A GitHub Markdown table; ``align`` is one letter per column (l/r), default right."""
    cols = len(header)
    align = (align or "l" + "r" * (cols - 1)).ljust(cols, "r")
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Section:
    """One scenario's part of the report."""

    key: str
    title: str
    markdown: str
    plots: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def log(message: str) -> None:
    """Progress on stderr (stdout gets the report)."""
    print(message, file=sys.stderr, flush=True)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (imported only when plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_age_figure(
    fig: Any, axes: Any, title: str, out: str | Path, name: str, height: float, top: float
) -> str:
    """Title, one legend above the panels of an age-over-time figure, and save it as ``name``."""
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(title, y=1 - 0.08 / height, va="top")
    fig.legend(
        handles, labels, loc="upper center", ncol=3, fontsize=9,
        bbox_to_anchor=(0.5, 1 - 0.4 / height),
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - top / height))
    path = Path(out) / name
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path.name
