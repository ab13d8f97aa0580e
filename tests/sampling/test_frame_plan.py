"""The decoding plan of a sampled file: which frames are kept, and that skipping the decode of
frames nothing kept needs changes no kept frame (real ffmpeg files of several codecs, compared
with a full decode of every frame)."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from framebus.sampling import _frame_plan
from framebus.sampling._frame_plan import DECODE, SKIP, DecodePlan, PacketIndex, Selection
from framebus.sampling._keyframes import starts_fresh
from fuzzing import fuzz
from sampletools import opencv_frames

TB = Fraction(1, 25)


def selection(**kw: object) -> Selection:
    args: dict[str, object] = {
        "every": None, "interval": None, "start": None, "end": None, "max": None,
        "time_base": TB, "rate": Fraction(25),
    }  # fmt: skip
    args.update(kw)
    return Selection(**args)  # type: ignore[arg-type]


def plan_decode(
    packet_pts: list[int | None],
    discard: list[bool],
    sel: Selection,
    already_done: Callable[[int], bool] = lambda index: False,
    fresh: list[bool] | None = None,
) -> DecodePlan | None:
    """The plan of a whole list of packets (no decoding times: frames offered at the end)."""
    if len(discard) != len(packet_pts):
        raise ValueError("one discard flag per packet")
    index = PacketIndex(sel)
    for n, pts in enumerate(packet_pts):
        index.add(pts, None, discard[n], False if fresh is None else fresh[n])
    index.finish()
    return index.plan(already_done)


def expected(
    times: list[Fraction],
    every: int | None,
    interval: Fraction | None,
    start: Fraction | None,
    end: Fraction | None,
    most: int | None,
) -> tuple[list[int], int]:
    """The kept display indexes and the frames covered, written out directly."""
    kept: list[int] = []
    covered = 0
    buckets: set[int] = set()
    for i, t in enumerate(times):
        if end is not None and t >= end:
            break
        covered = i + 1
        if start is not None and t < start:
            continue
        if every is not None:
            keep = i % every == 0
        else:
            assert interval is not None
            bucket = math.floor(t / interval)
            keep = not buckets or bucket > max(buckets)
            buckets.add(bucket)
        if keep:
            kept.append(i)
            if most is not None and len(kept) == most:
                break
    return kept, covered


@st.composite
def packets(draw: st.DrawFn) -> tuple[list[int], list[bool], list[bool]]:
    """Distinct pts with gaps, in a decoding order that reorders them, some hidden, some
    fresh starts."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=0, max_size=80))
    pts = [draw(st.integers(-5, 5))]
    for g in gaps:
        pts.append(pts[-1] + g)
    order = draw(st.permutations(pts))
    discard = [draw(st.booleans()) if draw(st.integers(0, 5)) == 0 else False for _ in order]
    fresh = [draw(st.integers(0, 6)) == 0 for _ in order]
    return list(order), discard, fresh


