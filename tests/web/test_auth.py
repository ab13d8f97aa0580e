"""HTTP Basic authentication: every malformed header is a 401 (never a 500), guesses are
throttled per address, and the comparison is of bytes in constant time."""

from __future__ import annotations

import asyncio
import base64
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framebus.web._auth import GUESS_BURST, GUESS_EVERY, BasicAuth, FailureThrottle
from fuzzing import fuzz
from webtools import Web

Fixture = Any


def raw_get(port: int, authorization: bytes) -> bytes:
    """A GET whose Authorization header is exactly ``authorization`` (any bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(
            b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: " + authorization + b"\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_a_non_ascii_authorization_header_is_a_401_not_a_500(
    web: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a 500 and a traceback in the log, from any client."""
    w: Web = web(auth=("viewer", "s3cret"))
    for header in (b"Basic \xc3\xa9\xc3\xa9", b"Basic \xff\xfe", "Basic é".encode("latin-1")):
        reply = raw_get(w.port, header)
        assert reply.startswith(b"HTTP/1.1 401"), reply[:80]
    assert "Traceback" not in caplog.text and "Exception" not in caplog.text


def test_guesses_are_throttled_per_address(web: Fixture) -> None:
    """Before: 183 guesses a second over 8 connections, unthrottled."""
    w: Web = web(auth=("viewer", "s3cret"))
    bad = {"Authorization": "Basic " + base64.b64encode(b"viewer:guess").decode()}
    good = {"Authorization": "Basic " + base64.b64encode(b"viewer:s3cret").decode()}
    assert w.get("/api/streams", good)[0] == 200
    statuses = [w.get("/api/streams", bad)[0] for _ in range(GUESS_BURST + 5)]
    assert statuses[:GUESS_BURST] == [401] * GUESS_BURST
    assert statuses[GUESS_BURST:] == [429] * 5
    status, headers, _ = w.get("/api/streams", good)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= GUESS_EVERY + 1


async def _call(auth: BasicAuth, headers: list[tuple[bytes, bytes]], client: str) -> int:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "headers": headers, "client": (client, 1234)}
    await auth(scope, receive, send)
    return int(sent[0]["status"])


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


_right = b"Basic " + base64.b64encode(b"viewer:s3cret")
_values = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda a, b: a + _right + b, st.sampled_from([b"", b" ", b"\t"]),
              st.sampled_from([b"", b" ", b"x", b"\xff"])),
)  # fmt: skip


@given(value=_values, name=st.sampled_from([b"authorization", b"Authorization"]))
@fuzz(300)
def test_any_authorization_bytes_are_refused_cleanly(value: bytes, name: bytes) -> None:
    auth = BasicAuth(_ok_app, "viewer", "s3cret")
    status = asyncio.run(_call(auth, [(name, value)], "10.0.0.1"))
    words = value.split()
    token = base64.b64encode(b"viewer:s3cret")
    right = len(words) == 2 and words[0].lower() == b"basic" and words[1] == token
    assert status == (200 if right else 401)


def test_the_throttle_refills_and_forgets_the_oldest() -> None:
    t = FailureThrottle(burst=3, every=2.0, size=4)
    for _ in range(3):
        assert t.wait("a", 0.0) == 0.0
        t.failed("a", 0.0)
    assert t.wait("a", 0.0) == pytest.approx(2.0)
    assert t.wait("a", 1.0) == pytest.approx(1.0)
    assert t.wait("a", 2.0) == 0.0  # one guess back after `every` seconds
    for n in range(10):
        t.failed(f"other{n}", 3.0)
    assert len(t) == 4 and t.wait("a", 3.0) == 0.0  # forgotten: bounded memory
