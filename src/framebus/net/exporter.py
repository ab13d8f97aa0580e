"""The ZeroMQ export in a process of its own, started again when it dies: :class:`Exporter`.

Why a process: what faces the network is libzmq, native code that any peer reaching the port
talks to. libzmq 4.3.5 aborts its whole process on internal assertions a peer can provoke
(``!_io_error``, ``stream_engine_base.cpp:310``: a receiver floods requests until the ROUTER
throttles it, then vanishes). In a thread of ``framebus serve`` that abort took every stream
with it. Here it takes only the exporter's process: the streams live in shared memory, their
captures in processes of their own, and the exporter reads them as any reader does (a reader
that dies is reclaimed by the ring). The owner's supervisor thread (``framebus-zmq-supervise``)
sees the process end, logs how, counts it (:attr:`ExporterStats.restarts`) and starts a new
one on the same port, at once the first time and with a growing pause (up to 5 s) while it
keeps dying young. Receivers redial within half a second and see a new session.

Owner and child talk through pipes, in JSON lines (nothing is unpickled). The child's stdin
carries its configuration, one line, and then stays open: its end (the owner closed it, or
the owner died) tells the child to stop. The child's stdout carries ``{"ready": ENDPOINT}``
or ``{"error": TEXT}``, then ``{"stats": ...}`` whenever its counters change (at most four
times a second) and ``{"log": [LEVEL, TEXT]}`` for its log records, which the owner logs
again through ``framebus.zmq``. Buffering: the child writes without blocking and drops a line
the pipe cannot take (the owner reads continuously; a stuck owner must not stall the export);
the owner reads lines of at most 64 KiB and ignores any other. stderr is the owner's (libzmq
prints its assertion there).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import IO, Any

from framebus import _exit
from framebus.errors import FramebusError
from framebus.limits import DEFAULT_MAX_CONNECTIONS

from .config import ExportConfig, ExporterStats, export_url
from .server import ExportServer
from .sink import CodecName

__all__ = ["MODULE", "Exporter", "export", "main"]

log = logging.getLogger("framebus.zmq")

MODULE = "framebus.net.exporter"
"""Run as ``python -m`` for the exporter's process."""
START_TIMEOUT = 30.0
"""Seconds the exporter's process gets to bind and say so."""
STOP_GRACE = 2.0
"""Seconds it gets to exit after its stdin closed, before it is killed."""
MAX_LINE = 64 * 1024
_STATS_EVERY = 0.25
_BACKOFF_MAX = 5.0
_ASKED_PAUSE = 0.5  # seconds before restarting a process that was asked to stop
_HEALTHY_AFTER = 10.0  # a process that lived this long restarts at once when it dies


