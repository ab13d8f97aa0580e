"""MJPEG for WSGI servers (Flask, Django, gunicorn): an iterator of bytes.

``return flask.Response(framebus.web.mjpeg_stream("cam"), mimetype=framebus.web.MJPEG_MIMETYPE)``

Buffering policy: the viewer holds the newest encoded frame only, as in the ASGI app; the
encoder is the process's (shared with every other viewer, thread or task). A WSGI server
writes each chunk to the socket with a blocking ``sendall``: the thread waits until the
kernel took it, so nothing queues in the server (Werkzeug, gunicorn's sync and gthread
workers), but the kernel's send buffer autotunes to megabytes, and a viewer that stops reading
holds its thread for ever. Pass the request's ``environ`` and, where the server exposes the
socket (Werkzeug: ``werkzeug.socket``; gunicorn: ``gunicorn.socket``), the send buffer is
capped as :class:`~framebus.web.WebServer` does, the next frame is chosen only once the
kernel's unsent bytes are few (as in the ASGI app), and a viewer that takes no data for 10 s
is dropped (the server sees a socket timeout and closes this iterator).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from framebus import PublisherLost, ReadTimeout, SinkClosed, StreamEnded

from . import _mjpeg, _sockets
from ._hub import DEFAULT_QUALITY, EncoderHub, Variant, default_hub

WRITE_TIMEOUT = 10.0  # as the ASGI app's

__all__ = ["mjpeg_stream"]

_IDLE_WAIT = 1.0


def mjpeg_stream(
    name: str,
    *,
    width: int | None = None,
    quality: int = DEFAULT_QUALITY,
    environ: Mapping[str, Any] | None = None,
    hub: EncoderHub | None = None,
) -> Iterator[bytes]:
    """The body of an MJPEG response for stream ``name`` (``multipart/x-mixed-replace``,
    :data:`MJPEG_MIMETYPE`): it ends when the stream ends or its publisher is lost.

    Raises StreamNotFound at once if no live publisher serves ``name``.
    """
    hub = hub or default_hub()
    sub = hub.subscribe(name, Variant(width, quality))  # raises now, not at the first next()
    sock = None
    if environ is not None:
        for key in ("werkzeug.socket", "gunicorn.socket"):
            if environ.get(key) is not None:
                sock = environ[key]
                _sockets.cap(sock)
                # a viewer that stops reading (a frozen tab, a vanished host) would hold this
                # thread in sendall() for ever: the server drops it after WRITE_TIMEOUT instead
                sock.settimeout(WRITE_TIMEOUT)
                break
    return _frames(hub, name, sub, sock)


def _frames(hub: EncoderHub, name: str, sub: Any, sock: Any) -> Iterator[bytes]:
    window = None if sock is None else _sockets.PeerWindow(sock)
    try:
        yield _mjpeg.first_chunk()
        while True:
            # sendall() returned once the kernel took the frame; choose the next one only
            # when the viewer has read most of it (a slow viewer then gets the newest frame,
            # not a queued one)
            if window is not None:
                if not _sockets.unsent_low(sock, WRITE_TIMEOUT):
                    return  # took nothing for WRITE_TIMEOUT: gone
                if not window.wait_read_blocking(WRITE_TIMEOUT):
                    return  # read nothing for WRITE_TIMEOUT: gone
            try:
                item = sub.get(timeout=_IDLE_WAIT)
            except ReadTimeout:
                continue
            except (StreamEnded, PublisherLost, SinkClosed):
                return
            chunk = _mjpeg.part(item.data, item.info)
            if window is not None:
                window.last_frame = len(chunk)
            yield chunk  # the server's write happens before the next get: no queue here
            hub.note_sent(name, len(chunk))
    finally:
        sub.close()  # the client left (the server closed the iterator) or the stream ended
        hub.sweep()
