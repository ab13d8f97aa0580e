"""Camera time: RTCP sender reports map a camera's RTP times to its clock, so a frame's
timestamp is when the camera took it. The clock's rules (no I/O, fuzzed), a scripted camera
whose clock is off (real H.264, real sender reports, on a real socket), and GStreamer's, its
sender reports by a clock shifted from ours."""

from __future__ import annotations

import socket
import statistics
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rtsp_protocol import _ScriptedCamera

import framebus
from conftest import wait_until
from framebus._rtp import Packetizer, parse_sender_reports, sender_report
from framebus.sinks.h264 import H264Encoder
from framebus.sources._rtsp.clock import MAX_OFFSET, MAX_STEP, WINDOW, CameraClock
from framebus.testing import RTSPServer, paint_timestamp, read_timestamp, rtsp_server_available

RATE = 90_000


def test_sender_reports_read_back() -> None:
    p = Packetizer("h264", ssrc=7)
    wall = 1_765_000_000.5
    data = sender_report(p, wall, 123456) + bytes([0x81, 201, 0, 1]) + b"\0" * 4  # + an RR
    [sr] = parse_sender_reports(data)
    assert (sr.ssrc, sr.rtp) == (7, 123456) and abs(sr.wall - wall) < 1e-6
    assert parse_sender_reports(b"") == [] and parse_sender_reports(b"\x80\xc8\xff\xff") == []
    after_2036 = bytearray(sender_report(p, wall, 1))
    after_2036[8:12] = (5).to_bytes(4, "big")  # NTP seconds wrapped: era 1
    assert parse_sender_reports(bytes(after_2036))[0].wall > 2_085_000_000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_reports_or_nothing(data: bytes) -> None:
    for sr in parse_sender_reports(data):
        assert 0 <= sr.rtp < 1 << 32


def test_frames_take_the_cameras_time() -> None:
    clock = CameraClock(RATE)
    camera_lag = 0.8  # the camera's clock is 0.8 s behind ours; frames take 30 ms to arrive
    t_rtp, now = 1000, 1_765_000_000.0
    assert clock.frame(t_rtp, now)[1] == "local"  # no report yet
    clock.report(now - camera_lag, t_rtp)
    for i in range(1, 100):
        taken, kind = clock.frame(t_rtp + i * 3600, now + i * 0.04 + 0.03)
        assert kind == "camera"
        assert abs(taken - (now - camera_lag + i * 0.04)) < 1e-6
    assert clock.offset is not None and abs(clock.offset - (camera_lag + 0.03)) < 1e-6
    assert clock.jitter is not None and clock.jitter < 1e-6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=120))
def test_offset_and_jitter_are_the_windows_median_and_deviation(offsets: list[float]) -> None:
    clock = CameraClock(RATE)
    clock._offsets.extend(offsets)
    window = offsets[-WINDOW:]
    assert clock.offset == pytest.approx(statistics.median(window), abs=1e-12)
    if len(window) >= 2:
        assert clock.jitter == pytest.approx(statistics.pstdev(window), abs=1e-9)
    else:
        assert clock.jitter is None


def test_a_clock_minutes_off_is_not_trusted() -> None:
    clock = CameraClock(RATE)
    now = 1_765_000_000.0
    clock.report(now - 300, 0)  # never set: five minutes behind
    taken, kind = clock.frame(3600, now)
    assert kind == "untrusted" and taken == now  # the arrival time
    assert clock.offset is not None and abs(clock.offset - 299.96) < 1e-6


def test_one_bogus_report_moves_nothing_a_confirmed_step_does() -> None:
    clock = CameraClock(RATE)
    now = 1_765_000_000.0
    clock.report(now, 0)
    clock.report(now + 3600, 90_000)  # an hour ahead, once: ignored
    assert clock.ignored == 1
    assert abs(clock.frame(2 * RATE, now + 2)[0] - (now + 2)) < 1e-6
    clock.report(now + 10 + 1.0, 10 * RATE)  # the camera's clock was set 1 s forward...
    assert clock.ignored == 2  # (more than MAX_STEP: not yet)
    clock.report(now + 12 + 1.0, 12 * RATE)  # ... and the next report agrees
    taken, kind = clock.frame(13 * RATE, now + 13.03)
    assert kind == "camera" and abs(taken - (now + 14)) < 1e-6
    assert MAX_STEP < 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(-1e10, 1e10), st.integers(0, 2**32 - 1)),
                max_size=60))  # fmt: skip
def test_whatever_the_reports_times_never_go_back_nor_far_ahead(
    events: list[tuple[bool, float, int]],
) -> None:
    clock = CameraClock(RATE)
    now, rtp = 1_765_000_000.0, 0
    last = (0.0, "")
    for is_report, wall, rtp32 in events:
        if is_report:
            clock.report(wall, rtp32)
            continue
        rtp = (rtp + 3600) & 0xFFFFFFFF
        now += 0.04
        taken, kind = clock.frame(rtp, now)
        assert taken <= now + MAX_OFFSET + 1e-3
        if kind == "camera":  # never far from its arrival, either way
            assert abs(taken - now) <= MAX_OFFSET + 1e-3
        assert kind != last[1] or taken > last[0]  # never back, within a clock
        last = (taken, kind)


def test_a_clock_rate_that_is_no_video_clock_is_never_mapped() -> None:
    clock = CameraClock(1)  # (an SDP's rtpmap may say anything)
    clock.report(1_765_000_000.0, 0)
    assert clock.frame(2**31, 1_765_000_000.0)[1] == "local"


def test_rtp_times_unwrap() -> None:
    clock = CameraClock(RATE)
    assert clock.extend(2**32 - 1800) == 2**32 - 1800
    assert clock.extend(1800) == 2**32 + 1800
    assert clock.extend(2**32 - 900) == 2**32 - 900  # a little back


