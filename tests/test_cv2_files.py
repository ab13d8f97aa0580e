"""framebus.VideoCapture against cv2.VideoCapture on the same files, property by property and
frame by frame: what client code written for cv2 reads right after opening, while reading,
after seeks and at the end (files made with ffmpeg: H.264 MP4, 29.97 fps, MPEG-4 AVI, MJPEG
AVI, variable frame rate, MPEG-TS with a start offset)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

import framebus

PATTERN = ["-f", "lavfi", "-i"]
H264 = ["-c:v", "libx264", "-g", "12", "-pix_fmt", "yuv420p"]
FILES: dict[str, list[str]] = {
    "h264.mp4": [*PATTERN, "testsrc=size=320x240:rate=25", *H264],
    "ntsc.mp4": [*PATTERN, "testsrc=size=320x240:rate=30000/1001", *H264],
    "mpeg4.avi": [*PATTERN, "testsrc=size=320x240:rate=25", "-c:v", "mpeg4", "-g", "12"],
    "mjpeg.avi": [*PATTERN, "testsrc=size=320x240:rate=25", "-c:v", "mjpeg"],
    # 25 fps, then a 0.5 s gap at frame 20, then frames drifting apart from frame 35
    "vfr.mp4": [*PATTERN, "testsrc=size=320x240:rate=25", "-vf",
                "setpts='N/25/TB+if(gte(N,20),0.5/TB,0)+if(gte(N,35),N*0.01/TB,0)'",
                "-fps_mode", "passthrough", *H264],
    "ts.ts": [*PATTERN, "testsrc=size=320x240:rate=25", *H264, "-f", "mpegts"],  # starts at 1.4 s
}  # fmt: skip
FRAMES = 50
PROPS = {
    "FRAME_WIDTH": cv2.CAP_PROP_FRAME_WIDTH,
    "FRAME_HEIGHT": cv2.CAP_PROP_FRAME_HEIGHT,
    "FPS": cv2.CAP_PROP_FPS,
    "FRAME_COUNT": cv2.CAP_PROP_FRAME_COUNT,
    "POS_FRAMES": cv2.CAP_PROP_POS_FRAMES,
    "POS_MSEC": cv2.CAP_PROP_POS_MSEC,
}
POSITIONS = ("POS_FRAMES", "POS_MSEC")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cv2-files")
    made = {}
    for name, args in FILES.items():
        path = folder / name
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", *args, "-frames:v", str(FRAMES), str(path)],
            check=True,
            timeout=60,
        )
        made[name] = path
    return made


Capture = cv2.VideoCapture | framebus.VideoCapture


def props(cap: Capture, names: tuple[str, ...]) -> dict[str, float]:
    return {name: cap.get(PROPS[name]) for name in names}


@pytest.fixture(params=list(FILES))
def pair(request: pytest.FixtureRequest, files: dict[str, Path]):  # type: ignore[no-untyped-def]
    """(cv2's capture, framebus's) of one file, opened one right after the other."""
    path = files[request.param]
    ours = framebus.VideoCapture(str(path))  # the properties are asked at once, no wait
    theirs = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        yield theirs, ours
    finally:
        ours.release()
        theirs.release()


def test_what_is_known_when_the_constructor_returns(pair) -> None:  # type: ignore[no-untyped-def]
    theirs, ours = pair
    assert props(ours, tuple(PROPS)) == props(theirs, tuple(PROPS))  # exact: fps too


def test_every_frame_and_position_while_reading_and_at_the_end(pair) -> None:  # type: ignore[no-untyped-def]
    theirs, ours = pair
    for n in range(FRAMES + 1):
        ok_t, frame_t = theirs.read()
        ok_o, frame_o = ours.read()
        assert ok_o == ok_t, n
        if ok_t:
            assert np.array_equal(frame_o, frame_t), n
        assert props(ours, POSITIONS) == pytest.approx(props(theirs, POSITIONS), abs=1e-6), n
    assert not ok_t  # the end: both say so, and the positions after it


@pytest.mark.parametrize("k", [0, 1, 13, 30, 45, 49])
def test_positions_after_a_seek_and_the_frame_there(pair, k: int) -> None:  # type: ignore[no-untyped-def]
    theirs, ours = pair
    for _ in range(5):  # from somewhere in the file
        assert theirs.read()[0] and ours.read()[0]
    assert ours.set(cv2.CAP_PROP_POS_FRAMES, k) == theirs.set(cv2.CAP_PROP_POS_FRAMES, k)
    assert props(ours, POSITIONS) == pytest.approx(props(theirs, POSITIONS), abs=1e-6)
    ok_t, frame_t = theirs.read()
    ok_o, frame_o = ours.read()
    assert ok_o == ok_t
    if ok_t:
        assert np.array_equal(frame_o, frame_t)
    assert props(ours, POSITIONS) == pytest.approx(props(theirs, POSITIONS), abs=1e-6)
