"""The ZeroMQ wing's protocol byte by byte, without a socket: requests, replies, the listing,
the exporter's credit book, and the order of frames (shared with the pipe reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from framebus import WireFormatError, wire
from framebus._order import FrameOrder
from framebus.net import protocol
from framebus.net.link import Link
from framebus.net.protocol import (
    Bye,
    CreditBook,
    ErrorCode,
    ErrorReply,
    FrameReply,
    Get,
    ListReply,
    ListRequest,
    WaitReply,
)
from fuzzing import fuzz

# -- requests -------------------------------------------------------------------------------------


def test_requests_as_bytes() -> None:
    assert protocol.get("cam", 0xAB12, 7) == b"GET cam ab12 7"
    assert protocol.LIST == b"LIST" and protocol.BYE == b"BYE"
    assert protocol.parse_request(b"GET cam ab12 7") == Get("cam", (0xAB12, 7))
    assert protocol.parse_request(b"GET cam 0 0") == Get("cam", (0, 0))
    assert protocol.parse_request(b"LIST") == ListRequest()
    assert protocol.parse_request(b"BYE") == Bye()
    session = (1 << 64) - 1
    assert protocol.parse_request(protocol.get("a-b_1", session, 10**19)) == Get(
        "a-b_1", (session, 10**19)
    )


@pytest.mark.parametrize(
    "body",
    [
        b"", b"GET", b"GET cam", b"GET cam 1", b"GET cam 1 2 3", b"GET  cam 1 2",
        b"GET cam 1 2 ", b"GET cam g 1", b"GET cam AB 1", b"GET cam 0x1 1", b"GET cam 1 -2",
        b"GET cam 1 +2", b"GET cam 1 1_0", b"GET cam 1 \xd9\xa3", b"GET cam 11111111111111111 1",
        b"GET cam 1 111111111111111111111", b"GET ../etc 1 1", b"GET -cam 1 1",
        b"GET " + b"c" * 49 + b" 1 1", b"GET c\xc3\xa9 1 1", b"LIST x", b"LIST ", b"list",
        b"BYE now", b"PUT cam 1 1", b"\x00",
    ],
)  # fmt: skip
def test_anything_else_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(WireFormatError):
        protocol.parse_request(body)


@given(st.binary(max_size=64))
@fuzz(500)
def test_any_bytes_parse_to_a_request_or_a_wire_format_error(body: bytes) -> None:
    try:
        request = protocol.parse_request(body)
    except WireFormatError:
        return
    # what is accepted is exactly what a receiver would send
    if isinstance(request, Get):
        assert protocol.get(request.name, *request.has) == body
    else:
        assert body in (protocol.LIST, protocol.BYE)


# -- replies ----------------------------------------------------------------------------------


def parse(data: bytes) -> protocol.Reply:
    return protocol.parse_reply(memoryview(data), max_payload=1 << 20, where="test")


def test_replies_as_bytes() -> None:
    assert protocol.WAIT == b"WAIT"
    assert parse(b"WAIT") == WaitReply()
    assert protocol.error(ErrorCode.BUSY, "full") == b"ERR busy full"
    assert parse(b"ERR busy full") == ErrorReply("busy", "full")
    assert parse(b"ERR ended stream 'cam' ended") == ErrorReply("ended", "stream 'cam' ended")
    assert parse(b"ERR newcode what") == ErrorReply("newcode", "what")  # a newer exporter's
    assert len(protocol.error(ErrorCode.NOTFOUND, "x" * 2000)) == protocol.MAX_ERROR


def test_an_error_text_reaches_the_user_printable_and_short() -> None:
    reply = parse(b"ERR bad \x1b[2J\r\nhello" + b"x" * 400)
    assert isinstance(reply, ErrorReply)
    assert reply.message.startswith("[2Jhello") and len(reply.message) == 200
    assert all(c.isprintable() for c in reply.message)
    assert parse(b"ERR \x1b[31m x").code == "?"  # type: ignore[union-attr]


def test_a_frame_reply_is_a_wire_frame_viewed_in_place() -> None:
    frame = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    data = wire.pack_frame_bytes(frame, seq=5, session=9, capture_ns=123)
    reply = parse(data)
    assert isinstance(reply, FrameReply)
    assert (reply.header.seq, reply.header.session, reply.header.capture_ns) == (5, 9, 123)
    assert bytes(reply.payload) == frame.tobytes()
    with pytest.raises(WireFormatError):
        parse(data[:-1])  # a payload cut short
    with pytest.raises(WireFormatError):
        protocol.parse_reply(memoryview(data), max_payload=10, where="test")


@pytest.mark.parametrize("data", [b"", b"WAI", b"WAITING", b"wait", b"ERR", b"HELLO"])
def test_anything_else_is_not_a_reply(data: bytes) -> None:
    with pytest.raises(WireFormatError):
        parse(data)


@given(st.binary(max_size=300))
@fuzz(500)
def test_any_bytes_parse_to_a_reply_or_a_wire_format_error(data: bytes) -> None:
    try:
        reply = parse(data)
    except WireFormatError:
        return
    if isinstance(reply, WaitReply):
        assert data == b"WAIT"
    elif isinstance(reply, ErrorReply):
        assert data.startswith(b"ERR ") and len(reply.message) <= 200
        assert all(c.isprintable() for c in reply.code + reply.message)
    else:  # a frame or a listing needs its whole structure: random bytes are neither
        raise AssertionError(f"{data!r} parsed as {reply!r}")


# -- the listing --------------------------------------------------------------------------------

ROW = {"name": "cam", "state": "live", "width": 320, "height": 240, "fps": 30.01,
       "source_fps": 30.0, "mode": "latest", "codec": "jpeg", "receivers": 2}  # fmt: skip


def test_a_listing_goes_through() -> None:
    data = protocol.listing([ROW])
    assert data.startswith(b"LIST {")
    assert parse(data) == ListReply([ROW])
    old = {k: v for k, v in ROW.items() if k != "source_fps"}  # an earlier framebus's row
    assert protocol.parse_listing(json.dumps({"streams": [old]}).encode(), "x") == [
        {**old, "source_fps": 0.0}
    ]


@pytest.mark.parametrize(
    "change",
    [{"name": "a b"}, {"name": "\x1b[2J"}, {"state": "LIVE\r\n"}, {"width": -1},
     {"height": True}, {"fps": float("nan")}, {"source_fps": -1}, {"receivers": "2"},
     {"codec": None}],
)  # fmt: skip
def test_a_listing_field_out_of_its_range_is_refused(change: dict[str, object]) -> None:
    body = json.dumps({"streams": [{**ROW, **change}]}).encode()
    with pytest.raises(WireFormatError, match="not valid"):
        protocol.parse_listing(body, "x")


def test_a_listing_too_long_or_too_deep_is_refused() -> None:
    with pytest.raises(WireFormatError, match="at most"):
        parse(b"LIST " + b" " * protocol.MAX_LISTING)
    with pytest.raises(WireFormatError, match="nested too deeply"):
        protocol.parse_listing(b"[" * 100_000 + b"]" * 100_000, "x")


# -- the credit book ------------------------------------------------------------------------------


def book(receivers: int = 4, per_address: int = 2) -> CreditBook:
    return CreditBook(receivers, per_address, peer_timeout=4.0, in_flight=10.0)


def test_one_frame_in_flight_per_receiver_and_only_newer_frames() -> None:
    b = book()
    assert b.refusal(b"r1", "cam", "10.0.0.1") == ""
    assert b.ask(b"r1", Get("cam", (0, 0)), "10.0.0.1", now=0.0)
    assert b.receivers("cam") == {b"r1"} and len(b) == 1
    assert b.wants(b"r1", (7, 1))
    b.sent(b"r1", (7, 1), now=0.1)
    assert not b.wants(b"r1", (7, 2))  # no credit: its frame is in flight
    assert not b.ask(b"r1", Get("cam", (0, 0)), "10.0.0.1", now=0.2)  # a keep-alive overtook it
    assert not b.wants(b"r1", (7, 2))
    assert b.ask(b"r1", Get("cam", (7, 1)), "10.0.0.1", now=0.3)  # it got frame 1: credit
    assert not b.wants(b"r1", (7, 1)) and b.wants(b"r1", (7, 2))
    assert b.wants(b"r1", (8, 1))  # a new session (the stream was published again)


def test_a_frame_in_flight_too_long_is_taken_as_lost() -> None:
    b = book()
    b.ask(b"r1", Get("cam", (0, 0)), "", now=0.0)
    b.sent(b"r1", (7, 1), now=0.0)
    assert not b.ask(b"r1", Get("cam", (0, 0)), "", now=9.0)
    assert b.ask(b"r1", Get("cam", (0, 0)), "", now=10.5)
    assert b.wants(b"r1", (7, 2))


def test_receiver_slots_in_all_and_per_address() -> None:
    b = book(receivers=3, per_address=2)
    for peer in (b"a1", b"a2"):
        assert b.refusal(peer, "cam", "10.0.0.1") == ""
        b.ask(peer, Get("cam", (0, 0)), "10.0.0.1", now=0.0)
    assert "10.0.0.1 already has its maximum of 2" in b.refusal(b"a3", "cam", "10.0.0.1")
    assert b.refusal(b"a1", "cam", "10.0.0.1") == ""  # one it knows keeps its slot
    assert b.refusal(b"b1", "cam", "10.0.0.2") == ""
    b.ask(b"b1", Get("cam", (0, 0)), "10.0.0.2", now=0.0)
    assert "maximum of 3 receivers" in b.refusal(b"c1", "other", "10.0.0.3")
    assert b.refusal(b"b1", "other", "10.0.0.2") == ""  # switching streams frees its slot first
    assert b.receivers("cam") == {b"a1", b"a2"}


def test_silent_receivers_are_forgotten() -> None:
    b = book()
    b.ask(b"r1", Get("cam", (0, 0)), "", now=0.0)
    b.ask(b"r2", Get("cam", (0, 0)), "", now=3.0)
    assert b.forget_silent(now=4.5) == [b"r1"]
    assert b.receivers("cam") == {b"r2"} and b"r1" not in b
    b.forget(b"r2")
    b.forget(b"r2")  # twice: nothing happens
    assert not b.receivers("cam") and len(b) == 0
    assert not b.wants(b"r2", (1, 1)) and not b.has_credit(b"r2")


# -- the order of frames -------------------------------------------------------------------------


def test_frames_out_of_order_are_dropped_over_zmq() -> None:
    order = FrameOrder()
    assert order.place(1, 5) == 0  # a first frame: nothing skipped
    assert order.place(1, 6) == 0
    assert order.place(1, 9) == 2
    assert order.place(1, 9) is None and order.place(1, 3) is None  # not newer: stale
    assert order.place(2, 1) == 0 and order.sessions == 2  # the exporter restarted
    assert order.place(1, 10) is None  # the older session is never delivered after a newer
    assert order.place(2, 2) == 0


def test_a_pipe_follows_whatever_it_is_sent() -> None:
    order = FrameOrder(keep_stale=True)
    assert order.place(1, 5) == 0
    assert order.place(1, 3) is None  # a writer that went back (a seek): delivered
    assert order.place(1, 5) == 1  # and counted from there
    assert order.place(2, 1) == 0
    assert order.place(1, 9) is None and order.place(1, 10) == 0


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=60))
@fuzz(300)
def test_a_receiver_never_delivers_a_frame_older_than_one_it_delivered(
    frames: list[tuple[int, int]],
) -> None:
    order = FrameOrder()
    delivered: list[tuple[int, int]] = []
    for session, seq in frames:
        if order.place(session, seq) is not None:
            for s, q in delivered:
                assert s != session or q < seq
            delivered = [(s, q) for s, q in delivered if s == session] + [(session, seq)]


# -- a receiver's link ---------------------------------------------------------------------------


def frame_reply(session: int, seq: int) -> FrameReply:
    data = wire.pack_frame_bytes(np.zeros((2, 2), np.uint8), seq=seq, session=session, capture_ns=1)
    reply = parse(data)
    assert isinstance(reply, FrameReply)
    return reply


def test_a_link_keeps_the_newest_frame_and_counts_what_it_replaced() -> None:
    link = Link("zmq://h:1/cam", "cam")
    assert link.request() == b"GET cam 0 0"
    assert link.state(now=0.0, connected=False) == "connecting"
    link.arrived(10, now=1.0)
    assert link.reply(WaitReply(), None, now=1.0, wall=0.0) is False  # the credit stands
    assert link.state(now=1.5, connected=True) == "live"
    assert link.state(now=3.5, connected=True) == "stalled"  # answers, no frame for 2 s
    assert link.reply(frame_reply(7, 1), None, now=4.0, wall=0.0) is True
    assert link.reply(frame_reply(7, 4), None, now=4.1, wall=0.0) is True
    assert link.request() == b"GET cam 7 4"
    item = link.take()
    assert item is not None and item.header.seq == 4 and item.skipped == 3  # 2, 3 and 1
    assert link.dropped == 1 and link.received == 2 and link.take() is None
    assert link.reply(frame_reply(7, 2), None, now=4.2, wall=0.0) is True  # older: stale
    assert link.take() is None and link.stale == 1
    assert link.state(now=4.3, connected=False) == "reconnecting"
    assert link.state(now=8.0, connected=True) == "reconnecting"  # no answer for 3 s


def test_a_link_reads_the_exporters_errors_and_listing() -> None:
    link = Link("zmq://h:1/cam", "cam")
    link.arrived(10, now=1.0)
    link.reply(ErrorReply("busy", "full"), None, now=1.0, wall=0.0)
    assert link.busy == "full" and link.state(now=1.0, connected=True) == "busy"
    link.reply(WaitReply(), None, now=1.1, wall=0.0)
    assert link.busy is None
    link.reply(ErrorReply("notfound", "no cam"), None, now=1.2, wall=0.0)
    assert link.not_found == "zmq://h:1/cam: no cam"
    link.reply(ListReply([{**ROW, "name": "other"}]), None, now=1.3, wall=0.0)
    assert link.listed and link.described is None
    link.reply(ListReply([ROW]), None, now=1.4, wall=0.0)
    assert link.described is not None and link.described.source_fps == 30.0
    link.reply(ErrorReply("ended", "stream 'cam' ended"), None, now=1.5, wall=0.0)
    assert isinstance(link.end, framebus.StreamEnded) and link.request() is None
    link.reply(frame_reply(9, 1), None, now=1.6, wall=0.0)  # overtaken by the end: dropped
    assert link.take() is None and link.state(now=1.7, connected=True) == "ended"


@given(st.lists(st.sampled_from(["frame", "wait", "busy", "unsupported", "lost"]), max_size=40))
@fuzz(200)
def test_a_link_never_delivers_a_frame_older_than_the_last_it_delivered(kinds: list[str]) -> None:
    link = Link("zmq://h:1/cam", "cam")
    delivered: list[int] = []
    seq = 0
    for n, kind in enumerate(kinds):
        if kind == "frame":
            seq = (seq + 1) if n % 3 else max(1, seq - 2)  # now and then an older one
            link.reply(frame_reply(1, seq), None, now=float(n), wall=0.0)
            item = link.take()
            if item is not None:
                assert not delivered or item.header.seq > delivered[-1]
                delivered.append(item.header.seq)
        elif kind == "wait":
            link.reply(WaitReply(), None, now=float(n), wall=0.0)
        else:
            link.reply(ErrorReply(kind, "x"), None, now=float(n), wall=0.0)
    assert link.received == len(delivered)
