"""``framebus sample`` run as a user runs it: a real process, real ffmpeg files, Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

import framebus
from conftest import wait_until
from framebus.cli.sample import PLAIN_PERIOD, Progress
from framebus.sampling import SampleSummary
from sampletools import make_h264


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framebus", "sample", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_h264(tmp_path_factory.mktemp("cli") / "in.mp4", 50)


def images(folder: Path) -> list[str]:
    return sorted(p for p in os.listdir(folder) if not p.startswith("."))


def test_every_writes_the_files_and_a_one_line_summary(video: Path, tmp_path: Path) -> None:
    out = run(str(video), "--out", str(tmp_path / "o"), "--every", "10", "--format", "png")
    assert out.returncode == 0, out.stderr
    assert images(tmp_path / "o") == [f"{i:08d}.png" for i in range(0, 50, 10)]
    [line] = out.stdout.splitlines()
    assert line.startswith("framebus: done: 5 files written") and "from 50 frames" in line


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["missing.mp4", "--every", "5"], 1),
        (["VIDEO", "--every", "0"], 2),
        (["VIDEO", "--interval", "-1"], 2),
        (["VIDEO", "--every", "5", "--interval", "1"], 2),
        (["VIDEO"], 2),
        (["VIDEO", "--every", "5", "--template", "x.jpg"], 2),
    ],
)
def test_bad_arguments_are_one_line_errors_before_any_work(
    video: Path, tmp_path: Path, args: list[str], status: int
) -> None:
    args = [str(video) if a == "VIDEO" else a for a in args]
    out = run(*args, "--out", str(tmp_path / "o"))
    assert out.returncode == status, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("framebus: error:"), out.stderr
    assert not (tmp_path / "o").exists()


def test_unwritable_out(video: Path) -> None:
    out = run(str(video), "--out", f"{video}/o", "--every", "5")
    assert out.returncode == 1
    assert out.stderr.strip() == f"framebus: error: cannot write to {video}/o: Not a directory"


def test_ctrl_c_leaves_only_complete_files_and_resume_completes_them(tmp_path: Path) -> None:
    video = make_h264(tmp_path / "big.mp4", 400)
    out = tmp_path / "o"
    # every frame as a maximally compressed PNG: slow enough to be interrupted mid-run
    args = [str(video), "--out", str(out), "--every", "1", "--format", "png", "--quality", "9"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "sample", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: out.exists() and len(images(out)) >= 10, timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("framebus: interrupted:"), stdout
    assert not [p for p in os.listdir(out) if p.startswith(".")], "temporary files left"
    done = images(out)
    assert 10 <= len(done) < 400, "the run ended before Ctrl-C: make it slower"
    for name in done:  # a PNG cut short does not decode (each chunk has a CRC)
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape == (240, 320, 3), name

    out2 = run(*args[:-2], "--quality", "0", "--resume", timeout=120)
    assert out2.returncode == 0, out2.stderr
    assert images(out) == [f"{i:08d}.png" for i in range(400)]
    assert f"{len(done)} already there" in out2.stdout


def test_named_stream_with_interval(pattern_stream: framebus.Publisher, tmp_path: Path) -> None:
    out = run(pattern_stream.name, "--out", str(tmp_path), "--interval", "0.1", "--max", "3")
    assert out.returncode == 0, out.stderr
    assert len(images(tmp_path)) == 3
    assert "3 files written" in out.stdout


def test_progress_on_a_terminal_and_off() -> None:
    s = SampleSummary("in.mp4", "file", "o", 50, 5, 0, 1.0, total=100)
    plain = io.StringIO()
    p = Progress(plain, bar=False)
    p.last_line -= PLAIN_PERIOD
    p(s)
    assert plain.getvalue() == (
        "framebus: sample: 50/100 frames (50 %), 50 frames/s, 5 files written, ETA 1 s\n"
    )
    term = io.StringIO()
    p = Progress(term, bar=True)  # tqdm, as on a terminal
    p(s)
    p(SampleSummary("in.mp4", "file", "o", 100, 10, 0, 2.0, total=100, done=True))
    assert "100/100" in term.getvalue() and "10 files" in term.getvalue()


def test_ctrl_c_ends_a_live_run_with_its_summary(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "framebus", "sample", "testpattern:160x120@25", "--out",
         str(tmp_path), "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len(images(tmp_path)) >= 2, timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr  # Ctrl-C is how a stream's sampling ends
    assert "Traceback" not in stderr
    assert stdout.startswith("framebus: interrupted:"), stdout
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert not [s for s in framebus.list_streams() if s.name.startswith("sample-")]


def test_a_damaged_file_is_a_failure_that_says_so(tmp_path: Path) -> None:
    """Before: "0 files written ... (60 not needed)" and status 0 for a file whose every
    packet is damaged."""
    video = make_h264(tmp_path / "in.mp4", 60)
    data = bytearray(video.read_bytes())
    start = data.index(b"mdat") + 100
    data[start : len(data) - 2000] = bytes(
        (i * 7 + 3) % 256 for i in range(len(data) - 2000 - start)
    )
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    out = run(str(damaged), "--out", str(tmp_path / "o"), "--every", "1")
    assert out.returncode == 1, out
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("framebus: error:"), out.stderr
    assert "did not decode" in errors[0]
    assert "not needed" not in out.stdout and "did not decode" in out.stdout
    summary = framebus.sample(damaged, tmp_path / "p", every=1)
    assert summary.failed > 0 and summary.written + summary.failed == 60
