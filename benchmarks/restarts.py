"""Scenario ``restarts``: a camera that reboots again and again.

A publisher process (``framebus.publish(name, url, reconnect=Reconnect(stall_timeout=2,
backoff_initial=0.2, backoff_max=1))``) and a reader process attached to it; the RTSP server is
killed (SIGKILL, a power cut) and started again N times. Each time the benchmark waits until
the publisher says ``live`` again and the reader gets frames the new server sent, then samples
the memory of the publishing process: a supervisor that leaks per restart shows up here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from .common import (
    SPAWN,
    STREAM_PREFIX,
    BenchError,
    Config,
    Section,
    capture_pids,
    exit_with_parent,
    fmt,
    leftover_segments,
    log,
    md_table,
    pyplot,
    stop_process,
)
from .live import ServerHost

__all__ = ["run"]

STALL_TIMEOUT, BACKOFF_INITIAL, BACKOFF_MAX = 2.0, 0.2, 1.0
POLICY = {
    "stall_timeout": STALL_TIMEOUT,
    "backoff_initial": BACKOFF_INITIAL,
    "backoff_max": BACKOFF_MAX,
}
TARGET = 0.05  # RSS after the last restart within 5% of RSS after the first
_START_TIMEOUT = 40.0
_NOTICE_TIMEOUT = STALL_TIMEOUT + 5.0  # the publisher sees the server gone
_BACK_TIMEOUT = 30.0  # live again with new frames
_SETTLE = 0.5  # frames flow this long before the next kill (shorter than the steady period)


# --- the publishing process ---------------------------------------------------------------------


def _publisher(name: str, url: str, conn: Connection) -> None:
    """Publish ``url`` as ``name``; answer ``stats`` with ``pub.stats()`` until told to stop."""
    exit_with_parent()
    import framebus

    try:
        with framebus.publish(
            name,
            url,
            reconnect=framebus.Reconnect(
                stall_timeout=STALL_TIMEOUT,
                backoff_initial=BACKOFF_INITIAL,
                backoff_max=BACKOFF_MAX,
            ),
        ) as pub:
            conn.send(("ready", None))
            while True:
                try:
                    cmd = conn.recv()
                except EOFError:
                    return
                if cmd != "stats":
                    return
                stats = dataclasses.asdict(pub.stats())
                stats["capture_pid"] = capture_pids().get("capture", 0)
                conn.send(("stats", stats))
    except (BrokenPipeError, SystemExit):
        pass
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Publisher:
    """The benchmark's handle on the publishing process."""

    def __init__(self, name: str, url: str) -> None:
        self.conn, there = SPAWN.Pipe()
        self.proc = SPAWN.Process(
            target=_publisher, args=(name, url, there), name="bench-publisher", daemon=True
        )
        self.proc.start()
        there.close()
        assert self.proc.pid is not None
        self.ps = psutil.Process(self.proc.pid)

    def _recv(self, timeout: float, what: str) -> Any:
        if not self.conn.poll(timeout):
            raise BenchError(f"publisher: no answer to {what} within {timeout:.0f} s")
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise BenchError(f"publisher died (exit code {self.proc.exitcode})") from None
        if kind == "error":
            raise BenchError(f"publisher failed:\n{payload}")
        return payload

    def wait_ready(self) -> None:
        self._recv(_START_TIMEOUT, "publish")

    def stats(self) -> dict[str, Any]:
        try:
            self.conn.send("stats")
        except OSError:
            raise BenchError(f"publisher died (exit code {self.proc.exitcode})") from None
        stats: dict[str, Any] = self._recv(10.0, "stats")
        return stats

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        self.conn.close()
        stop_process(self.proc, grace=5.0)  # it closes the stream on its way out


# --- the reader process -------------------------------------------------------------------------


def _reader(
    name: str, last_sent: Synchronized[float], frames: Synchronized[int], stop: Event
) -> None:
    """Attach to ``name`` and read; publish the send time of the newest frame got, and a count."""
    exit_with_parent()
    import framebus
    from framebus.testing import read_timestamp

    with framebus.attach(name, timeout=0.2) as cap:
        n = 0
        while not stop.is_set():
            ok, frame = cap.read()
            if not ok:
                if isinstance(cap.last_error, framebus.ReadTimeout):
                    continue
                raise cap.last_error or RuntimeError("read() failed without an error")
            assert frame is not None
            sent = read_timestamp(frame)
            if sent is not None:
                last_sent.value = sent
                n += 1
                frames.value = n


# --- the benchmark ------------------------------------------------------------------------------


def _wait(cond: Any, timeout: float, what: str, check: Any) -> float:
    """Poll ``cond()`` every 20 ms; return ``time.time()`` when it holds."""
    deadline = time.monotonic() + timeout
    while not cond():
        check()
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)
    return time.time()


