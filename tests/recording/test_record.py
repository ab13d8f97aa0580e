"""framebus.record: segments and clips read back with ffprobe/FFmpeg, the camera's H.264 copied
(its parameter sets byte for byte), SIGKILL, SIGINT, a full disk (a small tmpfs)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

import framebus
from conftest import interrupt, wait_until
from framebus._h264 import nal_units
from framebus.recording import record
from framebus.recording.files import file_name, parse_file_name, prune_directory
from framebus.recording.units import GAP, PreRoll, Unit
from framebus.testing import RTSPServer, read_timestamp, rtsp_server_available

needs_rtsp = pytest.mark.skipif(
    not rtsp_server_available(), reason="needs GStreamer's RTSP server (gir1.2-gst-rtsp-server)"
)


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json",
         str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    stream, fmt = data["streams"][0], data["format"]
    return {**stream, "nb_read_frames": int(stream["nb_read_frames"]),
            "duration": float(fmt["duration"])}  # fmt: skip


def parameter_sets(data: bytes) -> set[bytes]:
    return {bytes(n) for n in nal_units(data) if n[0] & 0x1F in (7, 8)}


def raw_h264(path: Path) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-c", "copy", "-f", "h264", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip


def segments(directory: Path, name: str) -> list[Path]:
    return sorted(
        p for p in directory.iterdir() if (parsed := parse_file_name(p.name)) and parsed[0] == name
    )


@needs_rtsp
def test_camera_segments_are_copied_playable_and_back_to_back(
    stream_name: str, tmp_path: Path
) -> None:
    with (
        RTSPServer(size="320x240") as cam,
        framebus.publish(stream_name, cam.url()),
        framebus.attach_encoded(stream_name) as enc,
        record(stream_name, tmp_path, segment=2) as rec,
    ):
        key = next(f for f in iter(lambda: enc.read(timeout=10), None) if f.key)
        assert wait_until(lambda: rec.stats().segments >= 3, 30), rec.stats()
        assert rec.stats().source == "passthrough"
    files = segments(tmp_path, stream_name)
    assert len(files) >= 4 and not list(tmp_path.glob("*.part"))  # the last one finished at close
    info = [probe(f) for f in files]
    for f, i in zip(files, info, strict=True):
        assert (i["codec_name"], i["width"], i["height"]) == ("h264", 320, 240), f
        assert parameter_sets(raw_h264(f)) == parameter_sets(key.data)  # the camera's, unchanged
    for i in info[:-1]:
        assert 1.9 <= float(i["duration"]) <= 3.1  # (it ends at the first keyframe after 2 s)
    # back to back: each segment starts where the one before ends (within a frame)
    starts = [parse_file_name(f.name)[1] for f in files]  # type: ignore[index]
    for (a, b), i in zip(itertools.pairwise(starts), info, strict=False):
        assert abs((b - a) - float(i["duration"])) < 0.06
    total = sum(int(i["nb_read_frames"]) for i in info)
    span = starts[-1] + float(info[-1]["duration"]) - starts[0]
    assert abs(total - span * 25) < 6  # every frame of the camera's, none lost between files


def test_a_processed_stream_is_encoded_once_into_segments(stream_name: str, tmp_path: Path) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        record(stream_name, tmp_path, segment=1) as rec,
    ):
        assert wait_until(lambda: rec.stats().segments >= 2, 20)
        assert rec.stats().source == "encoded"
    files = segments(tmp_path, stream_name)
    for f in files:
        i = probe(f)
        assert (i["codec_name"], i["width"]) == ("h264", 320)
        assert int(i["nb_read_frames"]) > 0
    assert abs(float(probe(files[0])["duration"]) - 1.0) < 0.1  # keyframes on time: exact cuts


@needs_rtsp
def test_a_clip_holds_the_seconds_before_it_was_asked_for(stream_name: str, tmp_path: Path) -> None:
    with (
        RTSPServer(size="320x240") as cam,
        framebus.publish(stream_name, cam.url()),
        record(stream_name, tmp_path, segment=None, pre=3) as rec,
    ):
        assert wait_until(lambda: rec.stats().state == "recording", 15)
        time.sleep(3.5)
        clip = rec.clip(before=2, after=1)
        path = clip.wait(15)
    assert path.name.startswith(stream_name + "-clip-") and path.exists()
    assert segments(tmp_path, stream_name) == []  # clips only
    with av.open(str(path)) as container:
        stamps = [read_timestamp(f.to_ndarray(format="bgr24")) for f in container.decode(video=0)]
    sent = [s for s in stamps if s is not None]
    assert min(sent) <= clip.requested - 2  # from the keyframe at or before 2 s earlier
    assert min(sent) >= clip.requested - 3.2  # (the camera sends one each second)
    assert max(sent) >= clip.requested + 0.8
    assert rec.stats().clips == 1


def test_clip_starts_at_the_next_keyframe_when_nothing_is_cached(
    stream_name: str, tmp_path: Path
) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        record(stream_name, tmp_path, segment=None, pre=0) as rec,
    ):
        assert wait_until(lambda: rec.stats().state == "recording", 15)
        path = rec.clip(before=5, after=1).wait(15)
    assert int(probe(path)["nb_read_frames"]) > 10


def test_retention_removes_the_oldest_of_this_stream_only(tmp_path: Path) -> None:
    now = time.time()
    made = []
    for age in (5000, 4000, 3000, 10):
        p = tmp_path / file_name("door", now - age)
        p.write_bytes(b"x" * 1000)
        made.append(p)
    other = tmp_path / file_name("yard", now - 9000)
    other.write_bytes(b"x")
    (tmp_path / "door-notes.txt").write_text("mine")
    removed = prune_directory(tmp_path, "door", keep_seconds=3500, keep_bytes=None)
    assert removed == made[:2]
    removed = prune_directory(tmp_path, "door", keep_seconds=None, keep_bytes=1500)
    assert removed == [made[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [made[3].name, other.name, "door-notes.txt"]
    )  # never the newest, never another stream's, never a file that is not a recording


def test_file_names_round_trip() -> None:
    assert parse_file_name(file_name("cam-1", 1_765_000_000.25)) == ("cam-1", 1_765_000_000.25)
    assert parse_file_name("cam-20261207-170102.345Z.mp4.part") is None


def test_the_pre_roll_cache_is_bounded_and_starts_at_a_keyframe() -> None:
    cache = PreRoll(2.0, max_bytes=10_000)
    cache.add(Unit(b"d" * 10, False, 0.0))  # no keyframe yet: not kept
    assert cache.since(0) == []
    for i in range(200):  # 25 fps, a keyframe each second
        cache.add(Unit(b"k" * 100 if i % 25 == 0 else b"d" * 10, i % 25 == 0, i / 25))
    held = cache.since(-1)
    assert held[0].key and held[0].wall <= 199 / 25 - 2 < held[0].wall + 1.01
    assert cache.since(7.5)[0].wall == 7.0
    for i in range(200, 400):
        cache.add(Unit(b"k" * 4000 if i % 25 == 0 else b"d" * 400, i % 25 == 0, i / 25))
        assert cache.bytes <= 10_000 + 4000 + 24 * 400  # bounded: at most one group over
    cache.add(GAP)
    assert cache.since(0) == []


@needs_rtsp
def test_sigkill_leaves_every_finished_file_playable(stream_name: str, tmp_path: Path) -> None:
    with RTSPServer(size="320x240") as cam, framebus.publish(stream_name, cam.url()):
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebus", "record", stream_name, "--out", str(tmp_path),
             "--segment", "1", "--quiet"],
        )  # fmt: skip
        try:
            assert wait_until(lambda: len(segments(tmp_path, stream_name)) >= 2, 30)
            assert wait_until(lambda: list(tmp_path.glob("*.part")), 5)
            time.sleep(0.5)
            proc.kill()
        finally:
            proc.wait()
    parts = list(tmp_path.glob("*.part"))
    assert len(parts) <= 1
    for f in segments(tmp_path, stream_name):
        assert int(probe(f)["nb_read_frames"]) > 0
    for f in parts:  # fragmented: what was written before the kill plays too
        assert int(probe(f)["nb_read_frames"]) > 0


def test_sigint_finishes_the_current_segment(stream_name: str, tmp_path: Path) -> None:
    with framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebus", "record", stream_name, "--out", str(tmp_path),
             "--segment", "60", "--pre", "2", "--clip-after", "0.5"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_until(lambda: list(tmp_path.glob("*.part")), 20)
            time.sleep(2.5)
            proc.send_signal(signal.SIGUSR1)  # a clip: 2 s before, 0.5 s after
            assert wait_until(lambda: list(tmp_path.glob(f"{stream_name}-clip-*.mp4")), 10)
            out, took = interrupt(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0 and took < 5
    assert "clip saved" in out
    assert not list(tmp_path.glob("*.part"))
    [segment] = segments(tmp_path, stream_name)
    assert float(probe(segment)["duration"]) > 2


def test_a_full_disk_stops_recording_and_leaves_whole_files(
    stream_name: str, small_disk: Path
) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=640, height=480, fps=25)),
        record(stream_name, small_disk, segment=1) as rec,
    ):
        assert rec.wait(60), rec.stats()
        s = rec.stats()
        assert s.state == "failed" and "disk is full" in s.error
        assert isinstance(rec.failure, framebus.DiskFull)
        with pytest.raises(framebus.RecordError):
            rec.clip()
    assert not list(small_disk.glob("*.part"))
    files = segments(small_disk, stream_name)
    assert files
    for f in files:
        assert int(probe(f)["nb_read_frames"]) > 0  # each whole, the last cut at a frame


def test_framebus_record_says_the_disk_is_full_in_one_line(
    stream_name: str, small_disk: Path
) -> None:
    with framebus.publish(stream_name, framebus.TestPattern(width=640, height=480, fps=25)):
        done = subprocess.run(
            [sys.executable, "-m", "framebus", "record", stream_name, "--out", str(small_disk),
             "--quiet"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "disk is full" in done.stderr, done.stderr


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(framebus.RecordError, match="not a directory"):
        record("x", tmp_path / "missing")
    with pytest.raises(ValueError, match="segment"):
        record("x", tmp_path, segment=0.1)
    os.chmod(tmp_path, 0o500)
    try:
        if os.geteuid() != 0:  # (root may write anywhere)
            with pytest.raises(framebus.RecordError, match="cannot write"):
                record("x", tmp_path)
    finally:
        os.chmod(tmp_path, 0o700)


def test_two_clips_in_one_group_of_pictures_are_two_files(stream_name: str, tmp_path: Path) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(width=320, height=240, fps=25)),
        record(stream_name, tmp_path, segment=None, pre=2) as rec,
    ):
        assert wait_until(lambda: rec.stats().state == "recording", 15)
        time.sleep(1.0)
        first, second = rec.clip(before=1, after=0.5), rec.clip(before=1, after=0.5)
        paths = first.wait(15), second.wait(15)
        assert rec.stats().state == "recording" and rec.stats().clips == 2
    assert paths[0] != paths[1] and all(int(probe(p)["nb_read_frames"]) > 10 for p in paths)


def test_a_new_picture_size_starts_a_new_segment(stream_name: str, tmp_path: Path) -> None:
    with (
        framebus.VideoWriter(stream_name, fps=25) as writer,
        record(stream_name, tmp_path, segment=60) as rec,
    ):
        for size in ((240, 320), (480, 640)):
            for _ in range(25):
                writer.write(np.full((*size, 3), 90, np.uint8))
                time.sleep(0.04)
        assert wait_until(lambda: rec.stats().segments >= 1, 10)
    files = segments(tmp_path, stream_name)
    assert [(probe(f)["width"], probe(f)["height"]) for f in files] == [(320, 240), (640, 480)]
    assert all(int(probe(f)["nb_read_frames"]) >= 20 for f in files)
