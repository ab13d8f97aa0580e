"""The kernel's view of a viewer's connection (framebus.web._sockets) on real TCP sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from conftest import wait_until
from framebus.web import _sockets


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of a loopback TCP connection; the client's buffer small."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        try:
            _sockets.cap(server)
            yield server, client
        finally:
            server.close()
    finally:
        client.close()
        listener.close()


def test_what_a_viewer_has_not_read_is_ahead(connection: tuple[socket.socket, ...]) -> None:
    server, client = connection
    window = _sockets.PeerWindow(server)
    assert window.ahead()[0] == 0
    server.setblocking(False)
    sent = 0
    try:
        while sent < 200_000:
            sent += server.send(b"x" * 8192)
    except BlockingIOError:
        pass
    # what sits unread in the client's own receive buffer counts, not only the send queue
    # (the kernel lets a buffer hold somewhat more than the window it advertised)
    assert wait_until(lambda: window.ahead()[0] >= sent * 0.6, timeout=5)
    time.sleep(0.3)  # the read rate is known after 0.25 s: nothing was read, so not ready
    assert not window.ready()
    got = 0
    client.settimeout(5)
    while got < sent:
        got += len(client.recv(65536))
    assert wait_until(window.ready, timeout=5)
    assert window.ahead()[0] == 0


def test_unsent_low_follows_the_send_queue(connection: tuple[socket.socket, ...]) -> None:
    server, client = connection
    assert _sockets.unsent_low(server)
    server.setblocking(False)
    try:
        while True:
            server.send(b"x" * 65536)
    except BlockingIOError:
        pass
    assert not _sockets.unsent_low(server)
    client.settimeout(5)
    assert wait_until(lambda: (client.recv(1 << 20), _sockets.unsent_low(server))[1], timeout=10)
