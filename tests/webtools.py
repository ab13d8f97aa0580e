"""Tools for the web wing's tests (tests/web/): real servers on free ports, real clients."""

from __future__ import annotations

import http.client
import socket
from typing import Any

from framebus.testing.websocket import WebSocketClient as WsClient
from framebus.web import EncoderHub, WebServer, app

__all__ = ["MjpegClient", "Web", "WsClient", "http_get"]

Response = tuple[int, dict[str, str], bytes]


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> Response:
    """(status, lower-cased headers, body) of a GET on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Web:
    """A real uvicorn server (framebus.web.WebServer) on 127.0.0.1 and a free port."""

    def __init__(self, streams: list[str] | None = None, **kw: Any) -> None:
        self.hub = EncoderHub()
        self.server = WebServer(app(streams, hub=self.hub, **kw), "127.0.0.1", 0, hub=self.hub)
        self.server.start()
        self.port = self.server.port

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return http_get(self.port, path, headers)

    def close(self) -> None:
        self.server.stop()


class MjpegClient:
    """Reads an MJPEG response part by part, with its own socket (rcvbuf settable)."""

    def __init__(self, port: int, path: str, rcvbuf: int | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a slow link: the client's kernel must not soak up the stream either
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        self.conn.sock = sock
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("content-type", "")

    def part(self) -> tuple[dict[str, str], bytes] | None:
        """The next part's headers and JPEG; None at the end of the response."""
        line = self.resp.readline()
        while line in (b"\r\n", b"\n"):
            line = self.resp.readline()
        if not line:
            return None
        assert line.strip() == b"--framebus-frame", line
        headers = {}
        while (line := self.resp.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        if not headers:
            return None
        body = self.resp.read(int(headers["content-length"]))
        return headers, body

    def close(self) -> None:
        self.resp.close()  # it holds the socket too
        self.conn.close()
