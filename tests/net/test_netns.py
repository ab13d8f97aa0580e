"""The network-namespace tools (framebus.testing.netns) tested with plain TCP between "hosts":
reachability, isolation, a tbf rate limit, a pulled cable, the delay relay, and cleanup."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import child_pids
from framebus.testing import netns
from nettools import Agent, echo_server, sink_server, start

PORT = 7000


def test_hosts_reach_each_other_only(network: netns.Network) -> None:
    a, b = network.add_host("a"), network.add_host("b")
    assert (a.address, b.address) == ("10.77.0.1", "10.77.0.2")
    start(a, echo_server, a.address, PORT)
    assert Agent(b)("echo_once", a.address, PORT, b"hello", 5.0) == "ok"
    # no way out of the network: only the subnet's own route, no default route
    routes = b.run(["ip", "-4", "route"]).stdout.splitlines()
    assert [r.split()[0] for r in routes] == ["10.77.0.0/24"], routes
    # the machine's namespace has none of the network's interfaces
    links = netns._ip("-o", "link").stdout
    assert "p-a" not in links and network.id not in links


def test_tbf_limits_throughput(network: netns.Network) -> None:
    """8 Mbit/s (1 MB/s) down to the receiver: a sender blasting for 2 s gets about that
    through (generous bounds), where the same link unlimited carries far more."""
    sender, receiver = network.add_host("tx"), network.add_host("rx")
    agent = Agent(sender)
    done = start(receiver, sink_server, receiver.address, PORT)
    agent("blast", receiver.address, PORT, 1.0)
    assert done.poll(10)
    free_bytes, free_s = done.recv()
    receiver.limit(8_000_000)
    done = start(receiver, sink_server, receiver.address, PORT + 1)
    agent("blast", receiver.address, PORT + 1, 2.0)
    assert done.poll(10)
    limited_bytes, limited_s = done.recv()
    free_rate, limited_rate = free_bytes / free_s, limited_bytes / limited_s
    assert 0.3e6 < limited_rate < 1.6e6, (limited_bytes, limited_s)
    assert free_rate > 4 * limited_rate, (free_rate, limited_rate)
    receiver.unlimit()


def test_unplug_breaks_and_plug_restores(network: netns.Network) -> None:
    server, client = network.add_host("srv"), network.add_host("cli")
    start(server, echo_server, server.address, PORT)
    agent = Agent(client)
    assert agent("echo_once", server.address, PORT, b"before", 5.0, "held") == "ok"
    client.unplug()
    try:
        # an open connection goes silent (no reset), a new one cannot be made
        assert agent("echo_once", server.address, PORT, b"during", 1.0, "held") == "timeout"
        assert agent("echo_once", server.address, PORT, b"new", 1.0) == "timeout"
    finally:
        client.plug()
    # a new connection works again as soon as the link is up (retried: carrier comes back)
    deadline = time.monotonic() + 10
    while (result := agent("echo_once", server.address, PORT, b"after", 1.0)) != "ok":
        assert time.monotonic() < deadline, result
    # the held connection survived: TCP retransmits what it sent meanwhile, the echo comes
    assert agent("receive", "held", len(b"during"), 20.0, timeout=30) == b"during"
    assert agent("echo_once", server.address, PORT, b"again", 5.0, "held") == "ok"


def test_delay_relay_adds_delay_each_way(network: netns.Network) -> None:
    server, middle, client = (network.add_host(n) for n in ("srv", "mid", "cli"))
    start(server, echo_server, server.address, PORT)
    middle.relay(PORT, (server.address, PORT), delay=0.2)
    agent = Agent(client)
    assert agent("echo_once", middle.address, PORT, b"warm", 5.0, "r") == "ok"
    t0 = time.monotonic()
    assert agent("echo_once", middle.address, PORT, b"x" * 100_000, 5.0, "r") == "ok"
    assert time.monotonic() - t0 >= 0.4  # there and back: a lower bound, not a timing race


def test_everything_deleted_even_when_the_test_fails() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    with pytest.raises(ZeroDivisionError), netns.Network() as net:
        host = net.add_host("h")
        proc = host.popen(["sleep", "60"])
        spawned = host.spawn(time.sleep, 60).pid
        host.limit(1_000_000, direction="both")
        1 / 0  # noqa: B018
    assert proc.poll() is not None and spawned not in child_pids()
    assert [name for name in netns.leftovers() if net.id in name] == []
    with pytest.raises(ValueError):
        net.add_host("Bad-Name")


def test_clean_deletes_the_networks_of_killed_processes() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    script = (
        "import time; from framebus.testing.netns import Network\n"
        "net = Network(); net.add_host('a'); print(net.id, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        net_id = proc.stdout.readline().strip()
        assert net_id.startswith(netns.PREFIX)
        with netns.Network() as alive:  # a live network is not touched
            proc.kill()
            proc.wait()
            ours = sorted(n for n in netns.leftovers() if net_id in n)
            assert ours == [f"{net_id}-a", f"{net_id}-switch"]
            assert sorted(netns.clean()) == ours
            assert not [n for n in netns.leftovers() if net_id in n]
            assert f"{alive.id}-switch" in netns.leftovers()
    finally:
        proc.kill()
        proc.communicate()


def test_namespaces_deleted_even_if_stopping_a_process_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    net = netns.Network()
    net.add_host("h")

    def stuck() -> None:
        raise RuntimeError("a process could not be stopped")

    monkeypatch.setattr(net, "_stop_processes", stuck)
    with pytest.raises(RuntimeError):
        net.close()
    assert not [name for name in netns.leftovers() if net.id in name]
