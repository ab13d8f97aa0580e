"""No torn frames, ever: every byte of source frame n is n % 256, checked by several processes.

The suite runs a short version. For a long run (millions of frames):
    FRAMEBUS_STRESS_SECONDS=600 .venv/bin/python -m pytest tests/bus/test_integrity.py -s
"""

from __future__ import annotations

import json
import os

import pytest

import framebus
from conftest import Procs

SECONDS = float(os.environ.get("FRAMEBUS_STRESS_SECONDS", "3"))


@pytest.mark.timeout(SECONDS * 3 + 120)
@pytest.mark.parametrize("mode", ["latest", "every"])
@pytest.mark.parametrize("size", [(32, 24), (640, 480)])
def test_no_torn_frames(mode: str, size: tuple[int, int], stream_name: str, procs: Procs) -> None:
    # as fast as the machine goes, few slots: the writer laps readers constantly
    pattern = framebus.TestPattern(*size, fps=None, pattern="counter")
    with framebus.publish(stream_name, pattern, mode=mode, slots=3) as pub:  # type: ignore[arg-type]
        flags = ["--every"] if mode == "every" else []
        readers = [
            procs.python("reader.py", stream_name, str(SECONDS), *flags),
            procs.python("reader.py", stream_name, str(SECONDS), "--copy", *flags),
            procs.python("reader.py", stream_name, str(SECONDS), "--copy", *flags),
        ]
        results = []
        for p in readers:
            out, err = p.communicate(timeout=SECONDS * 3 + 60)
            assert p.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        captured = pub.stats().captured
    checked = sum(r["frames"] for r in results)
    print(f"\n{mode} {size}: captured {captured}, frames checked {checked}: {results}")
    assert all(r["torn"] == 0 for r in results)
    assert all(r["frames"] > 0 for r in results)
    if mode == "every":
        assert all(r["gaps"] == 0 for r in results)