class _BackWatch:
    """Polled until the stream is back: ``live``, and the reader has a frame sent after
    ``since``; notes when the publisher's current capture process was first seen."""

    def __init__(self, pub: _Publisher, since: float, last_sent: Synchronized[float]) -> None:
        self.pub, self.since, self.last_sent = pub, since, last_sent
        self.pid = 0
        self.pid_seen = since

    def __call__(self) -> bool:
        stats = self.pub.stats()
        pid = int(stats["capture_pid"])
        if pid and pid != self.pid:
            self.pid, self.pid_seen = pid, time.time()
        return bool(stats["state"] == "live" and self.last_sent.value > self.since)


def _rss_mb(pid: int) -> float:
    try:
        return float(psutil.Process(pid).memory_info().rss / 2**20)
    except (psutil.Error, ValueError):
        return float("nan")


def run(cfg: Config) -> Section:
    n = max(1, cfg.restarts)
    name = f"{STREAM_PREFIX}restarts-{os.getpid()}"
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    start_rss = float("nan")
    with ServerHost(cfg.rtsp_size, cfg.rtsp_fps) as srv:
        pub = _Publisher(name, srv.url)
        last_sent: Synchronized[float] = SPAWN.Value("d", 0.0)
        frames: Synchronized[int] = SPAWN.Value("q", 0)
        stop = SPAWN.Event()
        reader = SPAWN.Process(
            target=_reader, args=(name, last_sent, frames, stop), name="bench-reader", daemon=True
        )
        try:
            pub.wait_ready()
            reader.start()
            assert reader.pid is not None

            def check() -> None:
                if not reader.is_alive():
                    raise BenchError(f"the reader process exited (code {reader.exitcode})")

            _wait(lambda: frames.value > 0, 20.0, "first frame at the reader", check)
            time.sleep(_SETTLE)
            start_rss = pub.ps.memory_info().rss / 2**20
            for i in range(1, n + 1):
                t_kill = time.time()
                srv.kill()
                t_notice = _wait(
                    lambda: pub.stats()["state"] != "live",
                    _NOTICE_TIMEOUT,
                    f"restart {i}: the publisher noticing the server was gone",
                    check,
                )
                srv.start()
                t_up = time.time()
                back = _BackWatch(pub, t_up, last_sent)
                t_back = _wait(
                    back, _BACK_TIMEOUT, f"restart {i}: live again with new frames", check
                )
                t_capture = back.pid_seen
                time.sleep(_SETTLE)
                stats = pub.stats()
                rows.append(
                    {
                        "restart": i,
                        "notice_s": t_notice - t_kill,
                        "server_start_s": t_up - t_notice,
                        "reconnect_s": t_back - t_up,
                        "relaunch_s": t_capture - t_up,
                        "open_s": t_back - t_capture,
                        "total_s": t_back - t_kill,
                        "publisher_rss_mb": pub.ps.memory_info().rss / 2**20,
                        "publisher_fds": pub.ps.num_fds(),
                        "publisher_threads": pub.ps.num_threads(),
                        "reader_rss_mb": _rss_mb(reader.pid),
                        "capture_rss_mb": _rss_mb(int(stats["capture_pid"])),
                        "segments": len(leftover_segments(f"framebus.{name}")),
                        "reconnects": stats["reconnects"],
                        "state": stats["state"],
                    }
                )
                r = rows[-1]
                log(
                    f"  restart {i:2}/{n}: back in {r['total_s']:.2f} s (server up -> new "
                    f"frames {r['reconnect_s']:.2f} s), publisher RSS "
                    f"{r['publisher_rss_mb']:.1f} MB"
                )
        except BenchError as exc:
            errors.append(f"restarts: {exc}")
            log(f"  restarts: FAILED {exc}")
        finally:
            stop.set()
            stop_process(reader, grace=3.0)
            pub.close()
    text = _text(cfg, rows, start_rss, n)
    plot = _plot(cfg, rows)
    return Section(
        "restarts",
        "Camera reboots: reconnects and memory",
        text,
        [plot] if plot else [],
        {"restarts": rows, "rss_before_first_kill_mb": start_rss, "policy": POLICY},
        errors,
    )


