"""Scenario ``rtsp``: the true age of frames from a real RTSP stream.

framebus's GStreamer RTSP test server sends H.264 (1280x720 at 25 fps by default) and paints
each frame's send time on it. An untimed client reads it first (a fresh server's first client
gets older frames). For each peer a spawned consumer process opens the stream the way
that peer's users do, then runs two workloads in a row: it *keeps up* (reads, no processing)
for a warm-up plus the measurement, then *works 3 frame intervals* per frame (sleeps 120 ms +-
half an interval, the age scenario's seeded jitter). Age = ``time.time()`` when the read returns
minus the send time decoded from the frame: everything between the server and the consumer
holding a BGR array (encoding, RTP, the decoder and its threads, buffering, the transport).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import (
    BenchError,
    Config,
    Section,
    StreamParams,
    fmt,
    log,
    md_table,
    percentile,
    pyplot,
    save_age_figure,
)
from .live import ServerHost
from .peers import PEERS, Peer, peers_for, settings_table
from .session import run_session

__all__ = ["PLAIN", "run", "warmup_seconds"]

SLOW = 3
"""The slow workload works this many frame intervals per frame."""
PLAIN = ("cv2", "cv2-1thread", "pyav")
"""Plain decoder configurations (no framebus, no reader thread): the keep-up reference."""
FRAMEBUS_VARIANTS = ("framebus", "framebus-opencv", "framebus-av", "framebus-attach")
TOLERANCE_MS = 5.0


def warmup_seconds(cfg: Config) -> float:
    """Keep-up frames are counted from this long after each consumer's first frame: OpenCV's
    open buffers about a second of frames (stream probing), which a reader that keeps up
    drains within a tenth of a second; a decoder that skips them (``fflags=nobuffer``) waits
    for the next keyframe instead (up to a second) and its first frame is a little older."""
    return 0.3 if cfg.quick else 0.5


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    t = np.asarray(r["t"], dtype=float)
    keep = t >= r.get("counted_from", 0.0)
    ages = np.asarray(r["age"], dtype=float)[keep] * 1000
    seqs = np.asarray(r["seq"], dtype=np.int64)[keep]
    repeats = int(np.sum(np.diff(seqs) == 0)) if len(seqs) > 1 else 0
    older = int(np.sum(np.diff(seqs) < 0)) if len(seqs) > 1 else 0
    growth = float("nan")
    if len(ages) >= 3 and np.ptp(t[keep]) > 0:
        growth = float(np.polyfit(t[keep], ages, 1)[0])  # ms of age per second of run
    return {
        "frames": len(ages),
        "median_ms": percentile(ages, 50),
        "p99_ms": percentile(ages, 99),
        "max_ms": float(ages.max()) if len(ages) else float("nan"),
        "last_ms": float(ages[-1]) if len(ages) else float("nan"),
        "growth_ms_per_s": growth,
        "repeats": repeats,
        "older": older,
        "unreadable": int(r.get("unreadable", 0)),
        "timeouts": int(r["timeouts"]),
    }


def run(cfg: Config) -> Section:
    size, fps = cfg.rtsp_size, cfg.rtsp_fps
    interval = 1.0 / fps
    jitter = cfg.sleep_jitter * interval
    warmup = warmup_seconds(cfg)
    peers = peers_for("rtsp", cfg.peers)
    workloads = {
        "keep-up": ("age", {"sleep": 0.0, "duration": cfg.duration, "warmup": warmup}),
        f"{SLOW}x": (
            "age",
            {"sleep": SLOW * interval, "duration": cfg.duration, "jitter": jitter, "seed": SLOW},
        ),
    }
    raw: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in workloads}
    errors: list[str] = []
    with ServerHost(size, fps) as srv:
        params = StreamParams(size.width, size.height, float(fps), srv.url)
        _warm_up(params)
        for peer in peers:
            try:
                results = run_session(
                    peer,
                    params,
                    list(workloads.values()),
                    timeout=2 * cfg.duration + 60,
                )
            except BenchError as exc:
                errors.append(f"rtsp {peer.key}: {exc}")
                log(f"  rtsp {peer.key}: FAILED {exc}")
                continue
            for w, res in zip(workloads, results, strict=True):
                raw[w][peer.key] = res
                s = _summary(res)
                log(
                    f"  rtsp {w:7} {peer.key:16} median {fmt(s['median_ms'])} ms  "
                    f"p99 {fmt(s['p99_ms'])} ms  ({s['frames']} frames)"
                )
    summaries = {w: {k: _summary(r) for k, r in raw[w].items()} for w in workloads}
    text = _text(cfg, params, peers, summaries, warmup, jitter)
    plot = _plot(cfg, peers, raw)
    return Section(
        "rtsp",
        "True frame age on a real RTSP stream",
        text,
        [plot] if plot else [],
        {"summary": summaries, "raw": raw, "warmup_s": warmup},
        errors,
    )


def _warm_up(params: StreamParams) -> None:
    """One untimed client first: whoever is the first client of a fresh server gets frames
    2-3 ms older than later ones (measured: the same peer first and again later), and the
    first peer would pay for it."""
    try:
        run_session(
            PEERS["cv2-1thread"],
            params,
            [("age", {"sleep": 0.0, "duration": 1.0, "warmup": 0.3})],
            timeout=60,
        )
    except BenchError as exc:
        log(f"  rtsp warm-up client failed: {exc}")


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _targets(summaries: dict[str, dict[str, dict[str, Any]]], interval_ms: float) -> list[str]:
    keep, slow = summaries["keep-up"], summaries[f"{SLOW}x"]
    plain = {k: s for k, s in keep.items() if k in PLAIN and np.isfinite(s["median_ms"])}
    fb_keep, fb_slow = keep.get("framebus"), slow.get("framebus")
    if not plain or fb_keep is None or fb_slow is None:
        return ["Targets: not evaluated (a plain decoder or framebus was not measured)."]
    best_key = min(plain, key=lambda k: plain[k]["median_ms"])
    best = plain[best_key]["median_ms"]
    best_label = PEERS[best_key].label
    lines = ["Targets (from the issue):", ""]
    diff = fb_keep["median_ms"] - best
    lines.append(
        f"- reader that keeps up: framebus's median age within {TOLERANCE_MS:g} ms of the best "
        f"plain decoder configuration ({best_label}, median {fmt(best)} ms): framebus "
        f"{fmt(fb_keep['median_ms'])} ms, {diff:+.1f} ms: {_verdict(diff <= TOLERANCE_MS)}"
    )
    limit = best + interval_ms + TOLERANCE_MS
    lines.append(
        f"- {SLOW}x reader: framebus p99 <= best plain keep-up median + one frame interval + "
        f"{TOLERANCE_MS:g} ms = {fmt(best)} + {interval_ms:g} + {TOLERANCE_MS:g} = "
        f"{fmt(limit)} ms: framebus p99 {fmt(fb_slow['p99_ms'])} ms: "
        f"{_verdict(fb_slow['p99_ms'] <= limit)}"
    )
    others = {k: s for k, s in slow.items() if k not in FRAMEBUS_VARIANTS}
    worse_p99 = [k for k, s in others.items() if not fb_slow["p99_ms"] < s["p99_ms"]]
    worse_med = [k for k, s in others.items() if not fb_slow["median_ms"] < s["median_ms"]]
    detail = (
        "p99 and median below every one"
        if not worse_p99 and not worse_med
        else "not better than "
        + ", ".join(
            f"{PEERS[k].label} ({'p99' if k in worse_p99 else ''}"
            f"{' and ' if k in worse_p99 and k in worse_med else ''}"
            f"{'median' if k in worse_med else ''}: "
            f"{fmt(others[k]['p99_ms'])} / {fmt(others[k]['median_ms'])} ms)"
            for k in sorted(set(worse_p99) | set(worse_med), key=list(others).index)
        )
    )
    lines.append(
        f"- {SLOW}x reader: framebus better than every peer ({len(others)} measured; framebus "
        f"p99 / median {fmt(fb_slow['p99_ms'])} / {fmt(fb_slow['median_ms'])} ms): {detail}: "
        f"{_verdict(not worse_p99)} (judged on p99)"
    )
    return lines


def _text(
    cfg: Config,
    params: StreamParams,
    peers: list[Peer],
    summaries: dict[str, dict[str, dict[str, Any]]],
    warmup: float,
    jitter: float,
) -> str:
    interval = 1.0 / cfg.rtsp_fps
    rows = []
    for w, by_peer in summaries.items():
        ref = by_peer.get("framebus")
        for peer in peers:
            s = by_peer.get(peer.key)
            if s is None:
                continue
            rows.append(
                [
                    w if w == "keep-up" else f"{w} ({SLOW * interval * 1000:.0f} ms)",
                    peer.label,
                    str(s["frames"]),
                    fmt(s["median_ms"]),
                    fmt(s["p99_ms"]),
                    fmt(s["max_ms"]),
                    fmt(s["growth_ms_per_s"], 0),
                    fmt(s["median_ms"] / ref["median_ms"], 2) if ref else "-",
                    fmt(s["p99_ms"] / ref["p99_ms"], 2) if ref else "-",
                    str(s["repeats"]),
                ]
            )
    table = md_table(
        [
            "consumer",
            "peer",
            "frames got",
            "median age (ms)",
            "p99 age (ms)",
            "max (ms)",
            "age growth (ms/s)",
            "median ÷ framebus",
            "p99 ÷ framebus",
            "same frame again",
        ],
        rows,
        align="llrrrrrrrr",
    )
    settings = settings_table(peers, params)
    missing = []
    if "camgear" not in PEERS:
        missing.append("vidgear is not installed (`pip install vidgear`): CamGear not measured.")
    if "pyav" not in PEERS:
        missing.append("PyAV is not installed (`pip install av`): the PyAV peers not measured.")
    bad = {
        k: s["unreadable"] + summaries[f"{SLOW}x"].get(k, {}).get("unreadable", 0)
        for k, s in summaries["keep-up"].items()
    }
    unreadable = ", ".join(f"{PEERS[k].label} {n}" for k, n in bad.items() if n)
    return (
        f"Source: framebus's GStreamer RTSP test server (`framebus.testing.RTSPServer(size="
        f'"{cfg.rtsp_size}", fps={cfg.rtsp_fps})`, x264 `tune=zerolatency '
        f"speed-preset=ultrafast`, a keyframe every second, RTP over RTSP on 127.0.0.1), one "
        "server for all peers, first read by an untimed client for a second (the first client "
        "of a fresh server gets frames 2-3 ms older). Why framebus's default is about one "
        "frame interval ahead: FFmpeg's RTSP demuxer, which OpenCV, PyAV and vidgear read "
        "through, hands H.264 to a parser that ends a frame only when the next frame begins; "
        "framebus's own RTSP client (its default backend for `rtsp://`) ends a frame at the "
        "RTP packet that carries the marker bit and decodes it at once. framebus's OpenCV and "
        "PyAV backends read the same stream through FFmpeg, for comparison. "
        f"Each peer's consumer process opens the stream and keeps up: "
        f"until {warmup:g} s after its first frame as a warm-up (not counted: OpenCV's open "
        "buffers about a second of frames while it probes the stream, which a reader that "
        "keeps up drains within a tenth of a second; decoders set to `fflags=nobuffer` drop "
        "them and wait up to a second for the next keyframe), then "
        f"{cfg.duration:g} s counted; then at once it "
        f"works {SLOW} frame intervals per frame for {cfg.duration:g} s: it sleeps "
        f"{SLOW * interval * 1000:.0f} ms +- {jitter * 500:.0f} ms (uniform, the same seeded "
        "sequence for every peer, as in `age`). Age = `time.time()` the moment the read "
        "returns minus the send time the server painted on the frame "
        "(`framebus.testing.read_timestamp`, decoded after the clock was read): the true age, "
        "decoder latency and buffering included. 'Age growth' is the slope of a straight "
        "line fitted to age over time: about 0 for a reader that stays fresh, about "
        f"{(1 - 1 / SLOW) * 1000:.0f} ms/s for a FIFO read {SLOW}x too slowly, until its "
        "buffers fill. 'Same frame again': reads that returned the frame the previous read "
        "returned.\n\n"
        + "".join(f"{m}\n\n" for m in missing)
        + f"{table}\n\n"
        + "\n".join(_targets(summaries, interval * 1000))
        + "\n\n"
        + (
            f"Frames whose barcode was unreadable (skipped): {unreadable}.\n\n"
            if unreadable
            else ""
        )
        + f"Peer settings:\n\n{settings}\n\n![frame age on a real RTSP stream](rtsp.png)\n"
    )


def _plot(cfg: Config, peers: list[Peer], raw: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    if not any(raw.values()):
        return None
    plt = pyplot()
    n = len(raw)
    height = 3.6 * n + 1.2
    fig, axes = plt.subplots(n, 1, figsize=(11, height), squeeze=False)
    colors = plt.get_cmap("tab10")
    interval = 1.0 / cfg.rtsp_fps
    for ax, (w, by_peer) in zip(axes[:, 0], raw.items(), strict=True):
        for i, peer in enumerate(peers):
            r = by_peer.get(peer.key)
            if not r or not r["t"]:
                continue
            t = np.asarray(r["t"])
            ages = np.asarray(r["age"]) * 1000
            ours = peer.key in FRAMEBUS_VARIANTS
            style = {
                "lw": 2.2 if peer.key == "framebus" else 1.3,
                "ls": "-" if ours or peer.key in PLAIN else "--",
                "color": colors(i % 10),
                "zorder": 3 if ours else 2,
            }
            counted = t >= r.get("counted_from", 0.0)
            if not counted.all():  # the warm-up, faded (the last point joins the lines)
                upto = int(np.argmax(counted)) + 1 if counted.any() else len(t)
                ax.plot(t[:upto], ages[:upto], alpha=0.3, **style)
            ax.plot(
                t[counted],
                ages[counted],
                marker="." if len(ages) < 60 else None,
                ms=3,
                label=peer.label,
                **style,
            )
        if w == "keep-up":
            title = (
                "consumer keeps up (reads, no processing); faded: warm-up, until "
                f"{warmup_seconds(cfg):g} s after each one's first frame (not counted)"
            )
        else:
            title = (
                f"consumer works {SLOW} frame intervals per frame "
                f"({SLOW * interval * 1000:.0f} ms +- {cfg.sleep_jitter * interval * 500:.0f} ms)"
            )
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel("true frame age (ms, log)")
        ax.set_xlabel("time since the workload started (s)")
        ax.grid(True, which="both", alpha=0.3)
    title = (
        f"True frame age on a real RTSP stream, {cfg.rtsp_size} H.264 @ {cfg.rtsp_fps} fps "
        "(lower is better; rising lines fall behind)"
    )
    return save_age_figure(fig, axes, title, cfg.out, "rtsp.png", height, top=1.0)
