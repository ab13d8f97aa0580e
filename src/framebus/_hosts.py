"""What the network wings (web, ZeroMQ) ask of an address: ``HOST:PORT`` split and checked,
and whether binding to a host keeps a server on this machine (no I/O, no name lookups)."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["host_port", "is_loopback"]

_V6 = re.compile(r"[0-9A-Fa-f:.]+")
_PORT = re.compile(r"[0-9]{1,5}")


def host_port(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port), the port 0..65535; with
    ``default_host``, ``PORT`` and ``:PORT`` too (the host is then the default). ValueError
    with a one-line reason, which the caller puts in context."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not _V6.fullmatch(host):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port = rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
        strict = default_host is None  # a URL's host: one name or address, never empty
        if strict and (not host or any(c in host for c in ":/[]")):
            raise ValueError(f"expected HOST:PORT, got {text!r}")
    elif default_host is not None:
        host, port = "", text
    else:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if not (_PORT.fullmatch(port) and int(port) <= 65535):
        raise ValueError(f"expected a port 0..65535, got {port!r}")
    return host or default_host or "", int(port)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address: only this machine can connect. Anything else
    ("*", 0.0.0.0, a host name, which is not looked up) is taken as reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
