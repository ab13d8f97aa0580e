"""framebus's RTSP/RTP core, without I/O: messages, SDP, authentication, depacketization."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import socket
import threading
import time

import pytest

import framebus
from conftest import child_pids
from framebus.sources._rtsp import (
    MAX_ACCESS_UNIT,
    MAX_NALS,
    START_CODE,
    Depacketizer,
    Interleaved,
    MessageParser,
    Response,
    RtpPacket,
    ServerRequest,
    authorization,
    control_url,
    format_request,
    parse_rtp,
    parse_sdp,
    split_credentials,
)


def test_parser_splits_responses_and_interleaved_packets_fed_byte_by_byte() -> None:
    wire = (
        b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 5\r\nWWW-Authenticate: Basic a\r\n"
        b"WWW-Authenticate: Digest b\r\n\r\nhello"
        b"$\x00\x00\x03abc"
        b"GET_PARAMETER rtsp://x/ RTSP/1.0\r\nCSeq: 9\r\n\r\n"
        b"$\x01\x00\x00"
    )
    parser = MessageParser()
    got: list[object] = []
    for i in range(len(wire)):
        parser.feed(wire[i : i + 1])
        while (msg := parser.next()) is not None:
            got.append(msg)
    assert len(got) == 4
    resp = got[0]
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason, resp.cseq, resp.body) == (200, "OK", 2, b"hello")
    assert resp.headers["www-authenticate"] == ["Basic a", "Digest b"]
    assert got[1] == Interleaved(0, b"abc")
    assert isinstance(got[2], ServerRequest) and got[2].method == "GET_PARAMETER"
    assert got[3] == Interleaved(1, b"")


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",  # not RTSP
        b"RTSP/1.0 abc OK\r\n\r\n",  # bad status
        b"RTSP/1.0 200 OK\r\nContent-Length: -4\r\n\r\n",
        b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * 20000,  # a head that never ends
    ],
)
def test_parser_rejects_what_is_not_rtsp(wire: bytes) -> None:
    parser = MessageParser()
    parser.feed(wire)
    with pytest.raises(framebus.SourceUnsupported):
        parser.next()


@pytest.mark.parametrize(
    "wire",
    [
        b"RTSP/1.0 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",  # int() raises
        "RTSP/1.0 200 OK\r\nContent-Length: ²\r\n\r\n".encode(),  # isdigit() but not int()
        "RTSP/1.0 200 OK\r\nContent-Length: ٣\r\n\r\nabc".encode(),  # int() takes it: 3
        b"RTSP/1.0 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"RTSP/1.0 200 OK\r\nContent-Length: 2000000\r\n\r\n",  # a body over 1 MiB
        b"RTSP/1.0 " + b"2" * 5000 + b" OK\r\n\r\n",
        b"RTSP/1.0 " + b"2" * 4000 + b" OK\r\n\r\n",  # (int() takes 4,000 digits)
        "RTSP/1.0 ²00 OK\r\n\r\n".encode(),
        "RTSP/1.0 ٢٠٠ OK\r\n\r\n".encode(),
        b"RTSP/1.0 2000 OK\r\n\r\n",
        b"RTSP/1.0\r\n\r\n",
        b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * 20000 + b"\r\n",  # whole, in one piece
    ],
)
def test_parser_rejects_bad_numbers_and_sizes(wire: bytes) -> None:
    parser = MessageParser()
    parser.feed(wire)
    with pytest.raises(framebus.SourceUnsupported):
        parser.next()


def test_parser_reads_a_cseq_of_other_digits_as_none() -> None:
    parser = MessageParser()
    parser.feed("RTSP/1.0 200 OK\r\nCSeq: ²\r\n\r\nRTSP/1.0 200 OK\r\nCSeq: ".encode())
    parser.feed(b"9" * 5000 + b"\r\n\r\n")
    first, second = parser.next(), parser.next()
    assert isinstance(first, Response) and first.cseq == -1
    assert isinstance(second, Response) and second.cseq == -1


def test_parser_parses_a_head_once_while_its_body_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that sends a big head, then its body a byte at a time, costs linear work."""
    calls = []
    parse_head = MessageParser._parse_head

    def counting(self: MessageParser, buf: bytearray, pos: int) -> object:
        calls.append(len(buf))
        return parse_head(self, buf, pos)

    monkeypatch.setattr(MessageParser, "_parse_head", counting)
    head = b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * 5000 + b"Content-Length: 2000\r\n\r\n"
    parser = MessageParser()
    wire = head + b"b" * 2000
    got = []
    for i in range(0, len(wire), 7):
        parser.feed(wire[i : i + 7])
        if (msg := parser.next()) is not None:
            got.append(msg)
    assert len(got) == 1 and isinstance(got[0], Response) and got[0].body == b"b" * 2000
    # every call before the head is whole searches only the bytes it has not searched yet;
    # once whole, the head is not parsed again
    assert len([n for n in calls if n >= len(head)]) == 1
    assert parser.buffered <= len(wire)


