"""``HOST:PORT`` as the web and ZeroMQ wings read it: one parser (framebus._hosts)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from framebus._hosts import host_port
from fuzzing import fuzz


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("cam.local:5555", None, ("cam.local", 5555)),
        ("[::1]:80", None, ("::1", 80)),
        ("0.0.0.0:0", None, ("0.0.0.0", 0)),
        ("8080", "127.0.0.1", ("127.0.0.1", 8080)),
        (":8080", "127.0.0.1", ("127.0.0.1", 8080)),
        ("[fe80::1]:65535", "127.0.0.1", ("fe80::1", 65535)),
    ],
)
def test_the_forms_a_user_writes(text: str, default: str | None, expected: tuple[str, int]) -> None:
    assert host_port(text, default_host=default) == expected


@pytest.mark.parametrize(
    "text",
    ["host", ":5555", "a:b:1", "h:65536", "h:", "h:-1", "h:+1", "h:1_0", "h:\u0663", "[x]:1",
     "[::1]", "[::1]5", "a/b:1", "h:" + "1" * 5000],
)  # fmt: skip
def test_a_url_host_port_that_is_not_one(text: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        host_port(text)


@given(st.text(max_size=40), st.sampled_from([None, "127.0.0.1"]))
@fuzz(500)
def test_any_text_gives_a_port_in_range_or_a_value_error(text: str, default: str | None) -> None:
    try:
        host, port = host_port(text, default_host=default)
    except ValueError:
        return
    assert 0 <= port <= 65535 and text.endswith(str(port))
    assert host and (default is not None or host in text)
