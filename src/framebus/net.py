"""framebus across machines, over ZeroMQ (``pip install 'framebus[zmq]'``).

* :func:`export` / :class:`Exporter`: serve this machine's streams on ``tcp://HOST:PORT``
  (``framebus serve ... --zmq``, ``framebus share``);
* ``framebus.attach("zmq://HOST:PORT/NAME")``: read one (a :class:`RemoteReader`);
  ``framebus.VideoCapture("zmq://...")`` and ``framebus serve cam=zmq://...`` relay it into
  local shared memory (a :class:`~framebus.sources.Remote` source);
* :func:`list_exports`: what an exporter serves (``framebus ls zmq://HOST:PORT``);
* :func:`generate_keys`: a CURVE key directory (``framebus keys generate DIR``).

The protocol and its buffering policy: :mod:`framebus.sinks.zmq`.
"""

from __future__ import annotations

from ._zmq import CLIENT_KEY, CLIENTS_DIR, SERVER_KEY, generate_keys
from .reader import RemoteReader
from .sinks.zmq import CodecName, ExportedStream, ExporterStats, ZmqSink
from .sinks.zmq_export import Exporter, export
from .sources.spec import Remote
from .sources.zmq import ReceiverStats, list_exports

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