def test_requests_get_no_line_breaks_from_the_server() -> None:
    """A Content-Base or session id with a line break must not add a header to a request."""
    assert format_request("PLAY", "rtsp://h/s", 3, {"Session": "abc"}).count(b"\r\n") == 5
    with pytest.raises(framebus.SourceUnsupported, match="line break"):
        format_request("SETUP", "rtsp://h/s\nEvil: 1", 3, {})
    with pytest.raises(framebus.SourceUnsupported, match="line break"):
        format_request("PLAY", "rtsp://h/s", 3, {"Session": "abc\rEvil: 1"})


SDP = """v=0
o=- 1 1 IN IP4 127.0.0.1
s=Session
a=control:rtsp://cam/stream/
m=audio 0 RTP/AVP 97
a=rtpmap:97 MPEG4-GENERIC/48000/2
a=control:track0
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LgH9oBQBbsBEAA,aM4wpIA=
a=framerate:25
a=control:track1
"""


def test_sdp_first_video_stream() -> None:
    media = parse_sdp(SDP)
    assert media is not None
    assert (media.payload_type, media.codec, media.clock_rate) == (96, "H264", 90000)
    assert media.control == "track1" and media.session_control == "rtsp://cam/stream/"
    assert media.framerate == 25
    assert media.fmtp["packetization-mode"] == "1"
    sps, pps = media.parameter_sets()
    assert sps[0] & 0x1F == 7 and pps[0] & 0x1F == 8
    assert parse_sdp("v=0\nm=audio 0 RTP/AVP 0\n") is None
    jpeg = parse_sdp("v=0\nm=video 0 RTP/AVP 26\na=control:v\n")
    assert jpeg is not None and jpeg.codec == "JPEG"
    hevc = parse_sdp("m=video 0 RTP/AVP 98\na=rtpmap:98 H265/90000\n")
    assert hevc is not None and hevc.codec == "H265"


@pytest.mark.parametrize("rate", ["nan", "NaN", "inf", "-inf", "1e400", "-25", "0", "1001", "x"])
def test_sdp_framerate_nan_is_ignored(rate: str) -> None:
    media = parse_sdp(f"m=video 0 RTP/AVP 96\na=framerate:{rate}\n")
    assert media is not None and media.framerate is None
    ntsc = parse_sdp("m=video 0 RTP/AVP 96\na=framerate: 29.97\n")
    assert ntsc is not None and ntsc.framerate == pytest.approx(29.97)


@pytest.mark.parametrize("pt", ["²", "٩٦", "9" * 5000, "128", "-1", "96x", ""])
def test_sdp_superscript_digit_payload_type(pt: str) -> None:
    """A payload type that str.isdigit() (or int()) takes but is not 0..127 in ASCII digits."""
    assert parse_sdp(f"m=video 0 RTP/AVP {pt}\na=rtpmap:{pt} H265/90000\n") is None
    # in a=rtpmap and a=fmtp such a line is ignored, not an exception
    media = parse_sdp(f"m=video 0 RTP/AVP 96\na=rtpmap:{pt} H265/90000\na=fmtp:{pt} x=1\n")
    assert media is not None and (media.codec, media.fmtp) == ("H264", {})


