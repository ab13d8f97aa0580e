"""Push a stream to a media server (MediaMTX, go2rtc, any RTSP server that takes ANNOUNCE/RECORD):
:func:`push` (and ``framebus push NAME URL``).

The server is the engine for many viewers and other sites (WebRTC, HLS, RTSP to any number of
players); framebus hands it the stream well: the camera's own access units untouched, or frames
encoded once at a steady rate with a placeholder when the stream stalls (:mod:`.units`), over
RTP on the RTSP connection or over UDP (:mod:`.rtsp`), back as soon as the server is.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from framebus import _exit
from framebus._rtp import CLOCK_RATE, parameter_sets
from framebus.errors import PushError, PushUnreachable
from framebus.outputs import StatusFile

from .rtsp import TRANSPORTS, RtspPublisher
from .units import DEFAULT_SIZE, STALL, Unit, Units

__all__ = ["BACKOFF", "DEFAULT_SIZE", "STALL", "TRANSPORTS", "Push", "PushStats", "push"]

BACKOFF = (0.25, 1.0)
"""Seconds before the first retry after a failure, and the most between retries."""
_MIN_BACKLOG = 256 * 1024  # bytes the server may leave unacknowledged before frames are dropped

log = logging.getLogger("framebus.push")


@dataclass(frozen=True)
class PushStats:
    """What a push is doing and has done."""

    name: str
    url: str
    """The server's URL, without credentials."""
    state: str
    """``connecting``, ``live``, ``retrying`` (after a failure: see :attr:`error`), ``stopped``."""
    transport: str
    """``tcp`` or ``udp`` while connected, else ``""``."""
    source: str
    """``passthrough`` (the camera's access units), ``encoded``, or ``placeholder: WHY``."""
    fps: float
    """The rate of encoded output (passthrough goes at the camera's)."""
    sent: int
    """Access units sent (all kinds)."""
    repeated: int
    """Of those, the last frame sent again (the producer is slower than ``fps``)."""
    placeholders: int
    """Of those, the placeholder picture."""
    dropped: int
    """Access units not sent because the server took too little (dropped up to a keyframe)."""
    connects: int
    """Sessions opened (the first, then each reconnection)."""
    bytes_sent: int
    error: str
    """Why the last session failed ("" if none did)."""


