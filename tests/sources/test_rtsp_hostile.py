"""Hostile RTSP servers against framebus's client, scripted on loopback (every byte a server
sends is attacker-chosen), each bounded in time and in what the server gets to see:

- a server that breaks the protocol fails at once with the client's own error; the automatic
  backend does not hand it to FFmpeg (which would be fed the same bytes for its whole timeout);
- redirects are followed, with the credentials to the same host only, and a loop is cut short;
- challenges while playing are answered at a bounded rate, and the stream fails after a few;
- an RTP packetization met only while playing hands the stream to FFmpeg in place (``auto``)
  or fails it for good (``backend="rtsp"``: no reconnect loop);
- ``read_timeout`` bounds the wait for a video packet, not one ``recv()``.
"""

from __future__ import annotations

import base64
import itertools
import logging
import socket
import time
from collections.abc import Callable

import numpy as np
import pytest
from test_rtsp_protocol import IDR, _rtp, _ScriptedCamera

import framebus
from framebus.sources._rtsp import RTSPClient, ServerRequest
from framebus.sources._rtsp.client import MAX_REAUTH, MAX_REDIRECTS, REAUTH_INTERVAL

# --- a server that breaks the protocol ------------------------------------------------------------

_Answer = Callable[[_ScriptedCamera, str], bytes]

_HOSTILE: dict[str, tuple[_Answer, str]] = {
    "garbage": (lambda cam, cseq: b"\x00\xff\xfe\x80 this is not RTSP\r\n\r\n", "not RTSP"),
    "redirect loop": (
        lambda cam, cseq: (
            f"RTSP/1.0 302 Found\r\nCSeq: {cseq}\r\n"
            f"Location: rtsp://127.0.0.1:{cam.port}/again\r\n\r\n"
        ).encode(),
        f"more than {MAX_REDIRECTS} redirects",
    ),
    "huge Content-Length": (
        lambda cam, cseq: (
            f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Length: 999999999\r\n\r\n"
        ).encode(),
        "RTSP body of 999999999 bytes",
    ),
    "over-long head": (
        lambda cam, cseq: b"RTSP/1.0 200 OK\r\n" + b"X-Pad: y\r\n" * 8000,  # 80 KB, no end
        "head over 64 KiB",
    ),
}


class _Hostile(_ScriptedCamera):
    """Answers every request with ``answer``."""

    def __init__(self, answer: _Answer) -> None:
        self.answer = answer  # (before the server thread starts)
        super().__init__()

    def reply(self, msg: ServerRequest, cseq: str) -> bytes:
        return self.answer(self, cseq)


@pytest.mark.parametrize("kind", sorted(_HOSTILE))
def test_auto_backend_fails_at_once_with_the_clients_error_on_a_protocol_violation(
    stream_name: str, kind: str
) -> None:
    """Not a reason to try FFmpeg: the error comes well within the open timeout, says what
    the server did, and the server sees a handful of requests (FFmpeg and PyAV's diagnosis
    used to make 266,000 of garbage, 75,000 of a redirect loop, then say "no answer")."""
    pytest.importorskip("av")  # ("auto" picks framebus's client when PyAV is there)
    answer, needle = _HOSTILE[kind]
    cam = _Hostile(answer)
    media = framebus.Media(f"rtsp://bob:s3cret@127.0.0.1:{cam.port}/s", open_timeout=10)
    assert media.backend == "auto"
    t0 = time.monotonic()
    try:
        with pytest.raises(framebus.SourceOpenError, match=needle) as info:
            framebus.publish(stream_name, media)
        elapsed = time.monotonic() - t0
    finally:
        cam.close()
    assert not isinstance(info.value, framebus.SourceUnsupported)
    assert "s3cret" not in str(info.value)
    assert elapsed < media.open_timeout / 2, f"{elapsed:.1f} s"
    hops = MAX_REDIRECTS + 1 if kind == "redirect loop" else 1
    assert (cam.connections, len(cam.requests)) == (hops, hops)  # one OPTIONS per connection


