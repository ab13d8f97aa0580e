"""Socket failures as framebus errors, worded once for every backend."""

from __future__ import annotations

import os
import socket

from ..errors import SourceUnreachable

__all__ = ["connect", "connect_error", "refused"]


def refused(label: str) -> SourceUnreachable:
    return SourceUnreachable(
        f"{label}: connection refused (is the server running, is the port right?)"
    )


def connect_error(exc: OSError, host: str, label: str, timeout: float) -> SourceUnreachable:
    """What a failed TCP connect to ``host`` means for the user."""
    if isinstance(exc, socket.gaierror):
        return SourceUnreachable(f"{label}: unknown host {host!r}")
    if isinstance(exc, ConnectionRefusedError):
        return refused(label)
    if isinstance(exc, TimeoutError):
        return SourceUnreachable(f"{label}: no answer within {timeout:g} s")
    return SourceUnreachable(f"{label}: {os.strerror(exc.errno or 0).lower()}")


def connect(host: str, port: int, timeout: float, label: str) -> socket.socket:
    """A TCP connection to ``host:port``, or the :class:`SourceUnreachable` that says why not."""
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise connect_error(exc, host, label, timeout) from None