class Push:
    """Pushes stream ``name`` to ``url`` (``rtsp://[user:password@]host[:port]/path``) from a
    thread of this process until :meth:`close`; see :func:`push`."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        fps: float | None = None,
        transport: str = "auto",
        encode: bool | None = None,
        stall: float = STALL,
        size: tuple[int, int] = DEFAULT_SIZE,
        timeout: float = 5.0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        if fps is not None and not 0.1 <= fps <= 240:
            raise ValueError(f"fps must be 0.1..240, not {fps}")
        checked = RtspPublisher(url, transport=transport)  # the URL checked now (not connected)
        self.name, self._url = name, url
        self.url = checked.url  # without the credentials
        self._options = {"fps": fps, "encode": encode, "stall": stall, "size": size}
        self._transport, self._timeout = transport, timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "repeated": 0, "placeholders": 0, "dropped": 0,
                        "connects": 0, "bytes_sent": 0}  # fmt: skip
        self._state, self._error, self._link, self._source = "connecting", "", "", ""
        self._fps = fps or 0.0
        self._status = StatusFile("push", name, self.url)
        self._session: RtspPublisher | None = None  # the connection, for close() to cut
        self._thread = threading.Thread(target=self._run, name=f"framebus-push-{name}", daemon=True)
        self._thread.start()
        _exit.close_at_exit(self)  # (and SIGTERM ends the process: `framebus push`)

    def stats(self) -> PushStats:
        with self._lock:
            return PushStats(
                self.name, self.url, self._state, self._link, self._source, self._fps,
                error=self._error, **self._counts,
            )  # fmt: skip

    def _set(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, "_" + key, value)
        self._say()

    def _say(self) -> None:
        """Update the status file ``framebus ls`` and the web read."""
        s = self.stats()
        counts = {k: getattr(s, k) for k in self._counts}
        self._status.update(s.state, f"{s.transport} {s.source}".strip(), s.error, counts)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        units: Units | None = None
        try:
            units = Units(self.name, **self._options)  # type: ignore[arg-type]
            self._loop(units)
        except Exception as exc:  # a bug: say so, do not die silently
            log.exception("push %s to %s stopped", self.name, self.url)
            self._set(error=f"{type(exc).__name__}: {exc}")
        finally:
            if units is not None:
                units.close()
            self._set(state="stopped", link="")
            self._status.close()

    def _loop(self, units: Units) -> None:
        session: RtspPublisher | None = None
        pending: list[Unit] = []
        retry_at, backoff = 0.0, BACKOFF[0]
        origin, last_rtp, skipping, biggest_key = 0.0, -1, False, 0
        queued, moved = 0, time.monotonic()  # the server's backlog, and when it last shrank
        try:
            while not self._stop.is_set():
                unit = pending.pop(0) if pending else units.next(0.2)
                source = (
                    units.mode if units.mode != "placeholder" else f"placeholder: {units.reason}"
                )
                if source != self._source or units.fps != self._fps:
                    self._set(source=source, fps=units.fps)
                elif unit is None or unit.key:
                    self._say()  # (the counters, now and then: the status file's own pace)
                if session is not None and (unit is None or unit.codec != session.codec):
                    try:
                        session.service()
                    except PushError as exc:
                        session, retry_at, backoff = self._failed(session, exc, backoff)
                        continue
                    if unit is not None:  # the codec changed (a placeholder for an H.265
                        session.close()  # camera): announce the new one
                        session = self._session = None
                if unit is None:
                    continue
                if session is None:
                    if time.monotonic() < retry_at:
                        continue
                    if not unit.key:
                        start = units.restart()
                        if not start:
                            continue
                        unit, pending = start[0], start[1:]
                    try:
                        session = self._open(unit)
                    except PushError as exc:
                        session, retry_at, backoff = self._failed(None, exc, backoff)
                        continue
                    backoff, origin, last_rtp, skipping = BACKOFF[0], unit.mono, -1, False
                    queued, moved = 0, time.monotonic()
                if unit.key:
                    biggest_key = max(biggest_key // 2, len(unit.data))
                backlog, now = session.backlog(), time.monotonic()
                if backlog < queued or not backlog:
                    moved = now
                queued = backlog
                limit = min(max(_MIN_BACKLOG, 2 * biggest_key), session.backlog_limit())
                if backlog > limit or (skipping and not unit.key):
                    skipping = True  # the server takes less than the stream: a group's rest
                    units.skip_to_key()  # goes, the next keyframe starts again
                    self._count("dropped")
                    try:
                        if now - moved > self._timeout:  # it takes nothing at all
                            raise PushUnreachable(
                                f"{self.url}: the server took no data for {self._timeout:g} s"
                            )
                        session.service()  # (keep-alives, and whether it hung up)
                    except PushError as exc:
                        session, retry_at, backoff = self._failed(session, exc, backoff)
                    continue
                skipping = False
                rtp = max(last_rtp + 1, round((unit.mono - origin) * CLOCK_RATE))
                try:
                    session.send(unit.data, rtp, unit.wall)
                except PushError as exc:
                    session, retry_at, backoff = self._failed(session, exc, backoff)
                    continue
                last_rtp = rtp
                with self._lock:
                    counts = self._counts
                    counts["sent"] += 1
                    counts["bytes_sent"] += len(unit.data)
                    if unit.kind == "repeat":
                        counts["repeated"] += 1
                    elif unit.kind == "placeholder":
                        counts["placeholders"] += 1
        finally:
            self._session = None
            if session is not None:
                session.close()

    def _open(self, unit: Unit) -> RtspPublisher:
        session = RtspPublisher(self._url, transport=self._transport, timeout=self._timeout)
        self._session = session  # (close() may abort it from another thread)
        try:
            session.open(unit.codec, parameter_sets(unit.codec, unit.data))
        except BaseException:
            self._session = None
            raise
        self._count("connects")
        self._set(state="live", link=session.transport)
        log.info("pushing %s to %s over %s", self.name, self.url, session.transport)
        return session

    def _failed(
        self, session: RtspPublisher | None, exc: PushError, backoff: float
    ) -> tuple[None, float, float]:
        self._session = None
        if session is not None:
            session.close()
        if self._stop.is_set():  # (close() cut the connection: not a failure)
            return None, 0.0, backoff
        with self._lock:
            quiet = self._error == str(exc) and self._state == "retrying"
            self._state, self._error, self._link = "retrying", str(exc), ""
        if not quiet:
            log.warning("push %s: %s (retrying)", self.name, exc)
        return None, time.monotonic() + backoff, min(BACKOFF[1], backoff * 2)

    # -- the end ------------------------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> None:
        """Stop pushing (TEARDOWN sent) and detach; waits up to ``timeout`` for the thread. A
        connection attempt or a send the server holds up is cut short after 0.3 s."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(min(0.3, timeout))
            session = self._session
            if self._thread.is_alive() and session is not None:
                session.abort()
            self._thread.join(max(0.0, timeout - 0.3))
        _exit.forget(self)

    def __enter__(self) -> Push:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def push(
    name: str,
    url: str,
    *,
    fps: float | None = None,
    transport: str = "auto",
    encode: bool | None = None,
    stall: float = STALL,
    size: tuple[int, int] = DEFAULT_SIZE,
    timeout: float = 5.0,
) -> Push:
    """Push local stream ``name`` to the RTSP server at ``url`` (ANNOUNCE/RECORD), from now
    until :meth:`Push.close` (or ``with``), reconnecting whenever the server goes away.

    The camera's H.264/H.265 goes out as it came (passthrough) when the stream has it (framebus's
    RTSP client); any other stream is encoded once (libx264) at ``fps`` frames a second (None:
    the stream's rate), the last frame repeated when the producer is slower. When the stream
    stalls for ``stall`` seconds, ends or is missing, a "no signal" picture of the stream's size
    (else ``size``) goes out at that rate instead, so players never stall, and the stream is
    looked for again each second. ``encode``: True always encodes, False never does.
    ``transport``: ``"tcp"`` (RTP on the RTSP connection), ``"udp"``, or ``"auto"`` (TCP, and UDP
    if the server refuses TCP). ``timeout``: seconds for the server to answer or take data.

    Buffer policy: nothing is queued in framebus; the connection's kernel buffer is capped (512
    KiB), and when the server leaves more than max(256 KiB, two keyframes) unacknowledged, access
    units are dropped up to the next keyframe (counted in :attr:`PushStats.dropped`).
    Credentials in ``url`` never appear in messages, logs or :meth:`Push.stats`.
    """
    return Push(
        name, url, fps=fps, transport=transport, encode=encode, stall=stall, size=size,
        timeout=timeout,
    )  # fmt: skip
