"""Running one source into one ring: the loop, where it runs, and the supervisor.

* ``_loop``: decode frames from a :class:`~framebus.Source` into the ring;
* ``_host``: the capture process and the capture thread, behind one interface;
* ``_supervision``: the reconnect policy, its backoff, and the :class:`Supervisor`;
* ``__main__``: ``python -m framebus.capture``, the capture process.
"""

from __future__ import annotations

from ._host import STOP_GRACE, CaptureHost, ProcessHost, ThreadHost
from ._loop import capture_loop
from ._supervision import Backoff, Reconnect, Supervisor

__all__ = [
    "STOP_GRACE",
    "Backoff",
    "CaptureHost",
    "ProcessHost",
    "Reconnect",
    "Supervisor",
    "ThreadHost",
    "capture_loop",
]
