"""What an export serves and how (:class:`ExportConfig`), and its counters: validated values
that travel as JSON between an :class:`~framebus.net.Exporter` and its process."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import framebus
from framebus._hosts import is_loopback
from framebus.limits import DEFAULT_MAX_CONNECTIONS

from ._sockets import load_server_keys, parse_bind, valid_name
from .sink import CodecName

__all__ = ["ExportConfig", "ExportedStream", "ExporterStats", "export_url"]


def export_url(endpoint: str, name: str = "", host: str | None = None) -> str:
    """``zmq://HOST:PORT[/NAME]`` for receivers of the exporter bound to ``endpoint`` (HOST:
    the bound one unless given)."""
    bound_host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    base = f"zmq://{host or bound_host}:{port}"
    return f"{base}/{name}" if name else base


@dataclass(frozen=True)
class ExportedStream:
    """One exported stream's counters."""

    name: str
    receivers: int
    frames_encoded: int
    frames_sent: int
    bytes_sent: int


@dataclass(frozen=True)
class ExporterStats:
    endpoint: str
    receivers: int
    bad_requests: int
    streams: tuple[ExportedStream, ...]
    connections: int = 0
    """TCP connections open now."""
    refused_connections: int = 0
    """Connections cut at once because ``max_connections`` were open."""
    idle_cut: int = 0
    """Connections cut because they asked nothing for a while (not receivers)."""
    throttled_requests: int = 0
    """Requests dropped because their connection asked too fast."""
    restarts: int = 0
    """Times the exporter's process died and was started again."""
    last_failure: str = ""
    """How it died the last time (e.g. ``killed by SIGABRT``)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExporterStats:
        """From the exporter's own process; a malformed record raises TypeError/KeyError."""
        streams = tuple(ExportedStream(**row) for row in data["streams"])
        return cls(
            str(data["endpoint"]),
            int(data["receivers"]),
            int(data["bad_requests"]),
            streams,
            connections=int(data["connections"]),
            refused_connections=int(data["refused_connections"]),
            idle_cut=int(data["idle_cut"]),
            throttled_requests=int(data["throttled_requests"]),
        )


@dataclass(frozen=True)
class ExportConfig:
    """What an export serves and how, validated: everything an :class:`ExportServer` needs,
    in a form that travels as JSON to the exporter's own process."""

    endpoint: str
    names: tuple[str, ...] | None
    codec: CodecName
    quality: int
    curve: str | None
    max_receivers: int
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def make(
        cls,
        endpoint: str,
        names: Iterable[str] | None = None,
        *,
        codec: CodecName = "jpeg",
        quality: int = 80,
        curve: str | os.PathLike[str] | None = None,
        max_receivers: int = 64,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> ExportConfig:
        """Check every option (ValueError, InvalidStreamName, KeyFileError) before anything
        starts."""
        if codec not in ("jpeg", "raw"):
            raise ValueError(f"codec must be 'jpeg' or 'raw', not {codec!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        if not 1 <= max_receivers <= 100_000:
            raise ValueError(f"max_receivers must be 1..100000, not {max_receivers}")
        if not 1 <= max_connections <= 1_000_000:
            raise ValueError(f"max_connections must be 1..1000000, not {max_connections}")
        parse_bind(endpoint)
        listed = None if names is None else tuple(names)
        for name in listed or ():
            if not valid_name(name):
                raise framebus.InvalidStreamName(f"invalid stream name {name!r}")
        if curve is not None:
            load_server_keys(curve)
        folder = None if curve is None else str(Path(curve).absolute())
        return cls(endpoint, listed, codec, quality, folder, max_receivers, max_connections)

    @property
    def insecure(self) -> bool:
        """No CURVE on an address other than loopback: anyone who reaches the port reads."""
        return self.curve is None and not is_loopback(parse_bind(self.endpoint).host)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "names": None if self.names is None else list(self.names),
            "codec": self.codec, "quality": self.quality, "curve": self.curve,
            "max_receivers": self.max_receivers, "max_connections": self.max_connections,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExportConfig:
        """From our own parent process (a pipe, not the network): checked again all the same."""
        return cls.make(
            data["endpoint"],
            data["names"],
            codec=data["codec"],
            quality=data["quality"],
            curve=data["curve"],
            max_receivers=data["max_receivers"],
            max_connections=data["max_connections"],
        )
