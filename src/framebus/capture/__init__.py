"""Running one source into one ring: the loop, where it runs, and the supervisor.

* ``_loop``: decode frames from a :class:`~framebus.Source` into the ring;
* ``_host``: the capture process (forked by ``_forkserver``, or a fresh interpreter) and the
  capture thread, behind one interface;
* ``_forkserver``: the warm process that forks capture processes in milliseconds;
* ``_supervision``: the reconnect policy, its backoff, and the :class:`Supervisor`;
* ``__main__``: ``python -m framebus.capture``, the capture process.
"""

from __future__ import annotations

from ._host import STOP_GRACE, CaptureHost, ForkedHost, ProcessHost, ThreadHost, launch
from ._loop import capture_loop
from ._supervision import Backoff, Reconnect, Supervisor

__all__ = [
    "STOP_GRACE",
    "Backoff",
    "CaptureHost",
    "ForkedHost",
    "ProcessHost",
    "Reconnect",
    "Supervisor",
    "ThreadHost",
    "capture_loop",
    "launch",
]
