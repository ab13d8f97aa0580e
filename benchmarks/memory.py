"""Scenario ``memory``: resident memory of the capture side and of a slow consumer over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import BenchError, Config, Params, Section, fmt, log, md_table, pyplot
from .peers import Peer, peers_for
from .session import RssMonitor, run_session

__all__ = ["run"]

SLOWNESS = 3  # the consumer sleeps 3 frame intervals per frame


def run(cfg: Config) -> Section:
    params = Params.of(cfg.frame_size, cfg.source_fps)
    peers = peers_for("memory", cfg.peers)
    window = max(1.0, cfg.duration)
    sleep = SLOWNESS / cfg.source_fps
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    errors: list[str] = []
    for peer in peers:
        monitor = RssMonitor(period=0.2)
        try:
            run_session(
                peer,
                params,
                [("age", {"sleep": sleep, "duration": window})],
                timeout=window + 60,
                monitor=monitor,
            )
        except BenchError as exc:
            errors.append(f"memory {peer.key}: {exc}")
            log(f"  memory {peer.key}: FAILED {exc}")
            continue
        samples[peer.key] = monitor.samples
        peak = {role: max((v for _, v in s), default=0.0) for role, s in monitor.samples.items()}
        log(
            f"  memory {peer.key:16} peak RSS MB "
            + ", ".join(f"{r} {v:.0f}" for r, v in peak.items())
        )

    rows = []
    for peer in peers:
        for role, s in samples.get(peer.key, {}).items():
            if not s:
                continue
            vals = [v for _, v in s]
            half = s[-1][0] / 2
            mid = next(v for t, v in s if t >= half)
            rows.append(
                [
                    peer.label,
                    role,
                    fmt(vals[0], 0),
                    fmt(mid, 0),
                    fmt(vals[-1], 0),
                    fmt(max(vals), 0),
                    fmt(vals[-1] - mid, 0),
                ]
            )
    table = md_table(
        [
            "peer",
            "process",
            "RSS at start (MB)",
            "at half time",
            "at end",
            "max",
            "growth over the 2nd half",
        ],
        rows,
        align="llrrrrr",
    )
    text = (
        f"Source {params.describe()}; a consumer process that sleeps {SLOWNESS}x the frame "
        f"interval ({sleep * 1000:.0f} ms) per frame, for {window:g} s; RSS (psutil, includes "
        "mapped shared memory the process touched) sampled every 0.2 s from the moment the "
        "consumer was ready. Roles: 'consumer' is the spawned consumer process, 'capture' the "
        "framebus capture process, 'producer' a peer's producer process, 'manager' the "
        "`Manager()` server process. The first samples include warm-up (the shared ring's "
        "pages being touched, the consumer's first frame buffers); growth over the second "
        "half is the trend to watch. A short run shows a trend, not weeks.\n\n"
        f"{table}\n\n![memory](memory.png)\n"
    )
    plot = _plot(cfg, peers, samples)
    return Section(
        "memory", "Memory over time", text, [plot] if plot else [], {"samples": samples}, errors
    )


def _plot(cfg: Config, peers: list[Peer], samples: dict[str, Any]) -> str | None:
    shown = [p for p in peers if samples.get(p.key)]
    if not shown:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 4), squeeze=False)
    for ax, peer in zip(axes[0], shown, strict=True):
        for role, s in samples[peer.key].items():
            if s:
                ax.plot([t for t, _ in s], [v for _, v in s], lw=1.5, label=role)
        ax.set_title(peer.label, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0, 0].set_ylabel("RSS (MB)")
    fig.suptitle(
        f"RSS over time, {cfg.frame_size} @ {cfg.source_fps:g} fps, consumer {SLOWNESS}x slow"
    )
    fig.tight_layout()
    path = Path(cfg.out) / "memory.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