# --- redirects ------------------------------------------------------------------------------------


class _Redirecting(_ScriptedCamera):
    """Redirects the first connection's DESCRIBE to ``location``; behind it, wants Basic
    credentials."""

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__()

    def reply(self, msg: ServerRequest, cseq: str) -> bytes:
        if msg.method == "DESCRIBE" and self.connections == 1:
            location = self.location.format(port=self.port)
            return f"RTSP/1.0 302 Found\r\nCSeq: {cseq}\r\nLocation: {location}\r\n\r\n".encode()
        if msg.method == "DESCRIBE" and "authorization" not in msg.headers:
            return (
                f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n"
                'WWW-Authenticate: Basic realm="cam"\r\n\r\n'
            ).encode()
        return super().reply(msg, cseq)


def test_client_follows_a_redirect_with_the_credentials_to_the_same_host() -> None:
    cam = _Redirecting("/moved")  # relative: resolved against the URL
    url = f"rtsp://bob:s3cret@127.0.0.1:{cam.port}/s"
    client = RTSPClient(url, "cam", open_timeout=5, read_timeout=5)
    try:
        client.open()
        assert client.read_packet().payload == IDR
        assert client.url == f"rtsp://127.0.0.1:{cam.port}/moved"
    finally:
        client.close()
        cam.close()
    assert cam.connections == 2
    sent = [m.headers["authorization"][0] for m in cam.received if "authorization" in m.headers]
    assert sent and sent[0] == "Basic " + base64.b64encode(b"bob:s3cret").decode()


def test_client_sends_no_credentials_along_a_redirect_to_another_host() -> None:
    cam = _Redirecting("rtsp://localhost:{port}/moved")  # (the same server, by another name)
    url = f"rtsp://bob:s3cret@127.0.0.1:{cam.port}/s"
    client = RTSPClient(url, "cam", open_timeout=5, read_timeout=5)
    try:
        with pytest.raises(framebus.SourceAuthError, match="wants credentials"):
            client.open()
    finally:
        client.close()
        cam.close()
    assert cam.connections == 2
    assert not any("authorization" in m.headers for m in cam.received)


# --- challenges while playing ---------------------------------------------------------------------


class _Challenging(_ScriptedCamera):
    """Answers keep-alives with 401 and a fresh Digest nonce, ``refusals`` times (None:
    always). Session timeout 2 s: a keep-alive every second."""

    def __init__(self, refusals: int | None) -> None:
        self.refusals = refusals
        self.nonces = 0
        super().__init__(session_timeout=2)

    def reply(self, msg: ServerRequest, cseq: str) -> bytes:
        if msg.method == "GET_PARAMETER" and (self.refusals is None or self.nonces < self.refusals):
            self.nonces += 1
            return (
                f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n"
                f'WWW-Authenticate: Digest realm="cam", nonce="n{self.nonces}"\r\n\r\n'
            ).encode()
        return super().reply(msg, cseq)


def test_client_answers_a_stale_nonce_while_playing_and_plays_on() -> None:
    cam = _Challenging(refusals=1)
    client = RTSPClient(
        f"rtsp://bob:pw@127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5
    )
    try:
        client.open()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            assert client.read_packet().payload == IDR
    finally:
        client.close()
        cam.close()
    keepalives = [m for m in cam.received if m.method == "GET_PARAMETER"]
    assert len(keepalives) >= 2
    assert "authorization" not in keepalives[0].headers  # (no challenge before it)
    assert 'nonce="n1"' in keepalives[1].headers["authorization"][0]