@pytest.mark.parametrize("clock", ["0", "9" * 5000, "10000001", "²"])
def test_sdp_clock_rate_out_of_range_is_90khz(clock: str) -> None:
    media = parse_sdp(f"m=video 0 RTP/AVP 97\na=rtpmap:97 H264/{clock}\n")
    assert media is not None and media.clock_rate == 90000
    assert media.codec == ("H264" if clock.isascii() else "")  # (not an rtpmap at all)


def test_control_urls_and_credentials() -> None:
    assert control_url("rtsp://h/s/", "track1") == "rtsp://h/s/track1"
    assert control_url("rtsp://h/s", "track1") == "rtsp://h/s/track1"
    assert control_url("rtsp://h/s", "rtsp://o/t") == "rtsp://o/t"
    assert control_url("rtsp://h/s", "*") == "rtsp://h/s"
    url, user, pw = split_credentials("rtsp://us%40er:p%3Aw@10.0.0.1:8554/live?x=1")
    assert (url, user, pw) == ("rtsp://10.0.0.1:8554/live?x=1", "us@er", "p:w")
    assert split_credentials("rtsp://[::1]/a")[0] == "rtsp://[::1]/a"


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_digest_authorization_rfc2617() -> None:
    """The worked example of RFC 2617, section 3.5 (qop=auth)."""
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = authorization([challenge], "GET", "/dir/index.html", "Mufasa", "Circle Of Life")
    assert header is not None and header.startswith("Digest ")
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[7:]))
    assert fields["nc"] == "00000001" and fields["qop"] == "auth"
    assert fields["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    ha1 = _md5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = _md5("GET:/dir/index.html")
    nonce, cnonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093", fields["cnonce"]
    assert fields["response"] == _md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
    # without qop (RFC 2069 style, what many cameras send)
    plain = authorization(['Digest realm="r", nonce="n"'], "DESCRIBE", "rtsp://h/", "u", "p")
    assert plain is not None
    expected = _md5(f"{_md5('u:r:p')}:n:{_md5('DESCRIBE:rtsp://h/')}")
    assert f'response="{expected}"' in plain


def test_basic_authorization_and_unknown_schemes() -> None:
    basic = authorization(['Basic realm="cam"'], "DESCRIBE", "rtsp://h/", "bob", "pw")
    assert basic == "Basic " + base64.b64encode(b"bob:pw").decode()
    # Digest is preferred when both are offered
    both = authorization(['Basic realm="a"', 'Digest realm="a", nonce="n"'], "X", "u", "b", "p")
    assert both is not None and both.startswith("Digest ")
    assert authorization(['Bearer realm="x"'], "DESCRIBE", "rtsp://h/", "u", "p") is None


def _rtp(payload: bytes, seq: int, ts: int, marker: bool = False, pt: int = 96) -> bytes:
    return (
        bytes([0x80, (0x80 if marker else 0) | pt])
        + seq.to_bytes(2, "big")
        + ts.to_bytes(4, "big")
        + b"\x00\x00\x00\x01"
        + payload
    )


def test_rtp_header_with_csrc_extension_and_padding() -> None:
    pkt = parse_rtp(_rtp(b"\x65abc", 7, 90000, marker=True))
    assert pkt == RtpPacket(True, 96, 7, 90000, b"\x65abc")
    csrc_ext_pad = (
        bytes([0x80 | 0x20 | 0x10 | 1, 96])  # padding, extension, one CSRC
        + (1).to_bytes(2, "big")
        + (2).to_bytes(4, "big")
        + b"SSRC"
        + b"CSRC"
        + b"\xbe\xde\x00\x01"  # extension header, one word
        + b"EXT!"
        + b"data"
        + b"\x00\x00\x03"  # 3 bytes of padding, the last holds the count
    )
    pkt = parse_rtp(csrc_ext_pad)
    assert pkt is not None and pkt.payload == b"data"
    assert parse_rtp(b"\x40" + b"\x00" * 20) is None  # version 1
    assert parse_rtp(b"\x80\x60") is None


SPS, PPS = b"\x67\x42\xe0\x1f", b"\x68\xce\x30\xa4"
IDR = b"\x65" + bytes(range(1, 200))
SLICE = b"\x41" + bytes(range(50, 150))


def _fu_a(nal: bytes, size: int) -> list[bytes]:
    """Split ``nal`` into FU-A payloads of ``size`` data bytes."""
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        header = (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0) | (nal[0] & 0x1F)
        out.append(bytes([indicator, header]) + chunk)
    return out


def _annexb(*nals: bytes) -> bytes:
    return b"".join(START_CODE + n for n in nals)


def _feed(d: Depacketizer, payloads: list[bytes], seq: int, ts: int) -> list[bytes]:
    """Send ``payloads`` as one frame (marker on the last); return what came out."""
    out: list[bytes] = []
    for i, p in enumerate(payloads):
        pkt = parse_rtp(_rtp(p, seq + i, ts, marker=i == len(payloads) - 1))
        assert pkt is not None
        out += d.push(pkt)
    return out


def _stap_a(*nals: bytes) -> bytes:
    return b"\x18" + b"".join(len(n).to_bytes(2, "big") + n for n in nals)


def test_h264_frame_is_complete_at_its_marker_packet() -> None:
    d = Depacketizer("H264")
    # a keyframe: SPS+PPS aggregated, the IDR in fragments
    frame = _feed(d, [_stap_a(SPS, PPS), *_fu_a(IDR, 60)], seq=100, ts=1000)
    assert frame == [_annexb(SPS, PPS, IDR)]
    # a P frame in one packet comes out at once, not when the next frame begins
    assert _feed(d, [SLICE], seq=105, ts=4600) == [_annexb(SLICE)]


def test_h264_stream_starts_at_a_keyframe_and_gets_sdp_parameter_sets() -> None:
    d = Depacketizer("H264", [SPS, PPS])
    assert _feed(d, [SLICE], seq=1, ts=0) == []  # no keyframe yet: dropped
    assert _feed(d, [IDR], seq=2, ts=3600) == [_annexb(SPS, PPS, IDR)]
    assert _feed(d, [SLICE], seq=3, ts=7200) == [_annexb(SLICE)]
    assert d.dropped == 1


def test_h264_loss_drops_frames_until_the_next_keyframe() -> None:
    d = Depacketizer("H264")
    assert _feed(d, [IDR], seq=10, ts=0) == [_annexb(IDR)]
    fragments = _fu_a(IDR, 40)
    out = []
    for i, p in enumerate(fragments):
        if i == 2:
            continue  # lost
        pkt = parse_rtp(_rtp(p, 11 + i, 3600, marker=i == len(fragments) - 1))
        assert pkt is not None
        out += d.push(pkt)
    assert out == [] and d.lost == 1
    seq = 11 + len(fragments)
    assert _feed(d, [SLICE], seq=seq, ts=7200) == []  # refers to the damaged frame: dropped
    assert _feed(d, [IDR], seq=seq + 1, ts=10800) == [_annexb(IDR)]


def test_h264_sender_without_marker_bits_and_sequence_wrap() -> None:
    d = Depacketizer("H264")
    out: list[bytes] = []
    for i, (p, ts) in enumerate([(IDR, 0), (SLICE, 3600), (SLICE, 7200)]):
        pkt = parse_rtp(_rtp(p, (0xFFFE + i) & 0xFFFF, ts, marker=False))
        assert pkt is not None
        out += d.push(pkt)
    # each frame ends when the next one's timestamp shows up; seq 0xFFFF -> 0 is no loss
    assert out == [_annexb(IDR), _annexb(SLICE)] and d.lost == 0


def test_h264_duplicate_packets_are_ignored() -> None:
    d = Depacketizer("H264")
    first = parse_rtp(_rtp(IDR, 5, 0, marker=True))
    assert first is not None
    assert d.push(first) == [_annexb(IDR)]
    assert d.push(first) == [] and d.lost == 0


def test_h265_aggregation_and_fragmentation() -> None:
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc0"
    idr = b"\x26\x01" + bytes(range(3, 120))  # IDR_W_RADL (type 19)
    d = Depacketizer("H265")
    ap = b"\x60\x01" + b"".join(len(n).to_bytes(2, "big") + n for n in (vps, sps, pps))
    body = idr[2:]
    fus = []
    for i in range(0, len(body), 50):
        start, end = i == 0, i + 50 >= len(body)
        fu_header = (0x80 if start else 0) | (0x40 if end else 0) | 19
        fus.append(bytes([(49 << 1), 0x01, fu_header]) + body[i : i + 50])
    assert _feed(d, [ap, *fus], seq=0, ts=0) == [_annexb(vps, sps, pps, idr)]


def test_unsupported_h264_packetization_is_reported() -> None:
    d = Depacketizer("H264")
    pkt = parse_rtp(_rtp(b"\x19abc", 1, 0, marker=True))  # STAP-B
    assert pkt is not None
    with pytest.raises(framebus.SourceUnsupported, match="packetization"):
        d.push(pkt)
    with pytest.raises(ValueError):
        Depacketizer("JPEG")


def _fu_a_middle(size: int) -> bytes:
    return bytes([0x7C, 0x05]) + bytes(size)  # FU-A of an IDR, neither start nor end


def test_depacketizer_memory_bounded_when_fragment_never_ends() -> None:
    """An FU-A start, then middles that never end: dropped at MAX_ACCESS_UNIT, not kept."""
    d = Depacketizer("H264")
    assert _feed(d, [IDR], seq=0, ts=0) == [_annexb(IDR)]
    start = parse_rtp(_rtp(bytes([0x7C, 0x85]) + bytes(60000), 1, 3600))
    assert start is not None and d.push(start) == []
    seq, middle = 2, _fu_a_middle(60000)
    while d.oversized < 3:  # every MAX_ACCESS_UNIT bytes of it count
        assert d.push(RtpPacket(False, 96, seq, 3600, middle)) == []
        assert d.pending_bytes <= MAX_ACCESS_UNIT
        seq += 1
    assert seq * 60000 > 3 * MAX_ACCESS_UNIT
    assert d.pending_bytes == 0 and d.dropped == 1 and d.oversized == d.oversized_streak == 3
    # the end comes at last: the frame is gone, and so is every frame up to a keyframe
    end = bytes([0x7C, 0x45]) + b"end"
    assert d.push(RtpPacket(True, 96, seq, 3600, end)) == []
    assert _feed(d, [SLICE], seq=seq + 1, ts=7200) == []
    assert _feed(d, [IDR], seq=seq + 2, ts=10800) == [_annexb(IDR)]
    assert d.oversized_streak == 0 and d.oversized == 3 and d.lost == 0


def test_depacketizer_memory_bounded_without_marker() -> None:
    """NAL units with one timestamp and never a marker bit: one frame that never ends."""
    for codec, nal in (("H264", b"\x41" + bytes(50000)), ("H265", b"\x02\x01" + bytes(50000))):
        d = Depacketizer(codec)
        for seq in range(3 * MAX_ACCESS_UNIT // len(nal)):
            assert d.push(RtpPacket(False, 96, seq, 0, nal)) == []
            assert d.pending_bytes <= MAX_ACCESS_UNIT
        assert d.oversized >= 2 and d.dropped == 1 and d.pending_nals < MAX_NALS


def test_depacketizer_bounds_the_number_of_nal_units() -> None:
    """Aggregation packets of one-byte NAL units: few bytes, but many objects."""
    d = Depacketizer("H264")
    stap = b"\x18" + b"\x00\x01\x06" * 20000  # 20,000 SEI NAL units of one byte
    for seq in range(5):
        assert d.push(RtpPacket(False, 96, seq, 0, stap[: 1 + 3 * (MAX_NALS // 3)])) == []
        assert d.pending_nals <= MAX_NALS
    assert d.push(RtpPacket(True, 96, 5, 0, stap)) == []
    assert d.pending_nals == 0 and d.oversized == 1 and d.dropped == 1
    # a frame of many slices is not too many
    many = [_stap_a(*[b"\x65" + bytes([i % 256]) * 10] * 100) for i in range(MAX_NALS // 100)]
    (unit,) = _feed(d, many, seq=6, ts=3600)
    assert unit.count(START_CODE) == 100 * (MAX_NALS // 100)


def test_depacketizer_frame_just_under_the_bound_is_delivered() -> None:
    d = Depacketizer("H264")
    idr = b"\x65" + bytes(MAX_ACCESS_UNIT - 1000)
    (unit,) = _feed(d, _fu_a(idr, 60000), seq=0, ts=0)
    assert unit == _annexb(idr) and d.oversized == 0


def test_depacketizer_fragment_restarted_without_its_end_is_damaged() -> None:
    """An FU-A start while another fragmented NAL unit is unfinished: that one lost its end."""
    d = Depacketizer("H264")
    first, second = _fu_a(IDR, 60), _fu_a(IDR, 60)
    frame = [first[0], *second]  # first's middle and end never came, yet no sequence gap
    assert _feed(d, frame, seq=0, ts=0) == [] and d.dropped == 1
    assert _feed(d, [IDR], seq=len(frame), ts=3600) == [_annexb(IDR)]


def test_h264_loss_at_a_frame_boundary_drops_the_frame_after_it() -> None:
    """The first slice of a frame lost: the rest of it must not reach the decoder."""
    d = Depacketizer("H264")
    assert _feed(d, [IDR], seq=1, ts=0) == [_annexb(IDR)]
    second_slice = b"\x65\x00" + bytes(range(60))  # packet 2 (the first slice) was lost
    assert _feed(d, [second_slice], seq=3, ts=3600) == [] and d.lost == 1
    assert _feed(d, [IDR], seq=4, ts=7200) == [_annexb(IDR)]


class _ScriptedCamera:
    """An RTSP peer on a real socket that answers the handshake and streams RTP, recording
    every request: for what the GStreamer test server cannot show (it never expires a TCP
    session, so it does not need keep-alives), and for hostile servers (the SETUP answer's
    ``Session`` timeout and ``Transport`` as given; a frame that never ends). Subclasses script
    other servers: :meth:`reply` answers a request, :meth:`stream` sends what follows PLAY.
    Connections are served one after another (a client that follows a redirect, or FFmpeg
    after framebus's client), and counted."""

    sdp = b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:v\r\n"

    def __init__(
        self,
        session_timeout: int | str = 60,
        *,
        transport: str = "RTP/AVP/TCP;unicast;interleaved=0-1",
        endless_fragment: bool = False,
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.timeout = session_timeout
        self.transport = transport
        self.endless_fragment = endless_fragment  # after PLAY, an FU-A that never ends
        self.sent = 0  # bytes of RTP payload sent by the endless fragment
        self.connections = 0
        self.requests: list[tuple[float, str, str]] = []  # (time, method, session header)
        self.received: list[ServerRequest] = []  # the same requests, with all their headers
        self.answers: list[Response] = []  # the client's answers to our own requests
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn, contextlib.suppress(ConnectionError):  # a client hangs up, data unread
                self._play(conn)

    def reply(self, msg: ServerRequest, cseq: str) -> bytes:
        """The answer to a request: 200 OK with what each step needs."""
        extra = {
            "OPTIONS": "Public: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER\r\n",
            "DESCRIBE": f"Content-Length: {len(self.sdp)}\r\n",
            "SETUP": f"Session: abc;timeout={self.timeout}\r\nTransport: {self.transport}\r\n",
        }.get(msg.method, "")
        body = self.sdp if msg.method == "DESCRIBE" else b""
        return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}\r\n".encode() + body

    def stream(self, conn: socket.socket, seq: int) -> bool:
        """After PLAY, once per turn (every 20 ms at most): a keyframe in one packet. False
        ends the connection."""
        if self.endless_fragment:
            self._flood(conn)
            return False
        if seq == 5:  # some cameras ping their clients
            conn.sendall(b"GET_PARAMETER rtsp://x/s RTSP/1.0\r\nCSeq: 77\r\n\r\n")
        rtp = _rtp(IDR, seq + 1, (seq + 1) * 3600, marker=True)
        conn.sendall(b"$\x00" + len(rtp).to_bytes(2, "big") + rtp)
        return True

    def _play(self, conn: socket.socket) -> None:
        conn.settimeout(0.02)
        parser, seq, playing = MessageParser(), 0, False
        while not self.stop.is_set():
            try:
                data = conn.recv(65536)
                if not data:
                    return
                parser.feed(data)
            except TimeoutError:
                pass
            while (msg := parser.next()) is not None:
                if isinstance(msg, Response):
                    self.answers.append(msg)
                    continue
                assert isinstance(msg, ServerRequest)
                session = msg.headers.get("session", [""])[0]
                self.requests.append((time.monotonic(), msg.method, session))
                self.received.append(msg)
                playing |= msg.method == "PLAY"
                conn.sendall(self.reply(msg, msg.headers["cseq"][0]))
            if playing:
                if not self.stream(conn, seq):
                    return
                seq += 1

    def _flood(self, conn: socket.socket) -> None:
        """An FU-A start of an IDR, then middles as fast as the client takes them."""
        conn.settimeout(5)
        middle = _fu_a_middle(65000)
        payload = bytes([0x7C, 0x85]) + middle[2:]  # the start
        seq = 0
        while not self.stop.is_set():
            seq += 1
            rtp_head = _rtp(b"", seq & 0xFFFF, 3600)
            conn.sendall(b"$\x00" + (len(rtp_head) + len(payload)).to_bytes(2, "big") + rtp_head)
            conn.sendall(payload)
            self.sent += len(payload)
            payload = middle

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


def test_client_keeps_the_session_alive_and_tears_it_down() -> None:
    from framebus.sources._rtsp import RTSPClient

    cam = _ScriptedCamera(session_timeout=2)
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        media = client.open()
        assert media.codec == "H264" and media.control == "v"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:
            pkt = client.read_packet()
            assert pkt.payload == IDR
    finally:
        client.close()
        time.sleep(0.1)
        cam.close()
    methods = [m for _, m, _ in cam.requests]
    assert methods[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    keepalives = [(t, s) for t, m, s in cam.requests if m == "GET_PARAMETER"]
    assert len(keepalives) >= 2  # every half session timeout: 1 s here
    assert all(s == "abc" for _, s in keepalives)
    assert methods[-1] == "TEARDOWN"
    assert [(a.cseq, a.status) for a in cam.answers] == [(77, 200)]


@pytest.mark.parametrize("timeout", ["²", "9" * 5000, "0", "86401", "-5", "1e3", ""])
def test_client_ignores_a_bad_session_timeout(timeout: str) -> None:
    from framebus.sources._rtsp import RTSPClient

    cam = _ScriptedCamera(session_timeout=timeout)
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        client.open()
        assert client._keepalive_every == 30.0  # the default, not the server's nonsense
        assert client.read_packet().payload == IDR
    finally:
        client.close()
        cam.close()


@pytest.mark.parametrize(
    "transport",
    [
        "RTP/AVP/TCP;unicast;interleaved=²-3",
        "RTP/AVP/TCP;unicast;interleaved=256-257",
        "RTP/AVP/TCP;unicast;interleaved=" + "9" * 5000,
        "RTP/AVP/TCP;unicast;interleaved=",
        "RTP/AVP/TCP;unicast;interleaved=-1",
    ],
)
def test_client_rejects_a_bad_interleaved_channel(transport: str) -> None:
    from framebus.sources._rtsp import RTSPClient

    cam = _ScriptedCamera(session_timeout=60, transport=transport)
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        # a protocol violation, not a dialect FFmpeg may speak: no SourceUnsupported
        with pytest.raises(framebus.SourceOpenError, match="interleaved channel") as info:
            client.open()
        assert not isinstance(info.value, framebus.SourceUnsupported)
    finally:
        client.close()
        cam.close()


def test_client_takes_the_interleaved_channel_the_server_chose() -> None:
    from framebus.sources._rtsp import RTSPClient

    cam = _ScriptedCamera(session_timeout=60, transport="RTP/AVP/TCP;interleaved= 2-3")
    client = RTSPClient(f"rtsp://127.0.0.1:{cam.port}/s", "cam", open_timeout=5, read_timeout=5)
    try:
        client.open()
        assert client._rtp_channel == 2
    finally:
        client.close()
        cam.close()


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_capture_fails_on_a_server_whose_frame_never_ends() -> None:
    """A hostile server: an FU-A start, then middles forever. With reconnecting off, the
    capture must fail (not hold the frame, not go live with no frames), in bounded memory.
    The stream goes live with its first frame, so the error comes from VideoCapture() itself:
    it runs in a thread while this one watches the capture process's memory."""
    pytest.importorskip("av")
    from framebus.sources.rtsp import RTSPSource

    cam = _ScriptedCamera(session_timeout=60, endless_fragment=True)
    media = framebus.Media(f"rtsp://127.0.0.1:{cam.port}/s", backend="rtsp")
    before = child_pids()
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            framebus.VideoCapture(media, reconnect=False).release()
        except BaseException as exc:
            outcome.append(exc)

    opener = threading.Thread(target=open_it)
    t0 = time.monotonic()
    opener.start()
    try:
        # the flood starts once the capture has started up and connected: measure from there
        while cam.sent == 0 and opener.is_alive() and time.monotonic() - t0 < 30:
            time.sleep(0.01)
        (capture,) = child_pids() - before  # the capture process
        base = peak = _rss(capture)
        # (stop early if memory grows: a loopback flood fills gigabytes in seconds)
        limit = 4 * MAX_ACCESS_UNIT
        while opener.is_alive() and time.monotonic() - t0 < 30 and peak - base < limit:
            peak = max(peak, _rss(capture))
            time.sleep(0.01)
        if opener.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(capture, signal.SIGKILL)
        opener.join(30)
    finally:
        cam.close()
    elapsed = time.monotonic() - t0
    assert peak - base < 4 * MAX_ACCESS_UNIT, f"memory grew by {peak - base} bytes"
    assert outcome and isinstance(outcome[0], framebus.SourceError), (outcome, elapsed)
    assert f"the server sends frames over {MAX_ACCESS_UNIT} bytes" in str(outcome[0])
    # it took MAX_OVERSIZED times MAX_ACCESS_UNIT bytes: a hundred times what it may hold
    assert cam.sent >= RTSPSource.MAX_OVERSIZED * MAX_ACCESS_UNIT


def test_session_header_is_bounded_and_its_timeout_checked() -> None:
    from framebus.sources._rtsp import parse_session

    assert parse_session("abc123;timeout=60") == ("abc123", 60)
    assert parse_session(" abc ; Timeout = 90 ") == ("abc", 90)
    assert parse_session("abc;timeout=99999999") == ("abc", None)  # ignored: keep-alive 30 s
    assert parse_session("abc;timeout=²") == ("abc", None)
    with pytest.raises(ValueError, match="session id"):
        parse_session("x" * 300)  # echoed in every request: not megabytes
    with pytest.raises(ValueError, match="session id"):
        parse_session("a\x00b")


def test_transport_header_names_the_channel_or_udp() -> None:
    from framebus.sources._rtsp import interleaved_channel

    assert interleaved_channel("RTP/AVP/TCP;unicast;interleaved=4-5") == 4
    assert interleaved_channel("RTP/AVP;unicast;client_port=5000-5001") is None
    for bad in ("RTP/AVP/TCP;interleaved=256-257", "RTP/AVP/TCP;interleaved=²", "interleaved="):
        with pytest.raises(ValueError, match="interleaved channel"):
            interleaved_channel(bad)
