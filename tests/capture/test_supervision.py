"""The reconnect policy (pure) and supervision of capture threads for custom sources."""

from __future__ import annotations

import logging
import os
import random
import signal
import time

import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.capture import Backoff
from framebus.sources._ffmpeg import ffmpeg_options


def test_backoff_grows_to_its_bound_with_jitter() -> None:
    policy = framebus.Reconnect(backoff_initial=0.5, backoff_max=4.0, jitter=0.25)
    b = Backoff(policy, random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.5, 1, 2, 4, 4, 4, 4, 4]
    for d, base in zip(delays, bases, strict=True):
        assert d is not None and base * 0.75 <= d <= base * 1.25
    assert len({round(d or 0, 6) for d in delays[3:]}) > 1  # jittered, not lockstep
    b.reset()
    first = b.next_delay()
    assert first is not None and first <= 0.5 * 1.25


def test_backoff_gives_up_after_max_attempts() -> None:
    b = Backoff(framebus.Reconnect(max_attempts=2, jitter=0))
    assert b.next_delay() == 0.5 and b.next_delay() == 1.0 and b.next_delay() is None


def test_reconnect_policy_validation() -> None:
    with pytest.raises(ValueError):
        framebus.Reconnect(stall_timeout=0)
    with pytest.raises(ValueError):
        framebus.Reconnect(jitter=1.5)


def test_ffmpeg_options_low_latency_defaults_and_overrides() -> None:
    live = framebus.Media("rtsp://cam/x", ffmpeg_options={"rtsp_transport": "udp", "x": "1"})
    assert ffmpeg_options(live) == {
        "rtsp_transport": "udp", "rtsp_flags": "prefer_tcp", "fflags": "nobuffer",
        "flags": "low_delay", "x": "1",
    }  # fmt: skip
    assert ffmpeg_options(framebus.Media("http://cam/mjpg")) == {
        "fflags": "nobuffer", "flags": "low_delay"
    }  # fmt: skip
    assert ffmpeg_options(framebus.Media("/tmp/x.mp4")) == {}
    with pytest.raises(ValueError):
        framebus.Media("x.mp4", cv2_params=(1,))
    with pytest.raises(ValueError):
        framebus.Media("x.mp4", backend="gstreamer")  # type: ignore[arg-type]


def test_automatic_backend_choice() -> None:
    def choice(media: framebus.Media, av: bool = True) -> str:
        return media.resolved_backend(av)

    assert choice(framebus.Media("rtsp://cam/x")) == "rtsp"
    assert choice(framebus.Media("RTSP://cam/x")) == "rtsp"
    assert choice(framebus.Media("rtsp://cam/x"), av=False) == "opencv"
    # FFmpeg options or OpenCV parameters are asked of FFmpeg: the user gets FFmpeg
    assert choice(framebus.Media("rtsp://cam/x", ffmpeg_options={"a": "b"})) == "opencv"
    assert choice(framebus.Media("rtsp://cam/x", cv2_params=(1, 2))) == "opencv"
    for other in ("rtsps://cam/x", "http://cam/mjpg", "/tmp/x.mp4", 0):
        assert choice(framebus.Media(other)) == "opencv"
    assert choice(framebus.Media("rtsp://cam/x", backend="av")) == "av"
    with pytest.raises(ValueError, match="rtsp:// URLs only"):
        framebus.Media("http://cam/x", backend="rtsp")


class Flaky(framebus.Source):
    """A live custom source that fails every 20 frames."""

    def __init__(self) -> None:
        self.n = 0

    def read(self) -> np.ndarray | None:
        self.n += 1
        if self.n % 20 == 0:
            raise OSError("device hiccup")
        return np.full((24, 32), self.n % 256, np.uint8)


def test_custom_source_thread_is_restarted(stream_name: str) -> None:
    policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
    with (
        framebus.publish(stream_name, Flaky(), reconnect=policy) as pub,
        framebus.attach(stream_name, timeout=10) as reader,
    ):
        assert wait_until(lambda: pub.stats().reconnects >= 2)
        assert reader.read()[0]
        # shown between a failure and the next frame (a recovered stream shows no error)
        assert wait_until(lambda: "device hiccup" in pub.stats().error)


def test_no_reconnect_fails_and_readers_learn_why(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, Flaky(), reconnect=False) as pub,
        framebus.attach(stream_name, timeout=10) as reader,
    ):
        while reader.read()[0]:
            pass
        assert isinstance(reader.last_error, framebus.SourceError)
        assert "device hiccup" in str(reader.last_error)
        assert pub.stats().state == "failed"


