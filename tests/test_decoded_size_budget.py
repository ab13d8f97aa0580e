"""The decoded-size budget: a few hundred bytes claiming a huge picture are refused before
anything is decoded or allocated (FrameTooLarge), on every path that decodes foreign bytes.

Before: a 900-byte JPEG through ``cam=-`` peaked at 1.6 GB and asked for a 3 GiB ring, a
198 KB H.264 file of 8192x8192 frames took ``framebus sample`` to 1.46 GB (the ``zmq://``
case is in tests/net/test_zmq.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import framebus
from framebus import limits, wire
from fuzzing import fuzz

ROOT = Path(__file__).resolve().parent
HELPER = ROOT / "helpers" / "pipe_capture.py"
PEAK_RSS = ROOT / "helpers" / "peak_rss.py"


def jpeg_bomb(side: int = 16384) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) claims ``side`` x ``side`` pixels."""
    _, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, then width
    return bytes(data)


def run_measured(args: list[str], stdin: bytes = b"", **kw: object) -> tuple[int, str, str, int]:
    """Run ``args``: (exit status, stdout, stderr, that process's peak RSS in KiB).

    Through a small launcher: measured from here, a child's peak would include this test
    process's size at fork (see tests/helpers/peak_rss.py).
    """
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run(
            [sys.executable, str(PEAK_RSS), str(peak_file), *args],
            input=stdin,
            capture_output=True,
            timeout=120,
            **kw,  # type: ignore[call-overload]
        )
        peak = int(peak_file.read_text())
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), peak


def run_capture(stdin: bytes) -> tuple[dict[str, object], int]:
    """VideoCapture("-") in a fresh process fed ``stdin``: its JSON line and peak RSS (KiB)."""
    _, out, err, peak = run_measured([sys.executable, str(HELPER), os.devnull], stdin)
    assert "Traceback" not in err, err
    return json.loads(out.strip().splitlines()[-1]), peak


def test_the_bomb_is_small_and_claims_a_huge_picture() -> None:
    bomb = jpeg_bomb()
    assert len(bomb) < 1000
    import simplejpeg

    assert simplejpeg.decode_jpeg_header(bomb)[:2] == (16384, 16384)


@pytest.mark.parametrize(
    "what",
    ["mjpeg", "wire-jpeg", "y4m"],
)
def test_a_pipe_input_claiming_a_huge_picture_is_refused_before_decoding(what: str) -> None:
    if what == "mjpeg":
        data = jpeg_bomb() * 2
    elif what == "wire-jpeg":
        bomb = jpeg_bomb()
        header = wire.FrameHeader(
            wire.Codec.JPEG, wire.PixelFormat.BGR24, 16384, 16384, 16384 * 3, len(bomb), 1,
            wire.new_session(), 0, 0,
        )  # fmt: skip
        data = wire.encode_header(header) + bomb
    else:  # y4m: 8192x8192 grey frames are 64 MiB of real bytes, but 200 MB once BGR
        data = b"YUV4MPEG2 W8192 H8192 F25:1 Cmono\nFRAME\n"
    result, peak_kib = run_capture(data)
    assert "FrameTooLarge" in str(result.get("open_error")), result
    assert "decoded-size budget" in str(result["open_error"])
    assert peak_kib < 400 * 1024, f"peak RSS {peak_kib} KiB"  # was 1.6 GB (mjpeg)


def test_the_command_line_says_so_in_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "serve", "x=-", "--quiet"],
        input=jpeg_bomb(),
        capture_output=True,
        timeout=60,
    )
    lines = out.stderr.decode().strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "16384x16384" in lines[0] and "FRAMEBUS_MAX_PIXELS" in lines[0]


