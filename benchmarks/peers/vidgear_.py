"""vidgear ``CamGear`` on a real stream (its threaded queue on or off); needs vidgear installed
(it is registered only then) and reads URLs, files and devices only."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common import Params
from .base import Consumer, Handle, Peer, _BarcodeConsumer, _url

__all__ = ["CamGearPeer"]


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
