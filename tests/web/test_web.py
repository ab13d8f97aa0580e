"""The web wing against a real uvicorn server, real streams and real HTTP clients."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.web import _sockets
from webtools import MjpegClient, Web, http_get

Fixture = Any


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def test_frames_arrive_in_order_with_their_headers(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    client = MjpegClient(w.port, f"/streams/{pattern_stream.name}.mjpg")
    try:
        assert client.status == 200
        assert client.content_type == framebus.web.MJPEG_MIMETYPE
        seqs = []
        for _ in range(5):
            part = client.part()
            assert part is not None
            headers, jpeg = part
            assert headers["content-type"] == "image/jpeg"
            assert decode(jpeg).shape == (240, 320, 3)
            assert abs(float(headers["x-framebus-timestamp"]) - time.time()) < 5
            seqs.append(int(headers["x-framebus-seq"]))
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
    finally:
        client.close()


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_the_stream_is_well_framed_for_http_10_and_11_viewers(
    web: Fixture, pattern_stream: Any, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames are written below ASGI, straight to the socket: the body framing h11 chose for
    the response (chunks for HTTP/1.1, the bare body for 1.0) must hold byte for byte."""
    written = []
    direct_write = _sockets.BodyWriter.write

    def counted(self: _sockets.BodyWriter, pieces: tuple[bytes, ...]) -> int:
        written.append(len(pieces))
        return direct_write(self, pieces)

    monkeypatch.setattr(_sockets.BodyWriter, "write", counted)
    w: Web = web()
    with socket.create_connection(("127.0.0.1", w.port), timeout=20) as sock:
        request = f"GET /streams/{pattern_stream.name}.mjpg {version}\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        chunked = b"transfer-encoding: chunked" in head.lower()
        assert chunked == (version == "HTTP/1.1"), head

        def more() -> None:
            nonlocal data
            got = sock.recv(65536)
            assert got, "the server closed the stream"
            data += got

        decoded = b""  # body bytes, framing undone, not yet consumed

        def body_bytes(n: int) -> bytes:
            """The next n bytes of the body, chunk framing undone (and checked)."""
            nonlocal data, decoded
            while len(decoded) < n:
                if chunked:
                    while b"\r\n" not in data:
                        more()
                    size_line, _, data = data.partition(b"\r\n")
                    size = int(size_line, 16)
                    assert size > 0, "the body ended"
                    while len(data) < size + 2:
                        more()
                    assert data[size : size + 2] == b"\r\n", "a chunk not ended by CRLF"
                    decoded, data = decoded + data[:size], data[size + 2 :]
                else:
                    if not data:
                        more()
                    decoded, data = decoded + data, b""
            out, decoded = decoded[:n], decoded[n:]
            return out

        assert body_bytes(18) == b"--framebus-frame\r\n"
        seqs = []
        for _ in range(6):
            part_head = b""
            while not part_head.endswith(b"\r\n\r\n"):
                part_head += body_bytes(1)
            fields = dict(line.split(": ", 1) for line in part_head.decode().split("\r\n") if line)
            jpeg = body_bytes(int(fields["Content-Length"]))
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
            assert decode(jpeg).shape == (240, 320, 3)
            seqs.append(int(fields["X-Framebus-Seq"]))
            assert body_bytes(20) == b"\r\n--framebus-frame\r\n"
        assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert len(written) >= 6  # the frames went the direct way


