"""framebus.pipe (write / frames over the wire format) and the byte-stream parsers behind the
stdin source: round trips, bounds, bad input, and hypothesis fuzzing."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import framebus
from framebus import PipeFormatError, wire
from framebus.pipe.mjpeg import JpegSplitter, decode_jpeg
from framebus.pipe.source import detect
from framebus.pipe.y4m import MAX_Y4M_LINE, parse_y4m_header
from fuzzing import fuzz


def stream_of(*frames: np.ndarray) -> bytes:
    buf = io.BytesIO()
    for f in frames:
        framebus.pipe.write(buf, f)
    return buf.getvalue()


def read_all(data: bytes, **kw: object) -> list[tuple[np.ndarray, framebus.FrameInfo]]:
    return list(framebus.pipe.frames(io.BytesIO(data), **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3),
        np.arange(20, dtype=np.uint8).reshape(4, 5),
        np.arange(4 * 5 * 4, dtype=np.uint16).reshape(4, 5, 4) * 700,
        np.linspace(-1, 1, 60, dtype=np.float32).reshape(4, 5, 3),
        np.arange(60, dtype=np.uint8).reshape(5, 4, 3)[:, ::2],  # not contiguous
    ],
    ids=["bgr8", "grey8", "bgra16", "float32", "strided"],
)
def test_round_trip_is_exact(frame: np.ndarray) -> None:
    [(got, info)] = read_all(stream_of(frame))
    assert got.dtype == frame.dtype and got.shape == frame.shape
    assert np.array_equal(got, frame)
    assert got.flags.writeable  # a frame of its own: cv2 may draw on it
    assert (info.width, info.height) == (frame.shape[1], frame.shape[0])


def test_info_travels_and_gaps_are_counted() -> None:
    frame = np.zeros((2, 2, 3), np.uint8)
    buf = io.BytesIO()
    for seq in (5, 6, 9):
        framebus.pipe.write(buf, frame, framebus.FrameInfo(seq, 1700000000.25 + seq, 0, 0, 2, 2))
    got = read_all(buf.getvalue())
    assert [i.seq for _, i in got] == [5, 6, 9]
    assert [i.skipped for _, i in got] == [0, 0, 2]
    assert [i.pos for _, i in got] == [0, 1, 2]
    assert got[2][1].timestamp == pytest.approx(1700000009.25, abs=1e-6)


def test_an_empty_input_yields_nothing() -> None:
    assert read_all(b"") == []


def test_jpeg_frames_are_decoded() -> None:
    frame = np.full((16, 24, 3), (10, 200, 90), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", frame)
    assert ok
    message = wire.pack_frame_bytes(
        frame, seq=1, session=1, capture_ns=1, codec=wire.Codec.JPEG, payload=jpeg
    )
    [(got, _)] = read_all(message)
    assert got.shape == frame.shape
    assert np.abs(got.astype(int) - frame).max() < 8


def test_a_truncated_frame_names_its_offset() -> None:
    one = stream_of(np.zeros((4, 4, 3), np.uint8))
    for cut in (1, 10, len(one) - 1):
        with pytest.raises(PipeFormatError, match=rf"truncated frame at byte offset {len(one)}"):
            read_all(one + one[:cut])


def test_a_wrong_magic_mid_stream_is_an_error_or_skipped_with_resync() -> None:
    one = stream_of(np.full((4, 4, 3), 7, np.uint8))
    data = one + b"garbage!" + one
    with pytest.raises(PipeFormatError, match=rf"bad magic .* offset {len(one)}"):
        read_all(data)
    got = read_all(data, resync=True)
    assert len(got) == 2 and all(int(f[0, 0, 0]) == 7 for f, _ in got)


def _header(width: int, height: int, fmt: int, length: int) -> bytes:
    body = struct.pack(
        "<4sBBBBIIIIQQQQI", wire.MAGIC, 1, 1, fmt, 0, width, height, width * 16, length,
        1, 1, 1, 1, 0,
    )  # fmt: skip
    return body + struct.pack("<I", zlib.crc32(body))


def test_absurd_sizes_are_refused_before_any_allocation() -> None:
    # a valid header promising 16384 rows of 256 KiB: 4 GiB, over max_payload
    with pytest.raises(PipeFormatError, match=r"payload_len|stride|outside"):
        read_all(_header(16384, 16384, 12, 0xFFFF_FFFF))
    # within the wire's bounds but over the reader's own
    big = stream_of(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(PipeFormatError, match="payload_len"):
        read_all(big, max_payload=1000)


def test_reads_ask_for_one_header_then_its_payload() -> None:
    sizes: list[int] = []

    class Recording(io.BytesIO):
        def readinto(self, view: memoryview) -> int:  # type: ignore[override]
            sizes.append(len(view))
            return super().readinto(view)

    frame = np.zeros((720, 1280, 3), np.uint8)
    data = stream_of(frame, frame)
    assert len(list(framebus.pipe.frames(Recording(data)))) == 2
    assert sizes == [64, frame.nbytes, 64, frame.nbytes, 64]  # the last: end of input
    # a header promising more than max_payload is refused before its buffer is allocated
    sizes.clear()
    with pytest.raises(PipeFormatError, match="payload_len"):
        list(framebus.pipe.frames(Recording(data), max_payload=1 << 20))
    assert sizes == [64]


def test_an_object_with_only_read_works() -> None:
    class OnlyRead:
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self.inner.read(min(n, 7))  # short reads, as a socket gives

    frames = [np.full((5, 6, 3), i, np.uint8) for i in range(3)]
    got = list(framebus.pipe.frames(OnlyRead(stream_of(*frames))))  # type: ignore[arg-type]
    assert [int(f[0, 0, 0]) for f, _ in got] == [0, 1, 2]


def test_two_processes_through_a_real_pipe() -> None:
    writer = (
        "import sys, numpy as np, framebus\n"
        "for i in range(20):\n"
        "    framebus.pipe.write(sys.stdout.buffer, np.full((48, 64, 3), i, np.uint8))\n"
    )
    reader = (
        "import sys, framebus\n"
        "print([int(f[0, 0, 0]) for f, _ in framebus.pipe.frames(sys.stdin.buffer)])\n"
    )
    w = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
    try:
        r = subprocess.run(
            [sys.executable, "-c", reader], stdin=w.stdout, capture_output=True, timeout=60
        )
    finally:
        assert w.stdout is not None
        w.stdout.close()
        w.wait(30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == str(list(range(20)))


# -- fuzzing: frames() and the parsers take arbitrary bytes without anything but PipeFormatError


def test_resync_cost_is_linear_in_the_input() -> None:
    """Valid-looking JPEG headers every 65 bytes, each announcing a 1 MiB payload that does
    not start with FF D8. Before: each was copied whole before its first two bytes were
    looked at (32 K copies of 1 MiB for 2 MiB of input, minutes; 64 MiB of it: hours)."""
    import time

    header = wire.encode_header(
        wire.FrameHeader(wire.Codec.JPEG, wire.PixelFormat.BGR24, 64, 64, 192, 1 << 20, 1, 7, 0, 0)
    )
    unit = header + b"\x00"  # 65 bytes: a header, then a payload that is not a JPEG
    data = unit * ((2 << 20) // len(unit))
    good = stream_of(np.full((4, 4, 3), 9, np.uint8))
    started = time.process_time()
    got = [f for f, _ in framebus.pipe.frames(io.BytesIO(data + good), resync=True)]
    used = time.process_time() - started
    assert len(got) == 1 and (got[0] == 9).all()  # the real frame after the garbage is found
    assert used < 10, f"{used:.1f} s of CPU to resync over 2 MiB"  # linear: well under 1 s


@given(st.binary(max_size=600))
@fuzz(300)
def test_fuzz_frames_on_arbitrary_bytes(data: bytes) -> None:
    for resync in (False, True):
        try:
            for frame, _ in framebus.pipe.frames(io.BytesIO(data), resync=resync):
                assert frame.size
        except (PipeFormatError, framebus.FrameTooLarge):
            pass


@given(st.lists(st.tuples(st.integers(0, 200), st.binary(max_size=8)), max_size=6))
@fuzz(200)
def test_fuzz_frames_on_mangled_streams(edits: list[tuple[int, bytes]]) -> None:
    frames = np.arange(27, dtype=np.uint8).reshape(3, 3, 3), np.eye(3, dtype=np.uint16)
    data = bytearray(stream_of(*frames))
    for at, junk in edits:
        data[at : at + len(junk)] = junk
    try:
        for frame, info in framebus.pipe.frames(io.BytesIO(bytes(data)), resync=True):
            assert frame.shape[:2] == (info.height, info.width)
    except (PipeFormatError, framebus.FrameTooLarge):
        pass


_TOKEN = st.one_of(
    st.sampled_from([b"W320", b"H240", b"F25:1", b"F30000:1001", b"F0:0", b"Ip", b"A1:1",
                     b"C420jpeg", b"Cmono", b"C444", b"C420p10", b"XYSCSS=420JPEG", b"W0",
                     b"H99999", b"Fx", b"I?", b"Iz", b"", b"W1", b"H1"]),
    st.binary(min_size=1, max_size=12),
)  # fmt: skip


@given(st.lists(_TOKEN, max_size=10), st.booleans())
@fuzz(400)
def test_fuzz_y4m_header_parser(tokens: list[bytes], magic: bool) -> None:
    line = b" ".join([b"YUV4MPEG2" if magic else b"YUV4MPEG", *tokens])
    try:
        header = parse_y4m_header(line)
    except (PipeFormatError, framebus.FrameTooLarge) as exc:
        assert "\n" not in str(exc) and "byte offset" in str(exc)
        return
    assert 1 <= header.width <= 16384 and 1 <= header.height <= 16384
    assert header.colorspace in ("420jpeg", "420mpeg2", "420paldv", "420", "mono")
    assert header.frame_size <= 64 * 1024 * 1024


@given(st.binary(max_size=400))
@fuzz(300)
def test_fuzz_jpeg_splitter(data: bytes) -> None:
    splitter = JpegSplitter(max_size=300)
    try:
        for at in range(0, len(data), 37):
            splitter.feed(data[at : at + 37])
            while (found := splitter.next()) is not None:
                assert found[0][:2] == b"\xff\xd8" and found[0][-2:] == b"\xff\xd9"
            assert splitter.buffered <= 300 + 37 + 4
    except (PipeFormatError, framebus.FrameTooLarge):
        pass


def test_y4m_header_cases() -> None:
    h = parse_y4m_header(b"YUV4MPEG2 W320 H240 F30000:1001 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2")
    assert (h.width, h.height, h.colorspace) == (320, 240, "420mpeg2")
    assert h.fps == pytest.approx(29.97, abs=0.01)
    assert parse_y4m_header(b"YUV4MPEG2 W3 H3").frame_size == 9 + 2 * 4  # 420jpeg, rounded up
    for line, needle in [
        (b"YUV4MPEG2 W320 H240 C444", "colour space C444"),
        (b"YUV4MPEG2 W320 H240 C420p10", "colour space C420p10"),
        (b"YUV4MPEG2 W320", r"no W \(width\) or no H"),
        (b"YUV4MPEG2 W0 H240", "W'0'"),
        (b"YUV4MPEG2 W16385 H240", "expected 1..16384"),
        (b"YUV4MPEG2  W320 H240", "empty parameter"),
        (b"YUV4MPEG2 W320 H240 Fabc", "ratio"),
        (b"YUV4MPEG3 W320 H240", "expected YUV4MPEG2"),
        (b"YUV4MPEG2 " + b"X" * MAX_Y4M_LINE, "longer than"),
    ]:
        with pytest.raises(PipeFormatError, match=needle):
            parse_y4m_header(line)
    with pytest.raises(PipeFormatError, match="more than"):
        parse_y4m_header(b"YUV4MPEG2 W320 H240 Cmono", max_frame=1000)
    with pytest.raises(framebus.FrameTooLarge, match="decoded-size budget"):
        parse_y4m_header(b"YUV4MPEG2 W16384 H16384 Cmono")


def _jpeg(frame: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", frame)
    assert ok
    return bytes(data)


def test_a_jpeg_ends_at_its_own_eoi_not_at_a_thumbnails() -> None:
    big = _jpeg(np.full((32, 48, 3), 200, np.uint8))
    thumb = _jpeg(np.zeros((8, 8, 3), np.uint8))
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb) + 8) + b"Exif\x00\x00" + thumb
    with_thumb = big[:2] + app1 + big[2:]
    splitter = JpegSplitter()
    splitter.feed(with_thumb + big)
    first, second = splitter.next(), splitter.next()
    assert first is not None and first[0] == with_thumb and first[1] == (48, 32)
    assert second is not None and second[0] == big
    assert splitter.next() is None and splitter.buffered == 0
    assert decode_jpeg(with_thumb, 0).shape == (32, 48, 3)


def test_a_jpeg_claiming_a_huge_size_is_refused_before_decoding() -> None:
    data = bytearray(_jpeg(np.zeros((8, 8, 3), np.uint8)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(PipeFormatError, match="60000x60000 pixels"):
        decode_jpeg(bytes(data), 0)


def test_detect_names_what_it_expected() -> None:
    assert detect(wire.MAGIC) == "framebus"
    assert detect(b"YUV4MPEG2 ") == "y4m"
    assert detect(b"\xff\xd8\xff\xe0") == "mjpeg"
    with pytest.raises(PipeFormatError, match="empty at byte offset 0"):
        detect(b"")
    with pytest.raises(PipeFormatError, match="unknown input at byte offset 0"):
        detect(b"GIF89a")


def test_the_public_module_is_exported() -> None:
    assert framebus.pipe.write is not None and "pipe" in framebus.__all__
    assert issubclass(PipeFormatError, framebus.FramebusError)
    assert framebus.pipe.__name__ == "framebus.pipe" and framebus.pipe.__all__ == [
        "frames",
        "write",
    ]


def test_the_seed_004_examples_run() -> None:
    """``python examples/pipe_write.py 12 | python examples/pipe_read.py``, as the README says."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    write = subprocess.Popen(
        [sys.executable, str(examples / "pipe_write.py"), "12"], stdout=subprocess.PIPE
    )
    try:
        read = subprocess.run(
            [sys.executable, str(examples / "pipe_read.py")],
            stdin=write.stdout,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        assert write.stdout is not None
        write.stdout.close()
        write.wait(30)
    assert write.returncode == 0 and read.returncode == 0, read.stderr
    lines = read.stdout.splitlines()
    assert len(lines) == 12 and all("(480, 640, 3)" in line for line in lines)
    assert lines[0].startswith("frame ")


def _source_frames(data: bytes) -> list[np.ndarray]:
    """Every frame PipeSource reads from ``data`` through a real pipe."""
    from framebus.pipe.source import PipeSource
    from framebus.sources import Pipe

    r, w = os.pipe()
    try:
        os.write(w, data)  # small: fits the pipe's 64 KiB
        os.close(w)
        w = -1
        source = PipeSource(Pipe(fd=r))
        source.open()
        frames = []
        while (frame := source.read()) is not None:
            assert frame.ndim in (2, 3) and frame.size
            frames.append(frame)
        source.close()
        return frames
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


_PREFIXES = [
    b"",
    b"YUV4MPEG2 W4 H4 F25:1\n",
    b"YUV4MPEG2 W3 H2 Cmono\nFRAME\n",
    b"\xff\xd8",
    wire.MAGIC,
]


@given(st.sampled_from(_PREFIXES), st.binary(max_size=400))
@fuzz(300)
def test_fuzz_the_stdin_source_on_arbitrary_bytes(prefix: bytes, data: bytes) -> None:
    try:
        _source_frames(prefix + data)
    except (PipeFormatError, framebus.FrameTooLarge) as exc:
        assert "\n" not in str(exc) and "byte offset" in str(exc)


def test_the_stdin_source_reads_what_it_should() -> None:
    y4m = (
        b"YUV4MPEG2 W4 H2 F25:1 Cmono\n" + b"FRAME\n" + bytes(range(8)) + b"FRAME Ixyz\n" + bytes(8)
    )
    frames = _source_frames(y4m)
    assert [f.shape for f in frames] == [(2, 4), (2, 4)]
    assert frames[0].reshape(-1).tolist() == list(range(8))
    jpeg = _jpeg(np.full((16, 16, 3), 90, np.uint8))
    assert len(_source_frames(jpeg * 3)) == 3
    assert len(_source_frames(stream_of(np.zeros((3, 3, 3), np.uint8)) * 2)) == 2


def test_the_stdin_source_keeps_the_capture_time_of_wire_frames() -> None:
    from framebus.pipe.source import PipeSource
    from framebus.sources import Pipe

    frame = np.zeros((2, 2, 3), np.uint8)
    buf = io.BytesIO()
    framebus.pipe.write(buf, frame, framebus.FrameInfo(1, 1700000000.5, 0, 0, 2, 2))
    framebus.pipe.write(buf, frame, framebus.FrameInfo(2, 4e9, 0, 0, 2, 2))  # the future
    r, w = os.pipe()
    try:
        os.write(w, buf.getvalue())
        os.close(w)
        w = -1
        source = PipeSource(Pipe(fd=r))
        source.open()
        assert source.read() is not None and source.frame_time_ns() == 1700000000_500000000
        assert source.read() is not None and source.frame_time_ns() is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