class Hiccup(framebus.Source):
    """A live custom source at 100 fps that fails once, at frame 10; the first read after
    that failure takes ``pause`` seconds (a camera that is slow to come back)."""

    def __init__(self, pause: float) -> None:
        self.n = 0
        self.pause = pause
        self.failed = False
        self.slow = False

    def open(self) -> None:
        self.slow = self.failed

    def read(self) -> np.ndarray | None:
        if self.slow:
            self.slow = False
            time.sleep(self.pause)
        self.n += 1
        if self.n == 10:
            self.failed = True
            raise OSError("device hiccup")
        time.sleep(0.01)
        return np.full((24, 32), self.n % 256, np.uint8)


def test_live_again_only_with_a_frame_and_without_the_old_error(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framebus")
    policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
    with framebus.publish(stream_name, Hiccup(pause=1.0), reconnect=policy) as pub:
        assert wait_until(lambda: pub.stats().reconnects == 1)
        time.sleep(0.5)  # reopened, but its first frame is still on its way
        s = pub.stats()
        assert s.state == "connecting" and "device hiccup" in s.error, s
        assert wait_until(lambda: pub.stats().state == "live" and pub.stats().captured > 9)
        [listed] = [s for s in framebus.list_streams() if s.name == stream_name]
        assert listed.state == "live" and listed.error == ""  # what `ls` shows
        assert pub.stats().reconnects == 1
        assert wait_until(lambda: any("live again" in r.getMessage() for r in caplog.records))
    messages = [(r.created, r.getMessage()) for r in caplog.records]
    failed = next(t for t, m in messages if "device hiccup; reconnecting" in m)
    live = next(t for t, m in messages if "live again" in m)
    assert live - failed >= 0.9, messages  # not when it reopened: when a frame came


def test_a_stalled_thread_source_that_resumes_shows_no_stale_error(stream_name: str) -> None:
    class Pausing(framebus.Source):  # one pause of 1.5 s, at frame 10
        def __init__(self) -> None:
            self.n = 0

        def read(self) -> np.ndarray | None:
            self.n += 1
            time.sleep(1.5 if self.n == 10 else 0.01)
            return np.zeros((24, 32), np.uint8)

    policy = framebus.Reconnect(stall_timeout=0.5)
    with framebus.publish(stream_name, Pausing(), reconnect=policy) as pub:
        assert wait_until(lambda: pub.stats().state == "stalled")
        assert "no frame for" in pub.stats().error
        assert wait_until(lambda: pub.stats().state == "live" and pub.stats().captured > 12)
        assert pub.stats().error == "" and pub.stats().reconnects == 0


def test_capture_killed_while_allocating_fails_with_shared_memory_full(stream_name: str) -> None:
    policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
    pattern = framebus.TestPattern(64, 48, fps=50)
    with (
        framebus.publish(stream_name, pattern, reconnect=policy) as pub,
        framebus.attach(stream_name, timeout=10) as reader,
    ):
        assert reader.read()[0]
        os.kill(pub.capture_pid, signal.SIGKILL)  # killed at any other moment: reconnect
        assert wait_until(lambda: pub.stats().reconnects == 1 and pub.stats().state == "live")
        assert reader.read()[0]
        # what the kernel's OOM killer does to a capture allocating a new generation
        pub.ctl.allocating = 512 * 2**20
        os.kill(pub.capture_pid, signal.SIGKILL)
        while reader.read()[0]:
            pass
        assert isinstance(reader.last_error, framebus.SharedMemoryFull), reader.last_error
        time.sleep(0.5)  # a reconnect loop would show here
        s = pub.stats()
        assert s.state == "failed" and s.reconnects == 1, s
        assert "while allocating 512.0 MiB" in s.error


def test_redact_hides_credentials() -> None:
    from framebus.sources import redact

    assert redact("rtsp://bob:pw@10.0.0.7:554/s1") == "rtsp://***@10.0.0.7:554/s1"
    assert redact("rtsp://10.0.0.7/s1") == "rtsp://10.0.0.7/s1"
    assert (
        redact("http://cam/video.cgi?user=admin&pwd=hunter2&res=hd")
        == "http://cam/video.cgi?user=***&pwd=***&res=hd"
    )
