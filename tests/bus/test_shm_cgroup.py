"""A container's memory limit (a memory cgroup) bounds shared memory too: a real cgroup with a
limit, a publisher inside it (root only; skipped where this process cannot make cgroups)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import framebus._platform as plat

MiB = 2**20
LIMIT = 256 * MiB


def _own_memory_cgroup() -> tuple[Path, str, str] | None:
    """(this process's memory cgroup folder, the limit file, the procs file), if writable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                here = Path(root + path)
                control = here / "cgroup.subtree_control"
                if control.exists() and "memory" in control.read_text().split():
                    return here, "memory.max", "cgroup.procs"
        elif "memory" in controllers.split(","):
            here = Path("/sys/fs/cgroup/memory" + path)
            if (here / "memory.limit_in_bytes").exists():
                return here, "memory.limit_in_bytes", "cgroup.procs"
    return None


@pytest.fixture
def limited_cgroup() -> Iterator[tuple[Path, str]]:
    """A child memory cgroup limited to LIMIT, removed afterwards (its processes have ended)."""
    found = _own_memory_cgroup()
    if os.geteuid() != 0 or found is None:
        pytest.skip("needs root and a memory cgroup this process can make children in")
    parent, limit_file, procs = found
    group = parent / f"framebus-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        group.mkdir()
        (group / limit_file).write_text(str(LIMIT))
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot make a limited memory cgroup here: {exc}")
    try:
        yield group, procs
    finally:
        for _ in range(50):  # the kernel takes a moment to let go of exited processes
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        assert not group.exists(), f"cgroup {group} left behind"


INSIDE = textwrap.dedent(
    """
    import os, sys
    with open(sys.argv[1], "w") as f:
        f.write(str(os.getpid()))  # into the limited cgroup before anything is allocated
    import framebus, framebus._platform as plat
    free, limit = plat.cgroup_memory()
    print("cgroup", free, limit, flush=True)
    name = sys.argv[2]
    try:  # 60 slots of 1080p BGR: 356 MiB, more than the cgroup's 256 (the machine has plenty)
        framebus.publish(name, framebus.TestPattern(1920, 1080, fps=30), slots=60).close()
        print("published", flush=True)
    except framebus.SharedMemoryFull as exc:
        print("full:", exc, flush=True)
    with framebus.publish(name, framebus.TestPattern(320, 240, fps=30)) as pub:
        ok, frame = framebus.attach(name).read()
        print("small", ok, frame.shape, flush=True)
    """
)


def test_a_ring_over_the_cgroups_limit_is_refused_before_allocating(
    limited_cgroup: tuple[Path, str], stream_name: str
) -> None:
    group, procs = limited_cgroup
    done = subprocess.run(
        [sys.executable, "-c", INSIDE, str(group / procs), stream_name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, (out, done.stderr[-2000:])
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    free, limit = (int(x) for x in lines["cgroup"].split())
    assert limit == LIMIT and 0 < free < LIMIT
    assert "full:" in lines, out
    assert "memory cgroup" in lines["full:"] and "limit 256" in lines["full:"]
    assert lines["small"].startswith("True (240, 320, 3)")
    assert not [n for n in os.listdir("/dev/shm") if stream_name in n]


def test_space_shortage_counts_the_cgroup() -> None:
    big = 16 * 1024 * MiB
    assert plat.space_shortage(100 * MiB, big, (big, big), (300 * MiB, 512 * MiB)) is None
    why = plat.space_shortage(300 * MiB, big, (big, big), (300 * MiB, 512 * MiB))
    assert why is not None and "the memory cgroup 300.0 MiB (limit 512)" in why
    assert len("not enough shared memory: " + why) <= 255
    assert plat.space_shortage(300 * MiB, big, (big, big), None) is None  # no limit


def test_cgroup_memory_reads_this_process_cgroup() -> None:
    got = plat.cgroup_memory()
    assert got is None or (got[0] >= 0 and got[1] > 0)