def test_the_budget_is_settable_for_the_capture_process(tmp_path: Path) -> None:
    """A budget below the frames' size refuses even an honest 160x120 MJPEG stream."""
    _, buf = cv2.imencode(".jpg", np.zeros((120, 160, 3), np.uint8))
    env = {**os.environ, limits.ENV: str(160 * 120 - 1)}
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path / "f.npy")],
        input=buf.tobytes(), capture_output=True, timeout=60, env=env,
    )  # fmt: skip
    assert "FrameTooLarge" in proc.stdout.decode(), proc.stdout
    env[limits.ENV] = str(160 * 120)
    proc = subprocess.run(
        [sys.executable, str(HELPER), str(tmp_path / "f.npy")],
        input=buf.tobytes(), capture_output=True, timeout=60, env=env,
    )  # fmt: skip
    assert json.loads(proc.stdout.decode().splitlines()[-1])["frames"] == 1


@pytest.fixture(scope="module")
def huge_h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """198 KB of H.264: three 8192x8192 grey frames."""
    path = tmp_path_factory.mktemp("bomb") / "big.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:s=8192x8192:r=25",
         "-frames:v", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def test_sampling_a_file_of_huge_frames_is_refused_before_decoding(
    huge_h264: Path, tmp_path: Path
) -> None:
    status, _, err, peak_kib = run_measured(
        [sys.executable, "-m", "framebus", "sample", str(huge_h264), "--every", "1",
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1, err
    assert lines[0].startswith("framebus: error:") and "8192x8192" in lines[0], err
    assert "decoded-size budget" in lines[0]
    assert peak_kib < 400 * 1024, f"peak RSS {peak_kib} KiB"  # was 1.46 GB


def test_sampling_in_python_raises_the_named_error(huge_h264: Path, tmp_path: Path) -> None:
    with pytest.raises(framebus.FrameTooLarge, match="8192x8192"):
        framebus.sample(str(huge_h264), every=1, out=str(tmp_path))


@pytest.mark.parametrize("backend", ["opencv", "av"])
def test_a_file_of_huge_frames_is_refused_when_opened(huge_h264: Path, backend: str) -> None:
    """What the file declares is checked before the capture reads a frame of it."""
    with pytest.raises(framebus.FrameTooLarge, match="8192x8192"):
        framebus.VideoCapture(framebus.Media(str(huge_h264), backend=backend))


# -- the budget itself -------------------------------------------------------------------------


def test_default_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.ENV, "")  # restored after the test, whatever set_max_pixels does
    assert limits.max_pixels() == limits.DEFAULT_MAX_PIXELS == 7680 * 4320
    limits.check_pixels(7680, 4320, "8K")
    with pytest.raises(framebus.FrameTooLarge, match="7681x4320"):
        limits.check_pixels(7681, 4320, "a frame")
    limits.set_max_pixels(100)
    assert os.environ[limits.ENV] == "100" and limits.max_pixels() == 100
    for bad in (0, -1, 16384 * 16384 + 1, 1.5, "100"):
        with pytest.raises(ValueError):
            limits.set_max_pixels(bad)  # type: ignore[arg-type]


@given(text=st.text(max_size=40))
@example(text="\u00b2")  # str.isdigit() says yes, int() says no: was a ValueError
@example(text="\u0663")  # an Arabic-Indic three: int() takes it, the budget must not
@fuzz(200)
def test_any_environment_value_gives_a_sane_budget(text: str) -> None:
    old = os.environ.get(limits.ENV)
    try:
        if "\x00" in text:
            return
        os.environ[limits.ENV] = text
        budget = limits.max_pixels()
        assert 1 <= budget <= 16384 * 16384
        stripped = text.strip().replace("_", "")
        if not (stripped.isascii() and stripped.isdigit() and 1 <= int(stripped) <= 16384 * 16384):
            assert budget == limits.DEFAULT_MAX_PIXELS
    finally:
        if old is None:
            os.environ.pop(limits.ENV, None)
        else:
            os.environ[limits.ENV] = old


def test_the_error_is_a_source_error_with_its_own_code() -> None:
    from framebus.errors import error_class, error_code

    exc = framebus.FrameTooLarge("x")
    assert isinstance(exc, framebus.SourceUnsupported)
    assert error_class(error_code(exc)) is framebus.FrameTooLarge
