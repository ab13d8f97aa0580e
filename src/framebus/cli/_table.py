"""The stream table that ``serve`` and ``ls`` print."""

from __future__ import annotations

from ..stats import StreamStats

__all__ = ["table"]

_HEAD = ("NAME", "STATE", "MODE", "FPS", "SIZE", "READERS", "CAPTURED", "SKIPPED", "AGE", "SOURCE")


def _fmt_age(age: float | None) -> str:
    return "-" if age is None else f"{age * 1000:.0f}ms" if age < 10 else f"{age:.0f}s"


def table(stats: list[StreamStats]) -> list[str]:
    """A header line and one line per stream, columns aligned (the source column last)."""
    rows = [_HEAD] + [
        (
            s.name,
            s.state,
            s.mode,
            f"{s.capture_fps:.1f}",
            f"{s.width}x{s.height}" if s.width else "-",
            str(s.readers),
            str(s.captured),
            str(s.skipped),
            _fmt_age(s.last_frame_age if s.state == "live" else None),
            s.source + (f"  ({s.error})" if s.error else ""),
        )
        for s in stats
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD) - 1)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]
