"""The warm capture process: imports numpy, OpenCV and framebus's sources once per user
process, then forks one capture process per stream (as ``multiprocessing``'s forkserver).

A fresh interpreter per capture costs about 0.4 s (the imports); a fork of a warm one a few
milliseconds. Each capture still runs in a process of its own, killable when hung inside
native code. The server runs its loop in its one thread and starts no other (its thread pools
are turned off: ``OPENBLAS_NUM_THREADS=1``, OpenCV's set to one), so forking it is safe; it runs
``python -m framebus.capture`` (so a capture is recognised as framebus's own by the same argv
check as before) and talks to its user process over a ``SOCK_SEQPACKET`` socket pair: one
JSON request per capture (with a pipe source's descriptor attached), one JSON reply (the
child's pid and start time). It exits when that socket closes (its user process exited or
closed it); the captures it forked go on until their streams close, and a capture whose
parent is gone checks that its publisher still lives before it removes anything.

``FRAMEBUS_FORK_SERVER=0`` turns it off: every capture is a fresh interpreter again.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _exit
from .. import _platform as plat
from ..bus import CAPTURE_MODULE
from ..errors import FramebusError

__all__ = ["ENV", "ForkServer", "ForkServerGone", "capture_env", "fork_server", "serve"]

ENV = "FRAMEBUS_FORK_SERVER"
_MAX_MESSAGE = 1 << 20  # a request is a spec: a URL, options; never near this
_START_TIMEOUT = 30.0
_REPLY_TIMEOUT = 10.0
_WAIT_FOR_START = 2.0  # how long a capture waits for a starting server before it goes without
_REAP_PERIOD = 0.1  # how often the server reaps captures that exited
_WARM_AFTER = 1.0  # idle seconds before the server imports PyAV (not while captures are asked)
_PRELOAD = ("numpy", "framebus.capture._loop", "framebus.sources._open", "framebus.pipe.source")


def capture_env() -> dict[str, str]:
    """The environment of a ``python -m framebus.capture`` this process starts: its own, with
    the directory this framebus is imported from first on ``PYTHONPATH`` (the child imports
    the same framebus)."""
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    return env


class ForkServerGone(FramebusError):
    """The fork server could not be asked (it is gone, or the request could not be made):
    nothing was forked, so a fresh interpreter may take the capture instead."""


class ForkServer:
    """The user process's end: starts the server and asks it for captures. Thread-safe. A
    request that fails after it was sent closes the server for good (a late answer would
    otherwise be read as the next request's)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        their_fd = theirs.fileno()
        self._sock = ours
        self._lock = threading.Lock()
        self.pid = os.getpid()  # the process this server belongs to (not a fork of it)
        env = capture_env()
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: no pool to fork over
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", CAPTURE_MODULE],
                stdin=subprocess.PIPE,
                env=env,
                close_fds=True,
                pass_fds=(their_fd,),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            assert self.proc.stdin is not None
            with self.proc.stdin:
                self.proc.stdin.write(json.dumps({"fork_server": their_fd}).encode())
            ours.settimeout(_START_TIMEOUT)
            if ours.recv(64) != b"ready":
                raise FramebusError("the capture fork server did not start")
            ours.settimeout(None)
        except BaseException:
            self.close()
            raise

    def spawn(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> tuple[int, int]:
        """Fork a capture for ``message`` (what ``python -m framebus.capture`` reads on stdin);
        returns its (pid, start time). ``fds``: descriptors it gets (a pipe source's)."""
        try:
            request = json.dumps({**message, "env": dict(os.environ), "cwd": os.getcwd()})
        except OSError as exc:  # the working directory was removed
            raise ForkServerGone(f"cannot ask the capture fork server: {exc}") from None
        with self._lock:
            sock = self._sock
            try:
                sock.settimeout(_REPLY_TIMEOUT)
                socket.send_fds(sock, [request.encode()], list(fds))
            except OSError as exc:
                self._sock.close()
                raise ForkServerGone(f"the capture fork server is gone: {exc}") from None
            try:
                reply = sock.recv(_MAX_MESSAGE)
            except OSError as exc:  # no answer in time: never reused (a late one would be
                sock.close()  # read as the next request's)
                raise FramebusError(f"the capture fork server did not answer: {exc}") from None
            except BaseException:  # an interrupt: its answer may still come
                sock.close()
                raise
            finally:
                with contextlib.suppress(OSError):
                    sock.settimeout(None)
            return self._answer(reply)

    def _answer(self, reply: bytes) -> tuple[int, int]:
        """(pid, start time) of the forked capture. ForkServerGone if the server said it
        forked nothing; FramebusError (the server closed) if it may have."""
        try:
            answer = json.loads(reply) if reply else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise ForkServerGone(f"the capture fork server could not fork: {answer['error']}")
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("pid"), int)
            and isinstance(answer.get("start"), int)
            and answer["pid"] > 1
        ):
            self._sock.close()
            raise FramebusError("the capture fork server exited or answered nonsense")
        return answer["pid"], answer["start"]

    def alive(self) -> bool:
        """Running, and still ours to ask (a failed request closes the socket for good)."""
        return self._sock.fileno() != -1 and self.proc.poll() is None

    def close(self) -> None:
        """Close the socket: the server exits (its captures go on until their streams end)."""
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.pid != os.getpid():
            return  # a fork of the process that started it: not this process's child
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_server: ForkServer | None = None
_starting: tuple[int, threading.Thread] | None = None  # (pid of this process, its starter)
_server_lock = threading.Lock()
_failed_in: int | None = None  # the pid of a process whose server would not start: no retries


