"""Recording files: fragmented MP4 written under a temporary name and renamed when whole, and the
directory's retention.

A file is ``NAME-YYYYmmdd-HHMMSS.mmmZ.mp4`` (its first frame's time, UTC); while it is written
it is that name plus ``.part``. Each access unit becomes one fragment (:mod:`framebus._fmp4`),
written when the next one arrives (its duration is then known): a crash leaves a ``.part`` whose
complete fragments play; a finished file is renamed only after it is flushed to disk. A full
disk truncates the file to its last complete fragment, renames it (it is whole, only shorter)
and raises :class:`~framebus.DiskFull`.
"""

from __future__ import annotations

import calendar
import contextlib
import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from framebus import _fmp4
from framebus._h264 import AccessUnit, picture_size
from framebus.errors import DiskFull, RecordError

__all__ = ["SUFFIX", "Mp4File", "file_name", "parse_file_name", "prune_directory", "unique_path"]

SUFFIX = ".mp4"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NAME = re.compile(r"(?P<name>.+)-(?P<stamp>[0-9]{8}-[0-9]{6}\.[0-9]{3})Z\.mp4")


def file_name(name: str, wall: float, suffix: str = SUFFIX) -> str:
    """``NAME-YYYYmmdd-HHMMSS.mmmZ.mp4`` for a file starting at ``wall`` (seconds since epoch)."""
    ms = round(wall * 1000)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ms // 1000))
    return f"{name}-{stamp}.{ms % 1000:03d}Z{suffix}"


