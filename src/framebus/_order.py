"""The order of wire frames (no I/O): a frame is known by (session, seq), where the session is
random per sender (a restarted sender is a new session) and seq grows within it. The ZeroMQ
receiver and the pipe reader both follow this rule; only what they do with a frame out of
order differs.
"""

from __future__ import annotations

import collections

__all__ = ["FrameOrder"]


class FrameOrder:
    """Where each frame stands against the frames before it.

    :meth:`place` gives the frames of the same session skipped since the previous frame (0 for
    the first frame of a session), or None for a frame out of order: an older seq in the current
    session, or any frame of a session already left. With ``keep_stale=False`` (ZeroMQ: a frame
    out of order is dropped) such a frame changes nothing; with ``keep_stale=True`` (a pipe
    delivers whatever it is sent, in order) it becomes the new reference.
    """

    def __init__(self, *, keep_stale: bool = False, remember: int = 16) -> None:
        self.keep_stale = keep_stale
        self.session: int | None = None
        self.seq = 0
        self.sessions = 0
        """Sessions seen (a sender restart makes a new one)."""
        self._old: collections.deque[int] = collections.deque(maxlen=remember)

    def place(self, session: int, seq: int) -> int | None:
        if session != self.session:
            if session in self._old:
                if self.keep_stale:
                    self._switch(session, seq)
                return None
            self._switch(session, seq)
            return 0
        if seq <= self.seq:
            if self.keep_stale:
                self.seq = seq
            return None
        skipped = seq - self.seq - 1
        self.seq = seq
        return skipped

    def _switch(self, session: int, seq: int) -> None:
        if self.session is not None:
            self._old.append(self.session)
        self.session, self.seq = session, seq
        self.sessions += 1
