"""Scenario ``throughput``: frames per second one consumer process receives at full speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import BenchError, Config, Params, Section, fmt, log, md_table, pyplot
from .peers import Peer, peers_for, settings_table
from .session import run_session

__all__ = ["run"]

REFERENCE = "np.copyto"


def run(cfg: Config) -> Section:
    peers = peers_for("throughput", cfg.peers, always=("framebus", REFERENCE))
    window = max(0.5, cfg.duration / 4)
    warmup = min(0.3, window / 2)
    raw: dict[str, dict[str, dict[str, Any]]] = {}
    errors: list[str] = []
    for size in cfg.sizes:
        params = Params.of(size, None)
        raw[str(size)] = {}
        for peer in peers:
            job = ("rate", {"duration": window, "warmup": warmup})
            try:
                [res] = run_session(peer, params, [job], timeout=window + 60)
            except BenchError as exc:
                errors.append(f"throughput {size} {peer.key}: {exc}")
                log(f"  throughput {size} {peer.key}: FAILED {exc}")
                continue
            raw[str(size)][peer.key] = res
            log(f"  throughput {size} {peer.key:16} {fmt(res['fps'])} fps")

    rows = []
    for size in cfg.sizes:
        by_peer = raw[str(size)]
        ref = by_peer.get(REFERENCE)
        for peer in peers:
            r = by_peer.get(peer.key)
            if r is None:
                continue
            ratio = r["fps"] / ref["fps"] if ref else float("nan")
            gb = r["fps"] * size.pixels * 3 / 1e9
            rows.append(
                [
                    str(size),
                    peer.label,
                    fmt(r["fps"]),
                    f"{gb:.2f}",
                    fmt(ratio, 3),
                    "-" if peer.key == REFERENCE else fmt(r["produced_fps"]),
                    fmt(r["cpu"] * 100, 0),
                ]
            )
    table = md_table(
        [
            "size",
            "peer",
            "frames/s received",
            "GB/s",
            "÷ np.copyto",
            "producer frames/s (seq span)",
            "consumer CPU %",
        ],
        rows,
        align="llrrrrr",
    )
    example = Params.of(cfg.sizes[0], None)
    settings = settings_table(peers, example)
    text = (
        f"Producers run as fast as they can (`TestPattern(w, h, fps=None)` for framebus); the "
        f"consumer process takes frames as fast as it can for {window:g} s after a {warmup:g} s "
        "warm-up. 'Producer frames/s' is the span of sequence numbers seen over the window (how "
        "fast the producer ran while sharing the 2 cores). `np.copyto` is one in-process copy of "
        "the frame per iteration: the memory-bandwidth limit of a copy (an upper bound: its "
        "source and destination stay in the CPU cache, while a consumer copies frames another "
        "core has just written). The thread peer hands the consumer a reference, so its "
        "consumer copies nothing: compare it with framebus `view()`. Consumer CPU % is the "
        "consumer process's own CPU time over the window (100 = one core). framebus's default "
        "`TestPattern` ('bars') draws a text label on every frame with `cv2.putText`, which "
        "costs about as much as copying the frame; the 'counter' pattern fills the frame "
        "instead (no label): compare the two to separate the test source's cost from the "
        "transport's.\n\n"
        f"{table}\n\nPeer settings (the max-speed producers run at `fps=None`):\n\n{settings}\n\n"
        "![throughput](throughput.png)\n"
    )
    plot = _plot(cfg, peers, raw)
    return Section(
        "throughput",
        "Throughput at full speed",
        text,
        [plot] if plot else [],
        {"raw": raw, "window_s": window},
        errors,
    )


def _plot(cfg: Config, peers: list[Peer], raw: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    if not any(raw.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 5.6))
    sizes = [str(s) for s in cfg.sizes]
    x = np.arange(len(sizes))
    width = 0.8 / max(1, len(peers))
    colors = plt.get_cmap("tab10")
    for i, peer in enumerate(peers):
        vals = [raw[s].get(peer.key, {}).get("fps", np.nan) for s in sizes]
        bars = ax.bar(
            x + (i - (len(peers) - 1) / 2) * width, vals, width, label=peer.label, color=colors(i)
        )
        ax.bar_label(bars, labels=[fmt(v, 0) for v in vals], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, sizes)
    ax.set_yscale("log")
    ax.set_ylabel("frames/s received (log)")
    ax.set_title(
        "Frames/s one consumer process receives, producer at full speed (higher is better)"
    )
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.margins(y=0.2)
    fig.tight_layout()
    path = Path(cfg.out) / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
