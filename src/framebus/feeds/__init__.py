"""Where a reader's frames come from: one :class:`~framebus.StreamReader` over a feed.

A feed hands out one frame at a time with its metadata and says what the stream is; the reader
adds everything a user calls (``read``, ``grab``/``retrieve``, ``get``/``set``, iteration, the
transform). ``attach()`` picks the feed by the name it is given, as an HTTP client picks a
transport by URL:

* :mod:`.ring`: a stream of this machine, read from its shared-memory ring (zero copy);
* :mod:`framebus.net.feed`: a stream of another machine, received over ZeroMQ
  (``zmq://HOST:PORT/NAME``; it lives with the rest of the ZeroMQ wing).
"""

from __future__ import annotations

from .base import Feed, Landing, RemoteOptions

__all__ = ["Feed", "Landing", "RemoteOptions"]
