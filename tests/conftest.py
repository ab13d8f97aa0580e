"""Fixtures that own every stream, process and segment a test creates, and check for leaks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import framebus
from framebus.capture import _forkserver

HERE = Path(__file__).parent
SHM = Path("/dev/shm")


def framebus_segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("framebus.")}


def our_segments() -> set[str]:
    """Segments of streams this suite names (t<pid>-..., vc-<pid>-..., test): others on the
    machine (a benchmark running alongside) are not ours to judge."""
    mine = (f"framebus.t{os.getpid()}-", f"framebus.vc-{os.getpid()}-", "framebus.test")
    return {s for s in framebus_segments() if s.startswith(mine)}


def fork_server_pid() -> int | None:
    """This process's capture fork server (one per process, for its life: not a leak)."""
    server = _forkserver._server
    return server.proc.pid if server is not None and server.pid == os.getpid() else None


def child_pids() -> set[int]:
    """Live (non-zombie) children of this process, and of its capture fork server (the
    captures it forked for this process), but not the fork server itself."""
    parents = {os.getpid()}
    server = fork_server_pid()
    if server is not None:
        parents.add(server)
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) in parents and fields[0] not in (b"Z", b"X"):
            out.add(int(entry))
    return out - {server}


def wait_until(cond: object, timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(step)
    return bool(cond())  # type: ignore[operator]


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Each test must leave no framebus segment and no child process behind, and framebus's
    settings in the environment (the decoded-size budget) as it found them."""
    before_segs, before_kids = our_segments(), child_pids()
    budget = os.environ.get("FRAMEBUS_MAX_PIXELS")
    yield
    assert os.environ.get("FRAMEBUS_MAX_PIXELS") == budget, "the test left FRAMEBUS_MAX_PIXELS set"
    ok = wait_until(
        lambda: not (our_segments() - before_segs) and not (child_pids() - before_kids),
        timeout=10,
    )
    left_segs = our_segments() - before_segs
    left_kids = child_pids() - before_kids
    for seg in left_segs:  # clean up so one leak does not fail every later test
        (SHM / seg).unlink(missing_ok=True)
    for pid in left_kids:  # (nor outlive the suite: a `serve` whose Ctrl-C went unheard)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert ok, f"leaked segments {sorted(left_segs)} / child processes {sorted(left_kids)}"


@pytest.fixture(scope="session", autouse=True)
def shm_clean_after_suite() -> Iterator[None]:
    before = our_segments()
    yield
    left = our_segments() - before
    assert not left, f"framebus segments left in /dev/shm after the suite: {sorted(left)}"


@pytest.fixture
def stream_name() -> str:
    return f"t{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Procs:
    """Starts helper processes with a fresh interpreter (not forked) and reaps them all."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def python(self, script: str, *args: str, **kw: object) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        p = subprocess.Popen(
            [sys.executable, str(HERE / "helpers" / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            **kw,  # type: ignore[call-overload]
        )
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)


@pytest.fixture
def procs() -> Iterator[Procs]:
    owner = Procs()
    try:
        yield owner
    finally:
        owner.close()


@pytest.fixture(scope="session")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-frame 320x240 25 fps H.264 file made with ffmpeg."""
    path = tmp_path_factory.mktemp("video") / "sample.mp4"
    make_video(path, frames=48, size="320x240", rate=25)
    return path


def make_video(
    path: Path, *, frames: int, size: str, rate: int, codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> None:  # fmt: skip
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc=size={size}:rate={rate}",
            "-frames:v", str(frames), "-c:v", codec, "-pix_fmt", pix_fmt, str(path),
        ],
        check=True,
    )  # fmt: skip


@pytest.fixture
def web() -> Iterator[Any]:
    """Makes real web servers (framebus.web.WebServer on a free port); stops them all."""
    from webtools import Web

    made: list[Web] = []

    def make(streams: list[str] | None = None, **kw: Any) -> Web:
        made.append(Web(streams, **kw))
        return made[-1]

    yield make
    for w in made:
        w.close()


@pytest.fixture
def pattern_stream(stream_name: str) -> Iterator[framebus.Publisher]:
    with framebus.publish(stream_name, framebus.TestPattern(320, 240, fps=25)) as pub:
        yield pub


@pytest.fixture
def network() -> Iterator[Any]:
    """A :class:`framebus.testing.netns.Network` (a switch namespace; add hosts with
    ``network.add_host(name)``), closed after the test however it ends: its processes stopped,
    its namespaces and veths deleted, and checked gone. Skipped unless root (CI is)."""
    from framebus.testing import netns

    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    net = netns.Network()
    try:
        yield net
    finally:
        net.close()
    left = [name for name in netns.leftovers() if net.id in name]  # (others' are not ours)
    assert not left, f"network namespaces or interfaces left: {sorted(left)}"


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, float]:
    """SIGINT ``proc`` and wait (10 s at most) for it to exit: (its standard output, the seconds
    it took). Kills it if it does not exit."""
    import signal

    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out or "", time.monotonic() - t0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, to fill (needs root, as CI runs)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
