"""Hypothesis property test of the header checks: a control segment holds anyone's bytes.

Each example makes a real stream (``create_control`` and two frames written by a
``RingWriter``) under a name of its own in /dev/shm, overwrites random words and bytes of its
control segment (before and after a reader attached), resizes its files, and then attaches
and reads with a short timeout. Whatever the bytes, that either works or raises a framebus
error (IncompatibleStream, ReadTimeout, StreamNotFound, StreamEnded, PublisherLost...): never
another exception, a crash, a hang (a watchdog bounds each example) or a frame larger than
the data segment it comes from; and ``list_streams()`` never raises. Every file is removed
in a ``finally``.

The default run is short. FRAMEBUS_FUZZ_SECONDS=N runs it for about N seconds of fresh
examples: ``FRAMEBUS_FUZZ_SECONDS=300 pytest tests/bus/test_header_fuzz.py``.
"""

from __future__ import annotations

import itertools
import mmap
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
from hypothesis import event, example, given
from hypothesis import strategies as st

import framebus
from framebus.bus import Mode, RingReader, RingWriter, remove_stream
from framebus.bus._control import create_control
from framebus.bus._layout import ControlLayout, Hdr
from framebus.errors import FramebusError
from fuzzing import FUZZ_SECONDS, fuzz

U64 = 2**64 - 1
N_SLOTS, MAX_READERS = 3, 4
CONTROL_SIZE = ControlLayout(N_SLOTS, MAX_READERS).size
HEADER_WORDS = int(Hdr.SLOTS) // 8
SHM = Path("/dev/shm")
_names = itertools.count()


class Hang(AssertionError):
    """The watchdog fired: an attach or a read ignored its timeout."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def make_stream(name: str, mode: Mode) -> None:
    """A real stream with two 4x6 frames, as a publisher and its capture leave it."""
    ctl = create_control(name, N_SLOTS, MAX_READERS, mode, "fuzz")
    holder = RingReader(ctl, from_start=True)  # every mode writes only while a reader waits
    writer = RingWriter(ctl)
    try:
        for i in range(2):
            slot = writer.acquire(lambda: False)
            assert slot is not None
            frame = np.full((4, 6, 3), i + 1, np.uint8)
            np.copyto(writer.buffer(slot, frame.shape, frame.dtype), frame)
            writer.commit(slot, frame, time.time_ns(), i)
    finally:
        writer.close()
        holder.close()
        ctl.close()


interesting = st.sampled_from(
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 64, 255, 256, 257, 4096, 2**31, 2**32 - 1, 2**32, 2**56,
     2**63, U64 - 1, U64, os.getpid()]
)  # fmt: skip
values = st.one_of(interesting, st.integers(0, U64))
LAYOUT = ControlLayout(N_SLOTS, MAX_READERS)
# the words nothing validates when a stream is opened, which every later read must check
UNCHECKED = [Hdr.LATEST, Hdr.DATA_GEN, Hdr.SLOT_CAPACITY, Hdr.INSTANCE, Hdr.STATE,
             Hdr.ERROR_KIND, Hdr.OWNER_START, Hdr.FRAME_FUTEX]  # fmt: skip
UNCHECKED_WORDS = [int(h) // 8 for h in UNCHECKED] + [
    LAYOUT.slot(i, 0) // 8 + w for i in range(N_SLOTS) for w in range(8)
]
word_index = st.one_of(
    st.sampled_from(UNCHECKED_WORDS),
    st.integers(0, HEADER_WORDS - 1),
    st.integers(0, CONTROL_SIZE // 8 - 1),
)
words = st.lists(st.tuples(word_index, values), max_size=6)
raw_bytes = st.lists(
    st.tuples(st.integers(0, CONTROL_SIZE - 1), st.binary(min_size=1, max_size=16)), max_size=4
)


@dataclass(frozen=True)
class Forgery:
    mode: Mode
    before: list[tuple[int, int]]  # words written before the reader attaches
    poke: list[tuple[int, bytes]]  # bytes written before it attaches
    after: list[tuple[int, int]]  # words written once it is attached, before it reads
    control_size: int | None  # the control file truncated or extended to this
    data_size: int | None  # the data segment truncated or extended to this
    mtime: str  # "old", "young" (may still be in creation) or "future"


def sometimes(sizes: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    """A size one time in four, else None (most examples keep the files as they are)."""
    return st.tuples(st.integers(0, 3), sizes).map(lambda t: t[1] if t[0] == 3 else None)


forgeries = st.builds(
    Forgery,
    mode=st.sampled_from(list(Mode)),
    before=words,
    poke=raw_bytes,
    after=words,
    control_size=sometimes(
        st.one_of(
            st.integers(0, CONTROL_SIZE + 8192),
            st.sampled_from([int(Hdr.SLOTS) - 1, int(Hdr.SLOTS), int(Hdr.SLOTS) + 1]),
        )
    ),
    data_size=sometimes(st.integers(0, N_SLOTS * 4096 * 2)),
    # a young or future file without its magic costs a 1 s wait (it may be in creation): the
    # explicit examples have one, the long runs more
    mtime=st.sampled_from(["old"] * 14 + ["young", "future"]) if FUZZ_SECONDS else st.just("old"),
)


def write_words(path: Path, changes: list[tuple[int, int]]) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), size) as mm:
        for index, value in changes:
            if index * 8 + 8 <= size:
                mm[index * 8 : index * 8 + 8] = value.to_bytes(8, "little")


def write_bytes(path: Path, changes: list[tuple[int, bytes]]) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), size) as mm:
        for offset, data in changes:
            data = data[: max(0, size - offset)]
            mm[offset : offset + len(data)] = data


def forge(name: str, f: Forgery) -> Path:
    control = SHM / f"framebus.{name}"
    write_words(control, f.before)
    write_bytes(control, f.poke)
    if f.data_size is not None:
        for data in SHM.glob(f"framebus.{name}.*"):
            os.truncate(data, f.data_size)
    if f.control_size is not None:
        os.truncate(control, f.control_size)
    t = {"old": time.time() - 60, "young": time.time(), "future": time.time() + 3600}[f.mtime]
    os.utime(control, (t, t))
    return control


def largest_frame(name: str) -> int:
    """The most bytes a frame of the stream can honestly hold: a data segment's slot."""
    sizes = [p.stat().st_size for p in SHM.glob(f"framebus.{name}.*")]
    return max(sizes, default=0) // N_SLOTS