def clock_of(reader: framebus.StreamReader) -> str:
    """Whose clock the next frame's time is."""
    reader.read_frame()
    return reader.info.clock if reader.info is not None else ""


# -- a scripted camera whose clock is off -------------------------------------------------------


class _CameraWithAClock(_ScriptedCamera):
    """Real H.264 (libx264) of 320x240 frames at 25 fps, each with its capture time painted as
    a barcode by the camera's clock — ours plus ``offset`` seconds — and an RTCP sender report
    by that clock every second."""

    sdp = (b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:v\r\n"
           b"a=framerate:25\r\n")  # fmt: skip

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.encoder = H264Encoder(25)
        self.packetizer = Packetizer("h264", ssrc=0x1234)
        self.next_at = 0.0
        self.frames = 0
        self.t0 = 0.0
        super().__init__()

    def stream(self, conn: socket.socket, seq: int) -> bool:
        now = time.monotonic()
        if not self.t0:
            self.t0 = self.next_at = now
        if now < self.next_at:
            return True
        self.next_at += 0.04
        camera_now = time.time() + self.offset
        picture = np.full((240, 320, 3), 90, np.uint8)
        paint_timestamp(picture, camera_now)
        au = self.encoder.encode(picture, key=self.frames % 25 == 0)
        rtp = round((now - self.t0) * RATE) & 0xFFFFFFFF  # its capture time, on RTP's clock
        out = b""
        for pk in self.packetizer.packetize(au.data, rtp):
            out += b"$\x00" + len(pk).to_bytes(2, "big") + pk
        if self.frames % 25 == 0:
            sr = sender_report(self.packetizer, camera_now, rtp)
            out += b"$\x01" + len(sr).to_bytes(2, "big") + sr
        conn.sendall(out)
        self.frames += 1
        return True


@pytest.mark.parametrize("offset", [-1.5, 0.7])
def test_a_cameras_frames_carry_its_own_time(stream_name: str, offset: float) -> None:
    camera = _CameraWithAClock(offset)
    try:
        url = f"rtsp://127.0.0.1:{camera.port}/s"
        with framebus.publish(stream_name, url), framebus.attach(stream_name) as reader:
            assert wait_until(lambda: clock_of(reader) == "camera", 10)
            for _ in range(25):
                frame = reader.read_frame()
                info = reader.info
                assert info is not None and info.clock == "camera"
                painted = read_timestamp(frame)
                assert painted is not None
                # the camera's capture time (its barcode), not this machine's: off by offset
                assert abs(info.timestamp - painted) < 0.005
                assert abs((time.time() - info.timestamp) + offset) < 0.5
            stats = reader.stats()
            assert stats.clock == "camera"
            assert stats.clock_offset is not None and abs(stats.clock_offset + offset) < 0.2
            assert stats.clock_jitter is not None and stats.clock_jitter < 0.1
    finally:
        camera.close()


def test_a_camera_whose_clock_is_minutes_off_keeps_local_times(stream_name: str) -> None:
    camera = _CameraWithAClock(-600.0)
    try:
        url = f"rtsp://127.0.0.1:{camera.port}/s"
        with framebus.publish(stream_name, url), framebus.attach(stream_name) as reader:
            assert wait_until(lambda: clock_of(reader) == "untrusted", 10)
            info = reader.info
            assert info is not None and abs(time.time() - info.timestamp) < 0.5
            stats = reader.stats()
            assert stats.clock == "untrusted"
            assert stats.clock_offset is not None and abs(stats.clock_offset - 600) < 1
    finally:
        camera.close()


@pytest.mark.skipif(not rtsp_server_available(), reason="needs GStreamer's RTSP server")
def test_gstreamers_sender_reports_give_the_cameras_time(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240") as cam,
        framebus.publish(stream_name, cam.url()),
        framebus.attach(stream_name) as reader,
    ):
        assert reader.read_frame() is not None and reader.info is not None
        assert reader.info.clock == "local"  # before the first sender report (~5 s)
        assert wait_until(lambda: clock_of(reader) == "camera", 20)
        frame = reader.read_frame()
        painted = read_timestamp(frame)
        info = reader.info
        assert painted is not None and info is not None
        # GStreamer stamps a frame when its appsrc takes it, just after the barcode is painted
        assert abs(info.timestamp - painted) < 0.05
        assert reader.stats().clock_offset is not None


@pytest.mark.skipif(not rtsp_server_available(), reason="needs GStreamer's RTSP server")
@pytest.mark.parametrize("shift", [-0.8, 1.2, -120.0])
def test_gstreamer_with_a_shifted_clock(stream_name: str, shift: float) -> None:
    """GStreamer's server sending sender reports by a clock `shift` s off ours: the frames
    follow the camera's clock while it is within MAX_OFFSET, and keep their arrival times
    (flagged) when it is minutes off."""
    with (
        RTSPServer(size="320x240", clock_offset=shift) as cam,
        framebus.publish(stream_name, cam.url()),
        framebus.attach(stream_name) as reader,
    ):
        assert reader.read_frame() is not None
        want = "camera" if abs(shift) < MAX_OFFSET else "untrusted"
        assert wait_until(lambda: clock_of(reader) == want, 20)
        for _ in range(5):
            painted = read_timestamp(reader.read_frame())
            info = reader.info
            assert painted is not None and info is not None and info.clock == want
            expected = painted + shift if want == "camera" else painted  # (sent ≈ arrived)
            assert abs(info.timestamp - expected) < 0.05
        offset = reader.stats().clock_offset
        assert offset is not None and abs(offset + shift) < 0.05  # arrival minus camera time
