"""The ZeroMQ transport on loopback: real sockets, real streams, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

import framebus
from conftest import wait_until
from framebus import wire
from framebus.net import Exporter, export, generate_keys, list_exports
from framebus.net._sockets import parse_url, send_nowait, server_socket
from framebus.net.receiver import Receiver
from fuzzing import fuzz

ROOT = Path(__file__).resolve().parents[2]


def zmq_threads() -> list[str]:
    """framebus's threads (receivers, exporters, sinks) and CURVE authenticators."""
    from zmq.auth.thread import AuthenticationThread

    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name.startswith("framebus-") or isinstance(t, AuthenticationThread)
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Every test leaves no framebus thread running (receivers, exporters, sinks)."""
    before = zmq_threads()
    yield
    assert wait_until(lambda: zmq_threads() == before, timeout=10), zmq_threads()


@pytest.fixture
def counter_stream(stream_name: str) -> Iterator[framebus.Publisher]:
    """320x240 counter frames at 30 fps: every byte of frame n is n % 256."""
    pattern = framebus.TestPattern(320, 240, fps=30, pattern="counter")
    with framebus.publish(stream_name, pattern) as pub:
        yield pub


def check_counter(frame: np.ndarray, seq: int) -> None:
    assert frame.shape == (240, 320, 3)
    assert (frame == (seq - 1) % 256).all(), f"frame {seq} is not frame {seq}'s pixels"


# -- remote attach -------------------------------------------------------------------------------


def test_remote_attach_reads_like_a_local_stream(counter_stream: framebus.Publisher) -> None:
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name], codec="raw") as ex:
        url = ex.url(name)
        with framebus.attach(url, timeout=5) as reader:
            assert isinstance(reader, framebus.RemoteReader)
            ok, frame = reader.read()
            assert ok and frame is not None
            info = reader.info
            assert info is not None
            check_counter(frame, info.seq)
            assert 0 <= info.age < 60 and (info.width, info.height) == (320, 240)
            frame = reader.read_frame(timeout=5)
            assert reader.info is not None and reader.info.seq > info.seq
            check_counter(frame, reader.info.seq)
            seqs = []
            for frame in reader:
                assert reader.info is not None
                check_counter(frame, reader.info.seq)
                seqs.append(reader.info.seq)
                if len(seqs) == 5:
                    break
            assert seqs == sorted(set(seqs))
            with reader.view() as view:
                assert not view.flags.writeable
            assert reader.get(3) == 320.0 and reader.get(4) == 240.0
            stats = reader.stats()
            assert stats.state == "live" and stats.delivered == 8 and stats.source == url
            assert reader.isOpened()
            net = reader.net_stats()
            assert net.bad_messages == 0 and net.stale == 0 and net.sessions == 1
        assert not reader.isOpened()
        ok, frame = reader.read()
        assert not ok and frame is None
        assert isinstance(reader.last_error, framebus.StreamEnded)


def test_jpeg_frames_decode_to_bgr_of_the_header_size(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=30)),
        export("tcp://127.0.0.1:0", quality=70) as ex,  # every stream of the machine
        framebus.attach(ex.url(stream_name), timeout=5) as reader,
    ):
        frame = reader.read_frame()
        assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
        local = framebus.attach(stream_name)
        try:
            reference = local.read_frame()
        finally:
            local.release()
        # the same picture, give or take JPEG and a few frames of motion
        assert abs(float(frame.mean()) - float(reference.mean())) < 20


def test_list_and_unknown_stream(counter_stream: framebus.Publisher) -> None:
    name = counter_stream.name
    # the listed size is the newest frame's: publish() returns before the first frame
    assert wait_until(lambda: counter_stream.stats().captured > 0)
    with export("tcp://127.0.0.1:0", [name]) as ex:
        rows = list_exports(ex.url())
        assert [(r["name"], r["width"], r["height"], r["codec"]) for r in rows] == [
            (name, 320, 240, "jpeg")
        ]
        with pytest.raises(framebus.StreamNotFound, match=f"exports: {name}"):
            framebus.attach(ex.url("nosuch"))
    with (
        export("tcp://127.0.0.1:0") as ex,
        pytest.raises(framebus.StreamNotFound, match="no stream"),
    ):
        framebus.attach(ex.url("nosuch"))


def test_closed_port_and_silent_host_are_one_line_errors() -> None:
    with socket_on_free_port() as port:
        pass  # now closed
    with pytest.raises(framebus.RemoteUnreachable, match="connection refused") as exc:
        framebus.attach(f"zmq://127.0.0.1:{port}/cam", connect_timeout=1)
    assert "\n" not in str(exc.value) and f"tcp://127.0.0.1:{port}" in str(exc.value)
    # a TCP server that accepts and never speaks ZMTP
    with pytest.raises(
        framebus.RemoteUnreachable, match=r"cannot resolve host 'no\.such\.invalid'"
    ):
        framebus.attach("zmq://no.such.invalid:5555/cam", connect_timeout=1)
    with socket_on_free_port(listen=True) as port:
        with pytest.raises(framebus.RemoteUnreachable, match="within 1 s: connected, but no"):
            framebus.attach(f"zmq://127.0.0.1:{port}/cam", connect_timeout=1)
        with pytest.raises(framebus.RemoteUnreachable):
            list_exports(f"zmq://127.0.0.1:{port}", timeout=1)


class socket_on_free_port:  # noqa: N801 - a context manager used like a function
    def __init__(self, listen: bool = False) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        if listen:
            self.sock.listen()

    def __enter__(self) -> int:
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_read_timeout_and_stalled_state(stream_name: str) -> None:
    go = threading.Event()

    class OneThenWait(framebus.Source):
        def __init__(self) -> None:
            self.n = 0

        def read(self) -> np.ndarray | None:
            if self.n and not go.wait(30):
                return None
            self.n += 1
            return np.full((48, 64, 3), self.n % 256, np.uint8)

    with (
        framebus.publish(stream_name, OneThenWait()),
        export("tcp://127.0.0.1:0", [stream_name]) as ex,
        framebus.attach(ex.url(stream_name)) as reader,
    ):
        reader.read_frame(timeout=5)
        with pytest.raises(framebus.ReadTimeout, match=ex.url(stream_name)):
            reader.read_frame(timeout=0.2)
        assert wait_until(lambda: reader.stats().state == "stalled", timeout=10)
        go.set()
        reader.read_frame(timeout=5)
        assert wait_until(lambda: reader.stats().state == "live", timeout=10)


# -- what the transport does: latest-only, every mode, resolution, restart ----------------------


def test_a_slow_reader_gets_the_newest_frame_and_the_exporter_sends_only_what_was_asked(
    counter_stream: framebus.Publisher,
) -> None:
    name = counter_stream.name
    with (
        export("tcp://127.0.0.1:0", [name], codec="raw") as ex,
        framebus.attach(ex.url(name), timeout=5) as slow,
        framebus.attach(ex.url(name), timeout=5) as fast,
    ):
        slow.read_frame()
        for _ in range(10):
            fast.read_frame()
        time.sleep(0.5)  # the slow reader works: about 15 frames are captured meanwhile
        frame = slow.read_frame()
        assert slow.info is not None
        check_counter(frame, slow.info.seq)
        assert slow.info.skipped > 0  # skipped the frames it was too slow for...
        newest = counter_stream.stats().captured
        # ...and got one of the newest (a FIFO would hand over the frame after its last one,
        # some 25 frames old by now)
        assert newest - slow.info.seq <= 10
        # per receiver at most one frame in flight and one waiting: the exporter sent about
        # as many frames as were captured, never a backlog
        assert wait_until(lambda: ex.stats().streams)  # the exporter's process reports
        sent = ex.stats().streams[0].frames_sent
        assert sent <= 2 * counter_stream.stats().captured


def test_each_frame_is_encoded_once_for_every_receiver(
    counter_stream: framebus.Publisher,
) -> None:
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name]) as ex:
        readers = [framebus.attach(ex.url(name), timeout=5) for _ in range(3)]
        try:
            for _ in range(15):
                for reader in readers:
                    reader.read_frame()
            assert wait_until(lambda: sum(s.frames_sent for s in ex.stats().streams) >= 45)
            stats = ex.stats().streams[0]
            assert stats.receivers == 3
            # three receivers, one encode per frame: never more encodes than frames captured
            assert stats.frames_encoded <= counter_stream.stats().captured
            assert stats.frames_sent > stats.frames_encoded
        finally:
            for reader in readers:
                reader.release()


def test_every_mode_remote_readers_get_newest_frames_and_never_hold_the_capture(
    stream_name: str,
) -> None:
    pattern = framebus.TestPattern(160, 120, fps=None, frames=150, pattern="counter")
    with framebus.publish(stream_name, pattern, mode="every") as pub:
        local = framebus.attach(stream_name, timeout=10)
        try:
            with (
                export("tcp://127.0.0.1:0", [stream_name], codec="raw") as ex,
                framebus.attach(ex.url(stream_name), timeout=10) as remote,
            ):
                remote.read_frame()  # then this remote reader stops reading for a while
                seqs = []
                for frame in local:  # the local every-mode reader gets every frame, in order
                    assert local.info is not None
                    seqs.append(local.info.seq)
                    assert (frame == (local.info.seq - 1) % 256).all()
                assert seqs == list(range(1, 151))
                # the remote reader: newest frames, in order, then the end of the stream
                got = [remote.info.seq] if remote.info else []
                for _ in remote:
                    assert remote.info is not None
                    got.append(remote.info.seq)
                assert got == sorted(set(got)) and got[-1] <= 150
                ok, _ = remote.read()
                assert not ok and isinstance(remote.last_error, framebus.StreamEnded)
        finally:
            local.release()
        assert pub.stats().state == "ended"


def test_frames_the_wire_cannot_carry_give_remote_readers_an_error_not_a_stall(
    stream_name: str,
) -> None:
    class Depth(framebus.Source):  # int32 frames: the ring has them, the wire does not
        fps = 30.0

        def read(self) -> np.ndarray | None:
            time.sleep(1 / 30)
            return np.full((48, 64), 7, np.int32)

    with (
        framebus.publish(stream_name, Depth()),
        export("tcp://127.0.0.1:0", [stream_name], codec="raw") as ex,
        framebus.attach(ex.url(stream_name), timeout=5) as remote,
    ):
        with pytest.raises(framebus.SourceUnsupported, match=r"int32.*no wire pixel format"):
            remote.read_frame()
        ok, frame = remote.read()  # cv2's way: no frame, and why
        assert not ok and frame is None
        assert isinstance(remote.last_error, framebus.SourceUnsupported)


def test_resolution_change_reaches_remote_readers(stream_name: str) -> None:
    class Growing(framebus.Source):
        fps = 60.0

        def __init__(self) -> None:
            self.n = 0

        def read(self) -> np.ndarray | None:
            time.sleep(1 / 60)
            self.n += 1
            size = (120, 160) if self.n < 20 else (240, 320)
            return np.full((*size, 3), self.n % 256, np.uint8)

    for codec in ("raw", "jpeg"):
        with (
            framebus.publish(f"{stream_name}{codec[0]}", Growing()) as pub,
            export("tcp://127.0.0.1:0", [pub.name], codec=codec) as ex,  # type: ignore[arg-type]
            framebus.attach(ex.url(pub.name), timeout=5) as reader,
        ):
            shapes = set()
            while (240, 320, 3) not in shapes:
                frame = reader.read_frame()
                assert reader.info is not None
                assert frame.shape[:2] == (reader.info.height, reader.info.width)
                shapes.add(frame.shape)


def test_exporter_restart_is_followed_with_a_new_session_in_order(
    counter_stream: framebus.Publisher,
) -> None:
    name = counter_stream.name
    ex = export("tcp://127.0.0.1:0", [name], codec="raw")
    endpoint = ex.endpoint
    try:
        with framebus.attach(ex.url(name), timeout=10) as reader:
            for _ in range(3):
                reader.read_frame()
            ex.close()
            assert wait_until(lambda: reader.stats().state == "reconnecting", timeout=10)
            started = time.monotonic()
            ex = Exporter(endpoint, [name], codec="raw")  # a new sink: a new session
            frame = reader.read_frame(timeout=20)
            followed = time.monotonic() - started
            assert reader.info is not None
            check_counter(frame, reader.info.seq)
            net = reader.net_stats()
            assert net.sessions == 2 and net.reconnects == 1
            assert reader.stats().state == "live"
            print(f"followed the restart in {followed:.2f} s")
    finally:
        ex.close()


# -- relays ------------------------------------------------------------------------------------


def test_relay_serves_two_local_readers_from_one_network_stream(
    counter_stream: framebus.Publisher, stream_name: str
) -> None:
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name], codec="raw") as ex:
        relay_name = f"{stream_name}r"
        with framebus.publish(relay_name, ex.url(name)) as relay:
            assert relay.mode == "latest" and relay.stats().source == ex.url(name)
            readers = [framebus.attach(relay_name, timeout=10) for _ in range(2)]
            try:
                for reader in readers:
                    for _ in range(3):
                        frame = reader.read_frame()
                        assert (frame == frame.flat[0]).all()  # a whole counter frame
                assert wait_until(lambda: relay.stats().state == "live")
                assert wait_until(lambda: ex.stats().receivers == 1)  # one network stream
            finally:
                for reader in readers:
                    reader.release()
        # the relay's receiver said goodbye: the exporter stops encoding for it
        assert wait_until(lambda: ex.stats().receivers == 0)


def test_videocapture_of_a_zmq_url(counter_stream: framebus.Publisher) -> None:
    with export("tcp://127.0.0.1:0", [counter_stream.name]) as ex:
        cap = framebus.VideoCapture(ex.url(counter_stream.name), timeout=10)
        try:
            ok, frame = cap.read()
            assert ok and frame is not None and frame.shape == (240, 320, 3)
        finally:
            cap.release()


# -- hostile and broken peers ------------------------------------------------------------------


class RogueExporter:
    """A ROUTER that speaks just enough of the protocol to be asked, then says anything."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.peer: bytes | None = None
        self.session = wire.new_session()
        self.seq = 0

    def url(self, name: str = "cam") -> str:
        return f"zmq://127.0.0.1:{self.port}/{name}"

    def answer_first(self, reply: bytes = b"WAIT") -> None:
        """Wait (in a thread) for the first GET and answer it."""

        def run() -> None:
            if self.sock.poll(10_000):
                self.peer, _ = self.sock.recv_multipart()
                self.sock.send_multipart([self.peer, reply])

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def send(self, *parts: bytes) -> None:
        assert self.peer is not None
        self.sock.send_multipart([self.peer, *parts])

    def frame(self, *, session: int | None = None, seq: int | None = None) -> bytes:
        """A valid 8x8 RAW frame whose every byte is seq % 256 (seq: the next one by default)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        img = np.full((8, 8, 3), seq % 256, np.uint8)
        return wire.pack_frame_bytes(
            img, seq=seq, session=session or self.session, capture_ns=time.time_ns()
        )

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def rogue() -> Iterator[RogueExporter]:
    r = RogueExporter()
    try:
        yield r
    finally:
        r.close()


def attach_rogue(rogue: RogueExporter, **kw: Any) -> framebus.RemoteReader:
    rogue.answer_first()
    reader = framebus.attach(rogue.url(), timeout=5, **kw)
    rogue.thread.join()
    assert isinstance(reader, framebus.RemoteReader)
    return reader


def test_garbage_is_dropped_and_counted_and_the_reader_goes_on(rogue: RogueExporter) -> None:
    with attach_rogue(rogue) as reader:
        good = rogue.frame()
        bad_header = bytearray(good)
        bad_header[10] ^= 0xFF  # the CRC catches it
        jpeg_liar = (
            wire.encode_header(
                wire.FrameHeader(
                    wire.Codec.JPEG, wire.PixelFormat.BGR24, 8, 8, 24, 4, 99, rogue.session, 0, 0
                )
            )
            + b"\xff\xd8\xff\xd9"
        )
        for garbage in (b"", b"\x00" * 100, good[:-1], good + b"x", bytes(bad_header)):
            rogue.send(garbage)
        rogue.send(good, b"second part")  # multi-part
        rogue.send(b"HELLO")
        rogue.send(good)  # valid
        frame = reader.read_frame()
        assert (frame == 1).all() and reader.info is not None and reader.info.seq == 1
        rogue.send(rogue.frame(seq=1))  # a seq not newer: stale
        rogue.send(jpeg_liar)  # a JPEG that does not decode: dropped by the read
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.5)
        rogue.send(rogue.frame(seq=100))
        frame = reader.read_frame()
        assert reader.info is not None and reader.info.seq == 100
        net = reader.net_stats()
        assert (net.bad_messages, net.stale, net.received) == (8, 1, 3)


def test_a_jpeg_whose_size_is_not_the_headers_is_dropped(rogue: RogueExporter) -> None:
    from framebus.sinks.jpeg import encode_jpeg

    with attach_rogue(rogue) as reader:
        jpeg = encode_jpeg(np.zeros((16, 16, 3), np.uint8))
        lying = wire.encode_header(
            wire.FrameHeader(
                wire.Codec.JPEG,
                wire.PixelFormat.BGR24,
                8,
                8,
                24,
                len(jpeg),
                5,
                rogue.session,
                0,
                0,
            )
        )
        rogue.send(lying + jpeg)
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.5)
        assert reader.net_stats().bad_messages == 1
        assert "16x16" in reader.net_stats().last_error
        rogue.send(rogue.frame(seq=6))
        reader.read_frame()
        assert reader.info is not None and reader.info.seq == 6


def test_a_tiny_jpeg_claiming_a_huge_picture_is_not_decoded(rogue: RogueExporter) -> None:
    """Before: a 300-byte JPEG claiming 16384x16384 cost the reader 809 MB per read."""
    import resource

    _, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    bomb = bytearray(buf.tobytes())
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = (16384).to_bytes(2, "big") * 2
    header = wire.FrameHeader(
        wire.Codec.JPEG, wire.PixelFormat.BGR24, 16384, 16384, 16384 * 3, len(bomb), 7,
        rogue.session, 0, 0,
    )  # fmt: skip
    with attach_rogue(rogue) as reader:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rogue.send(wire.encode_header(header) + bytes(bomb))
        with pytest.raises(framebus.ReadTimeout):
            reader.read_frame(timeout=0.5)
        assert reader.net_stats().bad_messages == 1
        assert "decoded-size budget" in reader.net_stats().last_error
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
        assert grown_kib < 100 * 1024, f"the read grew the peak RSS by {grown_kib} KiB"
        rogue.send(rogue.frame(seq=8))
        reader.read_frame()
        assert reader.info is not None and reader.info.seq == 8


def test_frames_of_an_older_session_are_never_delivered_after_a_newer_one(
    rogue: RogueExporter,
) -> None:
    with attach_rogue(rogue) as reader:
        old, new = 1111, 2222
        rogue.send(rogue.frame(session=old, seq=50))
        assert reader.read_frame() is not None and reader.info is not None
        rogue.send(rogue.frame(session=new, seq=1))  # the exporter restarted: seq starts over
        reader.read_frame()
        assert reader.info is not None and reader.info.seq == 1
        rogue.send(rogue.frame(session=old, seq=51))  # a late frame of the old session
        rogue.send(rogue.frame(session=new, seq=2))
        reader.read_frame()
        assert reader.info is not None and reader.info.seq == 2
        assert reader.net_stats().stale == 1 and reader.net_stats().sessions == 2


def test_a_message_over_max_message_cuts_the_connection_and_the_reader_recovers(
    rogue: RogueExporter,
) -> None:
    with attach_rogue(rogue, max_message=4096) as reader:
        rogue.send(b"\x00" * 100_000)  # libzmq disconnects a peer that sends more

        # the receiver redials as a new peer and asks again: answer it with a frame
        def second_peer() -> bool:
            if not rogue.sock.poll(100):
                return False
            peer, _ = rogue.sock.recv_multipart()
            if peer == rogue.peer:
                return False
            rogue.peer = peer
            return True

        assert wait_until(second_peer, timeout=10)
        rogue.send(rogue.frame(seq=7))
        reader.read_frame()
        assert reader.info is not None and reader.info.seq == 7
        assert reader.net_stats().reconnects >= 1


@pytest.fixture(scope="module")
def fuzz_target() -> Iterator[tuple[RogueExporter, Receiver]]:
    """One rogue exporter and one receiver for every example (connecting costs time)."""
    rogue = RogueExporter()
    receiver = Receiver(parse_url(rogue.url()))
    rogue.answer_first()
    receiver.start()
    try:
        receiver.wait_ready(10)
        rogue.thread.join()
        yield rogue, receiver
    finally:
        receiver.close()
        rogue.close()


_messages = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: wire.MAGIC + b),
    st.tuples(st.integers(0, 63), st.integers(1, 255)).map(lambda t: ("flip", *t)),
    st.integers(0, 200).map(lambda n: ("cut", n)),
    st.lists(st.binary(max_size=50), min_size=2, max_size=4).map(lambda p: ("parts", p)),
)


@given(message=_messages)
@fuzz(200)
def test_fuzzed_messages_never_break_the_receiver(
    fuzz_target: tuple[RogueExporter, Receiver], message: Any
) -> None:
    rogue, receiver = fuzz_target
    good = rogue.frame()
    bad_before = receiver.stats().bad_messages
    if isinstance(message, bytes):
        rogue.send(message)
    elif message[0] == "flip":
        data = bytearray(good)
        data[message[1]] ^= message[2]
        rogue.send(bytes(data))
    elif message[0] == "cut":
        rogue.send(good[: message[1]])
    else:
        rogue.send(*message[1])
    rogue.send(rogue.frame())
    msg = receiver.get(5)
    while msg.header.seq != rogue.seq:  # no fuzzed message is a valid frame of ours
        msg = receiver.get(5)
    assert (wire.raw_array(msg.header, msg.payload) == rogue.seq % 256).all()
    if not (isinstance(message, bytes) and message.startswith((b"WAIT", b"ERR "))):
        assert receiver.stats().bad_messages >= bad_before  # counted, never raised


@pytest.fixture(scope="module")
def fuzzed_exporter() -> Iterator[tuple[Exporter, Any]]:
    """An exporter of every stream (none needed) and a context for raw DEALERs."""
    ex = Exporter("tcp://127.0.0.1:0")
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        yield ex, ctx
    finally:
        ctx.term()
        ex.close()


_requests = st.one_of(
    st.binary(max_size=1024),
    st.lists(
        st.sampled_from([b"GET", b"LIST", b"BYE", b"zz-no-such", b"ffffffffffffffff", b"0", b"-1",
                         b"1" * 30, b"x" * 60, b"\xff", b"../x", b"a b"]),
        max_size=6,
    ).map(b" ".join),
)  # fmt: skip


@given(request=_requests)
@fuzz(200)
def test_fuzzed_requests_never_break_the_exporter(
    fuzzed_exporter: tuple[Exporter, Any], request: bytes
) -> None:
    ex, ctx = fuzzed_exporter
    # a connection per example: one connection asking this fast would be throttled
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(ex.endpoint)
    try:
        sock.send(request)
        sock.send(b"LIST")  # the exporter still answers, in order
        while True:
            assert sock.poll(5000), "the exporter stopped answering"
            reply = sock.recv()
            assert reply.startswith((b"ERR ", b"WAIT", b"LIST ")), reply[:20]
            if reply.startswith(b"LIST "):
                break
    finally:
        sock.close(0)
    assert ex.stats().endpoint == ex.endpoint and ex.stats().restarts == 0 and ex.pid


def test_bad_requests_to_the_exporter_are_counted(counter_stream: framebus.Publisher) -> None:
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name]) as ex:
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(ex.endpoint)
            for request in (b"GET", b"GET x y z", b"GET ../etc zz 1", b"\xff" * 50, b"LIST me"):
                sock.send(request)
                assert sock.poll(5000)
                assert sock.recv().startswith(b"ERR bad")
            sock.send_multipart([b"GET", b"two parts"])
            sock.send(b"x" * 5000)  # over MAXMSGSIZE: the exporter cuts this peer
        finally:
            sock.close(0)
            ctx.term()
        assert wait_until(lambda: ex.stats().bad_requests >= 6)
        with framebus.attach(ex.url(name), timeout=5) as reader:  # it still serves
            reader.read_frame()


def test_send_nowait_sees_a_queue_the_peer_drained_as_free() -> None:
    """A ROUTER that only sends (as the exporter does between requests) processes the I/O
    thread's "the peer read them" commands at most once a millisecond: a plain non-blocking
    send finds the 4-message queue full after 4 messages the peer has long read."""
    ctx: zmq.Context[Any] = zmq.Context()
    router = server_socket(ctx, None)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        router.bind("tcp://127.0.0.1:0")
        dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
        dealer.send(b"hello")
        peer, _ = router.recv_multipart()
        for _ in range(50):
            for _ in range(4):  # the whole SNDHWM
                send_nowait(router, [peer, b"reply"])
            for _ in range(4):
                assert dealer.poll(5000)
                dealer.recv()
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()


# -- CURVE -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    generate_keys(d)
    return d


def test_curve_with_the_right_keys(counter_stream: framebus.Publisher, keys: Path) -> None:
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0
    with export("tcp://127.0.0.1:0", [counter_stream.name], curve=keys) as ex:
        with framebus.attach(ex.url(counter_stream.name), curve=keys, timeout=5) as reader:
            reader.read_frame()
        assert [r["name"] for r in list_exports(ex.url(), curve=str(keys))] == [counter_stream.name]


def test_wrong_and_missing_curve_keys_fail_fast_with_one_line(
    counter_stream: framebus.Publisher, keys: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    generate_keys(other)  # a client the exporter does not know, and a wrong server key
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name], curve=keys) as ex:
        url = ex.url(name)
        with pytest.raises(framebus.RemoteAuthError, match="this receiver has no keys"):
            framebus.attach(url, connect_timeout=10)  # no keys
        with pytest.raises(framebus.RemoteAuthError, match="refused this receiver's CURVE key"):
            framebus.attach(
                url, server_key=keys / "server.key", client_key=other / "client.key_secret",
                connect_timeout=10,
            )  # fmt: skip
        with pytest.raises(framebus.RemoteAuthError, match="wrong server key"):
            framebus.attach(url, curve=other, connect_timeout=10)  # wrong server key
        with pytest.raises(framebus.RemoteAuthError):
            list_exports(ex.url(), timeout=10)
    with (
        export("tcp://127.0.0.1:0", [name]) as ex,
        pytest.raises(framebus.RemoteAuthError, match="--curve"),
    ):
        framebus.attach(ex.url(name), curve=keys, connect_timeout=10)  # CURVE, plain exporter
    with pytest.raises(framebus.KeyFileError, match="cannot read CURVE key file"):
        framebus.attach(f"zmq://127.0.0.1:1/{name}", curve=tmp_path / "none")
    with pytest.raises(framebus.KeyFileError):
        export("tcp://127.0.0.1:0", curve=tmp_path / "none")


def test_allowed_clients_are_reloaded_when_their_folder_changes(
    counter_stream: framebus.Publisher, tmp_path: Path
) -> None:
    keys, newcomer = tmp_path / "keys", tmp_path / "newcomer"
    generate_keys(keys)
    generate_keys(newcomer)  # a receiver with a key pair of its own, not yet allowed
    name = counter_stream.name
    as_newcomer = {"server_key": keys / "server.key",
                   "client_key": newcomer / "client.key_secret"}  # fmt: skip
    with export("tcp://127.0.0.1:0", [name], curve=keys) as ex:
        url = ex.url(name)
        with pytest.raises(framebus.RemoteAuthError, match="refused this receiver's CURVE key"):
            framebus.attach(url, connect_timeout=10, **as_newcomer)
        allowed = keys / "clients" / "newcomer.key"
        allowed.write_bytes((newcomer / "client.key").read_bytes())

        def admitted() -> bool:
            try:
                with framebus.attach(url, connect_timeout=10, **as_newcomer) as reader:
                    reader.read_frame()
                return True
            except framebus.RemoteAuthError:
                return False

        assert wait_until(admitted, timeout=15)
        allowed.unlink()  # revoked: new connections are refused again
        assert wait_until(lambda: not admitted(), timeout=15)
        with framebus.attach(url, curve=keys, timeout=5) as reader:  # the others unaffected
            reader.read_frame()


def test_exporting_beyond_loopback_without_curve_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with export("tcp://127.0.0.1:0") as ex:
        assert not ex.insecure
    with export("tcp://0.0.0.0:0") as ex:
        assert ex.insecure
    assert "without CURVE" in caplog.text


# -- teardown and idling -----------------------------------------------------------------------


def test_teardown_leaves_no_thread_or_descriptor(counter_stream: framebus.Publisher) -> None:
    name = counter_stream.name
    fds = open_fds()
    for _ in range(3):
        with export("tcp://127.0.0.1:0", [name]) as ex:
            readers = [framebus.attach(ex.url(name), timeout=5) for _ in range(2)]
            for reader in readers:
                reader.read_frame()
            for reader in readers:
                reader.release()
                reader.release()  # idempotent
    assert wait_until(lambda: open_fds() <= fds, timeout=10), (open_fds(), fds)


def test_an_idle_receiver_sleeps(rogue: RogueExporter) -> None:
    """No busy loop: a receiver with nothing to receive uses well under a core."""
    with attach_rogue(rogue) as reader:
        receiver = reader._feed.receiver
        assert receiver is not None
        tid = receiver._thread.native_id

        def cpu() -> float:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        start, t0 = cpu(), time.monotonic()
        time.sleep(2)
        used = (cpu() - start) / (time.monotonic() - t0)
        assert used < 0.05, f"an idle receiver used {used:.1%} of a core"


def test_no_encoding_while_no_one_receives(counter_stream: framebus.Publisher) -> None:
    name = counter_stream.name
    with export("tcp://127.0.0.1:0", [name]) as ex:
        with framebus.attach(ex.url(name), timeout=5) as reader:
            reader.read_frame()
        assert wait_until(lambda: ex.stats().receivers == 0)
        time.sleep(1)  # the sink's worker notices within its 0.2 s poll
        encoded = ex.stats().streams[0].frames_encoded
        time.sleep(1)
        assert ex.stats().streams[0].frames_encoded - encoded <= 1


# -- command line and examples ---------------------------------------------------------------


def framebus_cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "framebus", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def free_port() -> int:
    with socket_on_free_port() as port:
        return port


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def test_cli_serve_zmq_relay_ls_and_keys(stream_name: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = subprocess.run(
        [sys.executable, "-m", "framebus", "keys", "generate", str(keys)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "server.key" in made.stdout and (keys / "clients" / "client.key").exists()
    port = free_port()
    camera = framebus_cli(
        "serve", "--quiet", f"{stream_name}=testpattern:320x240@25",
        "--zmq", f"tcp://127.0.0.1:{port}", "--curve", str(keys),
    )  # fmt: skip
    relay = None
    try:
        url = f"zmq://127.0.0.1:{port}"
        assert wait_until(lambda: _ls(url, keys).returncode == 0, timeout=30, step=0.5)
        assert stream_name in _ls(url, keys).stdout
        relay = framebus_cli(
            "serve", "--quiet", f"{stream_name}x={url}/{stream_name}", "--curve", str(keys)
        )
        assert wait_until(lambda: f"{stream_name}x" in _names(), timeout=30, step=0.2)
        with framebus.attach(f"{stream_name}x", timeout=10) as reader:
            assert reader.read_frame().shape == (240, 320, 3)
        plain = subprocess.run(
            [sys.executable, "-m", "framebus", "ls", url, "--timeout", "10"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plain.returncode == 1 and plain.stderr.count("\n") == 1
        assert plain.stderr.startswith("framebus: error: ")
    finally:
        if relay is not None:
            stop(relay)
        stop(camera)


def _ls(url: str, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framebus", "ls", url, "--curve", str(keys), "--timeout", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _names() -> set[str]:
    return {s.name for s in framebus.list_streams() if s.state == "live"}


def test_cli_share_follows_streams_as_they_come_and_go(stream_name: str) -> None:
    port = free_port()
    share = framebus_cli("share", "--zmq", f"tcp://127.0.0.1:{port}")
    url = f"zmq://127.0.0.1:{port}/{stream_name}"

    def listed() -> list[str]:
        try:
            return [r["name"] for r in list_exports(url.rsplit("/", 1)[0], timeout=2)]
        except framebus.RemoteUnreachable:
            return ["-"]

    try:
        # share is up (it answers), and the stream is not there yet
        assert wait_until(
            lambda: (names := listed()) != ["-"] and stream_name not in names, timeout=30
        )
        for size in ((160, 120), (320, 240)):  # published, closed, published again
            with framebus.publish(stream_name, framebus.TestPattern(*size, fps=25)):
                # a listing is at most 0.5 s old
                assert wait_until(lambda: stream_name in listed())
                with framebus.attach(url, timeout=10) as reader:
                    assert reader.read_frame().shape == (size[1], size[0], 3)
                    ended = reader
            assert wait_until(lambda: stream_name not in listed(), timeout=10)
            ok, _ = ended.read()
            assert not ok
    finally:
        out, err = stop(share)
    assert "exporting every stream" in out and "Traceback" not in err


def test_examples_send_and_receive(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    sender = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "zmq_sender.py"), "--zmq",
         f"tcp://127.0.0.1:{port}", "--name", f"t{os.getpid()}-ex", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        receiver = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "zmq_receiver.py"), "--url",
             f"zmq://127.0.0.1:{port}/t{os.getpid()}-ex", "--frames", "5"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert receiver.returncode == 0, receiver.stderr
        assert receiver.stdout.count("640x480") == 5 and "received 5 frames" in receiver.stdout
    finally:
        stop(sender)


def test_a_restarted_serve_process_is_followed(stream_name: str) -> None:
    port = free_port()

    def serve() -> subprocess.Popen[str]:
        return framebus_cli(
            "serve", "--quiet", f"{stream_name}=testpattern:160x120@25",
            "--zmq", f"tcp://127.0.0.1:{port}", "--zmq-codec", "raw",
        )  # fmt: skip

    first = serve()
    second = None
    try:
        url = f"zmq://127.0.0.1:{port}/{stream_name}"
        reader = None
        deadline = time.monotonic() + 30
        while reader is None:
            try:
                reader = framebus.attach(url, timeout=20, connect_timeout=2)
            except framebus.RemoteUnreachable:
                assert time.monotonic() < deadline
        with reader:
            reader.read_frame()
            stop(first)
            second = serve()
            started = time.monotonic()
            before = reader.net_stats().sessions
            while reader.net_stats().sessions == before:
                reader.read_frame()  # frames of the old session may still be in hand
            followed = time.monotonic() - started
            reader.read_frame()
            assert reader.stats().state == "live" and reader.net_stats().stale == 0
            print(f"followed a restarted serve process in {followed:.2f} s (its start included)")
    finally:
        if second is not None:
            stop(second)
        stop(first)


def test_a_relay_keeps_the_remote_capture_time(rogue: RogueExporter, stream_name: str) -> None:
    captured = 1_700_000_000_123_456_789
    stop_sending = threading.Event()

    def exporter() -> None:
        while not stop_sending.is_set():
            if rogue.sock.poll(50):
                rogue.peer, _ = rogue.sock.recv_multipart()  # the relay's (latest) connection
            if rogue.peer is not None:
                rogue.seq += 1
                img = np.full((8, 8, 3), 7, np.uint8)
                rogue.send(
                    wire.pack_frame_bytes(
                        img, seq=rogue.seq, session=rogue.session, capture_ns=captured
                    )
                )

    thread = threading.Thread(target=exporter)
    thread.start()
    try:
        with (
            framebus.publish(stream_name, rogue.url()),
            framebus.attach(stream_name, timeout=10) as reader,
        ):
            assert (reader.read_frame() == 7).all()
            assert reader.info is not None and reader.info.timestamp == captured / 1e9
    finally:
        stop_sending.set()
        thread.join()
