"""What the network wings (web, ZeroMQ) ask of a host name: whether binding to it keeps a
server on this machine (no I/O, no name lookups)."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: only this machine can connect. Anything else
    ("*", 0.0.0.0, a host name, which is not looked up) is taken as reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
