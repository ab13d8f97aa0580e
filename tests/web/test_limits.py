"""What a client may cost the web server: a capped number of connections, a deadline for its
request head, and descriptors that never run out for the rest of the process."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

import framebus
from conftest import wait_until
from framebus.web import _server
from webtools import Web, http_get

Fixture = Any


def closed_by_peer(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_client_that_never_sends_a_request_head_is_closed(
    web: Fixture, pattern_stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: uvicorn waited for ever for the first request of a connection."""
    monkeypatch.setattr(_server, "HEAD_TIMEOUT", 1.0)
    w: Web = web()
    silent = socket.create_connection(("127.0.0.1", w.port))
    dribbling = socket.create_connection(("127.0.0.1", w.port))
    try:
        cut = False
        for byte in b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n":  # a byte every 0.1 s
            try:
                dribbling.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(0.1)
        assert cut or closed_by_peer(dribbling, 5)
        assert closed_by_peer(silent, 5)
        # a viewer's endless response is a request in progress: never cut
        status, _, _ = http_get(w.port, f"/streams/{pattern_stream.name}.jpg")
        assert status == 200
    finally:
        silent.close()
        dribbling.close()


def test_connections_beyond_the_cap_are_refused_and_counted(
    pattern_stream: Any,
) -> None:
    from framebus.web import EncoderHub, WebServer, app

    hub = EncoderHub()
    server = WebServer(app(hub=hub), "127.0.0.1", 0, hub=hub, max_connections=5)
    server.start()
    held = []
    try:
        for _ in range(12):
            held.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(0.5)
        refused = sum(closed_by_peer(s, 0.5) for s in held)
        assert refused == 7 and server.refused == 7
        for s in held:
            s.close()
        held.clear()
        assert wait_until(lambda: http_get(server.port, "/api/streams")[0] == 200)
    finally:
        for s in held:
            s.close()
        server.stop()


def test_idle_connections_of_one_host_cannot_keep_a_viewer_out(pattern_stream: Any) -> None:
    """At the cap, a new viewer takes the place of a connection that has been idle for a
    second (no request in progress): a host holding every place with silent connections
    cannot keep another host's viewer out."""
    from framebus.web import EncoderHub, WebServer, app

    hub = EncoderHub()
    server = WebServer(app(hub=hub), "127.0.0.1", 0, hub=hub, max_connections=8)
    server.start()
    held = []
    try:
        for _ in range(12):  # from another host (127.0.0.2), silent
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", server.port))
            held.append(s)
        assert wait_until(lambda: server.refused >= 4)
        time.sleep(_server.EVICT_IDLE + 0.2)
        status, _, body = http_get(server.port, f"/streams/{pattern_stream.name}.jpg")
        assert status == 200 and body[:2] == b"\xff\xd8"
        open_ = [s for s in held if not closed_by_peer(s, 0.3)]
        assert len(open_) <= 7  # one silent connection gave up its place
    finally:
        for s in held:
            s.close()
        server.stop()


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_serve_survives_more_idle_connections_than_it_has_descriptors(stream_name: str) -> None:
    """Before: at a 1024-descriptor limit, ~1100 idle connections made `serve --http --zmq`
    exit with a traceback (its status loop could not open /proc/N/stat)."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        http_port, zmq_port = a.getsockname()[1], b.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}=testpattern:160x120@15",
         "--http", f"127.0.0.1:{http_port}", "--zmq", f"tcp://127.0.0.1:{zmq_port}",
         "--interval", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_low_fd_limit,
    )  # fmt: skip
    held: list[socket.socket] = []
    try:
        assert wait_until(lambda: _answers(http_port), timeout=30), "serve did not start"
        for port in (http_port, zmq_port):
            for _ in range(300):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
        time.sleep(2)
        assert serve.poll() is None, "serve died"
        for s in held:
            s.close()
        held.clear()
        assert wait_until(lambda: _answers(http_port), timeout=30)
        url = f"zmq://127.0.0.1:{zmq_port}/{stream_name}"
        with framebus.attach(url, timeout=10, connect_timeout=10) as reader:
            reader.read_frame()
    finally:
        for s in held:
            s.close()
        serve.terminate()
        _, err = serve.communicate(timeout=30)
    assert "Traceback" not in err, err


def _answers(port: int) -> bool:
    try:
        return http_get(port, "/api/streams")[0] == 200
    except OSError:
        return False
