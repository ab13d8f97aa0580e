"""The peers framebus is measured against, behind one small interface, and their registry.

A *peer* is a way of getting frames from a producer to a consumer. Each has two halves:

* :meth:`Peer.producer` runs in the benchmark process and starts whatever must exist before a
  consumer comes (a framebus stream, a ``Manager`` and its producer process, a queue...). It
  yields a picklable :class:`Handle`.
* :meth:`Peer.consumer` runs in the consumer process (a fresh spawned worker, see
  :mod:`benchmarks.session`) and yields a :class:`Consumer` whose ``get(timeout)`` returns the
  next frame the way that peer's users get it.

Peer producers make the same frames at the same cost: copy a precomputed frame into a new array
and stamp ``time.time()``, paced at the requested fps like a camera (framebus uses its own
``TestPattern``, which copies a precomputed strip into the shared slot and stamps the time).

Peers that read a real live stream take part in the ``rtsp`` scenario: there the producer is
framebus's GStreamer RTSP server (:mod:`benchmarks.live`), the consumer gets
:class:`~benchmarks.common.StreamParams` with its URL, opens it the way that peer's users do,
and a frame's age is ``time.time()`` when the read returns minus the send time the server
painted on the frame (:func:`framebus.testing.read_timestamp`): see :class:`_BarcodeConsumer`.

Adding a peer: subclass :class:`Peer`, implement ``settings`` and ``consumer`` (and
``producer`` if something must run outside the consumer process), list the scenarios it can
take part in, and :func:`register` an instance at the bottom of this module. A peer whose
module is not installed is not registered (the import is guarded). vidgear ``CamGear`` reads
only URLs, files and devices, not a synthetic frame generator: it takes part in ``rtsp`` only.
"""

from __future__ import annotations

import abc
import contextlib
import gc
import importlib.util
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager
from typing import Any, Literal

import numpy as np
import psutil

import framebus
from framebus.testing import read_timestamp

from .common import (
    SPAWN,
    STREAM_PREFIX,
    Frame,
    Pacer,
    Params,
    StreamParams,
    capture_pids,
    exit_with_parent,
    make_base_frame,
    md_table,
    stop_process,
    wait_event,
)

__all__ = ["PEERS", "Consumer", "Handle", "Peer", "peers_for", "register"]


class Consumer(abc.ABC):
    """The consumer side of a peer, living in the consumer process."""

    @abc.abstractmethod
    def get(self, timeout: float) -> Frame | None:
        """The next frame as this peer's users get it; None if none came within ``timeout`` s."""

    def pids(self) -> dict[str, int]:
        """Helper processes this consumer started itself (role -> pid), for CPU and RSS."""
        return {}

    def counters(self) -> dict[str, int]:
        """Running counts worth reporting (e.g. unreadable frames); loops report the change."""
        return {}


@dataclass
class Handle:
    """What the producer half hands to the consumer half (must pickle across 'spawn')."""

    data: dict[str, Any] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    """Producer-side processes (role -> pid), for CPU and RSS sampling."""
    start: Any = None
    """An event the consumer sets once it is ready; producers wait for it (no head start)."""


@dataclass(frozen=True)
class Peer(abc.ABC):
    key: str
    label: str
    scenarios: frozenset[str]

    @abc.abstractmethod
    def settings(self, params: Params) -> str:
        """How this peer is set up for ``params`` (printed in the report)."""

    @contextlib.contextmanager
    def producer(self, params: Params) -> Iterator[Handle]:
        """Start the producer side in the benchmark process (default: nothing to start)."""
        yield Handle()

    @abc.abstractmethod
    def consumer(
        self, params: Params, handle: Handle
    ) -> contextlib.AbstractContextManager[Consumer]:
        """Open the consumer side (in the consumer process)."""


PEERS: dict[str, Peer] = {}
"""Every registered peer by key, in registration order (the order of the report)."""


