"""Cleanup at exit: open publishers are closed at interpreter exit and on SIGTERM."""

from __future__ import annotations

import atexit
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol

__all__ = ["close_at_exit", "forget"]


class _Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[_Closable] = weakref.WeakSet()


def close_at_exit(obj: _Closable) -> None:
    """Close ``obj`` at interpreter exit, and make SIGTERM an exit (unless the program handles
    SIGTERM itself), so that a plain ``kill`` removes its streams too."""
    _open.add(obj)
    _install_sigterm_exit()


def forget(obj: _Closable) -> None:
    _open.discard(obj)


@atexit.register
def _close_all() -> None:
    for obj in list(_open):
        obj.close()


def _install_sigterm_exit() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
