"""Room for a ring: /dev/shm's free space and the machine's available memory (tmpfs pages are
RAM, and /dev/shm is often as large as the RAM itself). The decision is a pure function; the
reading of /proc/meminfo is a module function tests replace. A /dev/shm that really is too
small is in test_hostile_shm.py (a private tmpfs of 8 MiB)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import framebus
from framebus import _platform as plat

MiB, GiB = 2**20, 2**30


def test_a_ring_must_fit_in_dev_shm_and_in_available_memory() -> None:
    big = 999999 * GiB
    for worst in (  # the longest messages still fit in a stream header (255 bytes)
        plat.space_shortage(big, big, (big - GiB, big)),
        plat.space_shortage(big, big - GiB, (big * 2, big * 2)),
    ):
        assert worst is not None and len("not enough shared memory: " + worst) < 255, worst
    assert plat.space_shortage(10 * MiB, 100 * MiB, (1 * GiB, 2 * GiB)) is None
    assert plat.space_shortage(10 * MiB, 100 * MiB, None) is None  # memory unknown: shm only
    # fits /dev/shm (as large as the RAM) but not the memory left: refused, both numbers named
    why = plat.space_shortage(900 * MiB, 16 * GiB, (1 * GiB, 16 * GiB))
    assert why is not None
    assert "16384.0 MiB free" in why and "MemAvailable 1024.0 MiB" in why
    assert "--shm-size" not in why  # a larger /dev/shm would not help
    # /dev/shm itself is full: the Docker advice, and the numbers
    why = plat.space_shortage(100 * MiB, 64 * MiB, (8 * GiB, 16 * GiB))
    assert why is not None and "--shm-size" in why and "64.0 MiB free" in why
    assert "MemAvailable 8192.0 MiB" in why


def test_the_memory_reserve_is_a_twentieth_of_the_ram_at_least_64_mib() -> None:
    assert plat.memory_reserve(1 * GiB) == 64 * MiB
    assert plat.memory_reserve(16 * GiB) == 16 * GiB // 20
    small = (900 * MiB + 64 * MiB, 1 * GiB)  # exactly the reserve left
    assert plat.space_shortage(900 * MiB, 16 * GiB, small) is None
    assert plat.space_shortage(900 * MiB + 1, 16 * GiB, small) is not None


def test_memory_info_reads_proc_meminfo() -> None:
    info = plat.memory_info()
    assert info is not None and 0 < info[0] <= info[1]


def test_segment_create_refuses_what_memory_cannot_hold(
    monkeypatch: pytest.MonkeyPatch, stream_name: str
) -> None:
    monkeypatch.setattr(plat, "memory_info", lambda: (200 * MiB, 1 * GiB))
    name = f"framebus.{stream_name}"
    with pytest.raises(framebus.SharedMemoryFull, match=r"MemAvailable 200\.0 MiB") as e:
        plat.Segment.create(name, 150 * MiB)
    assert "/dev/shm has" in str(e.value) and "needs 150.0 MiB" in str(e.value)
    assert not os.path.exists(f"/dev/shm/{name}")  # checked before anything was allocated
    plat.Segment.create(name, 1 * MiB).close()  # 1 MiB + 64 MiB reserve: fits
    assert plat.unlink_segment(name)


def test_publish_raises_when_the_ring_does_not_fit_in_memory(
    monkeypatch: pytest.MonkeyPatch, stream_name: str
) -> None:
    class FullHD(framebus.Source):  # a thread of this process: it sees the monkeypatch
        def read(self) -> np.ndarray | None:
            return np.zeros((1080, 1920, 3), np.uint8)

    # the control segment fits (a few KiB over the reserve), 4 slots of 6 MiB do not
    monkeypatch.setattr(plat, "memory_info", lambda: (80 * MiB, 1 * GiB))
    with pytest.raises(framebus.SharedMemoryFull, match="MemAvailable"):
        framebus.publish(stream_name, FullHD())
    assert stream_name not in [s.name for s in framebus.list_streams()]