def fork_server(wait: bool = True) -> ForkServer | None:
    """This process's fork server, if it is ready. When there is none yet (the first capture of
    the process, or the server died) it starts one in a background thread and returns None: that
    capture runs as a fresh interpreter meanwhile, which takes as long as the server's own start,
    and the two overlap. While it is starting, ``wait`` waits for it, at most 2 s (about what a
    fresh interpreter would take on a busy machine). None also if turned off
    (``FRAMEBUS_FORK_SERVER=0``) or if it would not start in this process."""
    global _starting
    me = os.getpid()
    if os.environ.get(ENV, "1") == "0" or _failed_in == me:
        return None
    with _server_lock:
        server = _server
        if server is not None and server.pid == me and server.alive():
            return server
        if _starting is None or _starting[0] != me or not _starting[1].is_alive():
            if _starting is not None and _starting[0] == me and server is None:
                return None  # started, and did not come up: not one start per capture
            starter = threading.Thread(target=_start, name="framebus-fork-server", daemon=True)
            _starting = (me, starter)
            starter.start()
            return None
        starter = _starting[1]
    if wait:
        starter.join(_WAIT_FOR_START)
    server = _server
    return server if server is not None and server.pid == me and server.alive() else None


def _forget_in_child() -> None:
    """In a child forked from this process (``os.fork``, multiprocessing's fork): let go of the
    parent's server, or its socket would keep the server up after the parent died."""
    global _server, _starting
    server, _server, _starting = _server, None, None
    if server is not None:
        with contextlib.suppress(OSError):
            server._sock.close()


os.register_at_fork(after_in_child=_forget_in_child)


def _start() -> None:
    global _server, _failed_in
    old = _server
    if old is not None and old.pid == os.getpid():
        old.close()  # it died: reap it
    try:
        server = ForkServer()
    except (OSError, FramebusError):
        _server, _failed_in = None, os.getpid()
        return
    _exit.close_last_at_exit(server)
    _server = server


# -- the server (in ``python -m framebus.capture``) ----------------------------------------------


def serve(fd: int, run_capture: Callable[[dict[str, Any], int | None], int]) -> int:
    """Serve fork requests on socket ``fd`` until it closes. ``run_capture(message, fd)`` runs
    in each forked child (with the descriptor it was sent, if any) and returns its exit code."""
    sock = socket.socket(fileno=fd)
    _preload()
    try:
        sock.send(b"ready")
    except OSError:
        return 0  # its user process is gone already (it exited while this one started)
    warm, idle_since = False, time.monotonic()
    while True:
        readable, _, _ = select.select([sock], [], [], _REAP_PERIOD)
        _reap()
        if not readable:
            if not warm and time.monotonic() - idle_since > _WARM_AFTER:
                warm = True  # idle: import what some captures need, before they ask
                _preload_more()
            continue
        idle_since = time.monotonic()
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 4)
        except OSError:
            return 0
        if not data:
            return 0  # the user process closed it or exited
        try:
            message = json.loads(data)
            pid = os.fork()
        except Exception as exc:  # a bad request, no memory for a fork: say so, serve on
            _close(fds)
            if not _reply(sock, {"error": str(exc)}):
                return 0
            continue
        if pid == 0:  # the capture
            code = 1
            try:
                sock.close()
                _close(fds[1:])
                code = run_capture(message, fds[0] if fds else None)
            finally:
                os._exit(code)  # never back into the server's loop or its atexit
        _close(fds)
        if not _reply(sock, {"pid": pid, "start": plat.process_start_time(pid) or 0}):
            return 0


def _reply(sock: socket.socket, answer: dict[str, Any]) -> bool:
    """Send ``answer``; False if the user process is gone."""
    try:
        sock.send(json.dumps(answer).encode())
    except OSError:
        return False
    return True


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _preload() -> None:
    """What every capture needs, imported once here instead of in each."""
    import cv2  # the file and camera backend

    cv2.setNumThreads(1)
    for module in _PRELOAD:
        importlib.import_module(module)


def _preload_more() -> None:
    """PyAV (the RTSP client's decoder, the ``av`` backend): 0.2 s more, imported while idle."""
    with contextlib.suppress(ImportError):
        import av  # noqa: F401