def settings_table(peers: list[Peer], params: Any) -> str:
    """The Markdown table that says which settings each peer used."""
    return md_table(
        ["peer", "settings"], [[p.label, p.settings(params)] for p in peers], align="ll"
    )


def register(peer: Peer) -> Peer:
    if peer.key in PEERS:
        raise ValueError(f"peer {peer.key!r} registered twice")
    PEERS[peer.key] = peer
    return peer


def peers_for(
    scenario: str, only: tuple[str, ...] | None = None, always: tuple[str, ...] = ("framebus",)
) -> list[Peer]:
    """The registered peers that take part in ``scenario``: those in ``only`` if given, plus the
    references in ``always`` (ratios are computed against them)."""
    return [
        p
        for p in PEERS.values()
        if scenario in p.scenarios and (only is None or p.key in only or p.key in always)
    ]


def _pattern(params: Params, pattern: str = "bars") -> framebus.TestPattern:
    kind: Literal["bars", "counter"] = "counter" if pattern == "counter" else "bars"
    return framebus.TestPattern(params.width, params.height, params.fps, pattern=kind)


def _produce(params: Params, emit: Any, start: Any, stop: Any) -> None:
    """The peers' camera: new array = copy of a precomputed frame, stamped, paced at fps.

    Runs in a producer process (whose target calls :func:`exit_with_parent` first) or in a
    thread of the consumer process.
    """
    base = make_base_frame(params)
    if start is not None and not wait_event(start, stop):
        return
    pacer = Pacer(params.fps)
    seq = 0
    while not pacer.wait(stop):
        frame = base.copy()
        seq += 1
        emit(seq, time.time(), frame)


# --- real live streams: age from the send time painted on each frame --------------------------


class _BarcodeConsumer(Consumer):
    """Consumer of a real stream (:class:`StreamParams`): :meth:`read_frame` is one read the way
    the peer's users read; ``get`` notes ``time.time()`` as soon as it returns, then decodes the
    send time the RTSP server painted on the frame. Frames whose barcode cannot be read (a
    decoder's grey frame while it waits for a keyframe) are skipped and counted."""

    def __init__(self) -> None:
        self.unreadable = 0
        self.last: np.ndarray | None = None  # held like a user holds the frame being processed

    @abc.abstractmethod
    def read_frame(self, timeout: float) -> np.ndarray | None:
        """One read; None if nothing came (a timeout, or a failed read)."""

    def get(self, timeout: float) -> Frame | None:
        deadline = time.perf_counter() + timeout
        while True:
            frame = self.read_frame(max(0.0, deadline - time.perf_counter()))
            received = time.time()
            if frame is None:
                return None
            sent = read_timestamp(frame)
            if sent is not None:
                self.last = frame
                return Frame(round(sent * 1e6), sent, received=received)
            self.unreadable += 1
            if time.perf_counter() >= deadline:
                return None

    def counters(self) -> dict[str, int]:
        return {"unreadable": self.unreadable}


def _url(params: Params) -> str | None:
    return params.url if isinstance(params, StreamParams) else None


class _FramebusStreamConsumer(_BarcodeConsumer):
    def __init__(self, cap: framebus.StreamReader) -> None:
        super().__init__()
        self.cap = cap

    def read_frame(self, timeout: float) -> np.ndarray | None:
        cap = self.cap
        cap.timeout = timeout
        ok, frame = cap.read()
        if not ok:
            if isinstance(cap.last_error, framebus.ReadTimeout):
                return None
            raise cap.last_error or RuntimeError("read() failed without an error")
        return frame

    def pids(self) -> dict[str, int]:
        return capture_pids()


# --- framebus ---------------------------------------------------------------------------------


