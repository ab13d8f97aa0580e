"""What faces the network cannot take the streams down: the exporter runs in a process of its
own, restarted when it dies, and the libzmq abort a hostile peer could provoke is avoided."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import framebus
from conftest import wait_until
from framebus.net import export

ROOT = Path(__file__).resolve().parents[2]
HELPERS = ROOT / "tests" / "helpers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.parametrize("peer_heartbeat", [0, 50], ids=["plain-peer", "peer-with-heartbeats"])
def test_a_peer_that_floods_and_vanishes_cannot_stop_serve(
    stream_name: str, peer_heartbeat: int
) -> None:
    """Before: `framebus serve --zmq` died of SIGABRT in 2-4 such rounds, every stream with it."""
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}=testpattern:320x240@30",
         "--zmq", f"tcp://127.0.0.1:{port}", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"zmq://127.0.0.1:{port}/{stream_name}"
        assert wait_until(lambda: _reads(url), timeout=30), "serve did not start"
        flood = subprocess.run(
            [sys.executable, str(HELPERS / "zmq_flood.py"), f"tcp://127.0.0.1:{port}", "6",
             "1.0", str(peer_heartbeat)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert flood.returncode == 0, flood.stderr
        assert serve.poll() is None, "serve died"
        with framebus.attach(stream_name, timeout=5) as local:
            local.read_frame()
            assert local.stats().state == "live"
        assert wait_until(lambda: _reads(url), timeout=10), "no remote frame after the flood"
    finally:
        serve.send_signal(signal.SIGINT)
        _, err = serve.communicate(timeout=30)
    if not peer_heartbeat:
        # the exporter's process did not even need restarting: the abort's trigger (the
        # ROUTER's own heartbeat timer) is gone
        assert "SIGABRT" not in err and "Assertion failed" not in err, err
    # a peer with heartbeats of its own can still provoke libzmq's abort (its PING is
    # processed on a throttled connection that was reset): then the exporter's process was
    # started again, and serve and its stream went on (asserted above)
    assert "Traceback" not in err, err


def _reads(url: str) -> bool:
    try:
        with framebus.attach(url, timeout=2, connect_timeout=2) as reader:
            reader.read_frame()
            return True
    except framebus.FramebusError:
        return False


def test_an_exporter_process_that_dies_is_started_again_and_the_streams_go_on(
    stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "framebus.zmq")
    pattern = framebus.TestPattern(320, 240, fps=30, pattern="counter")
    with framebus.publish(stream_name, pattern) as pub, export("tcp://127.0.0.1:0") as ex:
        with framebus.attach(ex.url(stream_name), timeout=5) as remote:
            remote.read_frame()
            first = ex.pid
            assert pid_alive(first)
            os.kill(first, signal.SIGABRT)  # what libzmq's failed assertion does
            assert wait_until(lambda: ex.stats().restarts == 1 and ex.pid not in (0, first))
            assert ex.stats().last_failure == "killed by SIGABRT"
            assert ex.port == int(ex.endpoint.rsplit(":", 1)[1])  # the same port again
            # the receiver redials the same URL and gets frames of a new session
            assert wait_until(lambda: remote.stats().state == "live", timeout=15)
            before = remote.info.seq if remote.info else 0
            remote.read_frame()
            assert remote.info is not None and remote.info.seq > before
        assert pub.stats().state == "live"
        # the dead process's reader slot was reclaimed: only the new process reads
        assert wait_until(lambda: pub.stats().readers <= 1)
    assert any("killed by SIGABRT" in r.getMessage() for r in caplog.records)
    assert not pid_alive(first)


def test_the_exporter_process_ends_with_its_owner(stream_name: str) -> None:
    """An owner killed with SIGKILL cannot close anything: its exporter's process must see the
    end of its stdin and exit by itself, freeing the port."""
    script = (
        "import framebus, sys, time\n"
        "from framebus.net import export\n"
        "ex = export('tcp://127.0.0.1:0')\n"
        "print(ex.pid, ex.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        child, port = (int(v) for v in owner.stdout.readline().split())
        assert pid_alive(child)
        owner.kill()
        owner.wait()
        assert wait_until(lambda: not pid_alive(child), timeout=10)
        with socket.socket() as s:  # the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.communicate(timeout=10)
