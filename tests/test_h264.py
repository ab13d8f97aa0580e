"""H.264 access units without I/O: NAL units, keyframes, codec strings, the WebSocket message;
every parser fuzzed (camera and page bytes are untrusted)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from framebus import FrameInfo
from framebus._h264 import (
    AccessUnit,
    codec_string,
    is_keyframe,
    nal_types,
    nal_units,
    picture_size,
)
from framebus.web import _h264 as wire
from fuzzing import fuzz

SPS = b"\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84"  # Constrained Baseline, level 3.0
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x33\xff"
P = b"\x41\x9a\x22\x4c"


def annexb(*nals: bytes, long: bool = True) -> bytes:
    start = b"\x00\x00\x00\x01" if long else b"\x00\x00\x01"
    return b"".join(start + n for n in nals)


def info(seq: int = 7, timestamp: float = 1700000000.25) -> FrameInfo:
    return FrameInfo(seq=seq, timestamp=timestamp, pos=seq, skipped=0, width=640, height=360)


def test_nal_units_split_on_both_start_codes() -> None:
    data = annexb(SPS, PPS) + annexb(IDR, long=False)
    assert [bytes(n) for n in nal_units(data)] == [SPS, PPS, IDR]
    assert nal_types(data) == [7, 8, 5]
    assert list(nal_units(b"")) == [] and list(nal_units(b"\x00\x00\x01")) == []


def test_a_keyframe_needs_its_parameter_sets() -> None:
    assert is_keyframe(annexb(SPS, PPS, IDR))
    assert not is_keyframe(annexb(IDR))  # a decoder cannot start without SPS and PPS
    assert not is_keyframe(annexb(P)) and not is_keyframe(b"garbage")


def test_codec_string_from_the_sps() -> None:
    assert codec_string(annexb(SPS, PPS, IDR)) == "avc1.42C01E"
    assert codec_string(annexb(P)) == "" and codec_string(annexb(b"\x67\x42")) == ""


def test_a_message_round_trips() -> None:
    au = AccessUnit(annexb(SPS, PPS, IDR), True, "avc1.42C01E", 640, 360, 12)
    data = wire.message(au, info())
    assert len(data) == wire.HEADER.size + len(au.codec) + len(au.data)
    back, timestamp, seq = wire.parse(data)
    assert back == au and timestamp == 1700000000.25 and seq == 7


@given(st.binary(max_size=400))
@fuzz(400)
def test_parsers_never_fail_on_garbage(data: bytes) -> None:
    for nal in nal_units(data):
        assert 0 < len(nal) <= len(data)
    assert sum(len(n) for n in nal_units(data)) <= len(data)
    is_keyframe(data)
    text = codec_string(data)
    assert text == "" or (text.startswith("avc1.") and len(text) == 11)
    try:
        au, _, _ = wire.parse(data)
    except ValueError:
        return
    assert len(au.data) <= len(data)


@given(
    st.lists(
        st.binary(min_size=1, max_size=40).filter(lambda n: b"\x00\x00" not in n and n[-1] != 0),
        max_size=8,
    )
)
@fuzz(300)
def test_nal_units_finds_what_was_joined(nals: list[bytes]) -> None:
    # NAL units never contain 00 00 0x (emulation prevention): such units split back exactly
    assert [bytes(n) for n in nal_units(annexb(*nals))] == nals


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
def test_a_websocket_frame_reads_back_whole(size: int) -> None:
    from wsproto import ConnectionType
    from wsproto.connection import Connection
    from wsproto.events import BytesMessage

    client = Connection(ConnectionType.CLIENT)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    client.receive_data(wire.websocket_frame(payload))
    got = b"".join(e.data for e in client.events() if isinstance(e, BytesMessage))
    assert got == payload


def test_an_fmp4_stream_of_fragments_plays_in_ffmpeg(pattern_stream: framebus.Publisher) -> None:
    """An init segment and one fragment per access unit, as the MSE player appends them:
    FFmpeg (what Chromium's MSE demuxes with) reads every frame back."""
    import io

    import av

    from framebus.sinks.h264 import H264Sink

    with H264Sink(pattern_stream.name) as sink:
        sub = sink.subscribe()
        items = [sub.get(10) for _ in range(12)]
    messages = [wire.mse_message(it.data, it.info) for it in items]
    key, codec, init, first, origin = wire.parse_mse(messages[0])
    assert key and init and codec.startswith("avc1.") and origin <= items[0].info.timestamp
    data = init + first + b"".join(wire.parse_mse(m)[3] for m in messages[1:])
    assert all(not wire.parse_mse(m)[2] for m in messages[1:])  # an init with keyframes only
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (320, 240)
    times = [float(f.time) for f in frames]
    assert times == sorted(times)  # decode times follow the capture times
    assert abs(origin + times[-1] - items[-1].info.timestamp) < 0.001


@given(st.binary(max_size=200))
@fuzz(300)
def test_the_fmp4_message_parser_never_fails_on_garbage(data: bytes) -> None:
    try:
        _, _, init, fragment, _ = wire.parse_mse(data)
    except ValueError:
        return
    assert len(init) + len(fragment) <= len(data)


@pytest.mark.parametrize(
    ("width", "height", "options"),
    [
        (640, 360, {}),
        (1280, 720, {"profile": "high"}),
        (1920, 1080, {"profile": "main"}),
        (322, 242, {}),
        (176, 144, {"profile": "high", "x264-params": "cqm=jvt"}),
    ],
)
def test_the_picture_size_is_read_from_the_sps(
    width: int, height: int, options: dict[str, str]
) -> None:
    """Baseline, Main and High profiles, frame cropping (1080 = 68 macroblocks cropped, odd
    sizes), a scaling matrix: the size x264 was asked for."""
    from fractions import Fraction

    import av
    import numpy as np

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", **options}
    encoder.open()
    picture = av.VideoFrame.from_ndarray(np.zeros((height * 3 // 2, width), np.uint8), "yuv420p")
    picture.pts = 0
    data = bytes(encoder.encode(picture)[0])
    assert picture_size(data) == (width, height)
    assert picture_size(annexb(P)) is None


@given(st.binary(max_size=64))
@fuzz(400)
def test_a_forged_sps_never_fails(body: bytes) -> None:
    size = picture_size(annexb(b"\x67" + body))
    assert size is None or (0 < size[0] <= 16384 and 0 < size[1] <= 16384)
