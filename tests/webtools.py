"""Tools for the web wing's tests (tests/web/): real servers on free ports, real clients."""

from __future__ import annotations

import contextlib
import http.client
import socket
from typing import Any

from framebus.web import EncoderHub, WebServer, app

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


class WsClient:
    """A WebSocket client (wsproto over a real socket, rcvbuf settable) of the H.264 route."""

    def __init__(
        self,
        port: int,
        path: str,
        rcvbuf: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        import wsproto
        from wsproto import events

        self._events = events
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        request = events.Request(host=f"127.0.0.1:{port}", target=path,
                                 extra_headers=headers or [])  # fmt: skip
        self.sock.sendall(self.ws.send(request))
        self.accepted: bool | None = None
        self.status = 0  # the HTTP status of a refused handshake
        self.close_code: int | None = None
        self._pending: list[Any] = []
        self._message = bytearray()
        while self.accepted is None:
            self._pump()

    def _pump(self) -> None:
        events = self._events
        data = self.sock.recv(1 << 16)
        if not data:
            self.close_code = self.close_code or 1006
            if self.accepted is None:
                self.accepted = False
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, events.AcceptConnection):
                self.accepted = True
            elif isinstance(event, events.RejectConnection):
                self.accepted, self.status = False, event.status_code
            elif isinstance(event, events.CloseConnection):
                self.close_code = event.code
                if self.accepted is None:
                    self.accepted = False
                with contextlib.suppress(Exception):
                    self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, events.Ping):
                self.sock.sendall(self.ws.send(event.response()))
            elif isinstance(event, (events.BytesMessage, events.TextMessage)):
                data = event.data
                self._message += data if isinstance(data, bytes) else data.encode()
                if event.message_finished:
                    self._pending.append(bytes(self._message))
                    self._message.clear()

    def message(self) -> bytes | None:
        """The next whole message; None once the server closed."""
        while not self._pending:
            if self.close_code is not None:
                return None
            self._pump()
        return self._pending.pop(0)

    def shutdown(self) -> None:
        """End the connection under a thread blocked in :meth:`message` (it returns None)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(self._events.TextMessage(data=text)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sock.sendall(self.ws.send(self._events.CloseConnection(code=1000)))
        self.sock.close()