def test_client_reauthenticates_while_playing_at_a_bounded_rate() -> None:
    """A server that answers every keep-alive with a fresh challenge got ~4,000 requests a
    second; now one per REAUTH_INTERVAL at most, and MAX_REAUTH refusals fail the stream."""
    cam = _Challenging(refusals=None)
    client = RTSPClient(
        f"rtsp://bob:pw@127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5
    )
    try:
        client.open()
        t0 = time.monotonic()
        with pytest.raises(framebus.SourceAuthError, match="refused the credentials"):
            while time.monotonic() - t0 < 10:
                client.read_packet()
        elapsed = time.monotonic() - t0
    finally:
        client.close()
        cam.close()
    sent = [t for t, m, _ in cam.requests if m == "GET_PARAMETER"]
    assert len(sent) == MAX_REAUTH
    assert min(b - a for a, b in itertools.pairwise(sent)) >= REAUTH_INTERVAL * 0.9
    assert elapsed < 1 + MAX_REAUTH * 1.5


# --- a packetization met while playing ------------------------------------------------------------


class _StapB(_ScriptedCamera):
    """Plays, then sends H.264 STAP-B packets (NAL type 25, for interleaved mode only),
    although the SDP says nothing of it (packetization mode 0)."""

    def stream(self, conn: socket.socket, seq: int) -> bool:
        stap_b = b"\x19\x00\x00" + len(IDR).to_bytes(2, "big") + IDR  # (DON, size, NAL)
        rtp = _rtp(stap_b, seq + 1, (seq + 1) * 3600, marker=True)
        conn.sendall(b"$\x00" + len(rtp).to_bytes(2, "big") + rtp)
        return True


class _Fallback(framebus.Source):
    """Stands for FFmpeg: ``frames`` frames (then the end), or an open that fails."""

    def __init__(self, frames: int, fail: bool = False) -> None:
        self.frames, self.fail = frames, fail
        self.opened_at: float | None = None
        self.closed = False

    def open(self) -> None:
        if self.fail:
            raise framebus.SourceOpenError("rtsp://cam: not a video, or an unsupported format")
        self.opened_at = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self.frames <= 0:
            return None
        self.frames -= 1
        return np.full((4, 6, 3), 7, np.uint8)

    def close(self) -> None:
        self.closed = True


def test_auto_backend_hands_a_packetization_met_while_playing_to_ffmpeg() -> None:
    pytest.importorskip("av")
    from framebus.sources.rtsp import RTSPSource

    cam = _StapB()
    fallback = _Fallback(frames=3)
    source = RTSPSource(framebus.Media(f"rtsp://127.0.0.1:{cam.port}/s"), fallback)
    try:
        source.open()
        frames = [source.read() for _ in range(3)]
        assert source.read() is None  # (the fallback's end is the stream's end)
    finally:
        source.close()
        time.sleep(0.1)
        cam.close()
    assert all(f is not None and f.shape == (4, 6, 3) for f in frames)
    assert fallback.closed and cam.connections == 1
    # our session ended only once the fallback was open (a server may drop a stream it
    # prepared when its first client leaves)
    (teardown,) = [t for t, m, _ in cam.requests if m == "TEARDOWN"]
    assert fallback.opened_at is not None and teardown >= fallback.opened_at


@pytest.mark.parametrize(
    ("fallback", "needle"),
    [
        (_Fallback(frames=0), "FFmpeg read no frame of it"),
        (_Fallback(frames=0, fail=True), "FFmpeg cannot open it either"),
    ],
    ids=["no frame", "no open"],
)
def test_auto_backend_fails_for_good_when_ffmpeg_cannot_read_it_either(
    fallback: _Fallback, needle: str
) -> None:
    """(FFmpeg has no STAP-B, MTAP or FU-B either.) SourceUnsupported: not reconnected."""
    pytest.importorskip("av")
    from framebus.sources.rtsp import RTSPSource

    cam = _StapB()
    source = RTSPSource(framebus.Media(f"rtsp://127.0.0.1:{cam.port}/s"), fallback)
    try:
        source.open()
        with pytest.raises(framebus.SourceUnsupported, match="NAL type 25") as info:
            source.read()
    finally:
        source.close()
        cam.close()
    assert needle in str(info.value)