class _ReaderConsumer(Consumer):
    def __init__(self, cap: framebus.StreamReader, view: bool) -> None:
        self.cap = cap
        self.view = view
        self.last: np.ndarray | None = None  # held like a user holds the frame being processed

    def get(self, timeout: float) -> Frame | None:
        cap = self.cap
        if self.view:
            try:
                with cap.view(timeout) as f:
                    f[0, 0, 0]  # touch the shared pixels: zero-copy, but read
            except framebus.ReadTimeout:
                return None
        else:
            cap.timeout = timeout
            ok, frame = cap.read()
            if not ok:
                if isinstance(cap.last_error, framebus.ReadTimeout):
                    return None
                raise cap.last_error or RuntimeError("read() failed without an error")
            self.last = frame
        info = cap.info
        assert info is not None
        return Frame(info.seq, info.timestamp, info.skipped)

    def pids(self) -> dict[str, int]:
        return capture_pids()


@dataclass(frozen=True)
class FramebusPeer(Peer):
    """``framebus.VideoCapture(TestPattern)`` in the consumer process (capture in a child); on a
    real stream, ``framebus.VideoCapture(url)`` (``backend="av"``: through ``Media``)."""

    key: str = "framebus"
    label: str = "framebus VideoCapture"
    scenarios: frozenset[str] = frozenset({"age", "throughput", "idle", "memory", "rtsp"})
    view: bool = False
    pattern: str = "bars"
    backend: Literal["auto", "opencv", "av"] = "auto"

    def _source(self, url: str) -> str | framebus.Media:
        return url if self.backend == "auto" else framebus.Media(url, backend=self.backend)

    def settings(self, params: Params) -> str:
        if _url(params) is not None:
            how = {
                "auto": "`framebus.VideoCapture(url)` (default backend for `rtsp://`: "
                "framebus's RTSP client, RTP over TCP, a frame decoded when its last packet "
                "arrives, PyAV's H.264 decoder with 1 slice thread and `low_delay`)",
                "opencv": '`framebus.VideoCapture(framebus.Media(url, backend="opencv"))` '
                "(OpenCV/FFmpeg with framebus's live defaults: 1 decoder thread, RTSP over TCP, "
                "`fflags=nobuffer`, `flags=low_delay`)",
                "av": '`framebus.VideoCapture(framebus.Media(url, backend="av"))` '
                "(PyAV's RTSP demuxer, framebus's live defaults: `thread_type=SLICE`, 1 thread, "
                "TCP, `nobuffer`, `low_delay`)",
            }[self.backend]
            return (
                f"{how} in the consumer process, capture in its own process, mode=latest, "
                "slots=4; `ok, frame = cap.read()` (a copy)"
            )
        how = "`with cap.view() as f: f[0,0,0]` (zero-copy)" if self.view else "`cap.read()` (copy)"
        pattern = ', pattern="counter"' if self.pattern == "counter" else ""
        return (
            f"`framebus.VideoCapture(TestPattern({params.width}, {params.height}, "
            f"{params.fps}{pattern}))` in the consumer process, capture in its own process, "
            f"mode=latest, slots=4; {how}"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        name = f"{STREAM_PREFIX}vc-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        if (url := _url(params)) is not None:
            with framebus.VideoCapture(self._source(url), name=name) as cap:
                yield _FramebusStreamConsumer(cap)
            return
        with framebus.VideoCapture(_pattern(params, self.pattern), name=name) as cap:
            yield _ReaderConsumer(cap, self.view)


@dataclass(frozen=True)
class FramebusAttachPeer(Peer):
    """``framebus.publish()`` in the benchmark process, ``framebus.attach()`` in the consumer."""

    key: str = "framebus-attach"
    label: str = "framebus attach (other process)"
    scenarios: frozenset[str] = frozenset({"age", "idle", "rtsp"})

    def settings(self, params: Params) -> str:
        source = (
            "url"
            if _url(params) is not None
            else f"TestPattern({params.width}, {params.height}, {params.fps})"
        )
        return (
            f"`framebus.publish(name, {source})` in the benchmark process (capture in its "
            "child), `framebus.attach(name)` + `read()` in a spawned consumer process"
        )

    @contextlib.contextmanager
    def producer(self, params: Params) -> Iterator[Handle]:
        name = f"{STREAM_PREFIX}pub-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        url = _url(params)
        with framebus.publish(name, url if url is not None else _pattern(params)):
            yield Handle({"name": name, "stream": url is not None}, capture_pids())

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        with framebus.attach(handle.data["name"]) as cap:
            if handle.data.get("stream"):
                yield _FramebusStreamConsumer(cap)
            else:
                yield _ReaderConsumer(cap, view=False)


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


# --- imutils VideoStream: a thread that keeps the last frame ------------------------------------


class _LatestThreadConsumer(Consumer):
    def __init__(self, params: Params) -> None:
        self.item: tuple[int, float, np.ndarray] | None = None
        self.new = threading.Event()
        self.stop = threading.Event()
        self.last_seq = 0
        self.last: np.ndarray | None = None
        self.thread = threading.Thread(
            target=_produce, args=(params, self._emit, None, self.stop), daemon=True
        )
        self.thread.start()

    def _emit(self, seq: int, ts: float, frame: np.ndarray) -> None:
        self.item = (seq, ts, frame)  # imutils: self.frame = frame (overwrite)
        self.new.set()

    def get(self, timeout: float) -> Frame | None:
        deadline = time.perf_counter() + timeout
        while True:
            if not self.new.wait(max(0.0, deadline - time.perf_counter())):
                return None
            self.new.clear()
            item = self.item
            if item is not None and item[0] != self.last_seq:  # never the same frame twice
                seq, ts, self.last = item
                self.last_seq = seq
                return Frame(seq, ts)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2.0)


