"""What the network-namespace tests run inside their "hosts" (``Host.spawn`` targets: module
level, so a spawned interpreter imports them from here), and how they talk to the test.

Each target gets a ``multiprocessing`` connection and answers on it; :class:`Agent` runs the
functions of this module in a host's namespace on request.
"""

from __future__ import annotations

import contextlib
import multiprocessing.resource_tracker
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from framebus.testing.netns import Host

# every 'spawn' start needs multiprocessing's resource tracker, a process that lives as long as
# the test session: start it at import (collection), before any test counts its children
multiprocessing.resource_tracker.ensure_running()

__all__ = [
    "Agent",
    "blast",
    "collect",
    "echo_once",
    "echo_server",
    "sink_server",
    "read_local",
    "start",
    "wait_port",
    "watch_stream",
]


def echo_server(address: str, port: int, conn: Connection) -> None:
    """Echo every TCP connection on ``address:port`` (a thread each); says "ready" on ``conn``."""
    srv = socket.create_server((address, port))
    conn.send("ready")

    def echo(c: socket.socket) -> None:
        with c, contextlib.suppress(OSError):
            while data := c.recv(65536):
                c.sendall(data)

    while True:
        client, _ = srv.accept()
        threading.Thread(target=echo, args=(client,), daemon=True).start()


def sink_server(address: str, port: int, conn: Connection) -> None:
    """Take one TCP connection on ``address:port`` and read it to its end; sends
    ``(bytes, seconds from the first byte to the end)`` on ``conn``."""
    srv = socket.create_server((address, port))
    conn.send("ready")
    client, _ = srv.accept()
    total, first = 0, None
    with client:
        while data := client.recv(1 << 20):
            first = first or time.monotonic()
            total += len(data)
    conn.send((total, time.monotonic() - first if first else 0.0))


def blast(address: str, port: int, seconds: float) -> int:
    """Send as fast as TCP takes it to ``address:port`` for ``seconds``; bytes sent."""
    chunk = bytes(65536)
    sent = 0
    with socket.create_connection((address, port), timeout=5) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += s.send(chunk)
    return sent


_held: dict[str, socket.socket] = {}


def echo_once(address: str, port: int, data: bytes, timeout: float, keep: str = "") -> str:
    """Send ``data`` to an echo server and wait ``timeout`` s for it back: "ok", "timeout", or
    the error's class name. ``keep`` names a connection to reuse (and keep open) across calls."""
    try:
        s = _held.get(keep) if keep else None
        if s is None:
            s = socket.create_connection((address, port), timeout=timeout)
            if keep:
                _held[keep] = s
        s.settimeout(timeout)
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            part = s.recv(len(data) - len(got))
            if not part:
                return "closed"
            got += part
        return "ok" if got == data else "garbled"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return type(exc).__name__
    finally:
        if not keep and s is not None:
            s.close()


def wait_port(address: str, port: int, timeout: float) -> bool:
    """True once a TCP connection to ``address:port`` succeeds (retried for ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return True
        time.sleep(0.1)
    return False


def read_local(name: str, frames: int, timeout: float) -> list[tuple[int, tuple[int, ...]]]:
    """Attach to the local stream ``name`` (waiting up to ``timeout`` s for it to appear) and
    read ``frames`` frames: (seq, shape) each."""
    import framebus
    from framebus.errors import StreamNotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            reader = framebus.attach(name, timeout=timeout)
            break
        except StreamNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    out = []
    with reader:
        for _ in range(frames):
            frame = reader.read_frame()
            assert reader.info is not None
            out.append((reader.info.seq, frame.shape))
    return out


def receive(keep: str, size: int, timeout: float) -> bytes:
    """Read ``size`` bytes (fewer if it closes or ``timeout`` passes) from the connection kept
    as ``keep`` by :func:`echo_once`."""
    s = _held[keep]
    s.settimeout(timeout)
    got = b""
    with contextlib.suppress(TimeoutError):
        while len(got) < size and (part := s.recv(size - len(got))):
            got += part
    return got


def watch_stream(url: str, seconds: float, work: float, conn: Connection) -> None:
    """Attach to ``url`` (``framebus.attach``) and read it for ``seconds`` (or until anything is
    sent on ``conn``), working ``work`` s per frame; sends one record per read on ``conn`` as it
    goes: ``("frame", received, capture timestamp, seq, skipped, shape, state)`` or
    ``("timeout", now, state)``, then ``("end",)``. An error is sent as ``("error", repr)``."""
    import framebus
    from framebus.errors import ReadTimeout

    try:
        with framebus.attach(url, timeout=10) as reader:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not conn.poll():
                try:
                    frame = reader.read_frame(timeout=0.5)
                except ReadTimeout:
                    conn.send(("timeout", time.time(), reader.stats().state))
                    continue
                now = time.time()
                info = reader.info
                assert info is not None
                state = reader.stats().state
                conn.send(
                    ("frame", now, info.timestamp, info.seq, info.skipped, frame.shape, state)
                )
                if work:
                    time.sleep(work)
    except Exception as exc:  # the test reports it
        conn.send(("error", repr(exc)))
    conn.send(("end",))


def _agent(conn: Connection) -> None:
    while True:
        try:
            name, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", globals()[name](*args)))
        except Exception as exc:
            conn.send(("error", repr(exc)))


class Agent:
    """A process in ``host``'s namespace that runs this module's functions on request."""

    def __init__(self, host: Host) -> None:
        import multiprocessing

        self.conn, theirs = multiprocessing.get_context("spawn").Pipe()
        self.proc = host.spawn(_agent, theirs, name=f"agent-{host.name}")
        theirs.close()

    def __call__(self, name: str, *args: Any, timeout: float = 30) -> Any:
        self.conn.send((name, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{name}{args} gave no answer within {timeout} s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{name}{args} failed: {value}")
        return value


def start(host: Host, target: Any, *args: Any, timeout: float = 30) -> Connection:
    """Start ``target(*args, conn)`` in ``host``'s namespace; waits for it to say "ready" when
    the target does (servers); returns ``conn``."""
    import multiprocessing

    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    host.spawn(target, *args, theirs, name=f"{target.__name__}-{host.name}")
    theirs.close()
    ready = target not in (echo_server, sink_server) or (ours.poll(timeout) and ours.recv())
    if ready not in (True, "ready"):
        raise RuntimeError(f"{target.__name__} did not start in {host}")
    return ours


def collect(conn: Connection, until: float, records: list[Any] | None = None) -> list[Any]:
    """Records from a :func:`watch_stream` on ``conn`` until its end or ``until`` (a
    ``time.monotonic()``); appended to ``records`` if given. Raises on its error record."""
    records = [] if records is None else records
    while (left := until - time.monotonic()) > 0 and conn.poll(left):
        record = conn.recv()
        if record[0] == "error":
            raise AssertionError(f"the reader failed: {record[1]}")
        if record[0] == "end":
            break
        records.append(record)
    return records
