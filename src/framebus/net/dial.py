"""What a ZeroMQ socket's monitor says about a connection being dialled, in words for the
user (no I/O: the socket layers feed it the events)."""

from __future__ import annotations

import zmq

from ._sockets import Address

__all__ = ["Dial"]


class Dial:
    """What a socket's monitor said about its connection, and what that means for the user.

    libzmq reports: ``CONNECT_DELAYED`` (a TCP connect started), ``CONNECT_RETRIED`` (it
    failed, or a name did not resolve: then no connect started), ``CONNECTED``,
    ``HANDSHAKE_SUCCEEDED``, ``HANDSHAKE_FAILED_AUTH`` (ZAP refused our key),
    ``HANDSHAKE_FAILED_PROTOCOL`` (e.g. CURVE against NULL), ``HANDSHAKE_FAILED_NO_DETAIL``
    (the peer closed the connection during the handshake: with our CURVE keys, a wrong server
    key or an exporter without CURVE; without keys, a peer that does not speak ZMTP)."""

    def __init__(self, address: Address, curve: bool) -> None:
        self.address = address
        self.curve = curve
        self.attempts = 0
        self.retries = 0
        self.tcp_connected = False
        self.handshakes = 0
        self.closed_in_handshake = 0
        self.connected = False  # a handshake succeeded and no disconnect since
        self.auth_error: str | None = None

    def event(self, event: int) -> str:
        """Note ``event``; returns "made", "lost", "retry" or ""."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.handshakes += 1
            self.connected = True
            self.auth_error = None
            return "made"
        if event == zmq.EVENT_CONNECTED:
            self.tcp_connected = True
            return "retry"
        if event in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
            self.connected = False
            return "lost" if event == zmq.EVENT_DISCONNECTED else ""
        if event == zmq.EVENT_CONNECT_DELAYED:
            self.attempts += 1
            return "retry"
        if event == zmq.EVENT_CONNECT_RETRIED:
            self.retries += 1
            return "retry"
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.auth_error = (
                "the exporter refused this receiver's CURVE key (is its public key in the "
                "exporter's clients/ directory?)"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.auth_error = (
                "handshake failed: the exporter uses CURVE and this receiver has no keys, or "
                "the other way round (give curve=DIR, or server_key= and client_key=)"
                if not self.curve
                else "handshake failed: CURVE on one side only (does the exporter use --curve?)"
            )
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.closed_in_handshake += 1
            if self.curve:
                self.auth_error = (
                    "the exporter closed the connection during the CURVE handshake: a wrong "
                    "server key, or an exporter without --curve"
                )
        return ""

    def why_silent(self) -> str:
        """Why nothing answered, as well as the events tell."""
        if self.closed_in_handshake:
            return "the peer closed the connection during the handshake (not a framebus exporter?)"
        if self.tcp_connected:
            return "connected, but no framebus answer (not a framebus exporter?)"
        if self.retries and not self.attempts:
            return f"cannot resolve host {self.address.host!r}"
        if self.retries:
            return "connection refused (is the exporter running, is the port right?)"
        return "no connection (wrong host, or a firewall?)"