@fuzz(400)
@given(
    packets(),
    st.one_of(st.integers(1, 9), st.fractions(Fraction(1, 25), Fraction(3, 2))),
    st.one_of(st.none(), st.fractions(0, 3)),
    st.one_of(st.none(), st.fractions(Fraction(1, 50), 4)),
    st.one_of(st.none(), st.integers(1, 10)),
    st.sets(st.integers(0, 90)),
)
def test_the_plan_keeps_what_the_selection_says_and_decodes_no_more(
    pk: tuple[list[int], list[bool], list[bool]],
    pick: int | Fraction,
    start: Fraction | None,
    end: Fraction | None,
    most: int | None,
    existing: set[int],
) -> None:
    order, discard, fresh = pk
    every = pick if isinstance(pick, int) else None
    interval = pick if isinstance(pick, Fraction) else None
    sel = selection(every=every, interval=interval, start=start, end=end, max=most)
    plan = plan_decode(order, discard, sel, existing.__contains__, fresh)
    assert plan is not None
    shown = sorted(p for p, d in zip(order, discard, strict=True) if not d)
    times = [(p - shown[0]) * TB for p in shown]
    want, covered = expected(times, every, interval, start, end, most)
    assert plan.kept_indexes == want and plan.covered == covered
    assert [int(i) for i in np.flatnonzero(plan.decode)] == [i for i in want if i not in existing]
    for p, d in zip(order, discard, strict=True):
        rank = None if d else shown.index(p)
        assert plan.index_of(p) == (rank if rank is not None and rank < covered else None)
    assert plan.index_of(max(order) + 1) is None and plan.index_of(None) is None
    wanted = {shown[i] for i in want if i not in existing}
    positions = [n for n, p in enumerate(order) if p in wanted]
    assert plan.last_packet == (positions[-1] if positions else -1)
    # segments: from one fresh start to the next; each one holding a wanted frame is decoded
    # whole (references only), and the one before too if it has frames shown before its first
    # one; every other is skipped
    starts = [0] + [n for n in range(1, len(order)) if fresh[n]]
    bounds = list(zip(starts, [*starts[1:], len(order)], strict=True))
    holds = [any(order[n] in wanted and not discard[n] for n in range(a, b)) for a, b in bounds]
    leads = [any(order[n] < order[a] for n in range(a, b)) for a, b in bounds]
    needed = [h or (k + 1 < len(bounds) and holds[k + 1] and leads[k + 1])
              for k, h in enumerate(holds)]  # fmt: skip
    for (a, b), need in zip(bounds, needed, strict=True):
        for n in range(a, b):
            is_wanted = order[n] in wanted and not discard[n]
            assert (plan.actions[n] == DECODE) == is_wanted
            assert (plan.actions[n] == SKIP) == (not need)


@fuzz(300)
@given(
    packets(),
    st.integers(1, 9),
    st.one_of(st.none(), st.fractions(Fraction(1, 50), 4)),
    st.one_of(st.none(), st.integers(1, 10)),
)
def test_reading_stops_once_the_selection_is_decided_with_the_same_plan(
    pk: tuple[list[int], list[bool], list[bool]],
    every: int,
    end: Fraction | None,
    most: int | None,
) -> None:
    """With decoding times (pts >= dts, dts never going back), frames are offered as soon as
    no later packet can come before them, and reading stops when the selection is decided:
    the plan is the one made from every packet."""
    order, discard, fresh = pk
    dts = [min(order[i:]) for i in range(len(order))]  # the latest valid decoding times
    index = PacketIndex(selection(every=every, end=end, max=most))
    read = 0
    for p, d, f, t in zip(order, discard, fresh, dts, strict=True):
        index.add(p, t, d, f)
        read += 1
        if index.done:
            break
    else:
        index.finish()
    early = index.plan()
    whole = plan_decode(order, discard, selection(every=every, end=end, max=most), fresh=fresh)
    assert early is not None and whole is not None
    assert early.kept_indexes == whole.kept_indexes and early.covered == whole.covered
    assert early.last_packet == whole.last_packet
    assert list(early.actions[: early.last_packet + 1]) == list(
        whole.actions[: whole.last_packet + 1]
    )
    if most is not None and len(whole.kept_indexes) == most:
        # decided at the last kept frame: at most the packets up to every frame shown before it
        last_pts = sorted(p for p, d in zip(order, discard, strict=True) if not d)[
            whole.kept_indexes[-1]
        ]
        assert read <= max(i for i, t in enumerate(dts) if t <= last_pts) + 2


def test_timestamps_that_break_the_container_rules_give_no_plan() -> None:
    index = PacketIndex(selection(every=2))
    for pts, dts in [(0, 0), (2, 1), (1, 1), (5, 3)]:
        index.add(pts, dts, False, False)
    assert index.usable and index.display_pts == [0, 1, 2]
    index.add(2, 4, False, False)  # shown before frames already counted
    assert not index.usable and index.plan() is None


