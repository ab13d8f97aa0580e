"""Several "hosts" on one machine, for tests and benchmarks: network namespaces on a switch.

A :class:`Network` is one *switch* namespace holding a Linux bridge, and any number of *hosts*,
each a namespace of its own joined to the bridge by a veth pair, with an address on a private
/24 (``10.77.0.0/24`` by default; it can collide with nothing: no interface of the machine's
own namespace is involved, no route leads there). Every interface is created inside its
namespace, so nothing appears in the machine's namespace, and every packet stays inside the
namespaces the network made::

    with Network() as net:
        cam, viewer = net.add_host("cam"), net.add_host("viewer")
        server = cam.popen(["python", "-m", "http.server", "--bind", cam.address, "8000"])
        viewer.limit(2_000_000)          # tbf: 2 Mbit/s towards the viewer
        viewer.unplug(); viewer.plug()   # pull the viewer's cable, plug it back
        proc = viewer.spawn(fn, arg)     # fn(arg), a fresh interpreter in the viewer's namespace
        mid = net.add_host("mid")        # TCP to mid.address:8000 reaches cam 50 ms later
        mid.relay(8000, (cam.address, 8000), delay=0.05)

What the kernel of these machines offers: ``tbf`` (and ``htb``) for rate limits, no ``netem``
(so no added delay or loss in the kernel) and no iptables/nft. Delay comes from
:func:`delay_relay` instead, a userspace TCP relay run in a host's namespace.

Everything is owned by the :class:`Network`: :meth:`Network.close` (also on ``with`` exit, on
every path) stops the processes it started (SIGTERM, then SIGKILL) and deletes the namespaces,
which deletes their veths. :func:`leftovers` says what of any :class:`Network` is still there;
:func:`clean` (``python -m framebus.testing.netns clean``) deletes the namespaces of networks
whose process was killed before it could close them.
Needs root (``CAP_SYS_ADMIN``) and iproute2; :func:`unavailable` says why not otherwise.

The namespaces share the machine's ``/dev/shm``: framebus streams of different "hosts" need
different names.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "Host",
    "Network",
    "PREFIX",
    "clean",
    "delay_relay",
    "enter",
    "leftovers",
    "unavailable",
]

PREFIX = "fbnet-"
"""Every namespace a :class:`Network` makes is named ``fbnet-<pid>-<id>-<role>``, ``pid`` the
process that made it."""

_HOST_NAME = re.compile(r"[a-z][a-z0-9]{0,9}\Z")
_NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_DEV = "eth0"  # each host's end of its veth (inside the host's namespace)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _tc(netns: str, *args: str) -> None:
    proc = subprocess.run(["tc", "-n", netns, *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (a reason to skip with), or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the suite as root)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"network namespaces need iproute2 (`{tool}` is not installed)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        bridge = _ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"cannot create a bridge: {bridge.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def leftovers() -> list[str]:
    """Namespaces (``fbnet-...``) and interfaces of the machine's namespace that a
    :class:`Network` made and that still exist (empty when every network was closed)."""
    names = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line]
    out = sorted(n for n in names if n.startswith(PREFIX))
    links = _ip("-o", "link", "show").stdout.splitlines()
    out += sorted(f"link {ln.split(':')[1].strip()}" for ln in links if f": {PREFIX}" in ln)
    return out


def clean() -> list[str]:
    """Delete the namespaces of networks whose process died without closing them (killed with
    SIGKILL, say); returns their names. Others' live networks are left alone."""
    removed = []
    for name in leftovers():
        pid = name.removeprefix(PREFIX).split("-")[0]
        if name.startswith(PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def enter(netns: str) -> None:
    """Move the calling thread into namespace ``netns`` (threads it starts later follow).

    Call it first thing in a process started to live in ``netns`` (see :meth:`Host.spawn`):
    sockets made before it stay in the old namespace.
    """
    fd = os.open(_NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _run_in(netns: str, target: Callable[..., object], args: tuple[Any, ...]) -> None:
    enter(netns)
    target(*args)


def _open(proc: SpawnProcess) -> bool:
    try:
        proc.is_alive()
    except ValueError:  # closed
        return False
    return True


class Host:
    """One "host" of a :class:`Network`: a namespace with one interface (``eth0``) at
    :attr:`address`, cabled to the network's switch (whose end is :attr:`port`)."""

    def __init__(self, net: Network, name: str, address: str) -> None:
        self.net, self.name, self.address = net, name, address
        self.netns = f"{net.id}-{name}"
        self.port = f"p-{name}"  # the switch's end of this host's cable
        self.dev = _DEV

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address})"

    def command(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` prefixed to run in this host's namespace (``ip netns exec`` execs it, so the
        process's pid is the command's own)."""
        return ["ip", "netns", "exec", self.netns, *cmd]

    def run(self, cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in this host's namespace to its end (``subprocess.run`` arguments;
        text mode, output captured, 60 s timeout unless given)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.command(cmd), **kw)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start ``cmd`` in this host's namespace (``Popen`` arguments; text mode, stdout and
        stderr piped unless given). The network stops it when it closes."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        proc: subprocess.Popen[str] = subprocess.Popen(self.command(cmd), **kw)
        self.net._popens.append(proc)
        return proc

    def python(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        """``popen`` of this interpreter (``sys.executable``) with ``args``."""
        return self.popen([sys.executable, *args], **kw)

    def spawn(
        self, target: Callable[..., object], *args: Any, name: str | None = None
    ) -> SpawnProcess:
        """Start ``target(*args)`` in a fresh interpreter (multiprocessing 'spawn') that first
        enters this host's namespace; pipes and queues to it work as usual. Not started as a
        daemon (it may start processes of its own); the network stops it when it closes."""
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_run_in, args=(self.netns, target, args), name=name)
        proc.start()
        self.net._spawned.append(proc)
        return proc

    def limit(
        self,
        rate_bps: float,
        *,
        direction: Literal["down", "up", "both"] = "down",
        burst: int | None = None,
        latency: float = 0.05,
    ) -> None:
        """Rate-limit this host's cable to ``rate_bps`` bits per second with ``tbf``:
        ``down`` what the switch sends to this host, ``up`` what it sends, or ``both``.

        The tbf queue holds at most ``latency`` seconds at the rate (plus the burst, by default
        1/50 s at the rate, never less than 8 KiB); beyond that it drops. Replaces an earlier
        limit; :meth:`unlimit` removes it.
        """
        if not rate_bps > 0:
            raise ValueError("rate must be positive")
        size = burst if burst is not None else max(8192, int(rate_bps / 8 / 50))
        spec = ["tbf", "rate", f"{int(rate_bps)}bit", "burst", str(size)]
        spec += ["latency", f"{int(latency * 1000)}ms"]
        for ns, dev in self._ends(direction):
            _tc(ns, "qdisc", "replace", "dev", dev, "root", *spec)

    def unlimit(self, direction: Literal["down", "up", "both"] = "both") -> None:
        """Remove the rate limits of :meth:`limit` (none set: nothing happens)."""
        for ns, dev in self._ends(direction):
            subprocess.run(
                ["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"],
                capture_output=True,
                timeout=30,
            )

    def _ends(self, direction: str) -> list[tuple[str, str]]:
        ends = []
        if direction in ("down", "both"):
            ends.append((self.net.switch, self.port))
        if direction in ("up", "both"):
            ends.append((self.netns, self.dev))
        return ends

    def unplug(self) -> None:
        """Pull this host's cable at the switch: no FIN, no RST; both sides' packets are lost
        until :meth:`plug` (their interfaces and addresses stay)."""
        _ip("-n", self.net.switch, "link", "set", self.port, "down")

    def plug(self) -> None:
        """Plug the cable back in (see :meth:`unplug`)."""
        _ip("-n", self.net.switch, "link", "set", self.port, "up")

    def relay(
        self, listen_port: int, target: tuple[str, int], delay: float
    ) -> subprocess.Popen[str]:
        """Start a :func:`delay_relay` in this host's namespace: TCP to
        ``self.address:listen_port`` goes to ``target`` ``delay`` seconds later each way.
        Returns once it listens."""
        proc = self.python(
            "-m", "framebus.testing.netns", "relay",
            "--listen", f"{self.address}:{listen_port}",
            "--target", f"{target[0]}:{target[1]}", "--delay", str(delay),
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"the delay relay did not start: {line!r} {err.strip()}")
        return proc


class Network:
    """A switch namespace with a bridge, and hosts joined to it (see the module docstring).

    ``subnet`` is the /24 the hosts' addresses come from (``.1``, ``.2``, ... in the order
    they are added). Use it as a context manager, or call :meth:`close` in a ``finally``.
    """

    def __init__(self, subnet: str = "10.77.0.0/24") -> None:
        self.subnet = ipaddress.IPv4Network(subnet)
        if self.subnet.prefixlen > 29:
            raise ValueError(f"subnet {subnet} is too small")
        self.id = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.switch = f"{self.id}-switch"
        self.hosts: dict[str, Host] = {}
        self._popens: list[subprocess.Popen[str]] = []
        self._spawned: list[SpawnProcess] = []
        self._namespaces: list[str] = []
        try:
            self._make_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _make_namespace(self, netns: str) -> None:
        _ip("netns", "add", netns)
        self._namespaces.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")

    def add_host(self, name: str) -> Host:
        """A new host ``name`` (a lowercase letter, then up to 9 letters or digits), cabled to
        the switch and up, with the next free address of the subnet."""
        if not _HOST_NAME.match(name):
            raise ValueError(f"a host name is [a-z][a-z0-9]{{0,9}}, not {name!r}")
        if name in self.hosts or name == "switch":
            raise ValueError(f"host {name!r} exists")
        address = str(self.subnet.network_address + len(self.hosts) + 1)
        if ipaddress.IPv4Address(address) >= self.subnet.broadcast_address:
            raise ValueError(f"subnet {self.subnet} is full")
        host = Host(self, name, address)
        self._make_namespace(host.netns)
        # both ends made right in their namespaces: nothing ever shows in the machine's own
        _ip("-n", self.switch, "link", "add", host.port, "type", "veth",
            "peer", "name", host.dev, "netns", host.netns)  # fmt: skip
        _ip("-n", self.switch, "link", "set", host.port, "master", "br0")
        _ip("-n", self.switch, "link", "set", host.port, "up")
        prefix = self.subnet.prefixlen
        _ip("-n", host.netns, "addr", "add", f"{address}/{prefix}", "dev", host.dev)
        _ip("-n", host.netns, "link", "set", host.dev, "up")
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Stop every process started in the network (SIGTERM, 5 s, SIGKILL; all reaped), then
        delete its namespaces (and so their interfaces), even if stopping a process failed.
        Safe to call twice."""
        try:
            self._stop_processes()
        finally:
            namespaces, self._namespaces = self._namespaces, []
            for netns in reversed(namespaces):
                _ip("netns", "del", netns, check=False)

    def _stop_processes(self) -> None:
        popens, self._popens = self._popens, []
        spawned, self._spawned = self._spawned, []
        spawned = [sp for sp in spawned if _open(sp)]  # one its user closed was reaped by then
        for p in popens:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for sp in spawned:
            if sp.is_alive():
                sp.terminate()
        deadline = time.monotonic() + 5
        for p in popens:
            try:
                p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        for sp in spawned:
            sp.join(max(0.1, deadline - time.monotonic()))
            if sp.is_alive():
                sp.kill()
                sp.join()
            with contextlib.suppress(ValueError):
                sp.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- a userspace TCP relay that adds delay (the kernel here has no netem) ----------------------

_CHUNK = 64 * 1024
_QUEUED_CHUNKS = 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` s after it arrived. Buffer policy:
    keeps every byte (a TCP stream cannot drop), at most 16 chunks of 64 KiB queued; beyond
    that it stops reading, so the sender's TCP window closes."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUED_CHUNKS)
    loop = asyncio.get_running_loop()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(_CHUNK)
            await queue.put((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


async def _relay(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        try:
            await asyncio.gather(_pump(c_reader, t_writer, delay), _pump(t_reader, c_writer, delay))
        finally:
            for w in (c_writer, t_writer):
                w.close()

    server = await asyncio.start_server(handle, *listen)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


def delay_relay(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    """Serve TCP on ``listen``, relaying each connection to ``target`` with ``delay`` seconds
    added each way; runs until killed (prints ``READY`` once it listens). Started by
    :meth:`Host.relay` as ``python -m framebus.testing.netns relay``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_relay(listen, target, delay))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m framebus.testing.netns")
    sub = ap.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="a TCP relay that adds delay")
    relay.add_argument("--listen", type=_address, required=True, help="HOST:PORT")
    relay.add_argument("--target", type=_address, required=True, help="HOST:PORT")
    relay.add_argument("--delay", type=float, default=0.0, help="seconds each way")
    sub.add_parser("clean", help="delete the namespaces of networks whose process died")
    ns = ap.parse_args(argv)
    if ns.command == "clean":
        for name in clean():
            print(f"deleted {name}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    delay_relay(ns.listen, ns.target, ns.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
