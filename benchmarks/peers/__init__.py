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
painted on the frame (:func:`framebus.testing.read_timestamp`): see
:class:`.base._BarcodeConsumer`.

Adding a peer: subclass :class:`Peer`, implement ``settings`` and ``consumer`` (and
``producer`` if something must run outside the consumer process), list the scenarios it can
take part in, and :func:`register` an instance at the bottom of this package's
``__init__.py`` (registration order is the report's order). A peer whose module is not
installed is not registered (the import is guarded). vidgear ``CamGear`` reads
only URLs, files and devices, not a synthetic frame generator: it takes part in ``rtsp`` only.

One module per family: :mod:`.base` (the interface, the registry, shared helpers),
:mod:`.framebus_`, :mod:`.multiprocessing_`, :mod:`.threads`, :mod:`.decoders`,
:mod:`.vidgear_` and :mod:`.reference`.
"""

from __future__ import annotations

import importlib.util

from .base import PEERS, Consumer, Handle, Peer, peers_for, register, settings_table
from .decoders import OpenCVPeer, PyAVPeer
from .framebus_ import FramebusAttachPeer, FramebusPeer
from .multiprocessing_ import ManagerStackPeer, QueuePeer
from .reference import CopyPeer
from .threads import LatestThreadPeer
from .vidgear_ import CamGearPeer

__all__ = ["PEERS", "Consumer", "Handle", "Peer", "peers_for", "register", "settings_table"]


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
