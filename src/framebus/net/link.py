"""A receiver's side of the protocol, with no I/O: what one connection knows of its exporter and
its stream, the mailbox of one frame, the counters, and the state a user sees.

:class:`~framebus.net.receiver.Receiver` moves bytes and holds a lock around every call here;
this class decides: which reply means what (:mod:`.protocol` parsed it), which frame is kept
(:class:`~framebus._order.FrameOrder`: never one older than a frame delivered; a newer frame
replaces one not yet taken, counted in ``dropped``), what the next request is, and the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import wire
from .._order import FrameOrder
from ..errors import FramebusError, StreamEnded
from . import protocol
from ._sockets import HEARTBEAT_TIMEOUT
from .protocol import ErrorCode

__all__ = ["STALL_AFTER", "Description", "Link", "Message", "ReceiverStats"]

STALL_AFTER = 2.0
"""Seconds without a new frame after which a live connection is reported ``stalled``."""


@dataclass(frozen=True)
class Message:
    """One validated frame message: its header, its payload, when it arrived."""

    header: wire.FrameHeader
    payload: memoryview
    received: float  # time.time()
    skipped: int  # frames of this session the receiver never got, since the previous one
    _keep: Any = None  # the zmq.Frame owning the payload's memory


@dataclass(frozen=True)
class ReceiverStats:
    """A receiver's counters."""

    state: str
    received: int
    """Valid frames received."""
    dropped: int
    """Frames replaced in the mailbox before the application took them."""
    bad_messages: int
    """Messages dropped as invalid (wire format, multi-part, undecodable JPEG, wrong size)."""
    stale: int
    """Frames dropped as out of order (older seq, or an older session after a restart)."""
    sessions: int
    """Exporter sessions seen (a restart makes a new one)."""
    reconnects: int
    bytes_received: int
    last_error: str


@dataclass(frozen=True)
class Description:
    """What the exporter's listing says of the received stream (asked once per connection)."""

    width: int
    height: int
    fps: float
    """The rate the exporter measures its capture at."""
    source_fps: float | None
    """The source's own rate (a file's, a camera's if it says); None if it has none."""
    mode: str


class Link:
    """What one receiver knows of the stream ``name`` at ``url``. Not thread-safe: its owner
    calls it under one lock. Times are ``time.monotonic()`` values the owner passes in."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.item: Message | None = None
        """The mailbox: the newest frame not taken yet."""
        self.end: FramebusError | None = None
        """Why no frame will come any more (raised once the mailbox is empty)."""
        self.closed = False
        self.answered = False  # the exporter answered at least once
        self.not_found: str | None = None  # ERR notfound before any frame: attach raises
        self.unsupported: str | None = None  # ERR unsupported: reads raise SourceUnsupported
        self.busy: str | None = None  # ERR busy: no receiver slot for us
        self.described: Description | None = None
        self.listed = False  # a LIST answer came (even one without this stream)
        self.last_answer = 0.0
        self.last_frame = 0.0
        self.order = FrameOrder()  # frames out of order (older seq, older session) dropped
        self.last_got = (0, 0)  # (session, seq) of the last frame received, even if dropped
        self.received = 0
        self.dropped = 0
        self.bad = 0
        self.stale = 0
        self.reconnects = 0
        self.bytes = 0
        self.last_error = ""

    # -- what to send ----------------------------------------------------------------------------

    def request(self) -> bytes | None:
        """The credit to send (``GET``, saying the last frame we have); None once the stream
        ended: a new sink on a closed stream would send its last frame again."""
        if self.end is not None:
            return None
        return protocol.get(self.name, *self.last_got)

    # -- what came ---------------------------------------------------------------------------------

    def arrived(self, size: int, now: float) -> None:
        """A message of ``size`` bytes came: the exporter answers."""
        self.bytes += size
        self.last_answer = now
        self.answered = True

    def reply(self, reply: protocol.Reply, keep: Any, now: float, wall: float) -> bool:
        """Take one parsed reply; True if it used our credit (ask again now). ``keep`` owns a
        frame's payload memory; ``wall`` is ``time.time()``."""
        if isinstance(reply, protocol.FrameReply):
            self._frame(reply.header, reply.payload, keep, now, wall)
            return True
        if isinstance(reply, protocol.WaitReply):
            self.busy = None  # a slot is ours: our credit stands
        elif isinstance(reply, protocol.ErrorReply):
            self._error(reply)
        else:
            self._listing(reply.rows)
        return False

    def bad_message(self, why: str) -> None:
        self.bad += 1
        self.last_error = why

    def connected(self, handshakes: int) -> None:
        """A connection was made (the ``handshakes``-th): any after the first is a reconnect."""
        if handshakes > 1:
            self.reconnects += 1

    def _frame(
        self, header: wire.FrameHeader, payload: memoryview, keep: Any, now: float, wall: float
    ) -> None:
        if self.end is not None:
            return  # sent before the exporter's "ended" crossed our last request
        self.last_got = (header.session, header.seq)  # what the next GET says we have
        skipped = self.order.place(header.session, header.seq)
        if skipped is None:
            self.stale += 1
            return
        self.unsupported = None
        self.busy = None
        self.received += 1
        self.last_frame = now
        if self.item is not None:
            self.dropped += 1
            skipped += self.item.skipped + 1
        self.item = Message(header, payload, wall, skipped, keep)

    def _error(self, reply: protocol.ErrorReply) -> None:
        code, message = reply.code, reply.message
        self.last_error = message
        # "lost" (the publisher died: it may be published again) and "bad" leave us asking
        if code == ErrorCode.NOTFOUND and not self.received:
            self.not_found = f"{self.url}: {message}"
        elif code == ErrorCode.ENDED:
            self.end = StreamEnded(f"{self.url}: {message}")
        elif code == ErrorCode.UNSUPPORTED:
            self.unsupported = f"{self.url}: {message}"
        elif code == ErrorCode.BUSY:
            self.busy = message

    def _listing(self, rows: list[dict[str, Any]]) -> None:
        self.listed = True
        mine = next((r for r in rows if r["name"] == self.name), None)
        if mine is not None:
            self.described = Description(
                mine["width"], mine["height"], float(mine["fps"]),
                float(mine["source_fps"]) or None, mine["mode"],
            )  # fmt: skip

    # -- what the user sees -----------------------------------------------------------------------

    def take(self) -> Message | None:
        item, self.item = self.item, None
        return item

    def state(self, now: float, connected: bool) -> str:
        """connecting, live, busy, stalled, reconnecting, ended or closed."""
        if self.closed:
            return "closed"
        if self.end is not None:
            return "ended"
        if not self.answered:
            return "connecting"
        if not connected or now - self.last_answer > HEARTBEAT_TIMEOUT:
            return "reconnecting"
        if self.busy is not None:
            return "busy"
        if now - self.last_frame > STALL_AFTER:
            return "stalled"
        return "live"

    def stats(self, now: float, connected: bool) -> ReceiverStats:
        return ReceiverStats(
            state=self.state(now, connected),
            received=self.received,
            dropped=self.dropped,
            bad_messages=self.bad,
            stale=self.stale,
            sessions=self.order.sessions,
            reconnects=self.reconnects,
            bytes_received=self.bytes,
            last_error=self.last_error,
        )
