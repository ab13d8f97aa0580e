"""What one peer of the exporter may cost it: connections, requests, receiver slots (no I/O).

The exporter's ROUTER accepts any TCP connection; libzmq has no cap of its own, and a peer that
connects and says nothing, or floods requests, costs a descriptor and the exporter's time.
:class:`ConnectionBook` keeps, per connection (its descriptor, as libzmq's monitor and each
message's ``SRCFD`` name it): when it came, when it last asked, and a token bucket of requests.
The exporter asks it what to do:

* at ``max_connections``, a new connection takes the place of the one silent the longest, if
  that one asked nothing for :data:`EVICT_SILENT` seconds (a receiver asks at least twice a
  second, so it is never the one evicted); otherwise the new one is cut at once. One address
  may hold a quarter of the connections (:func:`framebus.limits.per_address_connections`):
  one host cannot
  take them all;
* a connection that has not asked anything for :data:`IDLE_CUT` seconds is cut (a receiver
  asks at least every 0.5 s; a peer that connected and stays silent, or a dead one whose
  TCP connection lingers, is not a receiver);
* a connection's requests beyond :data:`REQUEST_RATE` a second (burst
  :data:`REQUEST_BURST`) are dropped unanswered and counted: a receiver asks once per frame
  and twice a second when idle, far below it.

Receiver slots per address are counted by the exporter (:func:`per_address_cap`).
"""

from __future__ import annotations

from dataclasses import dataclass

from framebus.limits import per_address_connections

__all__ = ["EVICT_SILENT", "IDLE_CUT", "REQUEST_BURST", "REQUEST_RATE", "ConnectionBook",
           "per_address_cap"]  # fmt: skip

IDLE_CUT = 10.0
"""Seconds a connection may stay without a request before it is cut."""
REQUEST_RATE = 100.0
"""Requests a second one connection may make (a receiver at 60 fps makes about 62)."""
REQUEST_BURST = 100.0
EVICT_SILENT = 1.0
"""Seconds without a request after which a connection may lose its place to a new one."""


def per_address_cap(max_receivers: int) -> int:
    """Receivers one network address may hold: a quarter of all slots (at least 4), so one
    host cannot take every slot while others wait (they get ``ERR busy``)."""
    return max(4, max_receivers // 4)


@dataclass
class _Conn:
    address: str
    since: float
    last_request: float
    tokens: float


class ConnectionBook:
    """The exporter's connections by descriptor (see the module docstring)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._conns: dict[int, _Conn] = {}
        self.refused = 0  # connections cut because the book was full
        self.idle_cut = 0  # connections cut for saying nothing
        self.throttled = 0  # requests dropped over the rate

    def __len__(self) -> int:
        return len(self._conns)

    def accepted(self, fd: int, address: str, now: float) -> list[int]:
        """A new connection from ``address``: the connections to cut (the new one, or one
        silent for long enough that the new one takes its place; none if there is room)."""
        self._conns.pop(fd, None)  # a descriptor number used again: a new connection
        mine = sum(1 for c in self._conns.values() if c.address == address)
        cut: list[int] = []
        if mine >= per_address_connections(self.max_connections):
            self.refused += 1
            return [fd]
        if len(self._conns) >= self.max_connections:
            fd_old, oldest = min(self._conns.items(), key=lambda kv: kv[1].last_request)
            if now - oldest.last_request < EVICT_SILENT:
                self.refused += 1
                return [fd]
            del self._conns[fd_old]
            self.idle_cut += 1
            cut.append(fd_old)
        self._conns[fd] = _Conn(address, now, now, REQUEST_BURST)
        return cut

    def closed(self, fd: int) -> None:
        self._conns.pop(fd, None)

    def request(self, fd: int, now: float) -> bool:
        """A request came on ``fd``; False: drop it (over the rate, or not a known
        connection: its accept event has not been read yet, so it is let through)."""
        conn = self._conns.get(fd)
        if conn is None:
            return True
        conn.tokens = min(REQUEST_BURST, conn.tokens + (now - conn.last_request) * REQUEST_RATE)
        conn.last_request = now
        if conn.tokens < 1.0:
            self.throttled += 1
            return False
        conn.tokens -= 1.0
        return True

    def idle(self, now: float) -> list[int]:
        """The connections silent for IDLE_CUT seconds, forgotten: cut them."""
        silent = [fd for fd, c in self._conns.items() if now - c.last_request >= IDLE_CUT]
        for fd in silent:
            del self._conns[fd]
        self.idle_cut += len(silent)
        return silent
