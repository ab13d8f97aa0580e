"""roboflow's multiplexer: ``streamvision.camera.utils.multiplex_videos`` (what ``inference``
batches cameras with: a decoding thread per camera, a batch of each camera's next frame),
for the many-cameras scenario ``gather``. Not a :class:`~.base.Peer`: it reads
several cameras at once, which that interface does not have.

It runs in a virtual environment of its own (``.bench-venvs/streamvision``, made on first use):
it needs the non-headless OpenCV, which cannot share an environment with
``opencv-python-headless``. In there it runs a script that reads the cameras for a while and
prints, as JSON, each batch: when it came, how many frames it had, and the send times painted
on them (``framebus.testing.read_timestamp``, loaded from its file: the environment has no
framebus).
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..common import BenchError, log

__all__ = ["PACKAGE", "multiplexer_python", "run_multiplexer"]

PACKAGE = "streamvision==0.1.4"
VENV = Path(".bench-venvs/streamvision")
BARCODE = Path(__file__).resolve().parents[2] / "src" / "framebus" / "testing" / "__init__.py"

SCRIPT = r"""
import importlib.util, json, os, sys, time
from streamvision.camera.utils import multiplex_videos

urls, warmup, seconds, barcode = json.loads(sys.argv[1]), *map(float, sys.argv[2:4]), sys.argv[4]
read = None
if barcode:
    spec = importlib.util.spec_from_file_location("barcode", barcode)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    read = module.read_timestamp
counts = [0] * len(urls)
batches = []
start, t0 = time.monotonic(), None
for frames in multiplex_videos(videos=urls, should_stop=lambda: False):
    now = time.monotonic()
    if t0 is None and now - start >= warmup:
        t0, cpu0 = now, time.process_time()
        print("MEASURING", flush=True)
    if t0 is None:
        continue
    for f in frames:
        counts[f.source_id] += 1
    sent = [read(f.image) if read else None for f in frames]
    batches.append([now - t0, len(frames), time.time(), sent])
    if now - t0 >= seconds:
        break
dt, cpu = time.monotonic() - t0, time.process_time() - cpu0
print(json.dumps({"seconds": dt, "fps": [c / dt for c in counts], "cpu": cpu / dt,
                  "batches": batches}), flush=True)
os._exit(0)  # (its decoding threads are not ours to join)
"""


def multiplexer_python() -> Path | None:
    """The multiplexer's interpreter, made on first use; None where it does not install."""
    python = VENV / "bin" / "python"
    installed = VENV / "installed"  # (written last: a half-made environment is made again)
    if installed.exists() and installed.read_text() == PACKAGE:
        return python
    log(f"installing {PACKAGE} into {VENV} (roboflow's multiplexer, a peer)")
    shutil.rmtree(VENV, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE], check=True,
                       timeout=900, capture_output=True)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"{PACKAGE} does not install here: {exc}")
        return None
    installed.write_text(PACKAGE)
    return python


def run_multiplexer(
    python: Path,
    urls: list[str],
    warmup: float,
    seconds: float,
    *,
    barcodes: bool = False,
    unplug: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Read ``urls`` with the multiplexer for ``seconds`` after ``warmup``; ``unplug`` is
    called half-way through. Returns seconds, fps (per camera), cpu (cores, the whole
    process), and batches: [time since the start, frames, time.time() when it came, the send
    times painted on its frames (None each where unreadable, or without ``barcodes``)]."""
    cmd = [str(python), "-c", SCRIPT, json.dumps(urls), str(warmup), str(seconds),
           str(BARCODE) if barcodes else ""]  # fmt: skip
    limit = warmup + seconds + 90
    with (
        tempfile.TemporaryFile("w+") as errors,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True) as p,
    ):
        try:
            assert p.stdout is not None
            if unplug is not None:  # half-way through the measuring, which it says it starts
                ready, _, _ = select.select([p.stdout], [], [], limit)
                if ready and p.stdout.readline().startswith("MEASURING"):
                    time.sleep(seconds / 2)
                    unplug()
            out, _ = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the multiplexer gave nothing in {limit:.0f} s") from None
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        errors.seek(0)
        err = errors.read()
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        raise BenchError(f"the multiplexer failed: {err.strip()[-400:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