def parse_file_name(file: str) -> tuple[str, float] | None:
    """(stream name, start time) of a finished recording's file name, else None."""
    m = _NAME.fullmatch(file)
    if m is None:
        return None
    stamp = m.group("stamp")
    try:
        base = time.strptime(stamp[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return None
    return m.group("name"), calendar.timegm(base) + int(stamp[16:]) / 1000


@dataclass
class _Held:
    data: bytes
    key: bool
    wall: float


class Mp4File:
    """One recording being written to ``path`` (``path`` + ``.part`` until :meth:`finish`).
    It starts with keyframe ``first`` (its parameter sets make the init segment) captured at
    ``wall``. Raises RecordError if the file cannot be made, DiskFull when the disk is full."""

    def __init__(self, path: Path, first: bytes, wall: float) -> None:
        size = picture_size(first) or (0, 0)
        init = _fmp4.init_segment(AccessUnit(first, True, "", size[0], size[1]))
        if init is None:
            raise ValueError("a recording must start with a keyframe and its parameter sets")
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.start = wall
        self._sets = _parameter_sets(first)  # a keyframe with others needs a file of its own
        self._next_decode = 0  # where the next sample may start (a clock step never goes back)
        self.frames = 0
        self.bytes = 0
        self._sequence = 0
        self._held: _Held | None = _Held(first, True, wall)
        self._last_duration = 0
        try:
            self._fd = os.open(
                self.part,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        except OSError as exc:
            raise _error(exc, self.part) from None
        self._good = 0  # bytes of complete boxes written: where a full disk truncates to
        self._write(init)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            if exc.errno in _FULL:
                self._cut_short()
            raise _error(exc, self.part) from None
        self._good += len(data)
        self.bytes = self._good

    def accepts(self, data: bytes, key: bool) -> bool:
        """Whether this access unit can go in this file: a keyframe must carry the file's
        parameter sets (a new size or profile needs an init segment, so a file, of its own)."""
        sets = _parameter_sets(data)
        return not key or not sets or sets == self._sets

    def add(self, data: bytes, key: bool, wall: float) -> None:
        """Append an access unit captured at ``wall`` (writes the one before it)."""
        held = self._held
        if held is not None:
            self._emit(held, wall - held.wall)
        self._held = _Held(data, key, wall)

    def _emit(self, held: _Held, seconds: float) -> None:
        duration = round(seconds * _fmp4.TIMESCALE)
        if duration <= 0:
            duration = self._last_duration or _fmp4.TIMESCALE // 25
        self._last_duration = duration
        decode = max(self._next_decode, round((held.wall - self.start) * _fmp4.TIMESCALE))
        self._next_decode = decode + duration
        self._sequence += 1
        box = _fmp4.sample_fragment(held.data, held.key, decode, duration, self._sequence)
        if box:
            self._write(box)
            self.frames += 1

    @property
    def duration(self) -> float:
        """Seconds recorded so far (to the last access unit's capture time)."""
        return 0.0 if self._held is None else self._held.wall - self.start

    def finish(self, end: float | None = None) -> Path:
        """Write the last access unit (lasting until ``end``, else as long as the one before),
        flush the file to disk and give it its final name."""
        held, self._held = self._held, None
        if held is not None:
            seconds = (end - held.wall) if end is not None else 0.0
            self._emit(held, seconds)
        self._close(rename=True)
        return self.path

    def _cut_short(self) -> None:
        """The disk is full: keep the complete fragments, as a whole (shorter) file."""
        self._held = None
        with contextlib.suppress(OSError):  # (a truncation needs no space)
            os.ftruncate(self._fd, self._good)
        self._close(rename=self.frames > 0, full=True)

    def _close(self, *, rename: bool, full: bool = False) -> None:
        """Close; ``rename``: flush it to disk, then give it its final name. A flush that finds
        the disk full raises DiskFull and leaves the ``.part`` (whose data may not all be on
        disk) — unless the file was ``full`` already: cut at a whole fragment, it is renamed."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        failure: OSError | None = None
        try:
            if rename:
                os.fsync(fd)  # before the rename: a whole file under its final name
        except OSError as exc:
            failure = exc
        finally:
            os.close(fd)
        if failure is not None and not (full and failure.errno in _FULL):
            raise _error(failure, self.part)
        if rename:
            os.replace(self.part, self.path)
        else:
            self.part.unlink(missing_ok=True)

    def abandon(self) -> None:
        """Close without writing the held access unit; the file keeps what was written, whole."""
        self._held = None
        self._close(rename=self.frames > 0)


def _parameter_sets(data: bytes) -> frozenset[bytes]:
    """The SPS and PPS in front of a keyframe (as a set: cameras repeat them)."""
    sets = _fmp4.parameter_sets(AccessUnit(data, True, "", 0, 0))
    return frozenset() if sets is None else frozenset(sets[0] + sets[1])


def unique_path(path: Path) -> Path:
    """``path``, or ``NAME-2.mp4``, ``-3``... if it (or its ``.part``) exists already."""
    candidate, n = path, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".part").exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _error(exc: OSError, path: Path) -> RecordError:
    if exc.errno in _FULL:
        final = path.name.removesuffix(".part")
        return DiskFull(f"{path.parent}: the disk is full; recording stopped ({final} ends at "
                        "its last whole frame)")  # fmt: skip
    return RecordError(f"{path}: {os.strerror(exc.errno or 0).lower()}")


def prune_directory(
    directory: Path, name: str, *, keep_seconds: float | None, keep_bytes: int | None
) -> list[Path]:
    """Remove stream ``name``'s oldest finished recordings in ``directory`` beyond the limits:
    older than ``keep_seconds``, or past ``keep_bytes`` in all. Returns what was removed."""
    files: list[tuple[float, Path, int]] = []
    for entry in os.scandir(directory):
        parsed = parse_file_name(entry.name)
        if parsed is None or parsed[0] != name or not entry.is_file(follow_symlinks=False):
            continue
        files.append((parsed[1], Path(entry.path), entry.stat(follow_symlinks=False).st_size))
    files.sort()
    removed: list[Path] = []
    now = time.time()
    total = sum(size for _, _, size in files)
    for start, path, size in files[:-1]:  # never the newest
        too_old = keep_seconds is not None and now - start > keep_seconds
        too_big = keep_bytes is not None and total > keep_bytes
        if not (too_old or too_big):
            break
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed
