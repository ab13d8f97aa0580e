"""Property-based fuzzing of framebus's RTSP/RTP parsing (hypothesis).

Every byte an RTSP server sends is attacker-chosen. Whatever it is, the parsers may only return
a result or raise :class:`framebus.SourceUnsupported`, and what they hold stays bounded: the
message parser, the SDP parser, the RTP header parser and the H.264/H.265 depacketizer.

By default each property runs a few hundred examples: the whole file takes a few seconds.
For a long run, give each property a time budget in seconds::

    FRAMEBUS_FUZZ_SECONDS=600 .venv/bin/pytest -q tests/test_rtsp_fuzz.py

Each property then runs for about that many seconds (the file for 6 times that): batches of
examples, each with a fresh random seed, the first of the default size, the next sized from
its rate to fill the time left. A failure is shrunk and reported as usual, and hypothesis's
example database (.hypothesis/) replays it first on the next run.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import framebus
import framebus.sources._rtsp.depacketize as rtsp
from framebus._rtsp import MAX_SESSION_ID
from framebus.sources._rtsp import (
    Depacketizer,
    Interleaved,
    MessageParser,
    Response,
    RtpPacket,
    ServerRequest,
    VideoMedia,
    interleaved_channel,
    parse_rtp,
    parse_sdp,
    parse_session,
)

_FUZZ_SECONDS = float(os.environ.get("FRAMEBUS_FUZZ_SECONDS") or 0)


def fuzz(
    examples: int, **strategies: st.SearchStrategy[Any]
) -> Callable[[Callable[..., None]], Callable[[], None]]:
    """``@given(**strategies)`` for ``examples`` examples; with FRAMEBUS_FUZZ_SECONDS, batches of
    examples (sized from the rate of the first) until that many seconds have passed."""

    def wrap(test: Callable[..., None]) -> Callable[[], None]:
        def batch(n: int) -> Callable[[], None]:
            prop: Callable[[], None] = settings(
                max_examples=n,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )(given(**strategies)(test))
            return prop

        if _FUZZ_SECONDS <= 0:
            return batch(examples)

        def run() -> None:
            end, n = time.monotonic() + _FUZZ_SECONDS, examples
            while (t0 := time.monotonic()) < end:
                batch(n)()
                rate = n / max(time.monotonic() - t0, 1e-3)
                n = int(min(max(rate * (end - time.monotonic()), examples), 10**7))

        run.__name__ = run.__qualname__ = test.__name__
        run.__doc__ = test.__doc__
        # (pytest-timeout's 120 s per test would end a long run)
        marked: Callable[[], None] = pytest.mark.timeout(2 * _FUZZ_SECONDS + 120)(run)
        return marked

    return wrap


# --- the message parser ---------------------------------------------------------------------

_RTSP_PIECES = [
    b"RTSP/1.0 ",
    b"200",
    b" OK",
    b"\r\n",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b"Content-Length: ",
    b"Content-Length: 5",
    b"Content-Length: 0\r\n",
    b"CSeq: ",
    b"CSeq: 3\r\n",
    b"$",
    b"$\x00\x00\x04",
    b"\x00\x05",
    b"\xff\xff",
    "²".encode(),
    "٣".encode(),  # an Arabic-Indic 3: int() takes it
    b"9" * 5000,
    b"-1",
    b"+5",
    b"1_0",
    b"GET_PARAMETER rtsp://x/ RTSP/1.0\r\n",
    b"OPTIONS * RTSP/1.0",
    b"HTTP/1.1 200 OK",
    b"\x00",
    b"\xc3\x28",  # invalid UTF-8
]

_wire = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(_RTSP_PIECES)), max_size=40).map(
    b"".join
)

_Message = Interleaved | Response | ServerRequest


def _drain(parser: MessageParser, got: list[_Message]) -> bool:
    """Take every whole message; False once the parser gave up (SourceUnsupported)."""
    try:
        while (msg := parser.next()) is not None:
            assert isinstance(msg, (Interleaved, Response, ServerRequest))
            got.append(msg)
    except framebus.SourceUnsupported:
        return False
    return True


def _check_message(msg: _Message) -> None:
    if isinstance(msg, Response):
        assert 100 <= msg.status <= 999
        assert msg.cseq >= -1
        assert len(msg.body) <= 1 << 20
    elif isinstance(msg, Interleaved):
        assert 0 <= msg.channel <= 255 and len(msg.payload) <= 0xFFFF


@fuzz(200, wire=_wire, cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_parser_takes_any_bytes_in_any_chunking(wire: bytes, cuts: list[int]) -> None:
    """Messages or SourceUnsupported, never another exception; the same messages however the
    bytes are cut; bounded buffering."""
    whole: list[_Message] = []
    parser = MessageParser()
    parser.feed(wire)
    whole_ok = _drain(parser, whole)

    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    chunked: list[_Message] = []
    parser = MessageParser()
    chunked_ok = True
    for a, b in itertools.pairwise(points):
        parser.feed(wire[a:b])
        chunked_ok = _drain(parser, chunked)
        # one incomplete message (head 64 KiB, body 1 MiB) and 1 MiB consumed, at most
        assert parser.buffered <= (1 << 20) + (1 << 16) + (1 << 20) + (b - a)
        if not chunked_ok:
            break
    assert chunked == whole and chunked_ok == whole_ok
    for msg in whole:
        _check_message(msg)


@fuzz(
    100,
    body=st.binary(max_size=200),
    chunk=st.integers(1, 5000),
    length=st.one_of(
        st.integers(-10, 3 << 20).map(str),
        st.sampled_from(["²", "٣", "9" * 5000, " 1 ", "1e3", "0x10", ""]),
    ),
    status=st.one_of(st.integers(-5, 10**12).map(str), st.sampled_from(["²00", "٢٠٠", "9" * 5000])),
)
def test_parser_numbers_are_checked(body: bytes, chunk: int, length: str, status: str) -> None:
    wire = f"RTSP/1.0 {status} OK\r\nContent-Length: {length}\r\n\r\n".encode() + body
    parser = MessageParser()
    got: list[_Message] = []
    for i in range(0, len(wire), chunk):
        parser.feed(wire[i : i + chunk])
        if not _drain(parser, got):
            return
    for msg in got:
        _check_message(msg)


# --- SDP ------------------------------------------------------------------------------------

_WEIRD_NUMBERS = ["96", "²", "٩٦", "9" * 5000, "nan", "NaN", "inf", "-inf", "1e400", "-25", "0"]
_WEIRD_NUMBERS += ["25", "29.97", "1001", "1_000", " 30 ", "", "1e-400"]
_numbers = st.one_of(
    st.integers(-5, 300).map(str),
    st.integers(0, 10**12).map(str),
    st.sampled_from(_WEIRD_NUMBERS),
)
_sdp_line = st.one_of(
    st.text(max_size=30),
    st.tuples(st.just("m=video 0 RTP/AVP "), _numbers).map("".join),
    st.tuples(st.just("m=audio 0 RTP/AVP "), _numbers).map("".join),
    st.tuples(
        st.just("a=rtpmap:"),
        _numbers,
        st.sampled_from([" H264/", " H265/", " HEVC/", " JPEG/", " x/", "\tH264/"]),
        _numbers,
    ).map("".join),
    st.tuples(
        st.just("a=fmtp:"),
        _numbers,
        st.just(" "),
        st.sampled_from(["sprop-parameter-sets=", "sprop-vps=", "sprop-sps=", "x="]),
        st.text(max_size=30),
    ).map("".join),
    st.tuples(st.just("a=framerate:"), _numbers).map("".join),
    st.tuples(st.just("a=control:"), st.text(max_size=20)).map("".join),
)


@fuzz(120, lines=st.lists(_sdp_line, max_size=12), sep=st.sampled_from(["\n", "\r\n", "\r"]))
def test_sdp_any_text_gives_none_or_sane_media(lines: list[str], sep: str) -> None:
    media = parse_sdp(sep.join(lines))
    if media is None:
        return
    assert isinstance(media, VideoMedia)
    assert 0 <= media.payload_type <= 127
    assert 1 <= media.clock_rate <= 10_000_000
    rate = media.framerate
    assert rate is None or (math.isfinite(rate) and 0 < rate <= 1000)
    assert all(isinstance(p, bytes) and p for p in media.parameter_sets())


# --- RTP ------------------------------------------------------------------------------------


@fuzz(
    200,
    data=st.one_of(
        st.binary(max_size=80),
        st.tuples(st.integers(0, 255), st.binary(min_size=11, max_size=80)).map(
            lambda t: bytes([0x80 | (t[0] & 0x3F)]) + t[1]  # version 2, any flags and count
        ),
    ),
)
def test_rtp_header_of_any_bytes(data: bytes) -> None:
    pkt = parse_rtp(data)
    if pkt is None:
        return
    assert isinstance(pkt, RtpPacket)
    assert 0 <= pkt.payload_type <= 127 and 0 <= pkt.seq <= 0xFFFF
    assert 0 <= pkt.timestamp <= 0xFFFFFFFF
    assert len(pkt.payload) <= len(data) - 12


# --- the depacketizer -----------------------------------------------------------------------

# small bounds, so that examples of a few KiB reach them (the real ones: tests of
# test_rtsp_protocol.py)
_CAP, _NALS = 4096, 32


def _payloads(h265: bool) -> st.SearchStrategy[bytes]:
    hdr = 2 if h265 else 1
    fu_type, ap_type = (49, 48) if h265 else (28, 24)

    def nal_header(t: int) -> bytes:
        return bytes([t << 1, 1]) if h265 else bytes([0x60 | t])

    # sizes around the (small) bounds, often: hypothesis alone favours small ones
    sizes = [0, 1, 100, _CAP // 3, _CAP // 2, _CAP - 3, _CAP, _CAP + 1, 2 * _CAP]
    data = st.one_of(st.binary(max_size=48), st.sampled_from(sizes).map(bytes))
    fu = st.tuples(
        st.sampled_from([0x80, 0x00, 0x00, 0x00, 0x40, 0xC0]),  # start, middles, end, both
        st.integers(0, 0x3F if h265 else 0x1F),
        data,
    ).map(lambda t: nal_header(fu_type) + bytes([t[0] | t[1]]) + t[2])
    aggregation = st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=8).map(lambda n: len(n).to_bytes(2, "big") + n),
            st.binary(max_size=4),  # a bad length
        ),
        max_size=40,
    ).map(lambda parts: nal_header(ap_type) + b"".join(parts))
    key, other = (19, 1) if h265 else (5, 1)
    single = st.tuples(
        st.sampled_from([key, other, 32, 33, 34] if h265 else [key, other, 7, 8, 6]), data
    ).map(lambda t: nal_header(t[0]) + t[1])
    raw = st.binary(max_size=40)  # anything (for H.264 1 in 8 is a packetization it refuses)
    return st.one_of(fu, single, fu, aggregation, single, fu, st.binary(max_size=hdr + 2), raw)


def _packets(h265: bool) -> st.SearchStrategy[list[RtpPacket]]:
    step = st.tuples(
        st.sampled_from([False, False, False, True]),  # marker: frames of a few packets
        st.sampled_from([1, 1, 1, 1, 1, 0, 2, 3, 0xFFFF, 0x8000]),  # seq step: mostly in order
        st.sampled_from([0, 0, 0, 3600, 1, 0x80000000]),  # timestamp step: mostly the same
        _payloads(h265),
    )

    def build(steps: list[tuple[bool, int, int, bytes]]) -> list[RtpPacket]:
        seq, ts, out = 0, 0, []
        for marker, dseq, dts, payload in steps:
            seq, ts = (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF
            out.append(RtpPacket(marker, 96, seq, ts, payload))
        return out

    return st.lists(step, min_size=1, max_size=60).map(build)


def _check_depacketizer(h265: bool, packets: list[RtpPacket]) -> None:
    params = [b"\x40\x01\x0c", b"\x42\x01"] if h265 else [b"\x67\x42", b"\x68\xce"]
    d = Depacketizer("H265" if h265 else "H264", params)
    held_max = _CAP
    unit_max = _CAP + 4 * (_NALS + len(params)) + sum(map(len, params))
    with (
        mock.patch.object(rtsp, "MAX_ACCESS_UNIT", _CAP),
        mock.patch.object(rtsp, "MAX_NALS", _NALS),
    ):
        for pkt in packets:
            try:
                units = d.push(pkt)
            except framebus.SourceUnsupported:
                return  # (H.264 packetizations it does not take): the client gives up
            assert d.pending_bytes <= held_max and d.pending_nals <= _NALS
            assert all(len(u) <= unit_max and u.startswith(rtsp.START_CODE) for u in units)
            assert 0 <= d.oversized_streak <= d.oversized


@fuzz(150, packets=_packets(h265=False))
def test_h264_depacketizer_takes_any_packets_in_bounded_memory(packets: list[RtpPacket]) -> None:
    _check_depacketizer(False, packets)


@fuzz(100, packets=_packets(h265=True))
def test_h265_depacketizer_takes_any_packets_in_bounded_memory(packets: list[RtpPacket]) -> None:
    _check_depacketizer(True, packets)


# --- Session and Transport headers of a SETUP reply --------------------------------------------

_header_piece = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["timeout=", "Timeout = ", "interleaved=", "INTERLEAVED=", ";", ",", "-", "=", " ",
         "RTP/AVP/TCP", "unicast", "²", "٣", "9" * 400, "60", "0-1", "255", "256", "\x00"]
    ),
)  # fmt: skip
_header = st.lists(_header_piece, max_size=16).map("".join)


@fuzz(300, value=_header)
def test_session_header_of_any_text(value: str) -> None:
    try:
        ident, timeout = parse_session(value)
    except ValueError:
        return
    assert len(ident) <= MAX_SESSION_ID and ident.isascii() and ident.isprintable()
    assert ";" not in ident and "\r" not in ident and "\n" not in ident
    assert timeout is None or 1 <= timeout <= 86400


@fuzz(300, value=_header)
def test_transport_header_of_any_text(value: str) -> None:
    try:
        channel = interleaved_channel(value)
    except ValueError:
        assert "interleaved=" in value.lower()
        return
    assert channel is None or 0 <= channel <= 255
    if "interleaved=" not in value.lower():
        assert channel is None
