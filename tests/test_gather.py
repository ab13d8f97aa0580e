"""framebus.gather: batches of the newest frame of several streams (publisher processes with
their own phases, a remote zmq:// stream), aligned by capture time, never held up by a stream
that is down."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import framebus
from conftest import Procs, wait_until

FPS = 25.0
INTERVAL = 1 / FPS


def started(procs: Procs, name: str) -> None:
    p = procs.python("publisher.py", name, "--fps", str(FPS))
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("ready"), line


@pytest.fixture
def four(stream_name: str, procs: Procs) -> Iterator[list[str]]:
    """Four 25 fps streams, each captured by a process of its own, started apart (phases)."""
    names = [f"{stream_name}-{i}" for i in range(4)]
    for name in names:
        started(procs, name)
        time.sleep(INTERVAL / 3)
    yield names


def batches(g: framebus.Gather, seconds: float) -> list[tuple[list[np.ndarray | None], float]]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frames = g.read()
        assert g.batch is not None
        out.append((frames, g.batch.spread if g.batch.spread is not None else -1.0))
    return out


def test_batches_of_four_streams_are_aligned_within_an_interval(four: list[str]) -> None:
    with framebus.gather(four, max_skew=INTERVAL) as g:
        got = batches(g, 4.0)
        assert len(got) > 60  # about 25 a second (a fresh frame of each stream)
        assert all(all(f is not None for f in frames) for frames, _ in got)
        spreads = [s for _, s in got[5:]]
        assert sum(s <= INTERVAL for s in spreads) >= 0.95 * len(spreads)
        assert g.batch is not None and len(g.batch.fresh) == 4
        infos = g.infos
        assert all(i is not None and i.width == 320 for i in infos)
        # each stream's entries are its newest frames: sequence numbers only go up
        seqs = [[i.seq for i in g.infos if i is not None]]
        for _ in range(10):
            g.read()
            seqs.append([i.seq for i in g.infos if i is not None])
        assert all(b >= a for x, y in itertools.pairwise(seqs)
                   for a, b in zip(x, y, strict=True))  # fmt: skip


def test_a_killed_stream_is_none_the_others_go_on_and_it_comes_back(
    stream_name: str, procs: Procs
) -> None:
    names = [f"{stream_name}-{i}" for i in range(3)]
    for name in names:
        started(procs, name)
    with framebus.gather(names, timeout=1.0) as g:
        assert wait_until(lambda: all(f is not None for f in g.read()), 10)
        procs.procs[1].kill()  # the publisher: SIGKILL
        procs.procs[1].wait()
        assert wait_until(lambda: g.read()[1] is None, 10)
        assert "died" in g.errors()[1] or "no new frame" in g.errors()[1] or g.errors()[1]
        t0 = time.monotonic()
        got = batches(g, 2.0)
        assert all(frames[1] is None and frames[0] is not None and frames[2] is not None
                   for frames, _ in got)  # fmt: skip
        assert len(got) / (time.monotonic() - t0) > 15  # the others keep (about) their rate
        started(procs, names[1])  # the stream again, by a new publisher
        assert wait_until(lambda: g.read()[1] is not None, 15)


def test_a_stream_that_appears_later_joins_and_a_missing_one_never_holds_up(
    stream_name: str, procs: Procs
) -> None:
    late = stream_name + "-late"
    started(procs, stream_name)
    with framebus.gather([stream_name, late, "nosuch-" + stream_name], timeout=1.0) as g:
        got = batches(g, 1.5)
        assert len(got) > 20 and all(f[0] is not None and f[1] is None for f, _ in got)
        assert "no stream named" in g.errors()[2]
        started(procs, late)
        assert wait_until(lambda: g.read()[1] is not None, 10)


def test_a_remote_stream_in_the_same_gather(stream_name: str, procs: Procs) -> None:
    pytest.importorskip("zmq")
    from framebus.net import export

    local, remote = stream_name + "-local", stream_name + "-remote"
    started(procs, local)
    started(procs, remote)
    with (
        export("tcp://127.0.0.1:0", [remote], codec="raw") as ex,
        framebus.gather([local, ex.url(remote)], max_skew=2 * INTERVAL) as g,
    ):
        assert wait_until(lambda: all(f is not None for f in g.read()), 15)
        got = batches(g, 2.0)
        assert len(got) > 25 and all(all(f is not None for f in fr) for fr, _ in got)
        infos = g.infos
        assert infos[1] is not None and abs(infos[1].timestamp - time.time()) < 1


def test_an_ended_stream_is_none_and_costs_nothing(stream_name: str, tmp_path: Path) -> None:
    """A file at its end (its publisher stays), and a writer process killed: None, no spin."""
    from conftest import make_video

    clip = tmp_path / "clip.mp4"
    make_video(clip, frames=10, size="160x120", rate=25)
    ended = stream_name + "-file"
    with (
        framebus.publish(ended, str(clip), mode="latest"),
        framebus.gather([ended], timeout=0.5) as g,
    ):
        assert wait_until(lambda: g.read()[0] is None, 10)
        c0 = time.process_time()
        for _ in range(4):
            assert g.read()[0] is None
        assert time.process_time() - c0 < 0.5  # (it spun at 100 % before)
        assert "ended" in g.errors()[0]


def test_a_killed_writer_process_is_noticed(stream_name: str, procs: Procs) -> None:
    p = procs.python("writer.py", stream_name)
    assert p.stdout is not None
    assert p.stdout.readline().strip()
    with framebus.gather([stream_name], timeout=5.0) as g:
        assert wait_until(lambda: g.read()[0] is not None, 10)
        p.kill()
        p.wait()
        assert wait_until(lambda: g.read()[0] is None, 10)
        assert g.errors()[0]
    framebus.prune()  # (what the killed writer left)


def test_view_lends_without_copying(four: list[str]) -> None:
    with framebus.gather(four[:2]) as g:
        with g.view() as frames:
            assert all(f is not None and not f.flags.writeable for f in frames)
            with pytest.raises(RuntimeError):
                g.read()
            with pytest.raises(RuntimeError):
                g.close()
        copies = g.read()
        assert all(f is not None and f.flags.writeable for f in copies)


def test_fps_caps_the_batch_rate(four: list[str]) -> None:
    with framebus.gather(four, fps=5) as g:
        g.read()
        t0 = time.monotonic()
        for _ in range(5):
            g.read()
        assert time.monotonic() - t0 >= 5 * 0.2 - 0.05


def test_waiting_for_streams_that_are_all_down_costs_no_cpu(stream_name: str) -> None:
    with framebus.gather([stream_name + "-a", stream_name + "-b"], timeout=0.5) as g:
        c0 = time.process_time()
        frames = [g.read() for _ in range(4)]  # 0.5 s each, no frame
        assert all(f == [None, None] for f in frames)
        assert time.process_time() - c0 < 0.3  # sleeping, not spinning (4 threads' worth)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="at least one"):
        framebus.gather([])
    with pytest.raises(ValueError, match="twice"):
        framebus.gather(["a", "a"])
    with pytest.raises(ValueError, match="max_skew"):
        framebus.gather(["a"], max_skew=0)