class _CvThreadConsumer(_BarcodeConsumer):
    """imutils ``VideoStream`` around ``cv2.VideoCapture``: a thread reads and overwrites the
    last frame; ``read_frame`` waits for a frame it has not returned yet."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.cap = _open_cv2(url, threads=1)
        self.item: tuple[int, np.ndarray] | None = None
        self.new = threading.Event()
        self.stop = threading.Event()
        self.last_n = 0
        self.thread = threading.Thread(target=self._run, name="bench-cv2-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            ok, frame = self.cap.read()
            if not ok:
                time.sleep(0.01)  # a broken stream fails at once: do not spin
                continue
            n += 1
            self.item = (n, frame)
            self.new.set()

    def read_frame(self, timeout: float) -> np.ndarray | None:
        deadline = time.perf_counter() + timeout
        while True:
            if not self.new.wait(max(0.0, deadline - time.perf_counter())):
                return None
            self.new.clear()
            item = self.item
            if item is not None and item[0] != self.last_n:  # never the same frame twice
                self.last_n = item[0]
                return item[1]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10.0)
        if not self.thread.is_alive():  # never release under a read in progress
            self.cap.release()


@dataclass(frozen=True)
class LatestThreadPeer(Peer):
    """imutils ``VideoStream``: a thread overwrites ``self.frame``; plus a new-frame event. On a
    real stream the thread reads ``cv2.VideoCapture`` with one decoder thread."""

    key: str = "latest-thread"
    label: str = "thread + last frame (imutils)"
    scenarios: frozenset[str] = frozenset({"age", "throughput", "idle", "rtsp"})

    def settings(self, params: Params) -> str:
        if _url(params) is not None:
            return (
                "a thread in the consumer process loops `cv2.VideoCapture(url, cv2.CAP_FFMPEG, "
                "[cv2.CAP_PROP_N_THREADS, 1]).read()` and overwrites `self.frame` (imutils "
                "`VideoStream`), plus a `threading.Event` new-frame signal so no frame is "
                "returned twice; `read()` hands out a reference (no copy)"
            )
        return (
            "a producer thread in the consumer process overwrites `self.frame` (imutils "
            "`VideoStream`), plus a `threading.Event` new-frame signal so no frame is returned "
            "twice"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        url = _url(params)
        c = _CvThreadConsumer(url) if url is not None else _LatestThreadConsumer(params)
        try:
            yield c
        finally:
            c.close()


# --- plain decoders reading the stream in the consumer process (FIFO) --------------------------


def _open_cv2(url: str, threads: int | None) -> Any:
    import cv2

    if threads is None:
        cap = cv2.VideoCapture(url)
    else:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not cap.isOpened():
        cap.release()
        raise RuntimeError(f"cv2.VideoCapture could not open {url}")
    return cap


class _OpenCVConsumer(_BarcodeConsumer):
    def __init__(self, cap: Any) -> None:
        super().__init__()
        self.cap = cap

    def read_frame(self, timeout: float) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok:
            time.sleep(0.01)  # a broken stream fails at once: do not spin
            return None
        return frame  # type: ignore[no-any-return]


@dataclass(frozen=True)
class OpenCVPeer(Peer):
    """``cv2.VideoCapture(url)``, read in the consumer's loop: a FIFO of decoded frames."""

    key: str = "cv2"
    label: str = "cv2.VideoCapture default"
    scenarios: frozenset[str] = frozenset({"rtsp"})
    threads: int | None = None

    def settings(self, params: Params) -> str:
        opened = (
            "`cv2.VideoCapture(url)`"
            if self.threads is None
            else "`cv2.VideoCapture(url, cv2.CAP_FFMPEG, "
            f"[cv2.CAP_PROP_N_THREADS, {self.threads}])`"
        )
        return (
            f"{opened}, OpenCV's default FFmpeg options (`OPENCV_FFMPEG_CAPTURE_OPTIONS` "
            "unset), `ok, frame = cap.read()` in the consumer's loop"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        url = _url(params)
        assert url is not None, "a peer of real streams only"
        cap = _open_cv2(url, self.threads)
        try:
            yield _OpenCVConsumer(cap)
        finally:
            cap.release()


PYAV_OPTIONS = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"}


class _PyAVConsumer(_BarcodeConsumer):
    def __init__(self, frames: Iterator[Any]) -> None:
        super().__init__()
        self.frames = frames

    def read_frame(self, timeout: float) -> np.ndarray | None:
        try:
            frame = next(self.frames)
        except StopIteration:
            time.sleep(0.01)
            return None
        return frame.to_ndarray(format="bgr24")  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PyAVPeer(Peer):
    """A plain PyAV decode loop with low-latency options, in the consumer process."""

    key: str = "pyav"
    label: str = "PyAV loop (SLICE, low delay)"
    scenarios: frozenset[str] = frozenset({"rtsp"})

    def settings(self, params: Params) -> str:
        opts = ", ".join(f'"{k}": "{v}"' for k, v in PYAV_OPTIONS.items())
        return (
            f'`av.open(url, options={{{opts}}})`, `stream.thread_type = "SLICE"` (thread '
            'count left to FFmpeg), `frame.to_ndarray(format="bgr24")` for each frame of '
            "`container.decode(stream)` in the consumer's loop"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        import av

        url = _url(params)
        assert url is not None, "a peer of real streams only"
        container = av.open(url, options=dict(PYAV_OPTIONS))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            yield _PyAVConsumer(iter(container.decode(stream)))
        finally:
            container.close()


# --- vidgear CamGear -----------------------------------------------------------------------------


class _CamGearConsumer(_BarcodeConsumer):
    def __init__(self, gear: Any) -> None:
        super().__init__()
        self.gear = gear

    def read_frame(self, timeout: float) -> np.ndarray | None:
        # CamGear.read() takes no timeout (THREAD_TIMEOUT is left at its default: none)
        frame = self.gear.read()
        if frame is None:
            time.sleep(0.01)
        return frame  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CamGearPeer(Peer):
    """vidgear ``CamGear(source=url).start()`` and ``read()``, as its documentation shows."""

    key: str = "camgear"
    label: str = "vidgear CamGear (queue on)"
    scenarios: frozenset[str] = frozenset({"rtsp"})
    options: tuple[tuple[str, Any], ...] = ()

    def settings(self, params: Params) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options)
        queue_mode = (
            "its threaded queue mode off: `read()` returns the frame its thread read last"
            if dict(self.options).get("THREADED_QUEUE_MODE") is False
            else "its defaults: threaded queue mode on, a `queue.Queue(maxsize=96)` FIFO"
        )
        return (
            f"`stream = CamGear(source=url{opts}).start()`, `frame = stream.read()` in the "
            f"consumer's loop, `stream.stop()` at the end; {queue_mode}; CamGear opens "
            "`cv2.VideoCapture(url)` with OpenCV's defaults"
        )

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        from vidgear.gears import CamGear

        url = _url(params)
        assert url is not None, "CamGear reads URLs, files and devices only"
        gear = CamGear(source=url, logging=False, **dict(self.options)).start()
        try:
            yield _CamGearConsumer(gear)
        finally:
            gear.stop()


# --- the memory-bandwidth reference -----------------------------------------------------------


class _CopyConsumer(Consumer):
    def __init__(self, params: Params) -> None:
        self.src = make_base_frame(params)
        self.dst = np.empty_like(self.src)
        self.seq = 0

    def get(self, timeout: float) -> Frame | None:
        np.copyto(self.dst, self.src)
        self.seq += 1
        return Frame(self.seq, time.time())


@dataclass(frozen=True)
class CopyPeer(Peer):
    """Not a transport: one ``np.copyto`` of the frame per 'frame', the memory-bandwidth limit."""

    key: str = "np.copyto"
    label: str = "np.copyto (bandwidth limit)"
    scenarios: frozenset[str] = frozenset({"throughput"})

    def settings(self, params: Params) -> str:
        return "`np.copyto(dst, src)` of one frame, in a loop, in one process (no transport)"

    @contextlib.contextmanager
    def consumer(self, params: Params, handle: Handle) -> Iterator[Consumer]:
        yield _CopyConsumer(params)


register(FramebusPeer())
register(
    FramebusPeer(
        key="framebus-view",
        label="framebus view() zero-copy",
        scenarios=frozenset({"throughput"}),
        view=True,
    )
)
register(
    FramebusPeer(
        key="framebus-counter",
        label="framebus read(), counter pattern",
        scenarios=frozenset({"throughput"}),
        pattern="counter",
    )
)
register(FramebusAttachPeer())
register(ManagerStackPeer())
register(QueuePeer())
register(
    QueuePeer(
        key="mpqueue-bounded",
        label="mp.Queue FIFO (maxsize=2)",
        scenarios=frozenset({"age", "throughput"}),
        maxsize=2,
    )
)
register(LatestThreadPeer())
register(CopyPeer())
register(
    FramebusPeer(
        key="framebus-opencv",
        label="framebus VideoCapture, OpenCV backend",
        scenarios=frozenset({"rtsp"}),
        backend="opencv",
    )
)
register(
    FramebusPeer(
        key="framebus-av",
        label="framebus VideoCapture, PyAV backend",
        scenarios=frozenset({"rtsp"}),
        backend="av",
    )
)
register(OpenCVPeer())
register(OpenCVPeer(key="cv2-1thread", label="cv2.VideoCapture N_THREADS=1", threads=1))
if importlib.util.find_spec("av") is not None:
    register(PyAVPeer())
if importlib.util.find_spec("vidgear") is not None:  # pip install vidgear (benchmarks only)
    register(CamGearPeer())
    register(
        CamGearPeer(
            key="camgear-noqueue",
            label="vidgear CamGear (queue off)",
            options=(("THREADED_QUEUE_MODE", False),),
        )
    )
