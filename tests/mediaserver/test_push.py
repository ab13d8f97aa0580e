"""framebus.push against real RTSP servers that take pushes: GStreamer's in record mode (which
serves what it was pushed again, read back here with framebus's RTSP client), FFmpeg with
``rtsp_flags=listen`` (its recording checked with ffprobe), and a scripted server for what real
ones cannot be made to do (refuse credentials, stop reading)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import framebus
from conftest import interrupt, wait_until
from framebus.mediaserver import push
from framebus.testing import RTSPRecordServer, RTSPServer, read_timestamp, rtsp_server_available

pytestmark = pytest.mark.skipif(
    not rtsp_server_available(), reason="needs GStreamer's RTSP server (gir1.2-gst-rtsp-server)"
)
FAST = framebus.Reconnect(stall_timeout=2.0, backoff_initial=0.2, backoff_max=1.0)


def first_key(name: str) -> framebus.EncodedFrame:
    with framebus.attach_encoded(name) as enc:
        while True:
            frame = enc.read(timeout=10)
            if frame.key:
                return frame


def parameter_sets(au: bytes) -> list[bytes]:
    from framebus._h264 import nal_units

    return [bytes(n) for n in nal_units(au) if n[0] & 0x1F in (7, 8)]


def frames_within(reader: framebus.StreamReader, seconds: float) -> list[np.ndarray]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        ok, frame = reader.read()
        assert ok, reader.last_error
        out.append(frame)
    return out


def test_a_camera_is_pushed_as_it_came_and_plays_from_the_server(stream_name: str) -> None:
    back = stream_name + "-back"
    with (
        RTSPServer(size="320x240") as cam,
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, cam.url()),
        push(stream_name, srv.push_url()) as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        with framebus.publish(back, srv.play_url(), reconnect=FAST), framebus.attach(back) as r:
            frames = frames_within(r, 1.5)
            ages = [time.time() - t for f in frames if (t := read_timestamp(f)) is not None]
            assert frames[-1].shape == (240, 320, 3)
            assert ages and 0 < min(ages) < 1.0  # the camera's own barcodes, through the server
            # not re-encoded: the server hands out the camera's parameter sets
            assert set(parameter_sets(first_key(back).data)) == set(
                parameter_sets(first_key(stream_name).data)
            )
        s = p.stats()
        assert (s.state, s.transport, s.source) == ("live", "tcp", "passthrough")
        assert s.sent > 20 and s.connects == 1 and s.dropped == 0 and s.placeholders == 0
    assert "setup tcp" in srv.events() and "teardown" in srv.events()
    assert p.stats().state == "stopped"


def test_a_server_that_takes_only_udp_gets_udp(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240") as cam,
        RTSPRecordServer(protocols="udp") as srv,
        framebus.publish(stream_name, cam.url()),
        push(stream_name, srv.push_url()) as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        assert p.stats().transport == "udp"
        assert wait_until(lambda: sum(e.startswith("au ") for e in srv.events()) > 25, 10)
    assert "setup udp" in srv.events()


def test_a_processed_stream_is_encoded_once_at_a_steady_rate(stream_name: str) -> None:
    """A 2 fps producer pushed at 25 fps: players get 25 frames a second, the last one again
    until the next (x264 makes those a few bytes)."""
    back = stream_name + "-back"
    with (
        RTSPRecordServer() as srv,
        framebus.VideoWriter(stream_name, fps=2) as writer,
        push(stream_name, srv.push_url(), fps=25) as p,
    ):
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                writer.write(np.full((240, 320, 3), (i * 40) % 200 + 20, np.uint8))
                i += 1
                stop.wait(0.5)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            assert wait_until(lambda: p.stats().state == "live", 15)
            with framebus.publish(back, srv.play_url(), reconnect=FAST), framebus.attach(back):
                time.sleep(1.0)
                before, t0 = framebus.attach(back), time.monotonic()
                with before as r:
                    n = len(frames_within(r, 2.0))
                rate = n / (time.monotonic() - t0)
        finally:
            stop.set()
            producer.join()
        s = p.stats()
        assert s.source == "encoded" and s.repeated > s.sent // 2
        assert rate > 12  # a 2 fps producer, read back at (about) 25 fps
        sizes = [int(e.split()[1]) for e in srv.events() if e.startswith("au ")]
        assert min(sizes) < 200  # the repeats


def test_the_push_comes_back_when_the_server_does(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240") as cam,
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, cam.url()),
        push(stream_name, srv.push_url()) as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        srv.kill()
        assert wait_until(lambda: p.stats().state == "retrying", 10)
        assert "connection" in p.stats().error or "closed" in p.stats().error
        srv.start()
        assert wait_until(lambda: p.stats().state == "live" and p.stats().connects == 2, 10)
        n = sum(e.startswith("au ") for e in srv.events())
        assert wait_until(lambda: sum(e.startswith("au ") for e in srv.events()) > n + 10, 10)


def test_a_stalled_camera_is_replaced_by_a_placeholder_at_the_same_rate(
    stream_name: str,
) -> None:
    back = stream_name + "-back"
    with (
        RTSPServer(size="320x240", hang_after=40) as cam,
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, cam.url(), reconnect=framebus.Reconnect(stall_timeout=30)),
        push(stream_name, srv.push_url(), stall=1.0) as p,
    ):
        assert wait_until(lambda: p.stats().source == "placeholder: no frame for 1 s", 15)
        sources = set()
        for _ in range(30):  # 3 s: it stays (a stalled stream is not attached again and again)
            sources.add(p.stats().source)
            time.sleep(0.1)
        assert sources == {"placeholder: no frame for 1 s"}
        with framebus.publish(back, srv.play_url(), reconnect=FAST), framebus.attach(back) as r:
            # (the camera comes back for 40 frames each time its stream is opened again)
            assert wait_until(lambda: abs(int(r.read_frame()[60, 5].mean()) - 48) < 8, 10)
            assert r.read_frame().shape == (240, 320, 3)  # the camera's size
        s = p.stats()
        assert s.placeholders > 20 and s.state == "live" and s.connects == 1


def test_a_missing_stream_gets_a_placeholder_until_it_appears(stream_name: str) -> None:
    with RTSPRecordServer() as srv, push(stream_name, srv.push_url(), fps=10) as p:
        assert wait_until(lambda: p.stats().state == "live", 15)
        assert p.stats().source == "placeholder: waiting for the stream"
        with framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=10)):
            assert wait_until(lambda: p.stats().source == "encoded", 10)
        assert wait_until(lambda: p.stats().source.startswith("placeholder"), 10)


def test_ffmpeg_records_the_pushed_camera_unchanged(stream_name: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "pushed.ts"
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_flags", "listen", "-timeout", "20",
         "-i", f"rtsp://127.0.0.1:{port}/live", "-c", "copy", "-f", "mpegts", str(out)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with (
            RTSPServer(size="320x240") as cam,
            framebus.publish(stream_name, cam.url()),
        ):
            key = first_key(stream_name)
            with push(stream_name, f"rtsp://127.0.0.1:{port}/live") as p:
                assert wait_until(lambda: p.stats().sent > 50, 20), p.stats()
        ffmpeg.wait(10)  # the TEARDOWN ends its input
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
        ffmpeg.communicate()
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
    assert int(stream["nb_read_frames"]) > 40
    # the camera's SPS and PPS, byte for byte
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(out), "-c", "copy", "-f", "h264", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert all(ps in raw for ps in parameter_sets(key.data))


# -- a scripted server: what real ones cannot be made to do ----------------------------------


class ScriptedServer:
    """Answers ANNOUNCE/SETUP/RECORD (asking for Basic credentials first if ``user``), then
    reads what comes unless ``stall``: a server that stops taking data."""

    def __init__(self, *, user: str | None = None, password: str = "", stall: bool = False):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # (before listen)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.user, self.password, self.stall = user, password, stall
        self.requests: list[str] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import base64

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            buf = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            raise OSError
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    lines = head.decode().split("\r\n")
                    headers = {k.lower(): v.strip() for k, _, v in
                               (line.partition(":") for line in lines[1:])}  # fmt: skip
                    n = int(headers.get("content-length", "0"))
                    while len(buf) < n:
                        buf += conn.recv(65536)
                    buf = buf[n:]
                    method = lines[0].split()[0]
                    self.requests.append(lines[0] + " " + headers.get("authorization", ""))
                    cseq = headers.get("cseq", "0")
                    token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
                    if self.user and headers.get("authorization") != f"Basic {token}":
                        reply = (f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n"
                                 'WWW-Authenticate: Basic realm="x"\r\n\r\n')  # fmt: skip
                    else:
                        extra = ""
                        if method == "SETUP":
                            extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                        reply = (f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 42\r\n{extra}"
                                 "\r\n")  # fmt: skip
                    conn.sendall(reply.encode())
                    if method == "RECORD":
                        break
                while not self.stall:
                    if not conn.recv(65536):
                        break
                if self.stall:
                    time.sleep(60)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    made: list[ScriptedServer] = []

    def make(**kw: object) -> ScriptedServer:
        server = ScriptedServer(**kw)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in made:
        server.close()


def test_credentials_are_sent_when_asked_for_and_never_shown(
    stream_name: str, scripted: type[ScriptedServer]
) -> None:
    srv = scripted(user="cam", password="s3cret")
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        push(stream_name, f"rtsp://cam:s3cret@127.0.0.1:{srv.port}/in") as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        assert "s3cret" not in repr(p.stats())
    methods = [r.split()[0] for r in srv.requests]
    assert methods[:4] == ["ANNOUNCE", "ANNOUNCE", "SETUP", "RECORD"]
    assert all(r.endswith("Basic Y2FtOnMzY3JldA==") for r in srv.requests[1:4])

    srv = scripted(user="cam", password="other")
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        push(stream_name, f"rtsp://cam:s3cret@127.0.0.1:{srv.port}/in") as p,
    ):
        assert wait_until(lambda: p.stats().state == "retrying", 15)
        s = p.stats()
        assert "credentials refused" in s.error and "s3cret" not in s.error
        assert s.url == f"rtsp://127.0.0.1:{srv.port}/in"


def test_a_server_that_stops_reading_costs_frames_not_memory(
    stream_name: str, scripted: type[ScriptedServer]
) -> None:
    """The push drops whole groups of pictures (counted) instead of queueing or blocking."""
    srv = scripted(stall=True)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (720, 1280, 3), np.uint8)  # incompressible: ~1 MB frames
    with (
        framebus.VideoWriter(stream_name, fps=25) as writer,
        push(stream_name, f"rtsp://127.0.0.1:{srv.port}/in", fps=25) as p,
    ):
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                writer.write(np.roll(noise, i, axis=1))
                i += 7
                stop.wait(0.04)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            assert wait_until(lambda: p.stats().dropped > 10, 30), p.stats()
            sent = p.stats().sent
            assert wait_until(lambda: p.stats().dropped > 40, 30)
            s = p.stats()
            assert s.state == "live" and s.sent - sent < 10  # the thread goes on, sending little
        finally:
            stop.set()
            producer.join()


def test_framebus_push_stops_at_sigint_and_hides_credentials(
    stream_name: str, tmp_path: Path
) -> None:
    with (
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
    ):
        url = srv.push_url().replace("rtsp://", "rtsp://me:pa55word@")
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebus", "push", stream_name, url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            while "live" not in line and line:
                line = proc.stdout.readline()
            assert "live tcp encoded" in line, line
            assert wait_until(lambda: sum(e.startswith("au ") for e in srv.events()) > 10, 10)
            rest, took = interrupt(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0 and took < 5
        assert "pa55word" not in line + rest
        assert wait_until(lambda: "teardown" in srv.events(), 5)


def test_framebus_ls_and_the_api_show_a_push(stream_name: str, web: Any) -> None:
    from framebus.cli import main
    from framebus.outputs import list_outputs

    with (
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        push(stream_name, srv.push_url().replace("rtsp://", "rtsp://u:hidden@")) as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        assert wait_until(lambda: [o.state for o in list_outputs(stream_name)] == ["live"], 5)
        [o] = list_outputs(stream_name)
        assert (o.kind, o.target, o.detail, o.pid) == ("push", p.url, "tcp encoded", os.getpid())
        import io

        out = io.StringIO()
        main(["ls"], out)
        assert f"push {stream_name} -> {p.url}: live tcp encoded" in out.getvalue()
        assert "hidden" not in out.getvalue()
        out = io.StringIO()
        main(["ls", "--json"], out)
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        [row] = [r for r in rows if r.get("name") == stream_name]
        assert row["outputs"][0]["state"] == "live"
        w = web([stream_name])
        api = json.loads(w.get(f"/api/streams/{stream_name}")[2])
        assert [(o["kind"], o["state"], o["target"]) for o in api["outputs"]] == [
            ("push", "live", p.url)
        ]
    assert list_outputs(stream_name) == []  # removed when the push stopped


def test_a_writer_that_pauses_gets_the_placeholder_then_its_frames_again(
    stream_name: str,
) -> None:
    back = stream_name + "-back"
    with (
        RTSPRecordServer() as srv,
        framebus.VideoWriter(stream_name, fps=10) as writer,
        push(stream_name, srv.push_url(), fps=10, stall=1.0) as p,
    ):
        writer.write(np.full((240, 320, 3), 200, np.uint8))
        assert wait_until(lambda: p.stats().source == "encoded", 15)
        assert wait_until(lambda: p.stats().source.startswith("placeholder: no new frame"), 10)
        seen = set()
        for _ in range(20):  # 2 s with no write: the placeholder throughout
            seen.add(p.stats().source)
            time.sleep(0.1)
        assert len(seen) == 1 and p.stats().repeated > 0
        with framebus.publish(back, srv.play_url(), reconnect=FAST), framebus.attach(back) as r:
            assert wait_until(lambda: abs(int(r.read_frame()[60, 5].mean()) - 48) < 8, 10)
            writer.write(np.full((240, 320, 3), 200, np.uint8))  # back
            assert wait_until(lambda: p.stats().source == "encoded", 5)
            assert wait_until(lambda: int(r.read_frame()[60, 5].mean()) > 180, 10)


def test_urls_that_would_show_a_password_are_refused_without_it() -> None:
    for url in ("rtsp://admin:12/34@host/p", "rtsp://admin:ab#cd@host/p", "rtsp://h:99999/p"):
        with pytest.raises(framebus.PushRefused) as caught:
            push("x", url)
        assert "34" not in str(caught.value) and "ab" not in str(caught.value)
    with pytest.raises(framebus.PushRefused, match="only rtsp://"):
        push("x", "http://host/p")
    with pytest.raises(ValueError, match=r"rtmp://\*\*\*") as caught:
        framebus.VideoWriter("rtmp://me:secret@host/live", fps=25)
    assert "secret" not in str(caught.value)


def test_close_cuts_a_connection_attempt_short(stream_name: str) -> None:
    with framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=10)):
        p = push(stream_name, "rtsp://10.255.255.1:8554/x", timeout=5.0)  # never answers
        time.sleep(1.0)
        t0 = time.monotonic()
        p.close()
        assert time.monotonic() - t0 < 1.0 and p.stats().state == "stopped"


def test_an_h265_camera_is_pushed_as_it_came(stream_name: str) -> None:
    back = stream_name + "-back"
    with (
        RTSPServer(size="320x240", codec="h265") as cam,
        RTSPRecordServer(codec="h265") as srv,
        framebus.publish(stream_name, cam.url()),
        push(stream_name, srv.push_url()) as p,
    ):
        assert wait_until(lambda: p.stats().state == "live", 15)
        assert p.stats().source == "passthrough"
        with framebus.publish(back, srv.play_url(), reconnect=FAST), framebus.attach(back) as r:
            frame = r.read_frame(timeout=10)
            assert frame.shape == (240, 320, 3) and read_timestamp(frame) is not None
            with framebus.attach_encoded(back) as enc:
                assert enc.codec == "h265"


def test_framebus_push_reads_the_url_from_the_environment(stream_name: str) -> None:
    """``env:VAR``: the URL (and its password) stays out of the process list."""
    with (
        RTSPRecordServer() as srv,
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
    ):
        env = {**os.environ, "PUSH_URL": srv.push_url(), "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(
            [sys.executable, "-m", "framebus", "push", stream_name, "env:PUSH_URL",
             "--duration", "3"],
            capture_output=True, text=True, env=env, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"-> {srv.push_url()}: live tcp encoded" in done.stdout
        done = subprocess.run(
            [sys.executable, "-m", "framebus", "push", stream_name, "env:NO_SUCH_VAR"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 1 and "NO_SUCH_VAR" in done.stderr
