"""framebus benchmarks: framebus side by side with the peers its users would otherwise use.

Run ``python -m benchmarks`` (``--help`` for options). Scenarios live in their own modules
(:mod:`.age`, :mod:`.throughput`, :mod:`.fanout`, :mod:`.idle`, :mod:`.memory`, and on a real
RTSP stream from framebus's GStreamer test server, :mod:`.live`: :mod:`.rtsp`,
:mod:`.capture_cpu`, :mod:`.restarts`; :mod:`.web`, MJPEG servers to browsers, with its
viewers in :mod:`.web_viewers`; and :mod:`.pipe`, frames through a Unix pipe); the peers and
their registry (where more peers are added) in :mod:`.peers` (the web servers in
:mod:`.peers.web_`, a registry of their own); :mod:`.network`, frames over ZeroMQ between
processes and network namespaces (its peers in :mod:`.peers.zmq_`); and :mod:`.sampling`,
every Nth frame of a file to JPEG files against the seed 001 loop.
"""

__all__: list[str] = []
