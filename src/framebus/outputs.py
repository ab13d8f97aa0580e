"""What the pushes and recorders of this machine are doing, for ``framebus ls`` and the web's
``/api/streams``: :func:`list_outputs`.

Each push or recorder (a thread in some process) keeps a small JSON file in ``/dev/shm``,
``framebus-out.<pid>.<start>.<serial>``, rewritten (by rename: never half-written) when its state
changes and at most every :data:`PERIOD` seconds otherwise, removed when it stops. A file whose
process is gone (``pid`` and its start time) is ignored, and removed by :func:`prune_outputs`.
The files are untrusted input: read without following links, only this user's, at most
:data:`MAX_BYTES`, parsed as JSON (never unpickled) and checked field by field.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field

from . import _platform as plat

__all__ = ["MAX_BYTES", "PERIOD", "OutputStatus", "StatusFile", "list_outputs", "prune_outputs"]

PREFIX = "framebus-out."
MAX_BYTES = 4096
PERIOD = 1.0
_MAX_TEXT = 300
_MAX_COUNTS = 16
_serial = itertools.count()
_KINDS = ("push", "record")


@dataclass(frozen=True)
class OutputStatus:
    """One push or recorder."""

    kind: str
    """``push`` or ``record``."""
    stream: str
    target: str
    """The server's URL (without credentials) or the recording's directory."""
    state: str
    detail: str
    """What it sends or records now (``tcp passthrough``, ``encoded``, why it waits...)."""
    error: str
    pid: int
    counts: dict[str, int] = field(default_factory=dict)


def _text(value: object) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or not value.isprintable():
        raise ValueError("bad text")
    return value


def _parse(data: bytes, pid: int) -> OutputStatus:
    obj = json.loads(data)
    if not isinstance(obj, dict) or set(obj) != {"kind", "stream", "target", "state", "detail",
                                                 "error", "counts"}:  # fmt: skip
        raise ValueError("bad fields")
    kind = _text(obj["kind"])
    if kind not in _KINDS:
        raise ValueError("bad kind")
    counts = obj["counts"]
    if not isinstance(counts, dict) or len(counts) > _MAX_COUNTS:
        raise ValueError("bad counts")
    clean: dict[str, int] = {}
    for key, value in counts.items():
        if type(value) is not int or not 0 <= value < 1 << 63:
            raise ValueError("bad count")
        clean[_text(key)] = value
    return OutputStatus(kind, _text(obj["stream"]), _text(obj["target"]), _text(obj["state"]),
                        _text(obj["detail"]), _text(obj["error"]), pid, clean)  # fmt: skip


def _owner(name: str) -> tuple[int, int] | None:
    """(pid, start time) a file name claims, or None if it is not one of ours."""
    parts = name[len(PREFIX) :].removesuffix(".new").split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) < 20 for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _files() -> list[str]:
    try:
        return [n for n in os.listdir(plat.SHM_DIR) if n.startswith(PREFIX)]
    except OSError:
        return []


def list_outputs(stream: str | None = None) -> list[OutputStatus]:
    """The pushes and recorders of this user's processes on this machine (of ``stream`` only,
    if given); files that are stale, not this user's or not valid are left out."""
    out = []
    uid = os.getuid()
    for name in sorted(_files()):
        owner = _owner(name)
        if owner is None or name.endswith(".new") or not plat.process_alive(*owner):
            continue
        try:
            fd = os.open(os.path.join(plat.SHM_DIR, name), os.O_RDONLY | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC)  # fmt: skip
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_uid != uid or not stat.S_ISREG(st.st_mode):
                continue
            data = os.read(fd, MAX_BYTES + 1)
        except OSError:
            continue
        finally:
            os.close(fd)
        if len(data) > MAX_BYTES:
            continue
        try:
            status = _parse(data, owner[0])
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if stream is None or status.stream == stream:
            out.append(status)
    return out


def prune_outputs() -> int:
    """Remove the status files of processes that are gone (this user's); returns how many."""
    removed = 0
    for name in _files():
        owner = _owner(name)
        if owner is not None and not plat.process_alive(*owner):
            with contextlib.suppress(OSError):
                path = os.path.join(plat.SHM_DIR, name)
                if os.lstat(path).st_uid == os.getuid():
                    os.unlink(path)
                    removed += 1
    return removed


class StatusFile:
    """The status file of one push or recorder of this process (see the module's text)."""

    def __init__(self, kind: str, stream: str, target: str) -> None:
        pid = os.getpid()
        start = plat.process_start_time(pid) or 0
        self.name = f"{PREFIX}{pid}.{start}.{next(_serial)}"
        self._fixed = {"kind": kind, "stream": stream[:_MAX_TEXT], "target": target[:_MAX_TEXT]}
        self._last: tuple[str, str, str] | None = None
        self._written = 0.0
        self._lock = threading.Lock()
        self._closed = False

    def update(self, state: str, detail: str, error: str, counts: dict[str, int]) -> None:
        """Say what is going on: written now if the state, detail or error changed, else at
        most every :data:`PERIOD` seconds."""
        key = (state, detail, error)
        now = time.monotonic()
        with self._lock:
            if self._closed or (key == self._last and now - self._written < PERIOD):
                return
            self._last, self._written = key, now
            clean = "".join(c if c.isprintable() else "?" for c in error)[:_MAX_TEXT]
            data = json.dumps({**self._fixed, "state": state, "detail": detail[:_MAX_TEXT],
                               "error": clean, "counts": counts}).encode()  # fmt: skip
            path = os.path.join(plat.SHM_DIR, self.name)
            tmp = path + ".new"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)  # fmt: skip
                try:
                    os.write(fd, data[:MAX_BYTES])
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except OSError:
                pass  # /dev/shm full or gone: the status is a courtesy, the work goes on

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for suffix in ("", ".new"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(plat.SHM_DIR, self.name + suffix))