def read_some(reader: framebus.StreamReader, name: str, control: Path, f: Forgery) -> None:
    if control.stat().st_size >= CONTROL_SIZE:  # never shrunk under a live mapping (SIGBUS)
        mtime = control.stat().st_mtime
        write_words(control, f.after)
        os.utime(control, (mtime, mtime))  # as forged: list_streams() waits for young files
    bound = largest_frame(name)
    try:
        frame = reader.read_frame(timeout=0.01)
        assert frame.nbytes <= bound, (frame.shape, bound)
        event("read: a frame")
        with reader.view(timeout=0.01) as view:
            assert view.nbytes <= bound, (view.shape, bound)
    except FramebusError as exc:
        event(f"read: {type(exc).__name__}")
    ok, _ = reader.read()
    assert ok or isinstance(reader.last_error, FramebusError)
    with suppress(FramebusError):
        reader.stats()


# what it found (each hung, crashed or raised something else before it was fixed)
FOUND = [
    # latest = frame 16 in slot 0, which holds frame 1: the reader retried forever
    Forgery(Mode.LATEST, [], [], [(Hdr.LATEST // 8, 16 << 8)], None, None, "old"),
    Forgery(Mode.EVERY, [], [], [(Hdr.LATEST // 8, 16 << 8)], None, None, "old"),
    # a descriptor naming generation 0: AssertionError (no data segment mapped)
    Forgery(Mode.LATEST, [], [], [(LAYOUT.slot(2, 0) // 8 + 1, 0)], None, None, "old"),
    # a state changed after the checks at attach: ValueError from State()
    Forgery(Mode.LATEST, [], [], [(Hdr.STATE // 8, 99)], None, None, "old"),
    # no magic and a modification time in the future: attach waited for ever
    Forgery(Mode.LATEST, [(0, 1)], [], [], None, None, "future"),
]


@fuzz(120)
@example(f=FOUND[0])
@example(f=FOUND[1])
@example(f=FOUND[2])
@example(f=FOUND[3])
@example(f=FOUND[4])
@given(f=forgeries)
def test_any_header_bytes_give_a_frame_or_a_framebus_error(f: Forgery) -> None:
    name = f"t{os.getpid()}-fz{next(_names)}"
    try:
        make_stream(name, f.mode)
        control = forge(name, f)
        with watchdog(3.0):  # the only wait allowed: 1 s for a segment still in creation
            try:
                reader = framebus.attach(name, timeout=0.01)
            except FramebusError as exc:
                event(f"attach: {type(exc).__name__}")
                reader = None
            if reader is not None:
                try:
                    read_some(reader, name, control, f)
                finally:
                    reader.release()
            for s in framebus.list_streams():  # never raises, whatever it finds
                assert isinstance(s, framebus.StreamStats)
    finally:
        remove_stream(name)
