"""Forged /dev/shm files: anything in /dev/shm may be written by any local user; and a
/dev/shm too small for the frames.

Each test runs its scenario in a mount namespace with a private tmpfs on /dev/shm (root only, as
CI runs), so the machine's real streams are never touched and nothing forged can leak out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framebus.bus._layout import ControlLayout

SIZE = ControlLayout(2, 1).size  # a control segment of 2 slots and 1 reader

HERE = Path(__file__).parent.parent  # tests/

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a private /dev/shm needs root (a mount namespace with its own tmpfs)",
)

# Runs first in every scenario: helpers to forge segments with framebus's own layout.
PRELUDE = '''
import json, os, subprocess, sys, time
import framebus
from framebus import _platform as plat
from framebus.bus._layout import MAGIC, VERSION, Hdr, Mode
from framebus.bus._control import create_control

def forge(name, size=4096, **words):
    """A control file framebus did not make: magic, this version, 2 slots, then ``words``."""
    path = f"/dev/shm/framebus.{name}"
    with open(path, "wb") as f:
        f.truncate(size)
    seg = plat.Segment.open(f"framebus.{name}")
    defaults = {"MAGIC": MAGIC, "VERSION": VERSION, "N_SLOTS": 2, "MAX_READERS": 1}
    for field, value in {**defaults, **words}.items():
        seg.words.store(Hdr[field], value)
    seg.close()
    return path

def age(path, seconds=60):
    t = time.time() - seconds
    os.utime(path, (t, t))

def report(**kw):
    print(json.dumps(kw), flush=True)
'''


def in_private_shm(
    code: str, *args: str, timeout: float = 60, shm_size: str = "512m"
) -> dict[str, object]:
    """Run ``code`` (after PRELUDE) in a private /dev/shm of ``shm_size``; return the JSON it
    printed last."""
    script = PRELUDE + textwrap.dedent(code)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    shell = f'mount -t tmpfs -o size={shm_size} framebus-test /dev/shm && exec "$0" "$@"'
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell,
         sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, out.stdout + out.stderr
    result: dict[str, object] = json.loads(lines[-1])
    return result


@pytest.fixture
def victim() -> object:
    """A process that is not framebus's: nothing may signal it."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_prune_never_kills_a_process_a_forged_segment_names(
    victim: subprocess.Popen[bytes],
) -> None:
    start = Path(f"/proc/{victim.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    r = in_private_shm(
        """
        pid, start = int(sys.argv[1]), int(sys.argv[2])
        # owner dead (pid 0); writer = the victim, with start time 0 and with its real one
        forge("k0", WRITER_PID=pid, WRITER_START=0)
        forge("k1", WRITER_PID=pid, WRITER_START=start)
        age("/dev/shm/framebus.k0"); age("/dev/shm/framebus.k1")
        removed = framebus.prune()
        forge("k2", WRITER_PID=pid, WRITER_START=start)
        with framebus.publish("k2", framebus.TestPattern(32, 24, fps=50)) as pub:
            took_over = pub.stats().state
        report(removed=sorted(removed), took_over=took_over)
        """,
        str(victim.pid),
        start,
    )
    assert victim.poll() is None, "a process framebus did not start was killed"
    assert r == {"removed": ["k0", "k1"], "took_over": "live"}


def test_other_layout_version_is_an_error_not_a_crash() -> None:
    r = in_private_shm(
        """
        forge("v2", VERSION=1)  # a stream of framebus 0.1's layout
        try:
            framebus.attach("v2")
        except framebus.IncompatibleStream as exc:
            err = str(exc)
        ls = subprocess.run([sys.executable, "-m", "framebus", "ls"], capture_output=True,
                            text=True)
        report(err=err, ls_rc=ls.returncode, ls=ls.stdout)
        """
    )
    assert "layout version 1" in str(r["err"])
    assert r["ls_rc"] == 0 and "unreadable" in str(r["ls"]) and "v2" in str(r["ls"])


@pytest.mark.parametrize("size", [8, 100, 831])
def test_truncated_control_file_is_an_error_not_a_crash(size: int) -> None:
    r = in_private_shm(
        f"""
        with open("/dev/shm/framebus.short", "wb") as f:
            f.write(MAGIC.to_bytes(8, "little") + bytes({size} - 8))
        try:
            framebus.attach("short")
        except framebus.IncompatibleStream as exc:
            err = str(exc)
        report(err=err, listed=[s.state for s in framebus.list_streams()])
        """
    )
    assert "truncated" in str(r["err"])
    assert r["listed"] == ["unreadable"]