def _text(cfg: Config, rows: list[dict[str, Any]], start_rss: float, n: int) -> str:
    policy = ", ".join(f"{k}={v:g}" for k, v in POLICY.items())
    head = (
        f"Source: the RTSP test server, {cfg.rtsp_size} H.264 @ {cfg.rtsp_fps} fps. A spawned "
        f"publisher process runs `framebus.publish(name, url, reconnect=framebus.Reconnect("
        f"{policy}))`; a spawned reader process `attach`es and reads. {n} times: the server is "
        "killed (SIGKILL), the benchmark waits until `pub.stats().state` is no longer `live` "
        "(the publisher noticed), starts the server again on the same port, then waits until "
        "the state is `live` again *and* the reader got a frame sent after the new server "
        f"came up; frames then flow for {_SETTLE:g} s and the publishing process's RSS, open "
        "file descriptors and threads are sampled (psutil). 'Segments' counts this stream's "
        "files in /dev/shm. framebus starts its backoff over only once a stream has stayed "
        f"live for `stall_timeout` ({STALL_TIMEOUT:g} s): with {_SETTLE:g} s between a reconnect "
        "and the next kill it does not, so successive restarts wait longer, up to "
        f"`backoff_max` ({BACKOFF_MAX:g} s) +- its jitter: a camera that keeps dropping is "
        "retried less eagerly.\n\n"
    )
    if not rows:
        return head + "No restart completed.\n"
    table = md_table(
        [
            "restart",
            "kill -> noticed (s)",
            "server start (s)",
            "server up -> new frames at the reader (s)",
            "of which: until the last capture process was seen",
            "of which: its start -> new frames at the reader",
            "kill -> new frames (s)",
            "publisher RSS (MB)",
            "fds",
            "threads",
            "reader RSS (MB)",
            "capture RSS (MB)",
            "segments",
            "reconnects",
        ],
        [
            [
                str(r["restart"]),
                fmt(r["notice_s"], 2),
                fmt(r["server_start_s"], 2),
                fmt(r["reconnect_s"], 2),
                fmt(r["relaunch_s"], 2),
                fmt(r["open_s"], 2),
                fmt(r["total_s"], 2),
                fmt(r["publisher_rss_mb"], 1),
                str(r["publisher_fds"]),
                str(r["publisher_threads"]),
                fmt(r["reader_rss_mb"], 1),
                fmt(r["capture_rss_mb"], 1),
                str(r["segments"]),
                str(r["reconnects"]),
            ]
            for r in rows
        ],
        align="lrrrrrrrrrrrrr",
    )
    first, last = rows[0], rows[-1]
    ratio = last["publisher_rss_mb"] / first["publisher_rss_mb"]
    ok = "**met**" if abs(ratio - 1) <= TARGET else "**NOT met**"
    back = np.asarray([r["reconnect_s"] for r in rows])
    total = np.asarray([r["total_s"] for r in rows])
    relaunch = np.asarray([r["relaunch_s"] for r in rows])
    opened = np.asarray([r["open_s"] for r in rows])
    summary = (
        f"- publishing process RSS: {fmt(start_rss, 1)} MB before the first kill, "
        f"{fmt(first['publisher_rss_mb'], 1)} MB after restart 1, "
        f"{fmt(last['publisher_rss_mb'], 1)} MB after restart {last['restart']}: ratio "
        f"{ratio:.3f} (target: within {TARGET * 100:g}%): {ok}\n"
        f"- open fds {first['publisher_fds']} -> {last['publisher_fds']}, threads "
        f"{first['publisher_threads']} -> {last['publisher_threads']}; reader RSS "
        f"{fmt(first['reader_rss_mb'], 1)} -> {fmt(last['reader_rss_mb'], 1)} MB\n"
        f"- reconnect time (server up -> new frames at the reader): median "
        f"{np.median(back):.2f} s, max {back.max():.2f} s; kill -> new frames: median "
        f"{np.median(total):.2f} s, max {total.max():.2f} s ({len(rows)} of {n} restarts "
        "completed). Of the reconnect time, the capture process that succeeded was first seen "
        f"(polling every 20 ms) after a median {np.nanmedian(relaunch):.2f} s (the backoff, and "
        "any failed attempt while the server was not listening yet); from then to new frames "
        "at the reader took a "
        f"median {np.nanmedian(opened):.2f} s (interpreter start, the RTSP "
        "handshake, the first keyframe; FFmpeg's stream probing too with the OpenCV backend)\n"
    )
    return head + table + "\n\n" + summary + "\n![restarts](restarts.png)\n"


def _plot(cfg: Config, rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = [r["restart"] for r in rows]
    parts = [
        ("notice_s", "kill -> publisher noticed", "tab:grey"),
        ("server_start_s", "server start", "tab:olive"),
        ("relaunch_s", "server up -> last capture process seen", "tab:orange"),
        ("open_s", "-> new frames at the reader", "tab:blue"),
    ]
    bottom = np.zeros(len(rows))
    for key, label, color in parts:
        vals = np.asarray([r[key] for r in rows])
        ax1.bar(x, vals, bottom=bottom, label=label, color=color)
        bottom += vals
    ax1.set_xlabel("restart")
    ax1.set_ylabel("seconds")
    ax1.set_ylim(0, float(bottom.max()) * 1.45)  # room for the legend above the bars
    ax1.set_title("From the kill to new frames at the reader")
    ax1.legend(fontsize=8, loc="upper left", ncol=2)
    ax1.grid(True, axis="y", alpha=0.3)
    for key, label in (
        ("publisher_rss_mb", "publishing process"),
        ("reader_rss_mb", "reader process"),
        ("capture_rss_mb", "capture process (new each time)"),
    ):
        ax2.plot(x, [r[key] for r in rows], marker="o", ms=3, label=label)
    ax2.set_ylim(bottom=0)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("restart")
    ax2.set_ylabel("RSS (MB)")
    ax2.set_title("Memory after each restart (flat is good)")
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)
    fig.suptitle(f"RTSP server killed and restarted {len(rows)} times, {cfg.rtsp_size}")
    fig.tight_layout()
    path = Path(cfg.out) / "restarts.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
