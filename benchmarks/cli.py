"""The command line: parse options, run the chosen scenarios, write ``results.md`` and plots."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from . import (
    age,
    capture_cpu,
    fanout,
    gather,
    idle,
    memory,
    network,
    open_time,
    pipe,
    push,
    restarts,
    rtsp,
    sampling,
    scale,
    throughput,
    web,
    web_h264,
    writer,
)
from .common import (
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    Size,
    busy_cores,
    exit_on_sigterm,
    leftover_segments,
    log,
)
from .peers import PEERS
from .peers.web_ import WEB_PEERS
from .peers.zmq_ import NET_PEERS

__all__ = ["SCENARIOS", "main"]

SCENARIOS: dict[str, Callable[[Config], Section]] = {
    "age": age.run,
    "throughput": throughput.run,
    "fanout": fanout.run,
    "idle": idle.run,
    "memory": memory.run,
    "rtsp": rtsp.run,
    "capture_cpu": capture_cpu.run,
    "restarts": restarts.run,
    "web": web.run,
    "web_h264": web_h264.run,
    "push": push.run,
    "gather": gather.run,
    "scale": scale.run,
    "network": network.run,
    "sampling": sampling.run,
    "pipe": pipe.run,
    "writer": writer.run,
    "open": open_time.run,
}

DEFAULT_SIZES = "640x480,1280x720,1920x1080"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure framebus side by side with its peers; writes results.md and PNGs.",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list of scenarios (default: all: {','.join(SCENARIOS)})",
    )
    ap.add_argument(
        "--sizes",
        default=None,
        help=f"frame sizes WxH, comma list (default {DEFAULT_SIZES}; --quick: 640x480). "
        "throughput runs each size; the other scenarios use the largest",
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per measurement (default 6; --quick: 1). throughput measures duration/3 "
        "per point, idle's CPU window is duration/2; rtsp runs each workload this long, "
        "capture_cpu measures each process this long",
    )
    ap.add_argument(
        "--quick", action="store_true", help="a short smoke run (whole run under a minute)"
    )
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
    )
    ap.add_argument(
        "--peers",
        default=None,
        help="comma list of peer keys to include (framebus, and np.copyto in throughput, "
        "are always included as references); default: all registered",
    )
    ap.add_argument(
        "--sleep-jitter",
        type=float,
        default=1.0,
        help="age: spread each consumer sleep uniformly over this many frame intervals, "
        "centred on k intervals (default 1: k +- 0.5 intervals, so every read lands at a "
        "random phase of the source; 0 = exact multiples, which lock the phase of the first "
        "read in for the whole run)",
    )
    ap.add_argument(
        "--restarts",
        type=int,
        default=None,
        help="restarts: how many times the RTSP server is killed and restarted (default 20; "
        "--quick: 3)",
    )
    ap.add_argument("--list", action="store_true", help="list scenarios and peers, then exit")
    return ap.parse_args(argv)


def _config(ns: argparse.Namespace) -> Config:
    scenarios = tuple(s.strip() for s in ns.scenarios.split(",") if s.strip())
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    sizes_text = ns.sizes or ("640x480" if ns.quick else DEFAULT_SIZES)
    try:
        sizes = tuple(Size.parse(s.strip()) for s in sizes_text.split(",") if s.strip())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if not sizes:
        raise SystemExit("--sizes is empty")
    duration = ns.duration if ns.duration is not None else (1.0 if ns.quick else 6.0)
    if not duration > 0:
        raise SystemExit("--duration must be positive")
    if not 0 <= ns.sleep_jitter <= 2:
        raise SystemExit("--sleep-jitter must be between 0 and 2 frame intervals")
    restarts_n = ns.restarts if ns.restarts is not None else (3 if ns.quick else 20)
    if restarts_n < 1:
        raise SystemExit("--restarts must be at least 1")
    peers = None
    if ns.peers:
        peers = tuple(p.strip() for p in ns.peers.split(",") if p.strip())
        bad = [p for p in peers if p not in PEERS and p not in WEB_PEERS and p not in NET_PEERS]
        if bad:
            known = ", ".join([*PEERS, *WEB_PEERS, *NET_PEERS])
            raise SystemExit(f"unknown peer(s) {bad}; registered: {known}")
    return Config(
        scenarios=scenarios,
        sizes=sizes,
        duration=duration,
        quick=ns.quick,
        out=ns.out,
        peers=peers,
        fanout_readers=(1, 2) if ns.quick else (1, 2, 4, 8),
        slowness=(1, 10) if ns.quick else (1, 3, 10),
        sleep_jitter=ns.sleep_jitter,
        restarts=restarts_n,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    dists = ("framebus", "opencv-python-headless", "av", "vidgear", "matplotlib", "psutil")
    for dist in (*dists, "pyzmq", "imagezmq"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def _framebus_source() -> str:
    """Which framebus was measured: its folder, and its git commit if it is a checkout."""
    import framebus

    pkg = Path(framebus.__file__).resolve().parent
    text = f"framebus imported from `{pkg}`"
    try:
        head = subprocess.run(
            ["git", "-C", str(pkg), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(pkg), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return text + " (not a git checkout)"
    state = "with uncommitted changes in it" if dirty else "clean"
    return text + f", git `{head}`, {state}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_BUSY_WARNING = 0.05  # cores used by other processes during the run worth a warning


class _OtherLoad:
    """CPU the rest of the machine used during the run: machine busy time minus this process
    tree's (every helper process is reaped by then, so ``RUSAGE_CHILDREN`` has them all)."""

    def __init__(self) -> None:
        self.sys0 = psutil.cpu_times()
        self.own0 = self._own()
        self.t0 = time.perf_counter()

    @staticmethod
    def _own() -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            total += r.ru_utime + r.ru_stime
        return total

    def finish(self) -> float:
        """Average cores used by other processes (0.0 = the machine was ours alone)."""
        wall = time.perf_counter() - self.t0
        busy = busy_cores(self.sys0, psutil.cpu_times()) * wall
        return max(0.0, busy - (self._own() - self.own0)) / wall