@pytest.mark.parametrize(
    "words",
    [
        {"N_SLOTS": 0},
        {"N_SLOTS": 2**40},
        {"MAX_READERS": 0},
        {"MAX_READERS": 10**6},
        {"MODE": 7},
        {"STATE": 99},
        {"CONTROL_SIZE": 1},
    ],
)
def test_forged_header_fields_raise_incompatible_stream(words: dict[str, int]) -> None:
    r = in_private_shm(
        f"""
        words = {{"OWNER_PID": os.getpid(), "CONTROL_SIZE": {SIZE}, **{words!r}}}
        forge("bad", **words)
        try:
            framebus.attach("bad")
            err = None
        except framebus.IncompatibleStream as exc:
            err = str(exc)
        report(err=err, listed=[s.state for s in framebus.list_streams()])
        """
    )
    assert r["err"] and "bad header" in str(r["err"])
    assert r["listed"] == ["unreadable"]


def test_latest_slot_out_of_range_raises_instead_of_spinning() -> None:
    r = in_private_shm(
        """
        ctl = create_control("oob", 2, 4, Mode.LATEST, "forged")
        reader = framebus.attach("oob")
        ctl.words.store(Hdr.LATEST, (5 << 8) | 200)  # seq 5 in slot 200 of 2
        t0 = time.monotonic()
        try:
            reader.read_frame(timeout=5)
        except framebus.IncompatibleStream as exc:
            err = str(exc)
        took = time.monotonic() - t0
        reader.release()
        report(err=err, took=took)
        """
    )
    assert "out of range" in str(r["err"])
    assert float(r["took"]) < 4  # type: ignore[arg-type]


def test_symlink_and_oversized_files_are_refused() -> None:
    r = in_private_shm(
        """
        with open("/tmp/framebus-target", "wb") as f:
            f.write(b"x" * 8192)
        os.symlink("/tmp/framebus-target", "/dev/shm/framebus.link")
        with open("/dev/shm/framebus.big", "wb") as f:
            f.truncate(256 * 2**20)  # sparse: costs nothing until mapped with MAP_POPULATE
        errors = []
        for name in ("link", "big"):
            try:
                framebus.attach(name)
            except framebus.IncompatibleStream as exc:
                errors.append(str(exc))
        before = plat.shm_free_bytes()
        framebus.list_streams()
        used = before - plat.shm_free_bytes()
        target = open("/tmp/framebus-target", "rb").read()
        os.unlink("/tmp/framebus-target")
        report(errors=errors, used=used, target_intact=target == b"x" * 8192)
        """
    )
    errors = r["errors"]
    assert isinstance(errors, list) and len(errors) == 2
    assert "symbolic link" in errors[0] and "more than" in errors[1]
    assert r["target_intact"] is True
    assert int(r["used"]) < 2**20  # type: ignore[call-overload]


def test_ls_does_not_wait_for_old_junk_files() -> None:
    r = in_private_shm(
        """
        for i in range(10):
            with open(f"/dev/shm/framebus.junk{i}", "wb") as f:
                f.write(b"not a stream" * 400)
            age(f"/dev/shm/framebus.junk{i}")
        t0 = time.monotonic()
        states = [s.state for s in framebus.list_streams()]
        report(took=time.monotonic() - t0, states=states)
        """
    )
    assert r["states"] == ["unreadable"] * 10
    assert float(r["took"]) < 5  # type: ignore[arg-type]  # was 1 s per file


def test_empty_control_file_left_by_a_killed_publisher_does_not_block_the_name() -> None:
    r = in_private_shm(
        """
        open("/dev/shm/framebus.zero", "wb").close()
        age("/dev/shm/framebus.zero")
        removed = framebus.prune()
        open("/dev/shm/framebus.zero2", "wb").close()
        age("/dev/shm/framebus.zero2")
        with framebus.publish("zero2", framebus.TestPattern(32, 24, fps=50)) as pub:
            state = pub.stats().state
        report(removed=removed, state=state)
        """
    )
    assert r == {"removed": ["zero"], "state": "live"}