def nal(header: int, body: bytes = b"\x88\x84") -> bytes:
    unit = bytes([header]) + body
    return len(unit).to_bytes(4, "big") + unit


AVCC = bytes([1, 100, 0, 13, 0xFF, 0xE1])  # avcC: 4-byte lengths
HVCC = bytes([1] + [0] * 20 + [0x0F, 0])  # hvcC: 4-byte lengths


def test_only_idr_pictures_are_fresh_starts_in_h264_and_hevc() -> None:
    # H.264: 5 = IDR slice, 1 = other slice, 6 = SEI, 7/8 = parameter sets
    assert starts_fresh("h264", AVCC, nal(0x67) + nal(0x68) + nal(0x06) + nal(0x65))
    assert not starts_fresh("h264", AVCC, nal(0x06) + nal(0x41))  # recovery point: not IDR
    assert starts_fresh("h264", None, b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x65\x88")
    assert not starts_fresh("h264", None, b"\x00\x00\x01\x41\x9a")
    # HEVC: 19/20 = IDR, 21 = CRA (open GOP), 32-34 parameter sets
    assert starts_fresh("hevc", HVCC, nal(32 << 1) + nal(19 << 1))
    assert starts_fresh("hevc", None, b"\x00\x00\x01" + bytes([20 << 1, 1]))
    assert not starts_fresh("hevc", HVCC, nal(21 << 1))
    # others: trusted keyframes, intra-only codecs, and codecs not trusted at all
    assert starts_fresh("vp9", None, b"") and starts_fresh("mpeg2video", None, b"")
    assert starts_fresh("prores", None, b"", intra_only=True)
    assert not starts_fresh("av1", None, b"\x12\x00")
    # malformed: a length running past the end, a zero length
    assert not starts_fresh("h264", AVCC, b"\x00\x00\x00\x09\x65")
    assert not starts_fresh("h264", AVCC, b"\x00\x00\x00\x00" + nal(0x65))


@fuzz(500)
@given(
    st.sampled_from(["h264", "hevc", "vp9", "av1"]),
    st.one_of(st.none(), st.binary(max_size=30)),
    st.binary(max_size=200),
)
def test_any_bytes_give_an_answer(codec: str, extradata: bytes | None, packet: bytes) -> None:
    assert starts_fresh(codec, extradata, packet) in (True, False)


def test_timestamps_that_cannot_index_frames_give_no_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_decode([0, 2, 1], [False] * 3, selection(every=2)) is not None
    assert plan_decode([0, 2, 2], [False] * 3, selection(every=2)) is None  # same pts twice
    assert plan_decode([0, None, 1], [False] * 3, selection(every=2)) is None
    assert plan_decode([0, 2, 2], [False, True, False], selection(every=2)) is not None
    monkeypatch.setattr(_frame_plan, "MAX_PLANNED_FRAMES", 2)
    assert plan_decode([0, 2, 1], [False] * 3, selection(every=2)) is None
    with pytest.raises(ValueError):
        plan_decode([0, 1], [False], selection(every=2))


# -- real files --------------------------------------------------------------------------------

FRAMES = 90
_LAVFI = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", str(FRAMES)]
_H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
# name -> ffmpeg output options: B-frames (pyramids, open GOPs: frames that reference the GOP
# before their keyframe), several codecs and containers, an intra-only codec
FILES = {
    "h264-open-gop.mkv": [*_H264, "-x264-params", "open-gop=1:keyint=20:bframes=5"],
    "h264-pyramid.mp4": [*_H264, "-bf", "3", "-g", "30"],
    "h264-intra-refresh.ts": [*_H264, "-bf", "3", "-g", "30", "-intra-refresh", "1"],
    "hevc.mp4": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-tag:v", "hvc1",
                 "-x265-params", "log-level=error:keyint=25"],  # open GOPs (CRA)
    "hevc-closed.mkv": ["-c:v", "libx265", "-pix_fmt", "yuv420p",
                        "-x265-params", "log-level=error:keyint=25:open-gop=0"],  # IDR
    "mpeg2.ts": ["-c:v", "mpeg2video", "-bf", "2", "-g", "15"],
    "mpeg4.avi": ["-c:v", "mpeg4", "-bf", "2", "-g", "15"],
    "vp9.webm": ["-c:v", "libvpx-vp9", "-g", "30", "-keyint_min", "30", "-deadline", "realtime"],
    "mjpeg.avi": ["-c:v", "mjpeg"],
    "h264.h264": [*_H264, "-bf", "2", "-g", "30"],  # no timestamps: no plan
}  # fmt: skip
B_FRAMES = {"h264-open-gop.mkv", "h264-pyramid.mp4", "hevc.mp4", "mpeg2.ts", "mpeg4.avi"}
# files with keyframes decoding can start at after skipped ones (IDR, key frames, intra-only)
FRESH_STARTS = {"h264-pyramid.mp4", "hevc-closed.mkv", "mpeg2.ts", "mpeg4.avi", "vp9.webm",
                "mjpeg.avi"}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("codecs")
    for name, options in FILES.items():
        subprocess.run(["ffmpeg", "-v", "error", "-y", *_LAVFI, *options, str(folder / name)],
                       check=True)  # fmt: skip
    # an edit list that starts the file 1.3 s in, inside a GOP: the packets before are still
    # demuxed (references) but hidden (discard)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "1.3", "-i",
                    str(folder / "h264-pyramid.mp4"), "-c", "copy", str(folder / "edit-list.mp4")],
                   check=True)  # fmt: skip
    return folder


