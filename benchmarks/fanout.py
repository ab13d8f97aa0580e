"""Scenario ``fanout``: 1..N consumer processes attached to one published 30 fps stream.

Each consumer counts the frames it received (checking ``info.seq`` continuity against
``info.skipped``); the benchmark measures the CPU time of the stream's capture process and of
the whole machine over the same window.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import psutil

import framebus

from .common import (
    SPAWN,
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    busy_cores,
    capture_children,
    cpu_seconds,
    exit_with_parent,
    fmt,
    log,
    md_table,
    pyplot,
    stop_process,
)

__all__ = ["run"]


def _reader(name: str, start: Any, stop: Any, conn: Connection) -> None:
    """A consumer process: attach, then read() until told to stop; report what it got."""
    exit_with_parent()
    try:
        with framebus.attach(name, timeout=0.5) as cap:
            conn.send(("ready", os.getpid()))
            if not start.wait(60):
                raise BenchError("never started")
            seqs: list[int] = []
            skipped = mismatches = 0
            prev = None
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            while not stop.is_set():
                ok, _frame = cap.read()
                if not ok:
                    if isinstance(cap.last_error, framebus.ReadTimeout):
                        continue
                    raise cap.last_error or RuntimeError("read() failed")
                info = cap.info
                assert info is not None
                if prev is not None and info.seq - prev - 1 != info.skipped:
                    mismatches += 1
                seqs.append(info.seq)
                skipped += info.skipped
                prev = info.seq
            elapsed = time.perf_counter() - t0
            cpu = (time.process_time() - cpu0) / elapsed
        conn.send(("done", {"seqs": seqs, "skipped": skipped, "mismatch": mismatches, "cpu": cpu}))
    except (BrokenPipeError, SystemExit):
        pass  # stopped by the benchmark process, or it is gone
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _recv(conn: Connection) -> tuple[str, Any]:
    try:
        kind, payload = conn.recv()
    except EOFError:
        return "error", "the consumer process died"
    return str(kind), payload


def _measure(name_prefix: str, n: int, cfg: Config) -> dict[str, Any]:
    size = cfg.frame_size
    name = f"{name_prefix}-{n}"
    start, stop = SPAWN.Event(), SPAWN.Event()
    procs = []
    conns: list[Connection] = []
    pattern = framebus.TestPattern(size.width, size.height, cfg.source_fps)
    with framebus.publish(name, pattern) as pub:
        try:
            for i in range(n):
                here, there = SPAWN.Pipe()
                p = SPAWN.Process(
                    target=_reader,
                    args=(name, start, stop, there),
                    name=f"bench-fan-{i}",
                    daemon=True,
                )
                procs.append(p)
                conns.append(here)
                p.start()
                there.close()
            pending = set(conns)
            deadline = time.monotonic() + 60
            while pending:
                ready = wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise BenchError(f"fanout {n}: consumers not ready within 60 s")
                for c in conns:
                    if c in ready:
                        kind, payload = _recv(c)
                        if kind != "ready":
                            raise BenchError(f"fanout {n}: consumer failed:\n{payload}")
                        pending.discard(c)
            capture = capture_children()
            if len(capture) != 1:
                raise BenchError(f"expected one capture process, found {len(capture)}")
            cap_proc = capture[0]
            time.sleep(0.3)  # let every reader settle on the live stream
            start.set()
            time.sleep(0.1)
            seq0 = pub.stats().captured
            cpu0, sys0, t0 = cpu_seconds(cap_proc), psutil.cpu_times(), time.perf_counter()
            time.sleep(cfg.duration)
            seq1 = pub.stats().captured
            cpu1, sys1, t1 = cpu_seconds(cap_proc), psutil.cpu_times(), time.perf_counter()
            time.sleep(0.3)  # readers get the last frames of the window
            stop.set()
            results = []
            for c in conns:
                if not c.poll(30):
                    raise BenchError(f"fanout {n}: a consumer did not report")
                kind, payload = _recv(c)
                if kind != "done":
                    raise BenchError(f"fanout {n}: consumer failed:\n{payload}")
                results.append(payload)
        finally:
            stop.set()
            for c in conns:
                c.close()
            for p in procs:
                stop_process(p)
    wall = t1 - t0
    captured = seq1 - seq0
    got = [sum(1 for s in r["seqs"] if seq0 < s <= seq1) for r in results]
    return {
        "readers": n,
        "captured": captured,
        "wall": wall,
        "capture_fps": captured / wall,
        "got": got,
        "missed": [captured - g for g in got],
        "skipped_reported": [r["skipped"] for r in results],
        "seq_mismatch": sum(r["mismatch"] for r in results),
        "capture_cpu": (cpu1 - cpu0) / wall,
        "machine_cpu": busy_cores(sys0, sys1),
        "reader_cpu": [r["cpu"] for r in results],
    }


def run(cfg: Config) -> Section:
    prefix = f"{STREAM_PREFIX}fan-{os.getpid()}"
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for n in cfg.fanout_readers:
        try:
            r = _measure(prefix, n, cfg)
        except BenchError as exc:
            errors.append(f"fanout {n}: {exc}")
            log(f"  fanout {n}: FAILED {exc}")
            continue
        results.append(r)
        log(
            f"  fanout {n} readers: captured {r['captured']}, got min {min(r['got'])}, "
            f"capture CPU {r['capture_cpu'] * 100:.1f}%"
        )
    base = next((r["capture_cpu"] for r in results if r["readers"] == 1), None)
    rows = []
    for r in results:
        got = r["got"]
        rows.append(
            [
                str(r["readers"]),
                str(r["captured"]),
                f"{min(got)} / {sum(got) / len(got):.1f} / {max(got)}",
                f"{100 * sum(got) / (len(got) * r['captured']):.1f}",
                str(sum(r["missed"])),
                str(r["seq_mismatch"]),
                fmt(r["capture_cpu"] * 100),
                fmt(r["capture_cpu"] / base, 2) if base else "-",
                fmt(sum(r["reader_cpu"]) / len(got) * 100),
                fmt(r["machine_cpu"] * 100, 0),
            ]
        )
    table = md_table(
        [
            "consumers",
            "frames captured",
            "frames got per consumer (min / mean / max)",
            "got %",
            "missed (all consumers)",
            "seq/skipped mismatches",
            "capture CPU %",
            "capture CPU ÷ 1 consumer",
            "CPU % per consumer",
            "machine CPU %",
        ],
        rows,
        align="r" * 10,
    )
    size = cfg.frame_size
    text = (
        f"`framebus.publish(name, TestPattern({size.width}, {size.height}, "
        f"{cfg.source_fps:g}))` in the benchmark process; N spawned consumer processes each "
        "`framebus.attach(name)` and call `read()` (a copy) in a loop, counting frames. Over a "
        f"{cfg.duration:g} s window: frames captured (the stream's counter), frames each consumer "
        "got of those, 'seq/skipped mismatches' = reads where `info.seq - previous seq - 1 != "
        "info.skipped` (should be 0), CPU of the capture process (psutil, 100 = one core), "
        "CPU per consumer, and the whole machine's busy CPU (psutil.cpu_times, 200 = both "
        f"cores).\n\n{table}\n\n![fanout](fanout.png)\n"
    )
    plot = _plot(cfg, results)
    return Section(
        "fanout",
        "Fan-out to several consumer processes",
        text,
        [plot] if plot else [],
        {"results": results},
        errors,
    )


def _plot(cfg: Config, results: list[dict[str, Any]]) -> str | None:
    if not results:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ns = [r["readers"] for r in results]
    pct = [100 * min(r["got"]) / r["captured"] for r in results]
    mean = [100 * sum(r["got"]) / len(r["got"]) / r["captured"] for r in results]
    ax1.plot(ns, mean, "o-", label="mean consumer")
    ax1.plot(ns, pct, "s--", label="worst consumer")
    ax1.set_ylim(0, 105)
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(ns, [str(n) for n in ns])
    ax1.set_xlabel("consumer processes")
    ax1.set_ylabel("frames got / frames captured (%)")
    ax1.set_title("Share of the captured frames each consumer got")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8, loc="lower left")
    ax2.plot(ns, [r["capture_cpu"] * 100 for r in results], "o-", label="capture process")
    ax2.plot(
        ns,
        [sum(r["reader_cpu"]) / len(r["reader_cpu"]) * 100 for r in results],
        "s-",
        label="per consumer",
    )
    ax2.plot(ns, [r["machine_cpu"] * 100 for r in results], "^-", label="whole machine")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(ns, [str(n) for n in ns])
    ax2.set_xlabel("consumer processes")
    ax2.set_ylabel("CPU % (100 = one core)")
    ax2.set_title("CPU use vs number of consumers")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"Fan-out: one {cfg.frame_size} @ {cfg.source_fps:g} fps stream")
    fig.tight_layout()
    path = Path(cfg.out) / "fanout.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
