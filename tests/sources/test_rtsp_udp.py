"""RTSP servers that send RTP over UDP only (cameras, NVRs, small relays) are read with the
default settings; a server that takes TCP is still read over TCP; a transport the user chose is
kept. Real GStreamer servers on 127.0.0.1, limited with ``RTSPServer(protocols=...)``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

import numpy as np
import pytest

import framebus
from framebus.sources._ffmpeg import ffmpeg_options, over_udp
from framebus.sources._rtsp import MessageParser, RTSPClient, ServerRequest
from framebus.testing import RTSPServer, read_timestamp, rtsp_server_available

needs_server = pytest.mark.skipif(
    not rtsp_server_available(), reason="GStreamer RTSP server not installed (make test does)"
)


def _check_picture(frame: np.ndarray) -> None:
    """The test server's picture: fresh send-time barcode, grey field, the moving bar."""
    assert frame.shape == (240, 320, 3)
    stamp = read_timestamp(frame)
    assert stamp is not None and abs(time.time() - stamp) < 5
    below = frame[40:].astype(np.int16)  # below the barcode
    assert (np.abs(below - 96) < 20).mean() > 0.5  # the grey field
    assert (below > 170).mean() > 0.02  # the bar (Y 200)


def _read(media: framebus.Media | str, frames: int = 10) -> np.ndarray:
    with framebus.VideoCapture(media) as cap:
        for _ in range(frames):
            frame = cap.read_frame()
    return frame


@needs_server
@pytest.mark.parametrize("refusal", [461, 400])
def test_default_settings_read_a_udp_only_server(refusal: Literal[461, 400]) -> None:
    """framebus's client is refused TCP, and the OpenCV fallback asks for UDP at once (FFmpeg's
    own TCP-then-UDP retry takes only a 461 for an answer)."""
    with RTSPServer(size="320x240", protocols="udp", tcp_refusal=refusal) as srv:
        _check_picture(_read(srv.url()))
        assert set(srv.transports()) == {"udp"}


@needs_server
@pytest.mark.parametrize("backend", ["opencv", "av"])
def test_ffmpeg_backends_retry_over_udp_when_tcp_is_refused(backend: str) -> None:
    with RTSPServer(size="320x240", protocols="udp") as srv:  # a TCP SETUP gets a 461
        _check_picture(_read(framebus.Media(srv.url(), backend=backend)))  # type: ignore[arg-type]
        assert set(srv.transports()) == {"udp"}


@needs_server
@pytest.mark.parametrize("backend", ["auto", "rtsp", "opencv", "av"])
def test_a_server_that_takes_tcp_is_read_over_tcp(backend: str) -> None:
    """TCP stays the default (no loss, no UDP ports through NAT): FFmpeg with neither
    ``rtsp_flags=prefer_tcp`` nor ``rtsp_transport`` would ask this server for UDP first."""
    with RTSPServer(size="320x240") as srv:  # UDP, UDP multicast and TCP
        _check_picture(_read(framebus.Media(srv.url(), backend=backend)))  # type: ignore[arg-type]
        assert srv.transports() == ["tcp"]


@needs_server
@pytest.mark.parametrize("refusal", [461, 400])
def test_rtsp_backend_says_the_server_refused_tcp(
    stream_name: str, refusal: Literal[461, 400]
) -> None:
    with RTSPServer(size="320x240", protocols="udp", tcp_refusal=refusal) as srv:
        media = framebus.Media(srv.url(), backend="rtsp")
        refused = f"refused RTP over TCP with {refusal}"
        with pytest.raises(framebus.SourceUnsupported, match=refused):
            framebus.publish(stream_name, media)
        assert srv.transports() == []


@needs_server
@pytest.mark.parametrize("backend", ["auto", "av"])
def test_the_users_transport_is_kept(stream_name: str, backend: str) -> None:
    """``rtsp_transport=tcp`` means TCP only, even for a server that would send UDP."""
    with RTSPServer(size="320x240", protocols="udp") as srv:
        options = {"rtsp_transport": "tcp"}
        media = framebus.Media(srv.url(), backend=backend, ffmpeg_options=options)  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(framebus.SourceUnsupported, match=r"rtsp_transport=tcp\)"):
            framebus.publish(stream_name, media)
        assert time.monotonic() - t0 < 15
        assert srv.transports() == []


def test_ffmpeg_options_prefer_tcp_allow_udp_and_keep_the_users() -> None:
    url = "rtsp://127.0.0.1:8554/cam"
    opts = ffmpeg_options(framebus.Media(url))
    assert opts["rtsp_transport"] == "tcp+udp" and opts["rtsp_flags"] == "prefer_tcp"
    mine = framebus.Media(url, ffmpeg_options={"rtsp_transport": "tcp"})
    assert ffmpeg_options(mine)["rtsp_transport"] == "tcp"
    assert ffmpeg_options(over_udp(framebus.Media(url)))["rtsp_transport"] == "udp"
    assert ffmpeg_options(over_udp(mine))["rtsp_transport"] == "tcp"
    assert "rtsp_transport" not in ffmpeg_options(framebus.Media("http://127.0.0.1/cam.mjpg"))


class _UdpOnlyCamera:
    """An RTSP peer that answers our TCP SETUP with 200 OK and a UDP transport (some do)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.methods: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        parser = MessageParser()
        sdp = b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:v\r\n"
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            while data := conn.recv(65536):
                parser.feed(data)
                while (msg := parser.next()) is not None:
                    assert isinstance(msg, ServerRequest)
                    self.methods.append(msg.method)
                    extra = {
                        "DESCRIBE": f"Content-Length: {len(sdp)}\r\n",
                        "SETUP": "Session: abc\r\nTransport: RTP/AVP;unicast;"
                        "client_port=5000-5001;server_port=6000-6001\r\n",
                    }.get(msg.method, "")
                    body = sdp if msg.method == "DESCRIBE" else b""
                    cseq = msg.headers["cseq"][0]
                    conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}\r\n".encode() + body)

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def test_client_takes_a_udp_transport_reply_as_a_refusal_of_tcp() -> None:
    cam = _UdpOnlyCamera()
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        with pytest.raises(framebus.SourceUnsupported, match="refused RTP over TCP"):
            client.open()
        assert client.tcp_refused
    finally:
        client.close()
        cam.close()
    assert cam.methods == ["OPTIONS", "DESCRIBE", "SETUP", "TEARDOWN"]  # its session is ended