def test_rtsp_backend_fails_for_good_on_a_packetization_met_while_playing(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """It reconnected forever, logging "live again" without a frame: a fresh capture meets
    the same packets. SourceUnsupported is permanent, like a full /dev/shm."""
    pytest.importorskip("av")
    caplog.set_level(logging.INFO, logger="framebus")
    cam = _StapB()
    media = framebus.Media(f"rtsp://127.0.0.1:{cam.port}/s", backend="rtsp")
    policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
    try:
        # a stream goes live with its first frame: the packets come before any, so the
        # error reaches publish() itself, and nothing reconnects
        with pytest.raises(framebus.SourceUnsupported, match="NAL type 25") as err:
            framebus.publish(stream_name, media, reconnect=policy)
        time.sleep(0.5)  # (time enough for a reconnect, were there one)
    finally:
        cam.close()
    assert "backend 'opencv' or 'av' may open it" in str(err.value)
    assert cam.connections == 1
    assert "live again" not in caplog.text and "reconnecting" not in caplog.text


def test_client_declines_interleaved_packetization_before_setup() -> None:
    """An SDP that announces STAP-B/MTAP/FU-B (packetization mode 2): said at DESCRIBE."""

    class Interleaving(_ScriptedCamera):
        sdp = _ScriptedCamera.sdp + b"a=fmtp:96 packetization-mode=2\r\n"

    cam = Interleaving()
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        with pytest.raises(framebus.SourceUnsupported, match="mode 2"):
            client.open()
    finally:
        client.close()
        cam.close()
    assert [m for _, m, _ in cam.requests] == ["OPTIONS", "DESCRIBE"]


# --- read_timeout ---------------------------------------------------------------------------------


class _Trickling(_ScriptedCamera):
    """After PLAY: ``silence``; a ``trickle`` (the head of a 64 KiB packet, then a byte every
    0.2 s); or packets on the ``other channel`` (RTCP's) only."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        super().__init__()

    def stream(self, conn: socket.socket, seq: int) -> bool:
        if self.mode == "trickle":
            if seq == 0:
                conn.sendall(b"$\x00\xff\xff")
            elif seq % 10 == 0:  # (a turn is 20 ms)
                conn.sendall(b"x")
        elif self.mode == "other channel":
            rtp = _rtp(IDR, seq + 1, (seq + 1) * 3600, marker=True)
            conn.sendall(b"$\x01" + len(rtp).to_bytes(2, "big") + rtp)
        return True


@pytest.mark.parametrize(
    ("mode", "needle"),
    [("silence", "no data"), ("trickle", "no video"), ("other channel", "no video")],
)
def test_read_timeout_bounds_the_wait_for_a_video_packet(mode: str, needle: str) -> None:
    """It bounded each recv(): a server trickling a byte a second never tripped it."""
    cam = _Trickling(mode)
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=1)
    try:
        client.open()
        t0 = time.monotonic()
        with pytest.raises(framebus.SourceUnreachable, match=f"{needle} for 1 s"):
            client.read_packet()
        elapsed = time.monotonic() - t0
    finally:
        client.close()
        cam.close()
    assert 0.95 <= elapsed < 1.5, f"{elapsed:.2f} s"


def test_trickling_server_fails_a_stream_without_reconnect() -> None:
    """With reconnect=False the stream stayed live, with no frames, forever."""
    pytest.importorskip("av")
    cam = _Trickling("trickle")
    media = framebus.Media(f"rtsp://127.0.0.1:{cam.port}/s", backend="rtsp", read_timeout=1)
    try:
        t0 = time.monotonic()
        # a stream goes live with its first frame, which never comes: VideoCapture() says why
        with pytest.raises(framebus.SourceUnreachable, match="no video for 1 s"):
            framebus.VideoCapture(media, reconnect=False)
        elapsed = time.monotonic() - t0
    finally:
        cam.close()
    assert elapsed < 5, f"{elapsed:.1f} s"  # (the capture process's start included)
