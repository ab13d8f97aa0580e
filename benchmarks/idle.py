"""Scenario ``idle``: what a consumer costs while it waits, and how fast it wakes up.

1. CPU use of a consumer process waiting on a (nearly) paused stream: a source at 0.5 fps.
2. Wake-up latency: frames at 5 fps, so the consumer is always waiting when one is published;
   latency = ``time.time()`` when ``get``/``read`` returns minus the capture timestamp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import BenchError, Config, Params, Section, fmt, log, md_table, percentile, pyplot
from .peers import Peer, peers_for, settings_table
from .session import run_session

__all__ = ["run"]

PAUSED_FPS = 0.5
WAKE_FPS = 5.0


def run(cfg: Config) -> Section:
    size = cfg.frame_size
    peers = peers_for("idle", cfg.peers)
    cpu_window = max(0.5, cfg.duration / 3)
    wake_window = max(1.0, cfg.duration)
    idle: dict[str, dict[str, Any]] = {}
    wake: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for peer in peers:
        try:
            [res] = run_session(
                peer,
                Params.of(size, PAUSED_FPS),
                [("idle", {"duration": cpu_window})],
                timeout=cpu_window + 60,
            )
            idle[peer.key] = res
            [res] = run_session(
                peer,
                Params.of(size, WAKE_FPS),
                [("age", {"sleep": 0.0, "duration": wake_window, "discard": 1})],
                timeout=wake_window + 60,
            )
            wake[peer.key] = res
        except BenchError as exc:
            errors.append(f"idle {peer.key}: {exc}")
            log(f"  idle {peer.key}: FAILED {exc}")
            continue
        lat = np.asarray(res["age"]) * 1000
        log(
            f"  idle {peer.key:16} waiting CPU {idle[peer.key]['cpu'] * 100:.2f}%  "
            f"wake median {fmt(percentile(lat, 50), 2)} ms"
        )

    rows = []
    for peer in peers:
        if peer.key not in idle or peer.key not in wake:
            continue
        i, w = idle[peer.key], wake[peer.key]
        lat = np.asarray(w["age"]) * 1000
        rows.append(
            [
                peer.label,
                fmt(i["cpu"] * 100, 2),
                fmt(i["machine"] * 100, 1),
                fmt(percentile(lat, 50), 2),
                fmt(percentile(lat, 99), 2),
                str(len(lat)),
            ]
        )
    table = md_table(
        [
            "peer",
            f"waiting consumer CPU % ({PAUSED_FPS:g} fps source)",
            "machine CPU % meanwhile",
            f"wake-up latency median (ms, {WAKE_FPS:g} fps)",
            "wake-up latency p99 (ms)",
            "frames",
        ],
        rows,
        align="lrrrrr",
    )
    settings = settings_table(peers, Params.of(size, WAKE_FPS))
    text = (
        f"CPU: the source runs at {PAUSED_FPS:g} fps (a paused stream, as good as); after its "
        f"first frame the consumer process waits in `get`/`read` for {cpu_window:g} s; its own "
        "CPU time over that window (100 = one core) and the busy CPU of the whole machine "
        "(200 = both cores; includes the producer side). Wake-up: "
        f"{size} frames at {WAKE_FPS:g} fps for {wake_window:g} s, the consumer always "
        "waiting; latency from the capture timestamp to the consumer holding the frame "
        "(framebus: `read()`, which includes copying the frame out). The first frame each "
        "consumer gets is left out: it may have been waiting already (a new framebus reader "
        "gets the newest frame at once), so it is not a wake-up.\n\n"
        f"{table}\n\nPeer settings:\n\n{settings}\n\n![idle](idle.png)\n"
    )
    plot = _plot(cfg, peers, idle, wake)
    return Section(
        "idle",
        "Idle cost and wake-up latency",
        text,
        [plot] if plot else [],
        {"idle": idle, "wake": wake},
        errors,
    )


def _plot(cfg: Config, peers: list[Peer], idle: dict[str, Any], wake: dict[str, Any]) -> str | None:
    shown = [p for p in peers if p.key in idle and p.key in wake]
    if not shown:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = [p.label for p in shown]
    y = np.arange(len(shown))
    cpu = [idle[p.key]["cpu"] * 100 for p in shown]
    bars = ax1.barh(y, cpu, color="tab:blue")
    ax1.bar_label(bars, labels=[f"{v:.2f}" for v in cpu], fontsize=8, padding=2)
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("CPU % of the waiting consumer (100 = one core)")
    ax1.set_title(f"Waiting on a {PAUSED_FPS:g} fps stream (lower is better)")
    ax1.margins(x=0.25)
    med = [percentile(np.asarray(wake[p.key]["age"]) * 1000, 50) for p in shown]
    p99 = [percentile(np.asarray(wake[p.key]["age"]) * 1000, 99) for p in shown]
    ax2.barh(y - 0.2, med, 0.4, label="median", color="tab:green")
    ax2.barh(y + 0.2, p99, 0.4, label="p99", color="tab:red")
    ax2.set_yticks(y, [""] * len(shown))
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.set_xlabel("wake-up latency (ms, log)")
    ax2.set_title(f"Capture -> consumer at {WAKE_FPS:g} fps (lower is better)")
    ax2.grid(True, axis="x", which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(cfg.out) / "idle.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
