"""A box of cameras in one file: ``framebus serve --config FILE.toml`` — :func:`load_config`.

```toml
[http]
listen = "0.0.0.0:8080"
auth = "/etc/framebus/auth"          # user:password file (or "env:VAR"), as --auth

[zmq]                                # optional: export the streams to other machines
listen = "tcp://0.0.0.0:5555"
curve = "/etc/framebus/keys"

[streams.door]                       # the table's name is the stream's name
source = "rtsp://user:pass@10.0.0.7/stream1"
slots = 4                            # any publish() option: mode, slots, max_readers, ...
push = "rtsp://mediamtx:8554/door"   # optional: framebus push
record = { out = "/var/rec", segment = 300, keep = "7d" }   # optional: framebus record

[streams.yard]
source = "rtsp://10.0.0.8/live"
reconnect = { stall_timeout = 10, backoff_max = 60 }
```

Relative paths (``auth``, ``curve``, ``record.out``, a file ``source``) are relative to the
file's own directory, wherever ``framebus serve`` is started from (a service's working
directory is ``/``). The whole file is checked before anything starts; a problem is one line
naming the key (``framebus.toml: streams.door.slots: expected an integer from 2 to 255, not
"four"``), and an unknown key is an error, not ignored (a typo would otherwise silently do
nothing). Parsing (:func:`parse_config`) does no I/O but for what it checks exists (files,
directories).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, FramebusError

__all__ = ["Config", "HttpConfig", "PushConfig", "RecordConfig", "StreamConfig", "ZmqConfig",
           "load_config", "parse_config", "parse_keep"]  # fmt: skip

MAX_FILE = 1024 * 1024  # a config file is a few KiB: a larger one is a mistake


@dataclass(frozen=True)
class HttpConfig:
    listen: tuple[str, int]
    auth: str | None = None


@dataclass(frozen=True)
class ZmqConfig:
    listen: str
    codec: str = "jpeg"
    quality: int = 80
    curve: str | None = None


@dataclass(frozen=True)
class PushConfig:
    url: str
    fps: float | None = None
    transport: str = "auto"
    encode: bool | None = None


@dataclass(frozen=True)
class RecordConfig:
    out: str
    segment: float | None = 60.0
    pre: float = 0.0
    keep_seconds: float | None = None
    keep_bytes: int | None = None
    encode: bool | None = None


@dataclass(frozen=True)
class StreamConfig:
    name: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    """Keywords for :func:`framebus.publish` (``reconnect`` already a ``Reconnect``)."""
    push: PushConfig | None = None
    record: RecordConfig | None = None


@dataclass(frozen=True)
class Config:
    streams: tuple[StreamConfig, ...]
    http: HttpConfig | None = None
    zmq: ZmqConfig | None = None
    max_connections: int | None = None


class _Checker:
    """Reads one table, key by key, each with a message naming where it is."""

    def __init__(self, where: str, table: object, prefix: str, base: Path | None = None) -> None:
        self.where, self.prefix, self.base = where, prefix, base
        if not isinstance(table, dict):
            self.fail("", f"expected a table, not {_shown(table)}")
        self.table: dict[str, Any] = dict(table)  # type: ignore[call-overload]
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> None:
        key = _key(key) if key else key
        path = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key)
        raise ConfigError(
            f"{self.where}: {path}: {problem}" if path else f"{self.where}: {problem}"
        )

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def text(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return default
        if not isinstance(value, str) or not value or len(value) > 4096:
            self.fail(key, f"expected a string, not {_shown(value)}")
        return value  # type: ignore[no-any-return]

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default=default)
        if value not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}, not {_shown(value)}")
        return value  # type: ignore[return-value]

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if type(value) is not int or not low <= value <= high:
            self.fail(key, f"expected an integer from {low} to {high}, not {_shown(value)}")
        return value  # type: ignore[no-any-return]

    def number(
        self, key: str, low: float, high: float, default: float | None = None
    ) -> float | None:
        value = self.get(key)
        if value is None:
            return default
        if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
            self.fail(key, f"expected a number from {low:g} to {high:g}, not {_shown(value)}")
        return float(value)

    def boolean(self, key: str, default: bool | None = None) -> bool | None:
        value = self.get(key)
        if value is None:
            return default
        if type(value) is not bool:
            self.fail(key, f"expected true or false, not {_shown(value)}")
        return value  # type: ignore[no-any-return]

    def done(self) -> None:
        """Unknown keys are errors: a typo must not silently do nothing."""
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            self.fail(unknown[0], f"unknown key (known here: {known})")


def _key(key: str) -> str:
    """A key as a message shows it: quoted if it is not a plain word (a line break, a space)."""
    plain = key.replace("_", "").replace("-", "").isalnum() and key.isascii() and len(key) <= 64
    return key if plain else _shown(key)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_keep(text: str) -> tuple[str, float]:
    """``7d``, ``12h``, ``90m``, ``30s`` (an age) or ``500M``, ``2G``, ``1T`` (a size: upper
    case M for bytes, lower case m for minutes) as ("seconds" | "bytes", value); ValueError."""
    import re

    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]|[KMGT]i?B?|[kgt]i?b?)", text.strip())
    if m is None:
        raise ValueError(f"expected an age (30s, 90m, 12h, 7d) or a size (500M, 2G, 1T), "
                         f"not {text!r}")  # fmt: skip
    value, unit = float(m.group(1)), m.group(2)
    ages = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if unit in ages:
        return "seconds", value * ages[unit]
    return "bytes", value * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[
        unit[0].lower()
    ]


def _bind(c: _Checker, key: str) -> tuple[str, int]:
    from ._hosts import host_port

    value = c.get(key)
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str):
        c.fail(key, f'expected "[HOST:]PORT", not {_shown(value)}')
    text = value if ":" in value else f"127.0.0.1:{value}"
    try:
        return host_port(text)
    except ValueError as exc:
        c.fail(key, str(exc))
        raise AssertionError from None  # (fail raised)


def _path(c: _Checker, key: str, *, directory: bool, required: bool = False) -> str | None:
    value = c.text(key, required=required)
    if value is None:
        return None
    if key == "auth" and value.startswith("env:"):
        return value
    p = Path(value)
    if c.base is not None and not p.is_absolute():
        p = c.base / p
        value = os.fspath(p)
    if directory and not p.is_dir():
        c.fail(key, f"no such directory: {value}")
    if not directory and not p.is_file():
        c.fail(key, f"no such file: {value}")
    return value


def _http(where: str, table: object, base: Path | None) -> HttpConfig:
    c = _Checker(where, table, "http", base)
    listen = _bind(c, "listen") if c.table.get("listen") is not None else ("127.0.0.1", 8080)
    c.used.add("listen")
    auth = _path(c, "auth", directory=False)
    c.done()
    return HttpConfig(listen, auth)


def _zmq(where: str, table: object, base: Path | None) -> ZmqConfig:
    c = _Checker(where, table, "zmq", base)
    listen = c.text("listen", required=True)
    assert listen is not None
    if not listen.startswith("tcp://"):
        c.fail("listen", f"expected tcp://HOST:PORT, not {_shown(listen)}")
    from ._hosts import host_port

    try:
        host_port(listen[len("tcp://") :].replace("*", "0.0.0.0"))
    except ValueError as exc:
        c.fail("listen", str(exc))
    codec = c.choice("codec", ("jpeg", "raw"), "jpeg")
    quality = c.integer("quality", 1, 100, 80)
    curve = _path(c, "curve", directory=True)
    c.done()
    return ZmqConfig(listen, codec, quality or 80, curve)


def _push(where: str, value: object, prefix: str) -> PushConfig:
    from ._urls import check_url, redact

    if isinstance(value, str):
        value = {"url": value}
    c = _Checker(where, value, prefix)
    url = c.text("url", required=True)
    assert url is not None
    try:
        check_url(url, ConfigError)
    except ConfigError as exc:
        c.fail("url", str(exc))
    if not url.lower().startswith("rtsp://"):
        c.fail("url", f"expected an rtsp:// URL, not {redact(url)}")
    fps = c.number("fps", 0.1, 240)
    transport = c.choice("transport", ("auto", "tcp", "udp"), "auto")
    encode = c.boolean("encode")
    c.done()
    return PushConfig(url, fps, transport, encode)


def _record(where: str, value: object, prefix: str, base: Path | None) -> RecordConfig:
    c = _Checker(where, value, prefix, base)
    out = _path(c, "out", directory=True, required=True)
    assert out is not None
    if c.table.get("segment") is False:  # clips only
        c.used.add("segment")
        segment = None
    else:
        segment = c.number("segment", 1, 86400, 60.0)
    pre = c.number("pre", 0, 600, 0.0) or 0.0
    keep_seconds = keep_bytes = None
    keep = c.get("keep")
    for item in [keep] if isinstance(keep, str) else (keep or []):
        if not isinstance(item, str):
            c.fail("keep", f'expected "7d" or "50G" (or a list of both), not {_shown(item)}')
        try:
            kind, amount = parse_keep(item)
        except ValueError as exc:
            c.fail("keep", str(exc))
            raise AssertionError from None
        if amount <= 0:
            c.fail("keep", f"keeping nothing ({item!r}) would remove every recording")
        if kind == "seconds":
            keep_seconds = amount
        else:
            keep_bytes = int(amount)
    encode = c.boolean("encode")
    c.done()
    return RecordConfig(out, segment, pre, keep_seconds, keep_bytes, encode)


_RECONNECT_KEYS = ("stall_timeout", "backoff_initial", "backoff_max", "backoff_factor", "jitter",
                   "max_attempts")  # fmt: skip


def _stream(where: str, name: str, table: object, base: Path | None) -> StreamConfig:
    from .bus import valid_name
    from .capture import Reconnect
    from .sources import to_spec
    from .sources.spec import Media, is_test_pattern

    prefix = f"streams.{_key(name)}"
    if not valid_name(name):
        raise ConfigError(
            f"{where}: {prefix}: not a stream name (1-48 letters, digits, '_' or '-', starting "
            "with a letter or digit)"
        )
    c = _Checker(where, table, prefix, base)
    source = c.get("source")
    if type(source) is int:
        source = str(source)
    if not isinstance(source, str) or not source:
        c.fail(
            "source", "missing" if source is None else f"expected a string, not {_shown(source)}"
        )
    if (base is not None and source != "-" and not source.isdigit()
            and not source.startswith("zmq://") and not is_test_pattern(source)
            and not Media(source).is_url and not os.path.isabs(source)):  # fmt: skip
        source = os.fspath(base / source)  # a file, next to the config file
    try:
        to_spec(source)  # a bad URL, a missing file: said now, not when it is opened
    except (FramebusError, ValueError, TypeError, OSError) as exc:
        c.fail("source", str(exc))
    options: dict[str, Any] = {}
    mode = c.text("mode")
    if mode is not None:
        if mode not in ("latest", "every"):
            c.fail("mode", f"expected one of latest, every, not {_shown(mode)}")
        options["mode"] = mode
    for key, low, high in (("slots", 2, 255), ("max_readers", 1, 1024)):
        value = c.integer(key, low, high)
        if value is not None:
            options[key] = value
    realtime = c.boolean("realtime")
    if realtime is not None:
        options["realtime"] = realtime
    start_timeout = c.number("start_timeout", 0.1, 3600)
    if start_timeout is not None:
        options["start_timeout"] = start_timeout
    reconnect = c.get("reconnect")
    if isinstance(reconnect, bool):
        options["reconnect"] = reconnect
    elif reconnect is not None:
        r = _Checker(where, reconnect, f"{prefix}.reconnect")
        values = {k: r.number(k, 0, 86400) for k in _RECONNECT_KEYS if k != "max_attempts"}
        attempts = r.integer("max_attempts", 1, 1_000_000)
        r.done()
        kwargs = {k: v for k, v in values.items() if v is not None}
        try:
            options["reconnect"] = Reconnect(**kwargs, max_attempts=attempts)
        except ValueError as exc:
            r.fail("", str(exc))
    push = _push(where, c.get("push"), f"{prefix}.push") if c.get("push") is not None else None
    record = (_record(where, c.get("record"), f"{prefix}.record", base)
              if c.get("record") is not None else None)  # fmt: skip
    c.done()
    return StreamConfig(name, source, options, push, record)


def parse_config(
    data: dict[str, Any], where: str = "config", base: str | os.PathLike[str] | None = None
) -> Config:
    """The configuration a parsed TOML document describes (see the module's text); raises
    ConfigError naming the key and the problem. Relative paths are relative to ``base`` (the
    file's directory), or to the working directory without one."""
    base = Path(base).absolute() if base is not None else None
    c = _Checker(where, data, "")
    streams_table = c.get("streams")
    if streams_table is None:
        c.fail("streams", "missing: at least one [streams.NAME] table")
    s = _Checker(where, streams_table, "streams")
    streams = tuple(_stream(where, name, table, base) for name, table in s.table.items())
    s.used.update(s.table)
    if not streams:
        c.fail("streams", "empty: at least one [streams.NAME] table")
    http = _http(where, c.get("http"), base) if c.get("http") is not None else None
    zmq = _zmq(where, c.get("zmq"), base) if c.get("zmq") is not None else None
    max_connections = c.integer("max_connections", 1, 1_000_000)
    c.done()
    return Config(streams, http, zmq, max_connections)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the TOML file at ``path``; ConfigError (one line) if anything is wrong."""
    where = os.fspath(path)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(where, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: {os.strerror(exc.errno or 0).lower()}") from None
    if len(raw) > MAX_FILE:
        raise ConfigError(f"{where}: larger than {MAX_FILE // 1024} KiB: not a config file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_config(data, where, Path(where).absolute().parent)
