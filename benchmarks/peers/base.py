"""The peer interface (:class:`Peer`, :class:`Handle`, :class:`Consumer`), the registry, and
what several families share: the peers' paced producer and the consumer of a real stream."""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from framebus.testing import read_timestamp

from ..common import (
    Frame,
    Pacer,
    Params,
    StreamParams,
    make_base_frame,
    md_table,
    wait_event,
)

__all__ = ["PEERS", "Consumer", "Handle", "Peer", "peers_for", "register", "settings_table"]


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
