"""A WebSocket client of framebus's web server, for tests and benchmarks (needs wsproto, which
``framebus[web]`` brings)."""

from __future__ import annotations

import contextlib
import socket

__all__ = ["WebSocketClient"]


class WebSocketClient:
    """A blocking WebSocket client (wsproto over a real socket; the receive buffer settable, to
    play a slow link) for tests and benchmarks of the web's H.264 route
    (``/streams/NAME.h264``; :func:`framebus.web._h264.parse` reads its messages). Answers
    pings and the server's close; ``accepted``/``status``/``close_code`` say how it went."""

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
        extra = [(k.encode(), v.encode()) for k, v in headers or []]
        request = events.Request(host=f"127.0.0.1:{port}", target=path, extra_headers=extra)
        self.sock.sendall(self.ws.send(request))
        self.accepted: bool | None = None
        self.status = 0  # the HTTP status of a refused handshake
        self.close_code: int | None = None
        self._pending: list[bytes] = []
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
