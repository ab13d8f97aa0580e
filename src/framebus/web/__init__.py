"""Watch any stream in a browser: MJPEG that encodes each frame once for any number of viewers.

* :func:`app` — a Starlette ASGI app: a page with a live tile per stream (``/``), MJPEG
  (``/streams/NAME.mjpg``, ``?width=`` and ``?quality=``), snapshots (``/streams/NAME.jpg``),
  JSON stats (``/api/streams``) and Prometheus metrics (``/metrics``). Run it with uvicorn or
  mount it: ``api.mount("/video", framebus.web.app())``.
* :func:`mjpeg_stream` — the same MJPEG for WSGI: a Flask view is
  ``return flask.Response(framebus.web.mjpeg_stream("cam"), mimetype=framebus.web.MJPEG_MIMETYPE)``.
* :class:`WebServer` — uvicorn with each viewer's connection capped (what ``framebus serve
  --http`` and ``framebus web`` run).

Policy, for every viewer of every server: one encoder per stream and variant, shared by the
whole process; it encodes a frame at most once and never faster than the source, and only
while someone watches. A viewer holds the newest encoded frame only: a slow viewer skips
frames (counted for it) and never delays the others. Needs ``framebus[web]``.
"""

from __future__ import annotations

from ._asgi import SNAPSHOT_TIMEOUT, WRITE_TIMEOUT, app
from ._hub import MAX_VARIANTS, EncoderHub, TooManyVariants, Variant, WebStats, default_hub
from ._mjpeg import MJPEG_MIMETYPE
from ._server import WebServer, parse_bind, read_auth
from ._wsgi import mjpeg_stream

__all__ = [
    "MAX_VARIANTS",
    "MJPEG_MIMETYPE",
    "SNAPSHOT_TIMEOUT",
    "WRITE_TIMEOUT",
    "EncoderHub",
    "TooManyVariants",
    "Variant",
    "WebServer",
    "WebStats",
    "app",
    "default_hub",
    "mjpeg_stream",
    "parse_bind",
    "read_auth",
]
