"""Not a transport: ``np.copyto`` of one frame in a loop, the memory-bandwidth reference."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..common import Frame, Params, make_base_frame
from .base import Consumer, Handle, Peer

__all__ = ["CopyPeer"]


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