def _report(
    cfg: Config,
    sections: list[Section],
    wall: float,
    argv: list[str],
    leftovers: list[str],
    others: float,
) -> str:
    mem = psutil.virtual_memory().total / 2**30
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    lines = [
        "# framebus benchmarks",
        "",
        f"- command: `{shlex.join(['python', '-m', 'benchmarks', *argv])}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- wall time of the whole run: {wall:.0f} s",
        f"- machine: {_cpu_model()}, {psutil.cpu_count()} logical CPUs, {mem:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- versions: {versions}",
        f"- {_framebus_source()}",
        f"- settings: scenarios {', '.join(cfg.scenarios)}; sizes "
        f"{', '.join(str(s) for s in cfg.sizes)} (single-size scenarios: {cfg.frame_size}; "
        f"RTSP scenarios: {cfg.rtsp_size} @ {cfg.rtsp_fps} fps); duration {cfg.duration:g} s "
        f"per measurement; restarts {cfg.restarts}; quick={cfg.quick}",
        "- every consumer runs in its own process started with multiprocessing 'spawn'; "
        "frame sources are paced like cameras (on schedule, no bursts after a stall)",
        f"- shared memory of this run left in /dev/shm: {', '.join(leftovers) or 'none'}",
        f"- CPU used by other processes during the run: {others * 100:.0f}% of one core on "
        "average" + (" (**the results are disturbed**)" if others > _BUSY_WARNING else ""),
        "",
    ]
    for i, sec in enumerate(sections, 1):
        lines += [f"## {i}. {sec.title} (`{sec.key}`)", "", sec.markdown.rstrip(), ""]
        if sec.errors:
            lines += ["Failed measurements:", ""]
            lines += [f"- `{e.splitlines()[0]}`" for e in sec.errors]
            lines.append("")
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = _parse_args(argv)
    if ns.list:
        print("scenarios:", ", ".join(SCENARIOS))
        for peer in PEERS.values():
            print(f"peer {peer.key:16} {peer.label:34} in: {', '.join(sorted(peer.scenarios))}")
        for wp in WEB_PEERS.values():
            print(f"peer {wp.key:16} {wp.label:34} in: web")
        for np_ in NET_PEERS.values():
            print(f"peer {np_.key:16} {np_.label:34} in: network")
        return 0
    cfg = _config(ns)
    cfg.out.mkdir(parents=True, exist_ok=True)
    exit_on_sigterm()  # `kill` runs every finally block: helpers stopped, streams closed
    load = _OtherLoad()
    t0 = time.perf_counter()
    sections: list[Section] = []
    for key in cfg.scenarios:
        log(f"[{time.perf_counter() - t0:5.0f} s] scenario {key}")
        try:
            sections.append(SCENARIOS[key](cfg))
        except BenchError as exc:  # a scenario that cannot run at all: say so, go on
            sections.append(Section(key, key, f"Not measured: {exc}\n", errors=[str(exc)]))
    wall = time.perf_counter() - t0
    others = load.finish()
    leftovers = leftover_segments("framebus." + STREAM_PREFIX)
    report = _report(cfg, sections, wall, argv, leftovers, others)
    (cfg.out / "results.md").write_text(report + "\n")
    data = {
        "argv": argv,
        "wall_s": wall,
        "versions": _versions(),
        "sections": {s.key: s.data for s in sections},
        "errors": {s.key: s.errors for s in sections if s.errors},
        "shm_leftovers": leftovers,
        "other_processes_cpu": others,
    }
    (cfg.out / "results.json").write_text(json.dumps(_jsonable(data), indent=1))
    print(report)
    log(f"wrote {cfg.out / 'results.md'} ({wall:.0f} s)")
    failed = sum(len(s.errors) for s in sections)
    if leftovers:
        log(f"WARNING: shared memory left behind: {leftovers}")
    if others > _BUSY_WARNING:
        log(f"WARNING: other processes used {others * 100:.0f}% of a core during the run")
    if failed:
        log(f"{failed} measurement(s) failed (see the report)")
    return 1 if failed or leftovers else 0
