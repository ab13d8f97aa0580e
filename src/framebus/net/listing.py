"""``framebus ls zmq://HOST:PORT``: ask an exporter what it exports (one ``LIST``)."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import RemoteAuthError, RemoteUnreachable
from ..sources.spec import Remote
from . import protocol
from ._sockets import client_socket, load_client_keys, parse_url
from .dial import Dial

__all__ = ["list_exports"]


def list_exports(
    url: str,
    *,
    curve: str | None = None,
    server_key: str | None = None,
    client_key: str | None = None,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """What the exporter at ``zmq://HOST:PORT`` exports: one dict per stream (``name``,
    ``state``, ``width``, ``height``, ``fps``, ``mode``, ``codec``, ``receivers``).

    Raises RemoteUnreachable, RemoteAuthError or WireFormatError (an answer that is not a
    list)."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    address = parse_url(url, need_name=False)
    spec = Remote(
        address.url + "/x", curve=curve, server_key=server_key, client_key=client_key
    )  # validates the key options
    keys = None
    if spec.server_key is not None and spec.client_key is not None:
        keys = load_client_keys(spec.server_key, spec.client_key)
    ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
    sock = client_socket(ctx, keys, protocol.MAX_LISTING)
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(address.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        dial = Dial(address, keys is not None)
        sent = False
        while (remaining := deadline - time.monotonic()) > 0:
            if not sent:
                with contextlib.suppress(zmq.Again):
                    sock.send(protocol.LIST, zmq.NOBLOCK)
                    sent = True
            events = dict(poller.poll(int(min(remaining, 0.1) * 1000) + 1))
            if monitor in events:
                with contextlib.suppress(zmq.Again):
                    while True:
                        dial.event(recv_monitor_message(monitor, zmq.NOBLOCK)["event"])
                if dial.auth_error is not None:
                    raise RemoteAuthError(f"{address.endpoint}: {dial.auth_error}")
            if sock in events:
                parts = sock.recv_multipart()
                if len(parts) == 1 and parts[0].startswith(protocol.LIST + b" "):
                    return protocol.parse_listing(parts[0][5:], address.endpoint)
        raise RemoteUnreachable(
            f"no answer from {address.endpoint} within {timeout:g} s: {dial.why_silent()}"
        )
    finally:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()
