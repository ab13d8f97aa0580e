"""H.264 over the WebSocket (/streams/NAME.h264) against a real server, real streams and a real
WebSocket client: the frames decode, a slow viewer skips whole groups of pictures and never
queues, what a page sends is bounded, the route is guarded as the others are."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.testing import RTSPServer, read_timestamp, rtsp_server_available
from framebus.web import _h264, _server, _sockets
from framebus.web._websocket import CLOSE_ENDED, CLOSE_NOT_FOUND
from webtools import Web, WsClient

Fixture = Any


def decoder() -> Any:
    return av.CodecContext.create("h264", "r")


class Noisy:
    """A VideoWriter stream at 25 fps whose frames carry a fresh noise block: ~25 KB a frame,
    enough for a throttled viewer to fall behind."""

    def __init__(self, name: str) -> None:
        self.writer = framebus.VideoWriter(name, fps=25)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(1)
        frame = np.full((360, 640, 3), 90, np.uint8)
        while not self._stop.wait(0.04):
            frame[100:190, 200:360] = rng.integers(0, 255, (90, 160, 3), np.uint8)
            self.writer.write(frame)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.writer.release()


@pytest.fixture
def noisy(stream_name: str) -> Iterator[Noisy]:
    n = Noisy(stream_name)
    yield n
    n.close()


def test_frames_decode_in_order_from_a_keyframe(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    client = WsClient(w.port, f"/streams/{name}.h264")
    try:
        assert client.accepted
        dec, indexes, shapes = decoder(), [], []
        for i in range(10):
            data = client.message()
            assert data is not None
            au, timestamp, _ = _h264.parse(data)
            assert abs(timestamp - time.time()) < 5
            if i == 0:
                assert (
                    au.key and au.codec.startswith("avc1.") and (au.width, au.height) == (320, 240)
                )
            indexes.append(au.index)
            shapes += [f.to_ndarray(format="bgr24").shape for f in dec.decode(av.Packet(au.data))]
        assert indexes == list(range(indexes[0], indexes[0] + 10))  # every frame, none skipped
        assert shapes == [(240, 320, 3)] * 10
        entry = json.loads(w.get(f"/api/streams/{name}")[2])
        h264 = entry["codecs"]["h264"]
        assert h264["viewers"] == 1 and h264["encodes"] >= 10 and h264["bytes_sent"] > 0
        assert entry["codecs"]["mjpeg"]["viewers"] == 0
        metrics = w.get("/metrics")[2].decode()
        assert f'framebus_web_viewers{{codec="h264",stream="{name}"}} 1.0' in metrics
    finally:
        client.close()
    assert wait_until(lambda: w.hub.stats(name).viewers == 0, timeout=10)
    assert wait_until(lambda: not _sockets._by_peer, timeout=10)  # the socket is forgotten


def test_unknown_streams_and_bad_queries_are_refused(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    for path in ("/streams/nosuch.h264", f"/streams/{pattern_stream.name}.h264?width=3",
                 f"/streams/{pattern_stream.name}.h264?width=x"):  # fmt: skip
        client = WsClient(w.port, path)
        assert client.accepted and client.message() is None, path  # closed with a reason
        assert client.close_code == CLOSE_NOT_FOUND, path
        client.close()
    assert w.hub.stats(pattern_stream.name).viewers == 0


def test_fragmented_mp4_for_media_source_extensions(web: Fixture, pattern_stream: Any) -> None:
    import io

    w: Web = web()
    client = WsClient(w.port, f"/streams/{pattern_stream.name}.h264?format=fmp4")
    try:
        messages = [client.message() or b"" for _ in range(10)]
    finally:
        client.close()
    key, codec, init, _, _ = _h264.parse_mse(messages[0])
    assert key and init and codec.startswith("avc1.")
    data = init + b"".join(_h264.parse_mse(m)[3] for m in messages)
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 10 and frames[-1].width == 320
    bad = WsClient(w.port, f"/streams/{pattern_stream.name}.h264?format=webm")
    assert bad.message() is None and bad.close_code == CLOSE_NOT_FOUND
    bad.close()


def test_pages_of_other_sites_are_refused(web: Fixture, pattern_stream: Any) -> None:
    """Browsers let any page open a WebSocket anywhere: only this server's pages (and clients
    that are no page) may watch."""
    w: Web = web()
    path = f"/streams/{pattern_stream.name}.h264"
    for origin in ("http://evil.example", f"http://127.0.0.1:{w.port + 1}", "null"):
        client = WsClient(w.port, path, headers=[("origin", origin)])
        assert not client.accepted and client.status == 403, origin
        client.close()
    client = WsClient(w.port, path, headers=[("origin", f"http://127.0.0.1:{w.port}")])
    try:
        assert client.accepted and client.message()
    finally:
        client.close()


def test_a_loopback_server_answers_only_for_localhost(web: Fixture, pattern_stream: Any) -> None:
    """DNS rebinding: a site that points its own name at 127.0.0.1 after its page loaded makes
    same-origin requests with its own name as Host: refused, for every route."""
    w: Web = web()
    assert w.get("/api/streams", {"Host": "evil.example:8080"})[0] == 421
    assert w.get("/api/streams", {"Host": f"localhost:{w.port}"})[0] == 200
    assert w.get("/api/streams", {"Host": f"[::1]:{w.port}"})[0] == 200
    sock = socket.create_connection(("127.0.0.1", w.port))
    try:
        import wsproto
        from wsproto import events

        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        origin = [(b"origin", b"http://evil.example:8080")]
        sock.sendall(
            ws.send(
                events.Request(
                    host="evil.example:8080",
                    target=f"/streams/{pattern_stream.name}.h264",
                    extra_headers=origin,
                )
            )
        )
        ws.receive_data(sock.recv(65536))
        assert not any(isinstance(e, events.AcceptConnection) for e in ws.events())
    finally:
        sock.close()


def test_one_encode_per_frame_for_one_viewer_or_eight(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    name = pattern_stream.name
    for n in (1, 8):
        clients = [WsClient(w.port, f"/streams/{name}.h264") for _ in range(n)]
        stop = threading.Event()
        got = [0] * n

        def read(i: int, client: WsClient, stop: threading.Event, got: list[int]) -> None:
            with contextlib.suppress(ConnectionError):  # (the server going at the end)
                while not stop.is_set() and client.message() is not None:
                    got[i] += 1

        threads = [
            threading.Thread(target=read, args=(i, c, stop, got)) for i, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        encodes0, captured0 = w.hub.stats(name).encodes, pattern_stream.stats().captured
        time.sleep(2.0)
        encodes = w.hub.stats(name).encodes - encodes0
        captured = pattern_stream.stats().captured - captured0
        stop.set()
        for c in clients:
            c.shutdown()
        for t in threads:
            t.join(10)
        for c in clients:
            c.close()
        assert captured * 0.8 <= encodes <= captured + 2, (n, encodes, captured)
        assert min(got) > 0
        assert wait_until(lambda: w.hub.stats(name).viewers == 0, timeout=10)


def test_a_width_is_served_scaled(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    client = WsClient(w.port, f"/streams/{pattern_stream.name}.h264?width=160")
    try:
        au, _, _ = _h264.parse(client.message() or b"")
        assert (au.width, au.height) == (160, 120)
    finally:
        client.close()


def test_the_websocket_needs_the_password_too(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web(auth=("viewer", "s3cret"))
    path = f"/streams/{pattern_stream.name}.h264"
    refused = WsClient(w.port, path)
    assert not refused.accepted
    refused.close()
    for _ in range(12):  # a page reconnecting without credentials is no guesser
        WsClient(w.port, path).close()
    assert w.get("/api/streams", {"Authorization": "Basic d3Jvbmc6d3Jvbmc="})[0] == 401  # not 429
    good = base64.b64encode(b"viewer:s3cret").decode()
    client = WsClient(w.port, path, headers=[("authorization", f"Basic {good}")])
    try:
        assert client.accepted and client.message()
    finally:
        client.close()


def test_a_slow_viewer_skips_to_keyframes_and_a_fast_one_gets_every_frame(
    web: Fixture, noisy: Noisy
) -> None:
    w: Web = web()
    name = noisy.writer.name
    fast = WsClient(w.port, f"/streams/{name}.h264")
    slow = WsClient(w.port, f"/streams/{name}.h264", rcvbuf=8192)
    fast_items: list[tuple[bool, int]] = []
    stop = threading.Event()

    def read_fast() -> None:
        while not stop.is_set():
            data = fast.message()
            if data is None:
                return
            au = _h264.parse(data)[0]
            fast_items.append((au.key, au.index))

    reader = threading.Thread(target=read_fast)
    reader.start()
    ages: list[float] = []
    slow_items: list[tuple[bool, int]] = []
    widths: list[int] = []
    rate = 150_000  # bytes a second: a link with a quarter of the stream's ~600 kB/s
    got = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() < t0 + 10:
            data = slow.message()
            assert data is not None
            au, timestamp, _ = _h264.parse(data)
            ages.append(time.time() - timestamp)
            slow_items.append((au.key, au.index))
            widths.append(au.width)
            got += len(data)
            time.sleep(max(0.0, t0 + got / rate - time.monotonic()))  # the link's pace
        codecs = w.hub.stats(name).codecs["h264"]
    finally:
        stop.set()
        slow.close()
        fast.shutdown()  # wakes the reader
        reader.join(30)
        fast.close()
    # the slow viewer: fell behind, restarted at keyframes, and was moved to the stream
    # encoded at half the width, which its link carries (the stats are the current viewers':
    # its skips at 640 went with that viewer); what it got never grew old
    assert codecs.viewers == 2
    assert widths[0] == 640 and widths[-1] == 320, widths
    late = ages[len(ages) // 2 :]
    assert max(late) < 2.0, ages  # a queue would have grown to several seconds by now
    for (_, prev), (key, index) in itertools.pairwise(slow_items):
        assert index == prev + 1 or key, "a gap not at a keyframe: the page's decoder would break"
    # the fast one: every frame, in order, from its first keyframe
    indexes = [index for _, index in fast_items]
    assert fast_items[0][0] and indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    assert len(indexes) > 150


def test_a_key_request_restarts_the_viewer_at_a_keyframe(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    client = WsClient(w.port, f"/streams/{pattern_stream.name}.h264")
    try:
        assert _h264.parse(client.message() or b"")[0].key
        time.sleep(1.1)  # past the minimum gap between keyframes
        client.send_text("hello?")  # unknown: ignored
        client.send_text(_h264.KEY_REQUEST)
        for _ in range(100):
            au = _h264.parse(client.message() or b"")[0]
            if au.key:
                break
        assert au.key
    finally:
        client.close()


def test_a_page_sending_too_much_is_closed(web: Fixture, pattern_stream: Any) -> None:
    w: Web = web()
    client = WsClient(w.port, f"/streams/{pattern_stream.name}.h264")
    try:
        assert client.message()
        client.send_text("x" * (_h264.MAX_CLIENT_MESSAGE + 1))
        while client.message() is not None:
            pass
        assert client.close_code is not None
    finally:
        client.close()
    assert wait_until(lambda: w.hub.stats(pattern_stream.name).viewers == 0, timeout=10)


def test_the_viewer_is_told_when_the_stream_ends(web: Fixture, stream_name: str) -> None:
    w: Web = web()
    with framebus.publish(stream_name, framebus.TestPattern(320, 240, fps=25)):
        client = WsClient(w.port, f"/streams/{stream_name}.h264")
        assert client.message()
    try:
        while client.message() is not None:
            pass
        assert client.close_code == CLOSE_ENDED
    finally:
        client.close()


def test_the_head_timeout_does_not_cut_a_websocket(
    web: Fixture, pattern_stream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "HEAD_TIMEOUT", 0.5)
    w: Web = web()
    client = WsClient(w.port, f"/streams/{pattern_stream.name}.h264")
    try:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            assert client.message() is not None
    finally:
        client.close()


needs_rtsp = pytest.mark.skipif(
    not rtsp_server_available(), reason="needs GStreamer's RTSP server (gir1.2-gst-rtsp-server)"
)


@needs_rtsp
def test_a_camera_h264_is_passed_through_not_reencoded(web: Fixture, stream_name: str) -> None:
    w: Web = web()
    with (
        RTSPServer(size="640x360") as srv,
        framebus.publish(stream_name, srv.url()),
        framebus.attach_encoded(stream_name) as encoded,
    ):
        client = WsClient(w.port, f"/streams/{stream_name}.h264")
        try:
            sent: dict[int, bytes] = {}
            dec = decoder()
            first = None
            for _ in range(30):
                data = client.message()
                assert data is not None and data[1] & 2  # flagged: the camera's own
                au, timestamp, _ = _h264.parse(data)
                first = first or au
                for picture in dec.decode(av.Packet(au.data)):
                    sent_at = read_timestamp(picture.to_ndarray(format="bgr24"))
                    assert sent_at is not None and timestamp >= sent_at
                sent[au.index] = au.data
            assert first is not None and first.key and first.codec.startswith("avc1.")
            while (frame := encoded.read(10)).index <= max(sent):
                if frame.index in sent:  # byte for byte what the camera sent
                    assert sent.pop(frame.index) == frame.data
            assert w.hub.stats(stream_name).codecs["h264"].encodes == 0  # nothing encoded
        finally:
            client.close()


@needs_rtsp
def test_passthrough_never_holds_up_an_every_mode_capture(web: Fixture, stream_name: str) -> None:
    w: Web = web()
    with (
        RTSPServer(size="320x240") as srv,
        framebus.publish(stream_name, srv.url(), mode="every") as pub,
        framebus.attach(stream_name) as reader,
    ):
        client = WsClient(w.port, f"/streams/{stream_name}.h264")
        try:
            for _ in range(40):  # the page's frames go on...
                data = client.message()
                assert data is not None and data[1] & 2
                reader.read()  # ...and so do the frames of the stream's one reader
            assert pub.stats().readers == 1  # the passthrough is no reader of the frames
        finally:
            client.close()


@needs_rtsp
def test_a_camera_h265_is_encoded_once_as_h264(web: Fixture, stream_name: str) -> None:
    w: Web = web()
    with (
        RTSPServer(size="320x240", codec="h265") as srv,
        framebus.publish(stream_name, srv.url()),
    ):
        client = WsClient(w.port, f"/streams/{stream_name}.h264")
        try:
            data = client.message()
            assert data is not None and not data[1] & 2
            au = _h264.parse(data)[0]
            assert au.key and au.codec.startswith("avc1.") and decoder().decode(av.Packet(au.data))
            assert w.hub.stats(stream_name).codecs["h264"].encodes >= 1
        finally:
            client.close()
