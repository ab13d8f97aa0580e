"""What a sampling run is asked (:class:`SampleOptions`, checked by :func:`check_options`) and
what it did (:class:`SampleSummary`, told to ``progress`` as it goes)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..sinks.disk import (
    DEFAULT_TEMPLATE,
    IMAGE_FORMATS,
    ImageFormat,
    ImageWriter,
    NameTemplate,
    check_quality,
    default_quality,
)

__all__ = ["Run", "SampleOptions", "SampleSummary", "check_options"]

# how often progress() is called at most while frames flow (and once at the end)
_PROGRESS_PERIOD = 0.2


@dataclass(frozen=True)
class SampleSummary:
    """What a sampling run did so far (progress) or in all (the result)."""

    source: str
    """The file, stream name or source sampled (credentials never appear)."""
    kind: Literal["file", "stream"]
    """A file decoded here, or a stream read from its ring (named, or published for the run)."""
    out: str
    decoded: int
    """Frames of a file the run went over (decoded, or passed over: see ``undecoded``), or
    frames looked at in the ring (streams)."""
    written: int
    """Image files written."""
    skipped_existing: int
    """Frames kept whose file was already there (``resume``)."""
    elapsed: float
    """Seconds since the run started."""
    total: int | None = None
    """Frames a file run will decode (an estimate from the container; None if unknown), or
    for a stream with ``max``, the files it will keep."""
    interrupted: bool = False
    """Ctrl-C (KeyboardInterrupt) stopped the run; the exception goes on after this record."""
    done: bool = False
    """The last record of the run."""
    undecoded: int = 0
    """Frames of a file the run went over without decoding them: neither kept nor referenced
    by a frame that is (``decoded`` counts them too)."""
    failed: int = 0
    """Kept frames of a file that did not decode (damaged packets): no file was written for
    them, and the run is a failure (the command line exits with status 1)."""

    @property
    def kept(self) -> int:
        return self.written + self.skipped_existing

    def line(self) -> str:
        """A one-line summary, for the end of a run."""
        rate = self.decoded / self.elapsed if self.elapsed > 0 else 0.0
        what = "interrupted" if self.interrupted else "done"
        skipped = f", {self.skipped_existing} already there" if self.skipped_existing else ""
        undecoded = f" ({self.undecoded} not needed, not decoded)" if self.undecoded else ""
        failed = (
            f"; {self.failed} kept frame(s) did not decode (damaged packets): no file for them"
            if self.failed
            else ""
        )
        return (
            f"{what}: {self.written} files written{skipped} into {self.out} from "
            f"{self.decoded} frames{undecoded} in {self.elapsed:.1f} s ({rate:.0f} frames/s)"
            f"{failed}"
        )


@dataclass(frozen=True)
class SampleOptions:
    """Checked options of one run (see :func:`check_options`)."""

    every: int | None
    interval: float | None
    format: ImageFormat
    quality: int
    max: int | None
    start: float | None
    end: float | None
    template: NameTemplate


def _positive(value: float | None, what: str, *, zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}")
    ok = value >= 0 if zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{what} must be {bound} seconds, not {value:g}")
    return float(value)


def check_options(
    *,
    every: int | None = None,
    interval: float | None = None,
    format: str = "jpg",
    quality: int | None = None,
    max: int | None = None,
    start: float | None = None,
    end: float | None = None,
    template: str = DEFAULT_TEMPLATE,
) -> SampleOptions:
    """Check the options of :func:`sample` without touching any file: a one-line
    ``ValueError`` for the first wrong one."""
    if (every is None) == (interval is None):
        raise ValueError("give exactly one of every (frames) or interval (seconds)")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a whole number of frames >= 1, not {every!r}")
    interval = _positive(interval, "interval")
    if format == "jpeg":
        format = "jpg"
    if format not in IMAGE_FORMATS:
        raise ValueError(f"format must be jpg or png, not {format!r}")
    fmt: ImageFormat = "jpg" if format == "jpg" else "png"
    q = default_quality(fmt) if quality is None else quality
    check_quality(fmt, q)
    if max is not None and (isinstance(max, bool) or not isinstance(max, int) or max < 1):
        raise ValueError(f"max must be a whole number of files >= 1, not {max!r}")
    start = _positive(start, "start", zero=True)
    end = _positive(end, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end:g} s) must be after start ({start:g} s)")
    return SampleOptions(every, interval, fmt, q, max, start, end, NameTemplate(template, fmt))


class Run:
    """The counters of one run, and the rate-limited calls of ``progress``."""

    def __init__(
        self,
        label: str,
        kind: Literal["file", "stream"],
        out: Path,
        progress: Callable[[SampleSummary], None] | None,
    ) -> None:
        self.label = label
        self.kind: Literal["file", "stream"] = kind
        self.out = str(out)
        self.progress = progress
        self.t0 = time.monotonic()
        self.last_report = -math.inf
        self.decoded = 0
        self.skipped = 0
        self.undecoded = 0
        self.failed = 0
        self.total: int | None = None

    def summary(self, written: int, **kw: Any) -> SampleSummary:
        elapsed = time.monotonic() - self.t0
        return SampleSummary(
            self.label,
            self.kind,
            self.out,
            self.decoded,
            written,
            self.skipped,
            elapsed,
            self.total,
            undecoded=self.undecoded,
            failed=self.failed,
            **kw,
        )

    def tick(self, writer: ImageWriter) -> None:
        """Tell ``progress``, if the last time was long enough ago (cheap otherwise)."""
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last_report >= _PROGRESS_PERIOD:
            self.last_report = now
            self.progress(self.summary(writer.written))

    def finish(self, writer: ImageWriter, *, interrupted: bool = False) -> SampleSummary:
        summary = self.summary(writer.written, interrupted=interrupted, done=True)
        if self.progress is not None:
            self.progress(summary)
        return summary
