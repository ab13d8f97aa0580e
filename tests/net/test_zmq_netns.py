"""framebus's ZeroMQ transport between namespaced "hosts" (issue 11): a camera host exporting
with ``framebus serve --zmq``, consumer hosts reading with ``framebus.attach("zmq://...")``.

Root only (the ``network`` fixture skips otherwise); skipped too without pyzmq or while this
framebus has no ``--zmq`` export. Traffic only inside the namespaces the tests make.
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import pytest

from framebus.testing.netns import Host, Network
from nettools import Agent, collect, start, watch_stream

pytest.importorskip("zmq", reason="pyzmq is not installed (the framebus[zmq] extra)")

PORT = 5555


@functools.cache
def _no_zmq_export() -> str | None:
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if "--zmq" in out.stdout else "this framebus has no `serve --zmq` yet"


pytestmark = pytest.mark.skipif(_no_zmq_export() is not None, reason=str(_no_zmq_export()))


def _heartbeat_timeout() -> float:
    """The transport's heartbeat timeout (framebus.net._sockets.HEARTBEAT_TIMEOUT where it says)."""
    try:
        from framebus import _zmq

        return float(_zmq.HEARTBEAT_TIMEOUT)
    except (ImportError, AttributeError):
        return 3.0


def serve(host: Host, streams: dict[str, str], *options: str) -> str:
    """``framebus serve NAME=SOURCE ... --zmq tcp://ADDRESS:PORT`` in ``host``; returns
    ``zmq://ADDRESS:PORT`` once the port takes connections."""
    args = [f"{name}={source}" for name, source in streams.items()]
    host.python(
        "-m", "framebus", "serve", *args, "--quiet",
        "--zmq", f"tcp://{host.address}:{PORT}", *options,
    )  # fmt: skip
    assert Agent(host)("wait_port", host.address, PORT, 30.0, timeout=40), "no export"
    return f"zmq://{host.address}:{PORT}"


def watch(host: Host, url: str, seconds: float, work: float = 0.0) -> Connection:
    return start(host, watch_stream, url, seconds, work)


def frames(records: list[Any]) -> list[Any]:
    return [r for r in records if r[0] == "frame"]


def ages(records: list[Any]) -> list[float]:
    return [r[1] - r[2] for r in frames(records)]


def test_age_stays_flat_on_a_link_slower_than_the_stream(
    network: Network, stream_name: str
) -> None:
    """Raw 320x240 BGR at 30 fps is 55 Mbit/s; the slow host's link carries 8 (about 4 frames
    a second). Its frames arrive fewer but as fresh at the end as at the start (no queue
    builds up anywhere: not in ZeroMQ, not in the kernel's socket buffers), while a host on a
    free link gets many more frames meanwhile."""
    cam, slow, fast = (network.add_host(n) for n in ("cam", "slow", "fast"))
    slow.limit(8_000_000)
    url = serve(cam, {stream_name: "testpattern:320x240@30"}, "--zmq-codec", "raw")
    url += f"/{stream_name}"
    seconds = 13.0
    conns = [watch(slow, url, seconds), watch(fast, url, seconds)]
    until = time.monotonic() + seconds + 20
    slow_rec, fast_rec = (collect(c, until) for c in conns)
    assert frames(slow_rec) and frames(fast_rec), (slow_rec[-3:], fast_rec[-3:])
    t0 = slow_rec[0][1] + 1.0  # the first second: connecting
    slow_f = [r for r in frames(slow_rec) if r[1] > t0]
    fast_f = [r for r in frames(fast_rec) if r[1] > t0]
    assert len(slow_f) >= 10, len(slow_f)
    assert len(slow_f) < 0.6 * len(fast_f), (len(slow_f), len(fast_f))
    assert sum(r[4] for r in slow_f) > len(slow_f), "the slow host should skip frames"
    assert all(r[5] == (240, 320, 3) for r in slow_f + fast_f)
    third = len(slow_f) // 3
    first, last = ages(slow_f[:third]), ages(slow_f[-third:])
    growth = statistics.median(last) - statistics.median(first)
    assert growth < 0.5, (statistics.median(first), statistics.median(last))
    assert statistics.median(last) < 2.0, last


