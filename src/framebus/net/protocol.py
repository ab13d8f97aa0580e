"""The ZeroMQ wing's protocol, with no I/O: the messages, byte for byte, and the exporter's
book of receivers and their credits. The socket layers (:mod:`.receiver`, :mod:`.server`) only
move these bytes.

ROUTER/DEALER with one credit per receiver
------------------------------------------

The exporter is one ROUTER socket (``tcp://HOST:PORT``) for every exported stream; each
receiver is one DEALER connected to it, for one stream. A receiver asks for a frame; the
exporter answers with the newest frame of that stream the receiver has not had, as soon as
there is one; the receiver asks again as soon as the frame arrived. So each receiver has
exactly **one frame in flight**, and it is always the newest at the moment the receiver
became ready for it: true latest-only per receiver, on any link. PUB/SUB was not chosen
because it cannot give that: a PUB queue that is full drops the *newest* message and keeps
old ones, ``CONFLATE`` is ignored on XPUB and would only cap ZeroMQ's own queue, not the
kernel's socket buffers (seconds of frames on a slow link), and a publisher cannot tell a slow
subscriber from a fast one. With credits, the kernel buffers can hold at most the one frame
in flight, whatever their size, and the request channel serves the listing (``ls
zmq://``) and the errors (unknown stream) on the same port. The price is one round trip per
frame: a receiver gets at most 1 / (RTT + transfer time) frames per second (LAN: far above
any camera's rate; 100 ms of RTT: 10 fps). ``CONFLATE`` is not used: with one credit there is
never a second frame to conflate, and on a DEALER it would merge the short replies too.

Messages (every message is one ZeroMQ part; the ROUTER adds and strips the peer's id)::

    receiver -> exporter (ASCII, at most 1 KiB: MAXMSGSIZE cuts a peer that sends more)
      GET <name> <session hex> <seq>   my credit for stream <name>; the last frame I have
      LIST                             what do you export? (a receiver asks once per
                                       connection, for its stream's rate and size)
      BYE                              forget me (release())
    exporter -> receiver
      <64-byte wire header><payload>   a frame (framebus.wire: magic, session, seq, ...)
      WAIT                             no frame newer than yours yet (your credit stands)
      ERR <code> <text>                notfound | ended | lost | busy | bad | unavailable |
                                       unsupported (see :class:`ErrorCode`); at most 512
                                       bytes
      LIST <json>                      {"streams": [{"name", "state", "width", "height",
                                       "fps", "source_fps", "mode", "codec", "receivers"},
                                       ...]}: fps is measured, source_fps the source's own
                                       (0: none; absent from an earlier framebus's listing)

Every message from the other side is checked before use: :func:`parse_request` and
:func:`parse_reply` raise WireFormatError for anything that is not exactly one of these.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..errors import WireFormatError
from ._sockets import valid_name

__all__ = ["BYE", "LIST", "MAX_ERROR", "MAX_LISTING", "WAIT", "Bye", "CreditBook", "ErrorCode",
           "ErrorReply", "FrameReply", "Get", "ListReply", "ListRequest", "Peer", "Reply",
           "Request", "WaitReply", "error", "get", "listing", "parse_listing", "parse_reply",
           "parse_request"]  # fmt: skip

LIST = b"LIST"
BYE = b"BYE"
WAIT = b"WAIT"
MAX_ERROR = 512
"""Bytes of an ``ERR`` reply at most (longer texts are cut)."""
MAX_LISTING = 256 * 1024
"""Bytes of a ``LIST`` reply a receiver accepts at most."""


class ErrorCode(str, enum.Enum):
    """What an ``ERR`` reply says."""

    NOTFOUND = "notfound"  # the stream is not exported (or not published) there
    ENDED = "ended"  # the stream ended: nothing more will come
    LOST = "lost"  # its publisher died
    BUSY = "busy"  # no receiver slot for this receiver: its credit is not taken
    BAD = "bad"  # a request that is not one of the above
    UNAVAILABLE = "unavailable"  # the stream cannot be read there now
    UNSUPPORTED = "unsupported"  # its frames cannot be sent (a dtype the wire lacks)


# -- requests (receiver -> exporter) ------------------------------------------------------------


@dataclass(frozen=True)
class Get:
    """A receiver's credit for stream ``name``; ``has`` is the (session, seq) of the last frame
    it got ((0, 0) before any)."""

    name: str
    has: tuple[int, int]


@dataclass(frozen=True)
class ListRequest:
    pass


@dataclass(frozen=True)
class Bye:
    pass


Request = Get | ListRequest | Bye


def get(name: str, session: int, seq: int) -> bytes:
    return f"GET {name} {session:x} {seq}".encode()


def parse_request(body: bytes) -> Request:
    """A request, every word checked: a valid stream name, a hex session of at most 64 bits, a
    decimal seq of at most 20 digits. WireFormatError for anything else."""
    words = body.split(b" ")
    verb = words[0]
    if verb == b"GET" and len(words) == 4:
        name, session, seq = words[1:]
        if not (
            name.isascii()
            and valid_name(name.decode("ascii"))
            and _HEX.fullmatch(session)
            and _DECIMAL.fullmatch(seq)
        ):
            raise WireFormatError("malformed GET")
        return Get(name.decode("ascii"), (int(session, 16), int(seq)))
    if body == LIST:
        return ListRequest()
    if body == BYE:
        return Bye()
    raise WireFormatError(f"unknown request {body[:16]!r}")


_HEX = re.compile(rb"[0-9a-f]{1,16}")
_DECIMAL = re.compile(rb"[0-9]{1,20}")


# -- replies (exporter -> receiver) ---------------------------------------------------------------


@dataclass(frozen=True)
class FrameReply:
    header: wire.FrameHeader
    payload: memoryview


@dataclass(frozen=True)
class WaitReply:
    pass


@dataclass(frozen=True)
class ErrorReply:
    code: str
    """An :class:`ErrorCode` value, or a code this receiver does not know (a newer exporter)."""
    message: str
    """Printable characters only, at most 200."""


@dataclass(frozen=True)
class ListReply:
    rows: list[dict[str, Any]]


Reply = FrameReply | WaitReply | ErrorReply | ListReply


def error(code: ErrorCode, text: str) -> bytes:
    return f"ERR {code.value} {text}".encode()[:MAX_ERROR]


def parse_reply(data: memoryview, *, max_payload: int, where: str) -> Reply:
    """One message from the exporter (``where`` names it in errors). A frame's payload is a
    view of ``data``. WireFormatError for anything that is not a valid reply."""
    if data[:4] == wire.MAGIC:
        header, payload = wire.unpack_frame(data, max_payload=max_payload)
        return FrameReply(header, payload)
    if bytes(data[:5]) == b"LIST ":
        if len(data) > MAX_LISTING:
            raise WireFormatError(f"a LIST answer of {len(data)} bytes (at most {MAX_LISTING})")
        return ListReply(parse_listing(bytes(data[5:]), where))
    head = bytes(data[:MAX_ERROR])
    if head == WAIT:
        return WaitReply()
    if head.startswith(b"ERR "):
        code, _, message = head[4:].decode("utf-8", "replace").partition(" ")
        text = "".join(c for c in message if c.isprintable())[:200]
        return ErrorReply(code if _WORD.fullmatch(code) else "?", text)
    raise WireFormatError(f"unknown message starting {head[:8]!r}")


# -- the listing --------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]{1,16}")
_FIELDS = ("name", "state", "width", "height", "fps", "mode", "codec", "receivers")
_OPTIONAL = {"source_fps": 0.0}  # an exporter of an earlier framebus does not send it


def listing(rows: Iterable[dict[str, Any]]) -> bytes:
    """The ``LIST`` reply for ``rows`` (each with the fields of the module docstring)."""
    return LIST + b" " + json.dumps({"streams": list(rows)}).encode()


def parse_listing(body: bytes, where: str) -> list[dict[str, Any]]:
    """The exporter's listing, every field checked: names are stream names, states, modes and
    codecs short lowercase words, numbers finite and in range (so nothing a hostile server
    sends can reach a terminal as an escape sequence or a line break). At most 1000 rows."""

    def check(key: str, value: Any) -> Any:
        if key == "name":
            ok = isinstance(value, str) and valid_name(value)
        elif key in ("state", "mode", "codec"):
            ok = isinstance(value, str) and _WORD.fullmatch(value) is not None
        elif key in ("fps", "source_fps"):
            ok = isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1e4
        else:  # width, height, receivers
            ok = isinstance(value, int) and 0 <= value <= (1 << 31)
        if not ok or isinstance(value, bool):
            raise TypeError(f"field {key!r} is not valid: {ascii(value)[:40]}")
        return value

    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("the answer is not an object")
        streams = data["streams"]
        if not isinstance(streams, list):
            raise TypeError("streams is not a list")
        out = []
        for entry in streams[:1000]:
            if not isinstance(entry, dict):
                raise TypeError("an entry is not an object")
            row = {key: check(key, entry.get(key)) for key in _FIELDS}
            row.update({k: check(k, entry.get(k, v)) for k, v in _OPTIONAL.items()})
            out.append(row)
        return out
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise WireFormatError(f"{where}: the LIST answer is not valid: {why}") from None


# -- the exporter's book of receivers -------------------------------------------------------------


@dataclass
class Peer:
    """One receiver, as the exporter knows it."""

    name: str
    """The stream it receives."""
    address: str
    last_seen: float
    credit: bool = False
    """It asked, and has not been sent a frame since."""
    in_flight: bool = False
    """A frame was sent to it and it has not said it got it."""
    last_sent: tuple[int, int] | None = None
    """(session, seq) of the last frame sent to it."""
    sent_at: float = 0.0


class CreditBook:
    """The receivers an exporter serves and their credits: who may have a slot, who gets the
    newest frame, who is forgotten. No I/O: the server asks it and sends what it says.

    ``max_receivers`` in all and ``per_address`` from one network address; a receiver silent
    for ``peer_timeout`` s is forgotten (a live one asks at least every 0.5 s); a request that
    says it has not got the frame in flight yet is a keep-alive that overtook that frame, not
    a new credit, unless the frame has been in flight for ``in_flight`` s (then it was lost).
    """

    def __init__(
        self, max_receivers: int, per_address: int, *, peer_timeout: float, in_flight: float
    ) -> None:
        self.max_receivers = max_receivers
        self.per_address = per_address
        self.peer_timeout = peer_timeout
        self.in_flight = in_flight
        self._peers: dict[bytes, Peer] = {}
        self._by_stream: dict[str, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: bytes) -> bool:
        return peer_id in self._peers

    def receivers(self, name: str) -> set[bytes]:
        """The receivers of stream ``name`` (a live view: copy it to forget while iterating)."""
        return self._by_stream.get(name, _NONE)

    def refusal(self, peer_id: bytes, name: str, address: str) -> str:
        """Why a request for ``name`` from a receiver new to the book cannot have a slot; ""
        if it can (or it has one for ``name`` already). A receiver switching streams is
        forgotten first."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            if peer.name == name:
                return ""
            self.forget(peer_id)
        if len(self._peers) >= self.max_receivers:
            return f"the exporter serves its maximum of {self.max_receivers} receivers"
        mine = sum(1 for p in self._peers.values() if p.address == address)
        if address and mine >= self.per_address:
            return f"{address} already has its maximum of {self.per_address} receivers here"
        return ""

    def ask(self, peer_id: bytes, request: Get, address: str, now: float) -> bool:
        """Note ``request`` (admitted: :meth:`refusal` said ""); True if it is a credit, False
        if it is a keep-alive that overtook the frame in flight."""
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = Peer(request.name, address, now)
            self._by_stream.setdefault(request.name, set()).add(peer_id)
        peer.last_seen = now
        if peer.in_flight and peer.last_sent != request.has and now - peer.sent_at < self.in_flight:
            return False
        peer.in_flight, peer.credit = False, True
        return True

    def wants(self, peer_id: bytes, key: tuple[int, int]) -> bool:
        """Whether the receiver has credit and has not had frame ``key`` (session, seq) or a
        newer one of that session."""
        peer = self._peers.get(peer_id)
        if peer is None or not peer.credit:
            return False
        last = peer.last_sent
        return last is None or last[0] != key[0] or last[1] < key[1]

    def sent(self, peer_id: bytes, key: tuple[int, int], now: float) -> None:
        """Frame ``key`` went to the receiver: its credit is used."""
        peer = self._peers[peer_id]
        peer.credit, peer.in_flight, peer.last_sent, peer.sent_at = False, True, key, now

    def has_credit(self, peer_id: bytes) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.credit

    def forget(self, peer_id: bytes) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        ids = self._by_stream.get(peer.name)
        if ids is not None:
            ids.discard(peer_id)
            if not ids:
                del self._by_stream[peer.name]

    def forget_silent(self, now: float) -> list[bytes]:
        """Forget the receivers silent for longer than ``peer_timeout``; returns them."""
        silent = [p for p, peer in self._peers.items() if now - peer.last_seen > self.peer_timeout]
        for peer_id in silent:
            self.forget(peer_id)
        return silent


_NONE: set[bytes] = set()