def test_sixteen_viewers_share_one_encoder(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    path = f"/streams/{pattern_stream.name}.mjpg"
    got: list[list[int]] = [[] for _ in range(16)]
    clients = [MjpegClient(w.port, path) for _ in range(16)]
    try:
        before, encodes_before = (
            pattern_stream.stats().captured,
            w.hub.stats(pattern_stream.name).encodes,
        )

        def read(i: int) -> None:
            for _ in range(20):
                part = clients[i].part()
                assert part is not None
                got[i].append(int(part[0]["x-framebus-seq"]))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        captured = pattern_stream.stats().captured - before
        stats = w.hub.stats(pattern_stream.name)
        assert all(len(g) == 20 for g in got)
        assert stats.viewers == 16
        # one encode per frame, not per viewer: at most the frames captured meanwhile
        # (+2: a frame being encoded when the first viewer came, one at the end)
        assert stats.encodes - encodes_before <= captured + 2, (stats.encodes, captured)
        # the viewers saw the frames of those encodes: 16 x 20 parts out of at most 22 JPEGs
        assert len(set().union(*map(set, got))) <= stats.encodes
    finally:
        for c in clients:
            c.close()


def test_no_encoding_without_viewers(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    time.sleep(0.5)
    assert w.hub.stats(name).encodes == 0  # nobody asked yet
    client = MjpegClient(w.port, f"/streams/{name}.mjpg")
    for _ in range(3):
        assert client.part() is not None
    client.close()
    assert wait_until(lambda: w.hub.stats(name).viewers == 0, timeout=10)
    time.sleep(1.0)  # the encoder stops within a second of the last viewer leaving
    stopped = w.hub.stats(name).encodes
    time.sleep(1.0)
    assert w.hub.stats(name).encodes == stopped
    assert pattern_stream.stats().state == "live"  # the capture goes on for other readers


def test_a_slow_viewer_gets_fresh_frames_and_does_not_slow_a_fast_one(
    web: Fixture, stream_name: str
) -> None:
    w: Web = web()
    source = framebus.TestPattern(640, 480, fps=25)
    with framebus.publish(stream_name, source):
        fast = MjpegClient(w.port, f"/streams/{stream_name}.mjpg")
        slow = MjpegClient(w.port, f"/streams/{stream_name}.mjpg", rcvbuf=8192)
        ages: list[float] = []
        fast_seqs: list[int] = []
        stop = threading.Event()

        def read_fast() -> None:
            while not stop.is_set():
                part = fast.part()
                assert part is not None
                fast_seqs.append(int(part[0]["x-framebus-seq"]))

        reader = threading.Thread(target=read_fast)
        reader.start()
        try:
            t_end = time.monotonic() + 6
            while time.monotonic() < t_end:
                part = slow.part()  # reading ~4 frames a second: a quarter of what it is sent
                assert part is not None
                ages.append(time.time() - float(part[0]["x-framebus-timestamp"]))
                time.sleep(0.25)
            # while both are connected (after closing, one may still be listed, one not)
            skipped = w.hub.stats(stream_name).viewer_skipped
        finally:
            stop.set()
            reader.join(30)
            fast.close()
            slow.close()
        late = ages[len(ages) // 2 :]  # after the buffers filled: no growth
        assert max(late) < 1.5, ages  # a queue would have grown to seconds by now
        assert max(late) < max(ages[: len(ages) // 2]) + 0.5, ages
        span = fast_seqs[-1] - fast_seqs[0]
        assert len(fast_seqs) >= 0.8 * span  # the fast viewer kept (nearly) full rate
        assert len(skipped) == 2 and max(skipped) > 0, skipped  # the slow one skipped frames


def test_a_killed_viewer_is_released(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    code = (
        "import sys, http.client; c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]));"
        f" c.request('GET', '/streams/{name}.mjpg'); r = c.getresponse(); r.read(1000);"
        " print('reading', flush=True); import time; time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(w.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "reading"
        assert w.hub.stats(name).viewers == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_until(lambda: w.hub.stats(name).viewers == 0, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_viewer_that_stops_reading_is_dropped_without_a_traceback(
    web: Fixture, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading, then half-closes while the server still holds data for
    it (so the server's transport cannot finish closing): its writes time out, its connection
    is aborted (no 'Exception in ASGI application' in uvicorn's log), the encoder released."""
    from framebus.web import _asgi

    monkeypatch.setattr(_asgi, "WRITE_TIMEOUT", 1.0)
    w: Web = web()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with framebus.publish(stream_name, framebus.TestPattern(1280, 720, fps=25)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", w.port))
            sock.sendall(
                f"GET /streams/{stream_name}.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            assert wait_until(lambda: w.hub.stats(stream_name).viewers == 1, timeout=10)
            errors: list[logging.LogRecord] = []
            handler = logging.Handler(logging.ERROR)
            handler.emit = errors.append  # type: ignore[method-assign]
            logger = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate
            logger.addHandler(handler)
            try:
                time.sleep(0.5)  # the frames fill both kernels' buffers and the server's
                sock.shutdown(socket.SHUT_WR)
                assert w.hub.stats(stream_name).viewers == 1
                assert wait_until(lambda: w.hub.stats(stream_name).viewers == 0, timeout=15)
                time.sleep(0.2)
            finally:
                logger.removeHandler(handler)
            assert not errors, [r.getMessage() for r in errors]
        finally:
            sock.close()


def test_errors_are_one_line_json(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    for path in ("/streams/nope.mjpg", "/streams/nope.jpg", "/api/streams/nope"):
        status, headers, body = w.get(path)
        assert status == 404, path
        assert headers["content-type"] == "application/json"
        assert "\n" not in body.decode() and "nope" in json.loads(body)["error"]
    for query in ("width=abc", "width=1", "width=100000", "quality=0", "quality=101"):
        status, _, body = w.get(f"/streams/{name}.mjpg?{query}")
        assert status == 400, query
        assert json.loads(body)["error"]


def test_width_keeps_the_aspect_and_quality_changes_the_size(
    web: Fixture, pattern_stream: Any
) -> None:
    w: Web = web()
    name = pattern_stream.name
    status, _, small = w.get(f"/streams/{name}.jpg?width=160&quality=20")
    assert status == 200
    assert decode(small).shape == (120, 160, 3)
    status, _, full = w.get(f"/streams/{name}.jpg?quality=95")
    assert decode(full).shape == (240, 320, 3)
    assert len(small) < len(full)


def test_a_snapshot_is_captured_after_the_request(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    asked = time.time()
    status, headers, jpeg = w.get(f"/streams/{pattern_stream.name}.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert float(headers["x-framebus-timestamp"]) >= asked
    assert decode(jpeg).shape == (240, 320, 3)


def test_api_and_metrics(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    client = MjpegClient(w.port, f"/streams/{name}.mjpg")
    try:
        for _ in range(3):
            assert client.part() is not None
        status, _, body = w.get("/api/streams")
        assert status == 200
        entry = next(s for s in json.loads(body) if s["name"] == name)
        assert entry["state"] == "live" and entry["width"] == 320
        assert entry["viewers"] == 1 and entry["encodes"] >= 3 and entry["bytes_sent"] > 0
        assert len(entry["viewer_skipped"]) == 1
        status, _, body = w.get(f"/api/streams/{name}")
        assert json.loads(body)["name"] == name
        status, headers, body = w.get("/metrics")
        text = body.decode()
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert f'framebus_web_viewers{{codec="mjpeg",stream="{name}"}} 1.0' in text
        assert f'framebus_frames_captured_total{{stream="{name}"}}' in text
    finally:
        client.close()


def test_only_the_named_streams_are_served(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web(["other"])
    assert w.get(f"/streams/{pattern_stream.name}.jpg")[0] == 404
    assert json.loads(w.get("/api/streams")[2]) == []


def test_a_stream_that_ends_ends_its_responses(web: Fixture, stream_name: str) -> None:
    w: Web = web()
    source = framebus.TestPattern(64, 48, fps=25, frames=40)
    with framebus.publish(stream_name, source, mode="latest"):
        client = MjpegClient(w.port, f"/streams/{stream_name}.mjpg")
        try:
            parts = 0
            while client.part() is not None:
                parts += 1
            assert 1 <= parts <= 40
        finally:
            client.close()


def test_basic_auth(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web(auth=("viewer", "s3cret"))
    assert w.get("/api/streams")[0] == 401
    good = base64.b64encode(b"viewer:s3cret").decode()
    bad = base64.b64encode(b"viewer:wrong").decode()
    assert w.get("/api/streams", {"Authorization": f"Basic {bad}"})[0] == 401
    assert w.get("/api/streams", {"Authorization": f"Basic {good}"})[0] == 200


def test_the_page_is_self_contained(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    status, _, page = w.get("/")
    text = page.decode()
    assert status == 200 and "static/app.js" in text and "http" not in text.split("<body>")[1]
    for asset in ("static/app.js", "static/style.css"):
        assert w.get(f"/{asset}")[0] == 200


def test_flask_view_in_one_line(stream_name: str) -> None:
    flask = pytest.importorskip("flask")
    from werkzeug.serving import make_server

    flask_app = flask.Flask(__name__)

    @flask_app.route("/video")
    def video() -> Any:
        return flask.Response(
            framebus.web.mjpeg_stream(stream_name, environ=flask.request.environ),
            mimetype=framebus.web.MJPEG_MIMETYPE,
        )

    with framebus.publish(stream_name, framebus.TestPattern(160, 120, fps=25)):
        server = make_server("127.0.0.1", 0, flask_app, threaded=True)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        clients = []
        try:
            clients = [MjpegClient(server.server_port, "/video") for _ in range(3)]
            for c in clients:
                part = c.part()
                assert part is not None and decode(part[1]).shape == (120, 160, 3)
            # the three Flask threads share the process's one encoder
            stats = framebus.web.default_hub().stats(stream_name)
            assert stats.viewers == 3
        finally:
            for c in clients:
                c.close()
            server.shutdown()
            thread.join(10)
            server.server_close()
            assert wait_until(lambda: framebus.web.default_hub().stats(stream_name).viewers == 0)
            framebus.web.default_hub().close()


def test_fastapi_mount(stream_name: str) -> None:
    fastapi = pytest.importorskip("fastapi")
    api = fastapi.FastAPI()
    hub = framebus.web.EncoderHub()
    api.mount("/video", framebus.web.app(hub=hub))
    with framebus.publish(stream_name, framebus.TestPattern(160, 120, fps=25)):
        server = framebus.web.WebServer(api, "127.0.0.1", 0, hub=hub)
        server.start()
        try:
            client = MjpegClient(server.port, f"/video/streams/{stream_name}.mjpg")
            part = client.part()
            client.close()
            assert part is not None and decode(part[1]).shape == (120, 160, 3)
            status, _, page = http_get(server.port, "/video/")  # relative links under a mount
            assert status == 200 and '<base href="/video/">' in page.decode()
        finally:
            server.stop()


def test_cli_serve_http_prints_the_url_and_serves(stream_name: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}=testpattern:160x120@25",
         "--http", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("framebus: open http://127.0.0.1:"), line
        port = int(line.split(":")[3].split("/")[0])
        status, _, body = http_get(port, "/api/streams")
        assert status == 200 and json.loads(body)[0]["name"] == stream_name
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_ctrl_c_ends_the_server_quietly_with_viewers_connected(stream_name: str) -> None:
    """Ctrl-C while one viewer streams and another has stopped reading: the server stops at
    once, without uvicorn's 'task cancelled' tracebacks."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}=testpattern:640x480@25",
         "--http", "127.0.0.1:0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    viewers: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split(":")[3].split("/")[0])
        for rcvbuf in (None, 4096):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            viewers.append(sock)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect(("127.0.0.1", port))
            sock.sendall(
                f"GET /streams/{stream_name}.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
        viewers[0].settimeout(10)
        got = 0
        while got < 200_000:  # frames flow; the other viewer's buffers fill meanwhile
            got += len(viewers[0].recv(65536))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        for sock in viewers:
            sock.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception" not in err, err


def test_cli_warns_when_exposed_without_auth(stream_name: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "web", "--http", "0.0.0.0:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert "without --auth" in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_cli_reads_the_password_from_a_file_not_argv(tmp_path: Any) -> None:
    secret = tmp_path / "auth"
    secret.write_text("viewer:s3cret\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "web", "--http", "127.0.0.1:0", "--auth", str(secret)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split(":")[3].split("/")[0])
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert b"s3cret" not in f.read()
        assert http_get(port, "/api/streams")[0] == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_size_variants_nobody_watches_free_their_slot(web: Fixture, pattern_stream: Any) -> None:
    """Before: after four widths were requested once, a fifth got 503 for the whole minute
    (idle encoders were only released when something called /api/streams)."""
    from framebus.web._hub import IDLE_CLOSE, MAX_VARIANTS

    w: Web = web()
    name = pattern_stream.name
    widths = [160 + 16 * n for n in range(MAX_VARIANTS + 2)]
    for width in widths:  # each one's viewer leaves at once: every encoder idle
        status, _, body = w.get(f"/streams/{name}.jpg?width={width}")
        assert status == 200, (width, body)
        assert decode(body).shape[1] == width
    # and by time alone, with no request at all, the idle encoders close (their readers go)
    assert wait_until(lambda: pattern_stream.stats().readers == 0, timeout=IDLE_CLOSE + 10)
    assert w.hub.stats(name).viewers == 0


def test_head_answers_headers_and_starts_no_encoder(web: Fixture, pattern_stream: Any) -> None:
    """Before: HEAD on an MJPEG URL started an encoder and the response never ended."""
    import http.client

    w: Web = web()
    name = pattern_stream.name
    for path, kind in ((f"/streams/{name}.mjpg", "multipart/x-mixed-replace"),
                       (f"/streams/{name}.jpg?width=160", "image/jpeg")):  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        try:
            conn.request("HEAD", path)
            resp = conn.getresponse()  # a timeout here is the old endless response
            assert resp.status == 200 and resp.getheader("content-type", "").startswith(kind)
            assert resp.read() == b""
        finally:
            conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    conn.request("HEAD", "/streams/nope.mjpg")
    assert conn.getresponse().status == 404
    conn.close()
    assert pattern_stream.stats().readers == 0 and w.hub.stats(name).encodes == 0


def test_a_viewer_that_reads_in_bursts_gets_the_frame_newest_when_it_read_the_last(
    web: Fixture, stream_name: str
) -> None:
    """A viewer that reads one part, then sleeps a second (a 16 KB receive buffer, exact
    reads, HTTP/1.0): its next frame must be no older than the one newest when it finished
    reading the previous, about 1 s when read. Before: a second frame was often written
    behind the first while the viewer slept, and read 2 s old."""

    def exactly(s: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "the response ended"
            buf += chunk
        return buf

    def head(s: socket.socket) -> bytes:
        buf = b""
        while not buf.endswith(b"\r\n\r\n"):
            buf += exactly(s, 1)
        return buf

    pattern = framebus.TestPattern(1280, 720, fps=25)
    with framebus.publish(stream_name, pattern):
        w: Web = web()
        viewer = socket.socket()
        viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        viewer.settimeout(20)
        ages = []
        try:
            viewer.connect(("127.0.0.1", w.port))
            viewer.sendall(f"GET /streams/{stream_name}.mjpg HTTP/1.0\r\n\r\n".encode())
            head(viewer)  # the response's head
            for _ in range(9):
                lines = head(viewer).decode().split("\r\n")
                fields = dict(line.split(": ", 1) for line in lines if ": " in line)
                exactly(viewer, int(fields["Content-Length"]))
                ages.append(time.time() - float(fields["X-Framebus-Timestamp"]))
                time.sleep(1.0)
        finally:
            viewer.close()
    # the floor is 1.0 s + a frame; a frame queued behind another is 2.0 s old
    assert max(ages[2:]) < 1.6, [f"{a:.2f}" for a in ages]