def test_link_down_longer_than_the_heartbeat_then_back(network: Network, stream_name: str) -> None:
    """A consumer host's cable pulled for longer than the heartbeat timeout: its reader says
    stalled or reconnecting, and live again with new frames once the cable is back, by itself."""
    cam, viewer = network.add_host("cam"), network.add_host("viewer")
    url = serve(cam, {stream_name: "testpattern:320x240@15"}) + f"/{stream_name}"
    conn = watch(viewer, url, 60.0)
    records: list[Any] = []
    deadline = time.monotonic() + 15
    while not frames(records):
        assert time.monotonic() < deadline, f"no frame: {records[-3:]}"
        collect(conn, time.monotonic() + 0.5, records)
    assert frames(records)[-1][6] == "live", records[-1]
    viewer.unplug()
    pulled = time.time()
    try:
        collect(conn, time.monotonic() + max(6.0, 2 * _heartbeat_timeout()), records)
    finally:
        viewer.plug()
    plugged = time.time()
    last_seq = max(r[3] for r in frames(records))
    states = {r[-1] for r in records if pulled <= r[1] <= plugged}
    assert states & {"stalled", "reconnecting"}, states
    back = len(records)
    deadline = time.monotonic() + 15
    while not [r for r in frames(records[back:]) if r[6] == "live" and r[3] > last_seq]:
        assert time.monotonic() < deadline, f"not back: {records[-3:]}"
        collect(conn, time.monotonic() + 0.5, records)
    conn.send("stop")
    collect(conn, time.monotonic() + 10)


def test_two_cameras_two_consumer_hosts(network: Network, stream_name: str) -> None:
    """Each of two consumer hosts reads both cameras at once, each stream at its own size."""
    cams = [network.add_host("cam1"), network.add_host("cam2")]
    hosts = [network.add_host("host1"), network.add_host("host2")]
    sizes = {"a": (240, 320, 3), "b": (288, 352, 3)}
    urls = {
        "a": serve(cams[0], {f"{stream_name}a": "testpattern:320x240@15"}) + f"/{stream_name}a",
        "b": serve(cams[1], {f"{stream_name}b": "testpattern:352x288@15"}) + f"/{stream_name}b",
    }
    seconds = 5.0
    conns = {(h.name, k): watch(h, url, seconds) for h in hosts for k, url in urls.items()}
    until = time.monotonic() + seconds + 20
    for (host, key), conn in conns.items():
        got = frames(collect(conn, until))
        assert len(got) >= 15, (host, key, len(got))
        assert all(r[5] == sizes[key] for r in got), (host, key)
        seqs = [r[3] for r in got]
        assert seqs == sorted(set(seqs)), (host, key)
        assert statistics.median(ages(got)) < 1.0, (host, key)


def test_relay_on_a_consumer_host(network: Network, stream_name: str) -> None:
    """``framebus serve NAME=zmq://...`` on a consumer host: two local readers there attach by
    name while one network stream crosses the wire."""
    cam, host = network.add_host("cam"), network.add_host("host")
    remote = serve(cam, {f"{stream_name}c": "testpattern:320x240@15"}) + f"/{stream_name}c"
    local = f"{stream_name}r"
    host.python("-m", "framebus", "serve", f"{local}={remote}", "--quiet")
    readers = [Agent(host), Agent(host)]
    for agent in readers:
        agent.conn.send(("read_local", (local, 20, 20.0)))
    for agent in readers:
        assert agent.conn.poll(40), "no answer"
        status, got = agent.conn.recv()
        assert status == "ok", got
        assert [shape for _, shape in got] == [(240, 320, 3)] * 20
        seqs = [seq for seq, _ in got]
        assert seqs == sorted(set(seqs))
