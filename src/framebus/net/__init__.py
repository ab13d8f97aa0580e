"""framebus across machines, over ZeroMQ (``pip install 'framebus[zmq]'``).

* :func:`export` / :class:`Exporter`: serve this machine's streams on ``tcp://HOST:PORT``
  (``framebus serve ... --zmq``, ``framebus share``);
* ``framebus.attach("zmq://HOST:PORT/NAME")``: read one (a :class:`RemoteReader`);
  ``framebus.VideoCapture("zmq://...")`` and ``framebus serve cam=zmq://...`` relay it into
  local shared memory (a :class:`~framebus.sources.Remote` source);
* :func:`list_exports`: what an exporter serves (``framebus ls zmq://HOST:PORT``);
* :func:`generate_keys`: a CURVE key directory (``framebus keys generate DIR``).

The wing, one module per concern: :mod:`.protocol` (the messages and the credit book, no
I/O), :mod:`._sockets` (URLs, socket options, keys), :mod:`.receiver` (one connection for one
stream, in a thread) with :mod:`.feed` (a remote reader's) and :mod:`.source` (a relay's),
:mod:`.listing` (``ls``), :mod:`.sink` (one encoder per stream), :mod:`.server` (the ROUTER and
its buffering policy), :mod:`.exporter` (the server in a process of its own), :mod:`.limits`
(what one peer may cost), :mod:`.config` (options and counters as JSON).
"""

from __future__ import annotations

from ..reader import RemoteReader
from ..sources.spec import Remote
from ._sockets import CLIENT_KEY, CLIENTS_DIR, SERVER_KEY, generate_keys
from .config import ExportedStream, ExporterStats
from .exporter import Exporter, export
from .listing import list_exports
from .receiver import ReceiverStats
from .sink import CodecName, ZmqSink

__all__ = [
    "CLIENTS_DIR",
    "CLIENT_KEY",
    "SERVER_KEY",
    "CodecName",
    "ExportedStream",
    "Exporter",
    "ExporterStats",
    "ReceiverStats",
    "Remote",
    "RemoteReader",
    "ZmqSink",
    "export",
    "generate_keys",
    "list_exports",
]
