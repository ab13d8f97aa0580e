"""VideoWriter to a file (as cv2.VideoWriter, encoded off the caller's thread) and to a media
server (rtsp://: a stream of its own, pushed)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.testing import RTSPRecordServer, rtsp_server_available
from framebus.video_file import codec_for


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames,avg_frame_rate,pix_fmt", "-of", "json",
         str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout)["streams"][0])


def frames(n: int, width: int = 320, height: int = 240) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.zeros((height, width, 3), np.uint8)
        f[:, :, 0] = (i * 5) % 256
        f[:, :, 1] = np.arange(width, dtype=np.uint8)[None, :]
        f[:, :, 2] = np.arange(height, dtype=np.uint8)[:, None]
        cv2.putText(f, str(i), (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        out.append(f)
    return out


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(a, b))


@pytest.mark.parametrize(
    ("suffix", "fourcc", "codec"),
    [("mp4", "mp4v", "mpeg4"), ("avi", "MJPG", "mjpeg"), ("avi", "XVID", "mpeg4"),
     ("mkv", "avc1", "h264")],
)  # fmt: skip
def test_a_file_is_what_cv2_writes(tmp_path: Path, suffix: str, fourcc: str, codec: str) -> None:
    pictures = frames(40)
    ours, theirs = tmp_path / f"ours.{suffix}", tmp_path / f"cv2.{suffix}"
    with framebus.VideoWriter(str(ours), cv2.VideoWriter_fourcc(*fourcc), 25, (320, 240)) as w:
        assert w.isOpened() and w.getBackendName() == "FFMPEG"
        for f in pictures:
            w.write(f)
    cv = cv2.VideoWriter(str(theirs), cv2.VideoWriter_fourcc(*fourcc), 25, (320, 240))
    for f in pictures:
        cv.write(f)
    cv.release()
    mine = probe(ours)
    assert (mine["codec_name"], mine["width"], mine["height"]) == (codec, 320, 240)
    assert mine["nb_read_frames"] == "40" and mine["avg_frame_rate"] == "25/1"
    if codec != "h264":  # (cv2's wheel has no H.264 encoder)
        other = probe(theirs)
        assert (other["codec_name"], other["nb_read_frames"]) == (codec, "40")
    back = read_all(ours)
    assert len(back) == 40
    assert (
        min(psnr(a, b) for a, b in zip(pictures, back, strict=True)) > 30
    )  # every frame, in order


def test_h264_by_default_and_grey_frames(tmp_path: Path) -> None:
    path = tmp_path / "grey.mp4"
    with framebus.VideoWriter(path, None, 10, (64, 48), False) as w:
        for i in range(12):
            w.write(np.full((48, 64), i * 20, np.uint8))
    info = probe(path)
    assert (info["codec_name"], info["nb_read_frames"]) == ("h264", "12")
    back = read_all(path)
    assert abs(int(back[5].mean()) - 100) < 4


def test_frames_are_encoded_in_a_thread_of_their_own(tmp_path: Path) -> None:
    with framebus.VideoWriter(str(tmp_path / "a.mp4"), "avc1", 25, (64, 48)) as w:
        w.write(np.zeros((48, 64, 3), np.uint8))
        assert "framebus-file-writer" in [t.name for t in threading.enumerate()]
    assert "framebus-file-writer" not in [t.name for t in threading.enumerate()]


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs fps and frameSize"):
        framebus.VideoWriter(str(tmp_path / "a.mp4"))
    with pytest.raises(ValueError, match="not one framebus writes"):
        framebus.VideoWriter(str(tmp_path / "a.mp4"), "ZZZZ", 25, (64, 48))
    with pytest.raises(framebus.RecordError):
        framebus.VideoWriter(str(tmp_path / "no" / "such" / "a.mp4"), "mp4v", 25, (64, 48))
    with framebus.VideoWriter(str(tmp_path / "b.mp4"), "mp4v", 25, (64, 48)) as w:
        with pytest.raises(ValueError, match="64x48"):
            w.write(np.zeros((40, 64, 3), np.uint8))
        with pytest.raises(ValueError, match="64x48"):
            w.write(np.zeros((48, 64), np.uint8))
    with pytest.raises(framebus.StreamEnded):
        w.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(framebus.InvalidStreamName):
        framebus.VideoWriter("not a name", "mp4v", 25, (64, 48))
    assert codec_for(cv2.VideoWriter_fourcc(*"MJPG")) == "mjpeg" and codec_for(-1) == "libx264"


def test_a_full_disk_is_an_error_not_a_hang(small_disk: Path) -> None:
    rng = np.random.default_rng(0)
    w = framebus.VideoWriter(str(small_disk / "big.avi"), "MJPG", 25, (320, 240))
    with pytest.raises(framebus.DiskFull, match="the disk is full"):
        for _ in range(400):
            w.write(rng.integers(0, 255, (240, 320, 3), np.uint8))
        w.release()
    w.release()  # (once more: nothing left to say)


@pytest.mark.skipif(not rtsp_server_available(), reason="needs GStreamer's RTSP server")
def test_an_rtsp_url_pushes_what_is_written(stream_name: str) -> None:
    back = stream_name + "-back"
    with RTSPRecordServer() as srv:
        url = srv.push_url().replace("rtsp://", "rtsp://me:secret@")
        with framebus.VideoWriter(url, fps=25) as w:
            assert w.target == srv.push_url() and "secret" not in repr(w)
            stop = threading.Event()

            def produce() -> None:  # a slow detector: 2 frames a second
                while not stop.is_set():
                    w.write(np.full((240, 320, 3), (30, 90, 200), np.uint8))
                    stop.wait(0.5)

            t = threading.Thread(target=produce)
            t.start()
            try:
                assert wait_until(lambda: sum(e.startswith("au ") for e in srv.events()) > 5, 15)
                with (
                    framebus.publish(back, srv.play_url()),
                    framebus.attach(back, timeout=10) as r,
                ):
                    frame = r.read_frame()
                    t0, n = time.monotonic(), 0
                    while time.monotonic() - t0 < 2:
                        r.read_frame()
                        n += 1
                assert np.abs(frame.mean(axis=(0, 1)) - (30, 90, 200)).max() < 8
                assert n > 25  # 2 frames a second written, about 25 a second played
            finally:
                stop.set()
                t.join()
