"""RTP out with no I/O: packets framebus's own depacketizer (and FFmpeg, in test_push.py) read
back byte for byte, sender reports, the ANNOUNCE's SDP, and the push's output clock."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from framebus._rtp import MAX_PAYLOAD, Packetizer, announce_sdp, parameter_sets, sender_report
from framebus._rtsp import parse_sdp
from framebus.mediaserver.pacing import HIGH, LOW, Clock
from framebus.sources._rtsp import Depacketizer, parse_rtp

SC = b"\x00\x00\x00\x01"
SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0x8C, 0x8D, 0x40])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])


def h264_nal(kind: int, size: int, fill: int = 0x55) -> bytes:
    return bytes([0x60 | kind]) + bytes([fill]) * (size - 1)


def h265_nal(kind: int, size: int, fill: int = 0x55) -> bytes:
    return bytes([kind << 1, 1]) + bytes([fill]) * (size - 2)


def roundtrip(codec: str, units: list[bytes]) -> list[tuple[bytes, bool]]:
    p = Packetizer(codec, ssrc=0x1234, seq=65530)  # the sequence number wraps on the way
    d = Depacketizer(codec.upper())
    out: list[tuple[bytes, bool]] = []
    for i, au in enumerate(units):
        packets = p.packetize(au, 3000 * i)
        assert all(len(pk) <= 12 + MAX_PAYLOAD for pk in packets)
        parsed = [parse_rtp(pk) for pk in packets]
        assert all(pp is not None for pp in parsed)
        assert [pp.marker for pp in parsed if pp] == [False] * (len(packets) - 1) + [True]
        assert {pp.timestamp for pp in parsed if pp} == {3000 * i}
        for pp in parsed:
            assert pp is not None
            out += [(unit, key) for unit, key, _ in d.push_units(pp)]
    assert d.lost == 0
    return out


def test_h264_units_come_back_byte_for_byte() -> None:
    key = SC + SPS + SC + PPS + SC + h264_nal(5, 5000)
    small = SC + h264_nal(1, 300)
    big = SC + h264_nal(1, MAX_PAYLOAD * 3 + 7)
    got = roundtrip("h264", [key, small, big, key])
    assert got == [(key, True), (small, False), (big, False), (key, True)]


def test_h265_units_come_back_byte_for_byte() -> None:
    vps, sps, pps = h265_nal(32, 24), h265_nal(33, 40), h265_nal(34, 8)
    key = SC + vps + SC + sps + SC + pps + SC + h265_nal(19, 9000)
    delta = SC + h265_nal(1, 2500)
    got = roundtrip("h265", [key, delta])
    assert got == [(key, True), (delta, False)]


def test_access_unit_delimiters_are_left_out() -> None:
    aud = SC + bytes([0x09, 0xF0])
    p = Packetizer("h264", ssrc=1)
    packets = p.packetize(aud + SC + h264_nal(1, 50), 0)
    assert len(packets) == 1 and packets[0][12] & 0x1F == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(2, 6 * MAX_PAYLOAD), min_size=1, max_size=6), st.booleans())
def test_any_sizes_round_trip(sizes: list[int], h265: bool) -> None:
    codec = "h265" if h265 else "h264"
    nal = h265_nal if h265 else h264_nal
    params = (
        SC + h265_nal(32, 24) + SC + h265_nal(33, 40) + SC + h265_nal(34, 8)
        if h265
        else SC + SPS + SC + PPS
    )
    key = params + b"".join(SC + nal(19 if h265 else 5, max(3, n)) for n in sizes[:1])
    rest = [SC + nal(1, max(3, n), fill=0x11) for n in sizes[1:]]
    got = roundtrip(codec, [key, *rest])
    assert [g[0] for g in got] == [key, *rest]


def test_sender_report_maps_wall_time_to_rtp_time() -> None:
    p = Packetizer("h264", ssrc=0xABCDEF01)
    p.packetize(SC + h264_nal(1, 100), 0)
    sr = sender_report(p, 1_700_000_000.25, 90_000)
    version, kind, length, ssrc, sec, frac, rtp, packets, octets = struct.unpack("!BBHIIIIII", sr)
    assert (version >> 6, kind, length, ssrc) == (2, 200, 6, 0xABCDEF01)
    assert sec == 1_700_000_000 + 2_208_988_800 and abs(frac / 2**32 - 0.25) < 1e-6
    assert (rtp, packets, octets) == (90_000, 1, 100)


def test_announced_sdp_reads_back() -> None:
    key = SC + SPS + SC + PPS + SC + h264_nal(5, 100)
    sets = parameter_sets("h264", key)
    assert sets == {"sps": SPS, "pps": PPS}
    media = parse_sdp(announce_sdp("h264", sets, "127.0.0.1", "trackID=0"))
    assert media is not None
    assert (media.codec, media.clock_rate, media.control) == ("H264", 90000, "trackID=0")
    assert media.parameter_sets() == [SPS, PPS]
    assert media.fmtp["profile-level-id"] == "42C01F"
    vps, sps, pps = h265_nal(32, 24), h265_nal(33, 40), h265_nal(34, 8)
    sets = parameter_sets("h265", SC + vps + SC + sps + SC + pps + SC + h265_nal(19, 50))
    media = parse_sdp(announce_sdp("h265", sets, "::1", "trackID=0"))
    assert media is not None and media.codec == "H265"
    assert media.parameter_sets() == [vps, sps, pps]


# -- the output clock -------------------------------------------------------------------------


def run_clock(fps: float, producer_fps: float, phase: float, seconds: float) -> list[float]:
    """Simulate: a producer's frames at ``producer_fps`` from ``phase``; returns each tick's
    wait of the frame it took (None-free: only ticks with a new frame)."""
    clock = Clock(fps, 0.0)
    interval = 1 / producer_fps
    waits, ticks = [], []
    t = 0.0
    while t < seconds:
        t = clock.next_tick
        ticks.append(t)
        newest = ((t - phase) // interval) * interval + phase  # the newest frame at t
        fresh = newest >= (ticks[-2] if len(ticks) > 1 else -1)
        waited = t - newest if fresh and newest >= 0 else None
        if waited is not None:
            waits.append(waited / (1 / fps))
        clock.tick(t, waited)
    return waits


def test_the_clock_locks_onto_a_producer_at_its_rate() -> None:
    for phase in (0.001, 0.013, 0.027, 0.039):
        waits = run_clock(25, 25, phase, 10)
        settled = waits[-50:]
        assert all(LOW - 0.06 <= w <= HIGH + 0.06 for w in settled), (phase, settled[:5])


def test_the_clock_ticks_steadily_for_a_slow_producer() -> None:
    clock = Clock(25, 0.0)
    ticks = []
    for i in range(250):
        t = clock.next_tick
        ticks.append(t)
        clock.tick(t, 0.5 if i % 25 == 0 else None)  # a 1 fps producer
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(abs(g - 0.04) < 1e-9 for g in gaps)


def test_a_late_clock_starts_again_instead_of_catching_up() -> None:
    clock = Clock(25, 0.0)
    clock.tick(5.0, None)  # held up for 5 s
    assert clock.next_tick == 5.04
