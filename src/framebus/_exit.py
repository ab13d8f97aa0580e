"""Cleanup at exit: open publishers are closed at interpreter exit and on SIGTERM; objects
that own a thread and a ZeroMQ context (remote readers, exporters) are closed at exit too.

Why at ``atexit`` and not in ``__del__``: atexit callbacks run while daemon threads still
run. Later, during finalization, a daemon thread that wants the GIL is frozen for good, so a
``__del__`` that joins it, or terminates a ZeroMQ context whose sockets it holds, waits for
ever (a script that forgot ``release()`` would hang at exit)."""

from __future__ import annotations

import atexit
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol

__all__ = ["close_at_exit", "close_last_at_exit", "forget"]


class _Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[_Closable] = weakref.WeakSet()
_last: weakref.WeakSet[_Closable] = weakref.WeakSet()


def close_at_exit(obj: _Closable, *, sigterm: bool = True) -> None:
    """Close ``obj`` at interpreter exit. With ``sigterm`` also make SIGTERM an exit (unless
    the program handles SIGTERM itself), so that a plain ``kill`` removes its streams too;
    objects that leave nothing behind when killed need not ask for that."""
    _open.add(obj)
    if sigterm:
        _install_sigterm_exit()


def close_last_at_exit(obj: _Closable) -> None:
    """Close ``obj`` at interpreter exit after everything :func:`close_at_exit` holds (the
    capture fork server: the publishers stop their captures first)."""
    _last.add(obj)


def forget(obj: _Closable) -> None:
    _open.discard(obj)


@atexit.register
def _close_all() -> None:
    for obj in list(_open):
        obj.close()
    for obj in list(_last):
        obj.close()


def _install_sigterm_exit() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