def every_frame(path: Path) -> list[np.ndarray]:
    """A full decode: every frame, converted as framebus converts (PyAV's bgr24)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="bgr24") for f in container.decode(stream)]


@pytest.mark.parametrize("name", [*FILES, "edit-list.mp4"])
def test_kept_frames_equal_a_full_decode_whatever_was_skipped(
    corpus: Path, name: str, tmp_path: Path
) -> None:
    video = corpus / name
    frames = every_frame(video)
    assert len(frames) == len(opencv_frames(video))  # the indexes are OpenCV's
    runs = [
        {"every": 4},
        {"every": 11, "start": 0.5},
        {"interval": 0.3, "end": 3.0},
        {"every": 7, "max": 5},
        # frame 59 alone: with keyframes every 15 or 30, a B-frame shown just before a keyframe
        # (in MPEG-2's open GOPs: decoded after it, from the GOP before)
        {"every": 59, "start": 2.3},
        {"every": 11, "start": 0.7 * len(frames) / 25},  # the last 30 %: the last GOP
    ]
    if len(frames) <= 59:  # the edit list's file is shorter
        del runs[-2]
    for n, options in enumerate(runs):
        out = tmp_path / str(n)
        s = framebus.sample(video, out, format="png", **options)  # type: ignore[arg-type]
        got = sorted(int(p.split(".")[0]) for p in os.listdir(out))
        assert got and s.written == len(got)
        for i in got:
            img = cv2.imread(str(out / f"{i:08d}.png"))
            assert np.array_equal(img, frames[i]), f"{name} {options}: frame {i} differs"
        if "every" in options and "start" not in options and "max" not in options:
            every = options["every"]
            assert got == list(range(0, len(frames), int(every)))
        if name in B_FRAMES and options == {"every": 4}:
            assert s.undecoded > 0, "no frame was skipped"
        if name == "h264.h264":
            assert s.undecoded == 0  # no plan: every frame decoded
        if name in FRESH_STARTS and n == len(runs) - 1:
            assert s.undecoded >= 40, "the GOPs before the window were decoded"
