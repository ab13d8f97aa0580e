"""Scenario ``age``: how old is the frame a slow consumer gets?

A 30 fps source; the consumer takes a frame, notes ``time.time()`` minus the frame's capture
timestamp, then "processes" it by sleeping 1x, 3x or 10x the frame interval, and repeats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    BenchError,
    Config,
    Params,
    Section,
    fmt,
    log,
    md_table,
    percentile,
    pyplot,
    save_age_figure,
)
from .peers import Peer, peers_for, settings_table
from .session import run_session

__all__ = ["run"]


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    ages = np.asarray(r["age"], dtype=float) * 1000
    seqs = r["seq"]
    newest = 0
    older = repeats = 0
    for s in seqs:
        if s == newest:
            repeats += 1
        elif s < newest:
            older += 1  # a frame older than one already returned (stack pop order)
        newest = max(newest, s)
    return {
        "frames": len(ages),
        "median_ms": percentile(ages, 50),
        "p99_ms": percentile(ages, 99),
        "max_ms": float(ages.max()) if len(ages) else float("nan"),
        "older": older,
        "repeats": repeats,
        "timeouts": r["timeouts"],
    }


def run(cfg: Config) -> Section:
    size = cfg.frame_size
    params = Params.of(size, cfg.source_fps)
    interval = 1.0 / cfg.source_fps
    peers = peers_for("age", cfg.peers)
    jitter = cfg.sleep_jitter * interval
    raw: dict[int, dict[str, dict[str, Any]]] = {k: {} for k in cfg.slowness}
    errors: list[str] = []
    for k in cfg.slowness:
        for peer in peers:
            job = (
                "age",
                {"sleep": k * interval, "duration": cfg.duration, "jitter": jitter, "seed": k},
            )
            try:
                [res] = run_session(peer, params, [job], timeout=cfg.duration + 60)
            except BenchError as exc:
                errors.append(f"age {k}x {peer.key}: {exc}")
                log(f"  age {k}x {peer.key}: FAILED {exc}")
                continue
            raw[k][peer.key] = res
            s = _summary(res)
            log(
                f"  age {k}x {peer.key:16} median {fmt(s['median_ms'])} ms  "
                f"p99 {fmt(s['p99_ms'])} ms  ({s['frames']} frames)"
            )

    rows = []
    summaries: dict[int, dict[str, dict[str, Any]]] = {}
    for k in cfg.slowness:
        summaries[k] = {key: _summary(r) for key, r in raw[k].items()}
        ref = summaries[k].get("framebus")
        for peer in peers:
            if peer.key not in summaries[k]:
                continue
            s = summaries[k][peer.key]
            ratio_med = s["median_ms"] / ref["median_ms"] if ref else float("nan")
            ratio_p99 = s["p99_ms"] / ref["p99_ms"] if ref else float("nan")
            rows.append(
                [
                    f"{k}x ({k * interval * 1000:.0f} ms)",
                    peer.label,
                    str(s["frames"]),
                    fmt(s["median_ms"]),
                    fmt(s["p99_ms"]),
                    fmt(ratio_med, 2),
                    fmt(ratio_p99, 2),
                    str(s["older"]),
                ]
            )
    table = md_table(
        [
            "consumer sleep / frame",
            "peer",
            "frames got",
            "median age (ms)",
            "p99 age (ms)",
            "median ÷ framebus",
            "p99 ÷ framebus",
            "older than one already got",
        ],
        rows,
        align="llrrrrrr",
    )
    settings = settings_table(peers, params)
    if jitter:
        how = (
            f"sleeps k x the frame interval +- {jitter * 500:.1f} ms (uniform; the same seeded "
            "sequence for every peer), so that, as with real processing times, each read "
            "lands at a random phase of the source; with exact multiples the phase of the "
            "first read would be locked in for the whole run and decide the age"
        )
    else:
        how = "sleeps exactly k x the frame interval (`--sleep-jitter 0`)"
    text = (
        f"Source: {params.describe()}; each measurement {cfg.duration:g} s; after each frame "
        f"the consumer {how}. Age = `time.time()` "
        "when `get`/`read` returns minus the frame's capture timestamp (for framebus "
        "`cap.info.timestamp`). The consumer runs in its own spawned process. 'Older than one "
        "already got' counts frames returned after a newer one (out of order). vidgear "
        "`CamGear` is not in this table: it opens only URLs, files and devices (through "
        "`cv2.VideoCapture`), so it cannot read this in-memory source; it is measured with "
        "framebus on a real RTSP stream in the `rtsp` scenario.\n\n"
        f"{table}\n\nPeer settings:\n\n{settings}\n\n![frame age over time](age.png)\n"
    )
    plot = _plot(cfg, peers, raw, interval)
    return Section(
        "age",
        "Frame age under slow processing",
        text,
        [plot] if plot else [],
        {"summary": summaries, "raw": raw},
        errors,
    )


def _plot(
    cfg: Config, peers: list[Peer], raw: dict[int, dict[str, dict[str, Any]]], interval: float
) -> str | None:
    if not any(raw.values()):
        return None
    plt = pyplot()
    n = len(cfg.slowness)
    height = 3.4 * n + 1.0  # inches: n panels + title and legend on top
    fig, axes = plt.subplots(n, 1, figsize=(11, height), squeeze=False, sharex=True)
    colors = plt.get_cmap("tab10")
    for ax, k in zip(axes[:, 0], cfg.slowness, strict=True):
        for i, peer in enumerate(peers):
            r = raw[k].get(peer.key)
            if not r or not r["t"]:
                continue
            ages = np.asarray(r["age"]) * 1000
            ax.plot(
                r["t"],
                ages,
                marker="." if len(ages) < 60 else None,
                lw=1.4,
                color=colors(i),
                label=peer.label,
            )
        ax.set_yscale("log")
        ax.set_title(f"consumer sleeps {k}x the frame interval ({k * interval * 1000:.0f} ms)")
        ax.set_ylabel("frame age (ms, log)")
        ax.grid(True, which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("time since the consumer started (s)")
    title = (
        f"Frame age at the consumer, {cfg.frame_size} @ {cfg.source_fps:g} fps (lower is better)"
    )
    return save_age_figure(fig, axes, title, cfg.out, "age.png", height, top=0.85)
