"""Fixtures of the web wing's tests (helpers are in ``_webtools``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _webtools import Web

import framebus


@pytest.fixture
def web() -> Iterator[Any]:
    made: list[Web] = []

    def make(streams: list[str] | None = None, **kw: Any) -> Web:
        made.append(Web(streams, **kw))
        return made[-1]

    yield make
    for w in made:
        w.close()


@pytest.fixture
def pattern_stream(stream_name: str) -> Iterator[framebus.Publisher]:
    with framebus.publish(stream_name, framebus.TestPattern(320, 240, fps=25)) as pub:
        yield pub
