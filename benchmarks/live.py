"""The real live source of the RTSP scenarios: framebus's GStreamer RTSP test server.

:class:`ServerHost` runs :class:`framebus.testing.RTSPServer` (which paints each frame's send
time as a barcode) from a spawned helper process that leaves with the benchmark: if the
benchmark process is killed, even by SIGKILL, the helper notices, stops the server and exits, so
no server outlives a run. The benchmark can kill and restart the server (a camera reboot)
through the helper.
"""

from __future__ import annotations

import contextlib
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType

from .common import SPAWN, BenchError, Size, exit_with_parent, stop_process

__all__ = ["ServerHost"]

_REPLY_TIMEOUT = 30.0  # seconds for the server to (re)start


def _host(size: str, fps: int, conn: Connection) -> None:
    """The helper process: own one RTSPServer, obey ``start``/``kill``/``exit``."""
    exit_with_parent()
    from framebus.testing import RTSPServer

    srv = RTSPServer(size=size, fps=fps)
    try:
        srv.start()
        while True:
            conn.send(("ok", srv.url(), srv.proc.pid if srv.proc is not None else 0))
            try:
                cmd = conn.recv()
            except EOFError:  # the benchmark is gone
                return
            if cmd == "kill":
                srv.kill()
            elif cmd == "start":
                srv.start()
            else:
                return
    except (BrokenPipeError, SystemExit):
        pass
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc(), 0))
    finally:
        srv.stop()
        conn.close()


class ServerHost:
    """``with ServerHost(size, fps) as srv: srv.url``; ``srv.kill()``, ``srv.start()``."""

    def __init__(self, size: Size, fps: int) -> None:
        self.size, self.fps = size, fps
        self.url = ""
        self.server_pid = 0
        """Pid of the GStreamer server process (0 while it is killed)."""
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None

    def _reply(self, what: str) -> None:
        conn = self._conn
        assert conn is not None
        if not conn.poll(_REPLY_TIMEOUT):
            raise BenchError(f"RTSP server: no answer to {what} within {_REPLY_TIMEOUT:.0f} s")
        try:
            kind, text, pid = conn.recv()
        except EOFError:
            raise BenchError(f"RTSP server host died during {what}") from None
        if kind != "ok":
            raise BenchError(f"RTSP server: {what} failed:\n{text}")
        self.url, self.server_pid = text, pid

    def _command(self, cmd: str) -> None:
        if self._conn is None:
            raise BenchError("RTSP server host is not running")
        try:
            self._conn.send(cmd)
        except OSError:
            raise BenchError(f"RTSP server host died before {cmd}") from None
        self._reply(cmd)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: a power cut), on the helper's side."""
        self._command("kill")

    def start(self) -> None:
        """Start the server again on the same port; returns once it listens."""
        self._command("start")

    def __enter__(self) -> ServerHost:
        from framebus.testing import rtsp_server_available

        if not rtsp_server_available():
            raise BenchError(
                "GStreamer's RTSP server is not available to /usr/bin/python3 (Debian packages "
                "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly; `make system-deps`)"
            )
        here, there = SPAWN.Pipe()
        self._proc = SPAWN.Process(
            target=_host,
            args=(str(self.size), self.fps, there),
            name="bench-rtsp-host",
            daemon=True,
        )
        self._conn = here
        try:
            self._proc.start()
            there.close()
            self._reply("start")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send("exit")
            conn.close()
        if self._proc is not None:
            stop_process(self._proc, grace=5.0)  # the helper stops the server in its finally
            self._proc = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
