"""The test kit's replaying camera: a pre-encoded H.264 clip served in a loop by GStreamer's
RTSP server, without encoding (what the many-cameras benchmark uses for cameras that cost next
to no CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

import framebus
from framebus.testing import RTSPServer, encode_replay, rtsp_server_available

pytestmark = pytest.mark.skipif(
    not rtsp_server_available(), reason="GStreamer RTSP server not installed (make test does)"
)


def test_a_replayed_clip_plays_in_a_loop_on_each_mount_by_the_cameras_clock(
    tmp_path: Path, stream_name: str
) -> None:
    clip = tmp_path / "clip.h264"
    encode_replay(clip, size="320x240", fps=25, seconds=1)  # 25 access units
    assert clip.read_bytes().count(b"\x00\x00\x00\x01\x09") == 25
    with RTSPServer(replay=clip, fps=25, mounts=("/a", "/b")) as srv:
        for mount in ("/a", "/b"):
            with framebus.VideoCapture(srv.url(mount), name=f"{stream_name}{mount[1]}") as cap:
                seen, clock = 0, None
                # more frames than the clip holds (it loops), until a sender report came
                while seen < 40 or (clock != "camera" and seen < 500):
                    ok, frame = cap.read()
                    assert ok and frame is not None and frame.shape == (240, 320, 3)
                    seen += 1
                    clock = cap.info.clock if cap.info is not None else None
                assert clock == "camera"


def test_a_file_without_delimiters_is_refused(tmp_path: Path) -> None:
    clip = tmp_path / "clip.h264"
    clip.write_bytes(b"\x00\x00\x00\x01\x67" + b"\x00" * 64)
    with pytest.raises(RuntimeError, match="did not start"):
        RTSPServer(replay=clip).start(timeout=10)
