"""Record a stream to MP4: continuous segments and clips with pre-roll — :func:`record` (and
``framebus record NAME --out DIR``).

The camera's H.264 is copied, never decoded or encoded (framebus's RTSP client hands out its
access units); any other stream is encoded once. Each file is fragmented MP4 under a temporary
name until it is whole (:mod:`.files`), so a crash or a full disk never leaves a broken file
under a final name.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from framebus import _exit
from framebus.errors import DiskFull, FramebusError, RecordError
from framebus.outputs import StatusFile

from .files import Mp4File, file_name, prune_directory, unique_path
from .units import GAP, PreRoll, Unit, Units

__all__ = ["Clip", "Recorder", "RecorderStats", "record"]

log = logging.getLogger("framebus.record")
_GAP_FRAMES = 10  # a pause of this many of the stream's intervals (at least 2 s) ends a segment


@dataclass(frozen=True)
class RecorderStats:
    """What a recorder is doing and has done."""

    name: str
    state: str
    """``waiting`` (for the stream: see :attr:`source`), ``recording``, ``stopped``, or
    ``failed`` (see :attr:`error`: the disk is full, the directory cannot be written)."""
    source: str
    """``passthrough`` (the camera's H.264, copied), ``encoded``, or why it waits."""
    segments: int
    """Segments finished (renamed to their final name)."""
    clips: int
    """Clips finished."""
    frames: int
    """Access units written, into segments and clips."""
    bytes_written: int
    removed: int
    """Old segments removed to stay within ``keep_seconds`` / ``keep_bytes``."""
    current: str
    """The file being written now ("" if none), with ``.part`` until it is finished."""
    error: str


class Clip:
    """A clip being saved: :meth:`wait` for its file. The file is ``NAME-TIME.mp4`` in the
    recorder's clip directory, starting at the keyframe at or before "now - before"."""

    def __init__(self, requested: float, before: float, after: float) -> None:
        self.requested, self.before, self.after = requested, before, after
        self.path: Path | None = None
        """The clip's final path, known once it has started."""
        self.error: FramebusError | None = None
        self._done = threading.Event()
        self._file: Mp4File | None = None
        self._last_wall = math.nan
        self._start = requested

    @property
    def until(self) -> float:
        """When it ends: ``after`` seconds after it was asked for — or, when nothing before
        could be had (no pre-roll), after its first frame (the next keyframe)."""
        return self._start + self.after

    def wait(self, timeout: float | None = None) -> Path:
        """The clip's file once it is whole. Raises the recording's error, or TimeoutError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the clip is not finished after {timeout} s")
        if self.error is not None:
            raise self.error
        if self.path is None:
            raise RecordError("the clip has no frames: the stream gave none in its time")
        return self.path

    @property
    def done(self) -> bool:
        return self._done.is_set()


class Recorder:
    """Records stream ``name`` into ``directory`` from a thread of this process; see
    :func:`record`."""

    def __init__(
        self,
        name: str,
        directory: str | os.PathLike[str],
        *,
        segment: float | None = 60.0,
        pre: float = 0.0,
        keep_seconds: float | None = None,
        keep_bytes: int | None = None,
        clip_directory: str | os.PathLike[str] | None = None,
        encode: bool | None = None,
    ) -> None:
        if segment is not None and not 1 <= segment <= 86400:
            raise ValueError(f"segment must be 1..86400 seconds, not {segment}")
        if not 0 <= pre <= 600:
            raise ValueError(f"pre must be 0..600 seconds, not {pre}")
        self.name = name
        self.directory = Path(directory)
        self.clip_directory = Path(clip_directory) if clip_directory else self.directory
        for d in {self.directory, self.clip_directory}:
            if not d.is_dir():
                raise RecordError(f"{d}: not a directory")
            if not os.access(d, os.W_OK | os.X_OK):
                raise RecordError(f"{d}: cannot write there")
        self.segment, self.pre = segment, pre
        self.keep_seconds, self.keep_bytes = keep_seconds, keep_bytes
        self._encode = encode
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._clips_wanted: list[Clip] = []
        self._counts = {"segments": 0, "clips": 0, "frames": 0, "bytes_written": 0, "removed": 0}
        self._state, self._source, self._current, self._error = "waiting", "starting", "", ""
        self._status = StatusFile("record", name, str(self.directory))
        self.failure: FramebusError | None = None
        """Why the recorder stopped by itself (the disk is full...), else None."""
        self._thread = threading.Thread(target=self._run, name=f"framebus-record-{name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        _exit.close_at_exit(self)

    # -- the API ------------------------------------------------------------------------------

    def clip(self, before: float = 5.0, after: float = 10.0) -> Clip:
        """Save the last ``before`` seconds (from the pre-roll cache: at most ``pre``, from the
        keyframe at or before) and the next ``after`` seconds into a file of their own."""
        if not 0 <= before <= 600 or not 0 <= after <= 86400:
            raise ValueError("before must be 0..600 s and after 0..86400 s")
        clip = Clip(time.time(), before, after)
        with self._lock:
            if self._state in ("stopped", "failed"):
                raise RecordError(f"recorder of {self.name!r} is {self._state}: {self._error}")
            self._clips_wanted.append(clip)
        return clip

    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                self.name, self._state, self._source, current=self._current, error=self._error,
                **self._counts,
            )  # fmt: skip

    def _set(self, **changes: str) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, "_" + key, value)
        s = self.stats()
        detail = s.source + (f" -> {s.current}" if s.current else "")
        self._status.update(s.state, detail, s.error, dict(self._counts))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        units = Units(self.name, encode=self._encode)
        self._units = units
        self._file: Mp4File | None = None
        self._clips: list[Clip] = []
        self._cache = PreRoll(self.pre)
        self._last: Unit | None = None
        self._interval = 0.04
        try:
            while not self._stop.is_set():
                unit = units.next(0.2)
                self._set(source=units.mode if units.mode != "waiting" else units.reason)
                self._start_clips()
                if unit is None:
                    continue
                if unit is GAP:
                    self._end_all()
                    self._cache.add(GAP)
                    continue
                self._take(unit)
        except FramebusError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: say so, do not die silently
            log.exception("recording %s stopped", self.name)
            self._fail(RecordError(f"{type(exc).__name__}: {exc}"))
        else:
            try:
                self._end_all()
            except FramebusError as exc:
                self._fail(exc)
            else:
                self._set(state="stopped")
        finally:
            units.close()
            self._set(current="")
            with self._lock:
                wanted, self._clips_wanted = self._clips_wanted, []
            for clip in wanted:
                clip._done.set()
            self._status.close()

    def _take(self, unit: Unit) -> None:
        last = self._last
        if last is not None and unit.wall > last.wall:
            gap = unit.wall - last.wall
            if gap > max(2.0, _GAP_FRAMES * self._interval):  # a pause: end what is open
                self._end_all(at=last.wall + self._interval)
                self._cache.add(GAP)
            else:
                self._interval = 0.9 * self._interval + 0.1 * gap
        self._last = unit
        if self.pre:
            self._cache.add(unit)
        self._feed_clips(unit)
        if self.segment is None:
            self._set(state="recording")
            return
        file = self._file
        due = self.segment - self._interval / 2  # (a keyframe a little early is on time)
        if (
            file is not None
            and unit.key
            and (unit.wall - file.start >= due or not file.accepts(unit.data, unit.key))
        ):
            self._finish_segment(end=unit.wall)
            file = None
        if file is None:
            if not unit.key:
                self._units.want_key()
                return
            path = self.directory / file_name(self.name, unit.wall)
            self._file = file = Mp4File(path, unit.data, unit.wall)
            self._set(state="recording", current=file.part.name)
            return
        file.add(unit.data, unit.key, unit.wall)
        self._count("frames")
        if unit.wall - file.start >= self.segment - self._interval:
            self._units.want_key()  # (an encoded stream: the next frame starts the next one)

    def _finish_segment(self, end: float | None) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        seconds = file.duration
        path = file.finish(end)
        self._count("frames")  # (the last one, held until now)
        self._count("bytes_written", file.bytes)
        self._count("segments")
        self._set(current="")
        log.info("recorded %s (%.1f s, %d frames)", path.name, seconds, file.frames)
        if self.keep_seconds is not None or self.keep_bytes is not None:
            removed = prune_directory(self.directory, self.name, keep_seconds=self.keep_seconds,
                                      keep_bytes=self.keep_bytes)  # fmt: skip
            if removed:
                self._count("removed", len(removed))

    # -- clips --------------------------------------------------------------------------------

    def _start_clips(self) -> None:
        with self._lock:
            wanted, self._clips_wanted = self._clips_wanted, []
        for clip in wanted:
            units = self._cache.since(clip.requested - clip.before)
            self._clips.append(clip)
            if not units or not units[0].key:
                self._units.want_key()  # nothing cached: it starts at the next keyframe
                continue
            self._open_clip(clip, units[0])
            for u in units[1:]:
                if clip._file is None:
                    break
                if not clip._file.accepts(u.data, u.key):  # new parameter sets: it ends
                    self._finish_clip(clip, end=u.wall)
                    break
                self._clip_add(clip, u)

    def _open_clip(self, clip: Clip, first: Unit) -> None:
        path = unique_path(self.clip_directory / file_name(self.name + "-clip", first.wall))
        try:
            clip._file = Mp4File(path, first.data, first.wall)
        except DiskFull:
            raise
        except RecordError as exc:  # a clip that cannot be made fails alone
            if clip in self._clips:
                self._clips.remove(clip)
            clip.error = exc
            clip._done.set()
            return
        clip.path, clip._last_wall = path, first.wall

    def _clip_add(self, clip: Clip, unit: Unit) -> None:
        assert clip._file is not None
        clip._file.add(unit.data, unit.key, unit.wall)
        clip._last_wall = unit.wall
        self._count("frames")

    def _feed_clips(self, unit: Unit) -> None:
        for clip in list(self._clips):
            if clip._file is None:
                if unit.key:
                    clip._start = max(clip._start, unit.wall)  # (after, from its first frame)
                    self._open_clip(clip, unit)
                continue
            if unit.wall > clip.until or not clip._file.accepts(unit.data, unit.key):
                self._finish_clip(clip, end=unit.wall)  # (new parameter sets end it early)
            elif unit.wall > clip._last_wall:
                self._clip_add(clip, unit)

    def _finish_clip(self, clip: Clip, end: float | None) -> None:
        if clip not in self._clips:
            return
        self._clips.remove(clip)
        file = clip._file
        if file is not None:
            seconds = file.duration
            file.finish(end)
            self._count("bytes_written", file.bytes)
            self._count("clips")
            log.info("clip %s saved (%.1f s)", file.path.name, seconds)
        clip._done.set()

    def _end_all(self, at: float | None = None) -> None:
        self._finish_segment(end=at)
        for clip in list(self._clips):
            self._finish_clip(clip, end=at)
        self._last = None

    def _fail(self, exc: FramebusError) -> None:
        log.error("recording %s stopped: %s", self.name, exc)
        self.failure = exc
        self._set(state="failed", error=str(exc))
        self._abandon_all(exc)

    def _abandon_all(self, exc: FramebusError) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.abandon()
        for clip in self._clips:
            if clip._file is not None:
                clip._file.abandon()
            clip.error = exc
            clip._done.set()
        self._clips = []

    # -- the end ------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop: the current segment and clips are finished (to the last frame) and renamed."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        _exit.forget(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the recorder stops by itself (it failed); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def record(
    name: str,
    directory: str | os.PathLike[str],
    *,
    segment: float | None = 60.0,
    pre: float = 0.0,
    keep_seconds: float | None = None,
    keep_bytes: int | None = None,
    clip_directory: str | os.PathLike[str] | None = None,
    encode: bool | None = None,
) -> Recorder:
    """Record local stream ``name`` into ``directory`` until :meth:`Recorder.close` (or
    ``with``), from a thread of this process.

    ``segment``: continuous MP4 files of about that many seconds each (each begins at a
    keyframe, so with the camera's H.264 a segment lasts until the first keyframe after
    ``segment`` seconds), named ``NAME-YYYYmmdd-HHMMSS.mmmZ.mp4`` by their first frame's time
    (UTC); None records no segments (clips only). ``pre``: seconds of pre-roll kept for
    :meth:`Recorder.clip` (from a keyframe, at most 64 MiB). ``keep_seconds`` / ``keep_bytes``:
    the stream's oldest segments in ``directory`` are removed past that age or total size.
    Clips go to ``clip_directory`` (default ``directory``) as ``NAME-clip-TIME.mp4``.

    The camera's H.264 is copied, never re-encoded; any other stream (and an H.265 camera) is
    encoded once (libx264, a keyframe every 2 s, every new frame at its capture time). A pause
    in the stream (2 s, or 10 of its intervals) ends the segment; recording resumes at the next
    keyframe. A full disk stops the recorder (state ``failed``, :class:`~framebus.DiskFull`):
    the file being written is cut to its last whole frame and given its final name.
    """
    return Recorder(
        name, directory, segment=segment, pre=pre, keep_seconds=keep_seconds,
        keep_bytes=keep_bytes, clip_directory=clip_directory, encode=encode,
    )  # fmt: skip