def test_prune_leaves_other_users_files_alone() -> None:
    r = in_private_shm(
        """
        for name in ("framebus.theirs", "framebus.theirs.0000abcd-1"):
            with open(f"/dev/shm/{name}", "wb") as f:
                f.write(b"\\0" * 4096)
            os.chown(f"/dev/shm/{name}", 4242, 4242)
            age(f"/dev/shm/{name}")
        removed = framebus.prune()
        report(removed=removed, left=sorted(os.listdir("/dev/shm")),
               listed=[s.name for s in framebus.list_streams()])
        """
    )
    assert r["removed"] == []
    assert r["left"] == ["framebus.theirs", "framebus.theirs.0000abcd-1"]
    assert r["listed"] == []


# -- a /dev/shm too small for the frames (Docker's is 64 MB) ---------------------------------


def test_frames_that_do_not_fit_make_publish_raise_shared_memory_full() -> None:
    r = in_private_shm(
        """
        t0 = time.monotonic()
        try:  # 4 slots of 1920x1080x3: 24 MiB, in 8
            framebus.publish("big", framebus.TestPattern(1920, 1080, fps=30))
            err = None
        except framebus.SharedMemoryFull as exc:
            err = str(exc)
        report(err=err, took=time.monotonic() - t0, left=os.listdir("/dev/shm"))
        """,
        shm_size="8m",
    )
    err = str(r["err"])
    assert "not enough shared memory" in err and "--shm-size" in err
    assert "/dev/shm has 8.0 MiB free" in err and "MemAvailable" in err  # both numbers
    assert float(r["took"]) < 10  # type: ignore[arg-type]
    assert r["left"] == []


def test_frames_growing_beyond_the_space_fail_the_stream_without_reconnecting() -> None:
    r = in_private_shm(
        """
        import numpy as np

        class Growing(framebus.Source):
            # 20 small frames, then frames whose 4 slots (17 MiB) do not fit in 8 MiB
            def __init__(self):
                self.n = 0

            def read(self):
                self.n += 1
                time.sleep(0.01)
                side = 32 if self.n <= 20 else 1200
                return np.zeros((side, side, 3), np.uint8)

        policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
        with framebus.publish("grow", Growing(), reconnect=policy) as pub:
            reader = framebus.attach("grow", timeout=10)
            frames = 0
            t0 = time.monotonic()
            while reader.read()[0]:
                frames += 1
            took = time.monotonic() - t0
            time.sleep(1.0)  # a reconnect loop would show here
            s = pub.stats()
            reader.release()
        report(state=s.state, error=s.error, reconnects=s.reconnects, frames=frames, took=took,
               raised=type(reader.last_error).__name__)
        """,
        shm_size="8m",
    )
    assert r["state"] == "failed" and r["reconnects"] == 0, r
    assert r["raised"] == "SharedMemoryFull", r
    assert "not enough shared memory" in str(r["error"]), r
    assert 1 <= int(r["frames"]) <= 20  # type: ignore[call-overload]
    assert float(r["took"]) < 5  # type: ignore[arg-type]


def test_capture_process_whose_frames_grow_beyond_the_space_fails_once(tmp_path: Path) -> None:
    pytest.importorskip("av")  # PyAV hands out each frame at its size (OpenCV rescales)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    video = tmp_path / "grows.ts"
    for size in ("64x48", "1280x720"):  # 10 tiny frames, then 10 whose 4 slots need 11 MiB
        part = subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25",
             "-frames:v", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mpegts", "-"],
            capture_output=True, check=True,
        )  # fmt: skip
        with open(video, "ab") as f:
            f.write(part.stdout)
    r = in_private_shm(
        """
        media = framebus.Media(sys.argv[1], backend="av")
        policy = framebus.Reconnect(backoff_initial=0.05, backoff_max=0.1)
        with framebus.publish("grows", media, reconnect=policy) as pub:
            reader = framebus.attach("grows", timeout=10)
            frames = 0
            while reader.read()[0]:
                frames += 1
            time.sleep(1.0)  # a reconnect loop would show here
            s = pub.stats()
            reader.release()
        report(state=s.state, error=s.error, reconnects=s.reconnects, frames=frames,
               raised=type(reader.last_error).__name__)
        """,
        str(video),
        shm_size="8m",
    )
    assert r["state"] == "failed" and r["reconnects"] == 0, r
    assert r["raised"] == "SharedMemoryFull" and r["frames"] == 10, r
    assert "not enough shared memory" in str(r["error"]), r