class _Lines:
    """JSON lines from a pipe, each at most MAX_LINE bytes (longer ones are skipped)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self._buf = b""
        self._skipping = False

    def read(self, deadline: float | None) -> dict[str, Any] | None:
        """The next line as a JSON object; None at EOF. TimeoutError after ``deadline``."""
        while True:
            cut = self._buf.find(b"\n")
            if cut >= 0:
                line, self._buf = self._buf[:cut], self._buf[cut + 1 :]
                if self._skipping:
                    self._skipping = False
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    return message
                continue
            if len(self._buf) > MAX_LINE:
                self._buf, self._skipping = b"", True
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if wait == 0.0 or not select.select([self.fd], [], [], wait)[0]:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                continue
            data = os.read(self.fd, 65536)
            if not data:
                return None
            self._buf += data


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Exporter:
    """Serve streams of this machine on ``endpoint`` (``tcp://HOST:PORT``; HOST ``*`` or
    ``0.0.0.0``: every interface; PORT 0: a free one, see :attr:`endpoint`).

    ``names``: the streams to export; None (the default) exports every stream published on
    this machine, as streams come and go (a receiver asking for a stream that is not there
    yet gets ``notfound``; once it had frames, it keeps asking). ``codec``/``quality``: see
    :class:`~framebus.net.ZmqSink`. ``curve``: a key directory
    (:func:`framebus.net.generate_keys`) to encrypt and to let in only the receivers whose
    keys are in its ``clients/``. ``max_receivers``: receivers served at once (more get
    ``ERR busy``; one network address may hold a quarter of them). ``max_connections``: TCP
    connections open at once (more are cut at once; connections that ask nothing for 10 s are
    cut too; each connection may make 100 requests a second: see
    :mod:`framebus.net.limits`).

    The export runs in a process of its own from construction until :meth:`close` (or the
    end of a ``with`` block), started again if it dies (see the module docstring); bad
    options and binding errors raise at once. The protocol and its buffering policy:
    :mod:`framebus.net.server`.
    """

    def __init__(
        self,
        endpoint: str,
        names: Iterable[str] | None = None,
        *,
        codec: CodecName = "jpeg",
        quality: int = 80,
        curve: str | os.PathLike[str] | None = None,
        max_receivers: int = 64,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.config = ExportConfig.make(
            endpoint,
            names,
            codec=codec,
            quality=quality,
            curve=curve,
            max_receivers=max_receivers,
            max_connections=max_connections,
        )
        self.names = self.config.names
        self.insecure = self.config.insecure
        """No CURVE on an address other than loopback."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False
        self._restarts = 0
        self._last_failure = ""
        proc, lines, bound = self._start(self.config)
        self._proc: subprocess.Popen[bytes] | None = proc
        self._lines = lines
        self.endpoint: str = bound
        """The endpoint bound, its port resolved (``tcp://0.0.0.0:5555``)."""
        self._snapshot = ExporterStats(bound, 0, 0, ())
        if self.insecure:
            log.warning(
                "framebus: warning: exporting on %s without CURVE: anyone who can reach the "
                "port receives the streams (framebus keys generate DIR, then --curve DIR)",
                bound,
            )
        self._thread = threading.Thread(
            target=self._supervise, name="framebus-zmq-supervise", daemon=True
        )
        self._thread.start()
        # closed at exit while the thread still runs: a script that forgets close() exits
        _exit.close_at_exit(self, sigterm=False)

    # -- the owner's side ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        """The exporter's process now (0 between a death and the restart, or once closed)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else 0

    def url(self, name: str = "", host: str | None = None) -> str:
        """``zmq://HOST:PORT[/NAME]`` for receivers (HOST: the bound one unless given)."""
        return export_url(self.endpoint, name, host)

    def stats(self) -> ExporterStats:
        """The process's last counters (a new process starts them at zero), with
        ``restarts`` and ``last_failure`` of this exporter's whole life."""
        with self._lock:
            return replace(self._snapshot, restarts=self._restarts, last_failure=self._last_failure)

    def close(self) -> None:
        """Stop serving: receivers see the connection go (``reconnecting``). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            proc = self._proc
        _exit.forget(self)
        if proc is not None:
            _stop(proc)
        if self._thread is not threading.current_thread():
            # during interpreter finalization a daemon thread never runs again: do not wait
            self._thread.join(None if not sys.is_finalizing() else 0)
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:  # one started while closing
            _stop(proc)

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the process -------------------------------------------------------------------------------

    @staticmethod
    def _start(config: ExportConfig) -> tuple[subprocess.Popen[bytes], _Lines, str]:
        """A new exporter process, bound: (process, its lines, the endpoint bound)."""
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(config.to_json()).encode() + b"\n")
            lines = _Lines(proc.stdout)
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    message = lines.read(deadline)
                except TimeoutError:
                    raise FramebusError(
                        f"the exporter on {config.endpoint} did not start within "
                        f"{START_TIMEOUT:g} s"
                    ) from None
                if message is None:
                    raise FramebusError(
                        f"the exporter on {config.endpoint} did not start: its process "
                        f"{_how_it_ended(proc.wait())}"
                    )
                if isinstance(message.get("ready"), str):
                    return proc, lines, message["ready"]
                if isinstance(message.get("error"), str):
                    raise FramebusError(message["error"][:500])
                _relay_log(message)
        except BaseException:
            _stop(proc)
            raise

    def _supervise(self) -> None:
        """Read the process's lines; when it ends, start another (until close)."""
        quick_deaths = 0
        started = time.monotonic()
        config = replace(self.config, endpoint=self.endpoint)  # the same port again
        while True:
            with contextlib.suppress(ValueError, OSError):
                while (message := self._lines.read(None)) is not None:
                    self._take(message)
            with self._lock:
                proc = self._proc
            code = proc.wait() if proc is not None else 0
            if self._stopping.is_set():
                return
            how = _how_it_ended(code)
            lived = time.monotonic() - started
            quick_deaths = 0 if lived >= _HEALTHY_AFTER else quick_deaths + 1
            with self._lock:
                self._restarts += 1
                self._last_failure = how
                self._proc = None
                count = self._restarts
            log.warning(
                "framebus: the ZeroMQ exporter's process on %s %s after %.1f s; starting it "
                "again (restart %d); the streams were not affected",
                self.endpoint,
                how,
                lived,
                count,
            )
            # a SIGTERM/SIGINT to the process group (systemd stopping the service, Ctrl-C)
            # reaches the owner too: give its shutdown a moment to win over a restart
            asked = code in (-signal.SIGTERM, -signal.SIGINT)
            while True:
                pause = 0.0 if quick_deaths <= 1 else min(_BACKOFF_MAX, 0.1 * 2**quick_deaths)
                if self._stopping.wait(max(pause, _ASKED_PAUSE if asked else 0.0)):
                    return
                try:
                    new, lines, _ = self._start(config)
                except (FramebusError, OSError) as exc:
                    quick_deaths += 1
                    log.warning("framebus: the ZeroMQ exporter did not start again: %s", exc)
                    continue
                break
            started = time.monotonic()
            with self._lock:
                if self._closed:
                    _stop(new)
                    return
                self._proc, self._lines = new, lines
                self._snapshot = ExporterStats(self.endpoint, 0, 0, ())

    def _take(self, message: dict[str, Any]) -> None:
        if "stats" in message:
            try:
                stats = ExporterStats.from_json(message["stats"])
            except (TypeError, KeyError, ValueError):
                return
            with self._lock:
                self._snapshot = stats
        else:
            _relay_log(message)


