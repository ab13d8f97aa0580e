"""HTTP Basic authentication in front of an ASGI app, with failed guesses throttled.

Every malformed ``Authorization`` header (not Basic, not base64, not UTF-8, any bytes at all)
is a plain 401: the header is compared as bytes, in constant time, never decoded first. Failed
guesses are counted per client address in a token bucket (:class:`FailureThrottle`): a burst of
:data:`GUESS_BURST`, then one guess every :data:`GUESS_EVERY` seconds; an address over its
budget gets 429 with ``Retry-After`` and its guesses are not even compared. The table of
addresses is bounded (:data:`MAX_ADDRESSES`, the least recently failing forgotten first), so
a flood of addresses costs bounded memory. A correct password is never throttled for an
address that has budget left, and a success does not reset the count (a guesser who also
knows one good password gains nothing). A WebSocket handshake with no ``Authorization`` at all
is refused without counting (a browser may not send its page's credentials on one).
"""

from __future__ import annotations

import base64
import collections
import json
import math
import secrets
import time
from typing import Any

__all__ = ["GUESS_BURST", "GUESS_EVERY", "MAX_ADDRESSES", "BasicAuth", "FailureThrottle"]

GUESS_BURST = 10
"""Failed guesses an address may make at once..."""
GUESS_EVERY = 6.0
"""...then one more per this many seconds (10 a minute)."""
MAX_ADDRESSES = 4096
"""Addresses whose failures are remembered; the least recently failing is forgotten first."""


class FailureThrottle:
    """Failed attempts per key, as token buckets (no I/O; ``now`` is passed in)."""

    def __init__(
        self, burst: int = GUESS_BURST, every: float = GUESS_EVERY, size: int = MAX_ADDRESSES
    ) -> None:
        self.burst, self.every, self.size = burst, every, size
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = (
            collections.OrderedDict()
        )  # key -> (tokens, when)

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - when) / self.every)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: it may now)."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) * self.every

    def failed(self, key: str, now: float) -> None:
        self._buckets[key] = (max(0.0, self._tokens(key, now) - 1.0), now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.size:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class BasicAuth:
    """``inner`` behind HTTP Basic authentication for ``user``/``password``."""

    def __init__(
        self, inner: Any, user: str, password: str, *, open_paths: frozenset[str] = frozenset()
    ) -> None:
        self.inner = inner
        self.open_paths = open_paths
        """Paths served without credentials (``/healthz``: what it says is no secret)."""
        self._expected = base64.b64encode(f"{user}:{password}".encode())
        self.throttle = FailureThrottle()

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = b""
        for key, value in headers:
            if key.lower() == b"authorization":
                given = value
                break
        parts = given.split()
        token = parts[1] if len(parts) == 2 else b""
        # bytes against bytes: compare_digest refuses non-ASCII str (that was a 500)
        match = secrets.compare_digest(token, self._expected)
        return match and parts[0].lower() == b"basic"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or (
            scope["type"] == "http" and _route_path(scope) in self.open_paths
        ):
            await self.inner(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        address = str(client[0])
        now = time.monotonic()
        wait = self.throttle.wait(address, now)
        if wait > 0:
            await _refuse(scope, send, 429, "too many failed logins: try again later", wait)
            return
        headers = list(scope.get("headers") or [])
        if not self._authorized(headers):
            # a browser may open a WebSocket without the credentials its page has: that is no
            # guess, and counting it would lock the page itself out after ten reconnects
            asked = any(key.lower() == b"authorization" for key, _ in headers)
            if asked or scope["type"] != "websocket":
                self.throttle.failed(address, now)
            await _refuse(scope, send, 401, "authentication required", 0.0)
            return
        await self.inner(scope, receive, send)


def _route_path(scope: Any) -> str:
    """The request's path within this app (without the prefix it is mounted at)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


async def _refuse(scope: Any, send: Any, status: int, why: str, retry: float) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b'Basic realm="framebus", charset="UTF-8"'))
    else:
        headers.append((b"retry-after", str(max(1, math.ceil(retry))).encode()))
    body = json.dumps({"error": why}).encode()
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