def _relay_log(message: dict[str, Any]) -> None:
    record = message.get("log")
    if (
        isinstance(record, list)
        and len(record) == 2
        and isinstance(record[0], int)
        and isinstance(record[1], str)
    ):
        log.log(max(logging.DEBUG, min(logging.CRITICAL, record[0])), "%s", record[1][:2000])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the exporter's process: its stdin closes (it stops), then it is killed if it must."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


export = Exporter
"""``export(endpoint, names, ...)`` starts exporting streams: the same as :class:`Exporter`
(close it to stop)."""


# -- the exporter's process ---------------------------------------------------------------------


class _Out:
    """The child's stdout: one JSON line per write, never blocking (a full pipe drops it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        os.set_blocking(1, False)
        self.dropped = 0

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        with self._lock:
            try:
                sent = os.write(1, data)
            except BlockingIOError:
                self.dropped += 1
                return
            while sent < len(data):  # a partial line is finished, briefly, or the owner is gone
                select.select([], [1], [], 1.0)
                sent += os.write(1, data[sent:])


class _Forward(logging.Handler):
    def __init__(self, out: _Out) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.out.send({"log": [record.levelno, self.format(record)]})


def main() -> int:
    """The exporter's process: configuration on stdin, serve until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    out = _Out()
    logger = logging.getLogger("framebus")
    logger.addHandler(_Forward(out))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        config = ExportConfig.from_json(json.loads(sys.stdin.buffer.readline(MAX_LINE)))
        server = ExportServer(config)
    except (FramebusError, ValueError, KeyError, TypeError) as exc:
        out.send({"error": str(exc)})
        return 2
    out.send({"ready": server.endpoint})
    try:
        last = None
        while True:
            if select.select([0], [], [], _STATS_EVERY)[0] and not os.read(0, 4096):
                break  # the owner closed our stdin, or died
            stats = server.stats()
            if stats != last:
                out.send({"stats": stats.to_json()})
                last = stats
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
