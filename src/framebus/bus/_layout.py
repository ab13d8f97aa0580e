"""The byte layout of a stream's shared memory, and the pure rules around it (no I/O).

A stream is two kinds of segment:

* the **control segment** ``framebus.<name>``: a header, one descriptor per slot and one record
  per reader, every field a 64-bit word at an 8-byte-aligned offset;
* **data segments** ``framebus.<name>.<gen>``: ``n_slots`` slots of ``slot_capacity`` bytes of
  pixels. A frame larger than the slots starts a new generation with larger slots; each slot
  descriptor says which generation holds its pixels.

docs/design.md explains the protocol that these words carry.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidStreamName

__all__ = [
    "CLOCKS",
    "CONTROL_PREFIX",
    "MAX_CONTROL_SIZE",
    "MIN_CONTROL_SIZE",
    "EMPTY",
    "MAGIC",
    "MAX_CHANNELS",
    "MEDIA_TIME_BIAS",
    "BACKEND_BYTES",
    "SEEK_SERIALS",
    "SEEK_VALUE_MAX",
    "SLOT_DESC_SIZE",
    "NONE",
    "REAPING",
    "VERSION",
    "WRITING",
    "Hdr",
    "Mode",
    "Rdr",
    "Seek",
    "SeekPhase",
    "Slot",
    "State",
    "ControlLayout",
    "control_name",
    "data_name",
    "dtype_code",
    "dtype_from_code",
    "media_ns",
    "pack_clock",
    "pack_latest",
    "pack_media",
    "pack_seek",
    "slot_bytes",
    "unpack_clock",
    "unpack_latest",
    "unpack_media",
    "unpack_seek",
    "valid_name",
    "validate_name",
]

MAGIC = int.from_bytes(b"FRAMEBUS", "little")
VERSION = 2
"""2: the nominal fps as a double, the first frame's format in the header, the backend's own
media time of each frame in its 128-byte slot descriptor (1: fps in thousandths, 64-byte
descriptors). Readers and writers of different versions refuse each other's streams."""
CONTROL_PREFIX = "framebus."

EMPTY = 0  # slot frame_seq: holds no frame
WRITING = (1 << 64) - 1  # slot frame_seq: the writer owns the slot
NONE = (1 << 64) - 1  # reader pin: no slot pinned; reader cursor: not registered yet
REAPING = (1 << 64) - 2  # reader pid: the writer is freeing this dead reader's record

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")


class Mode(enum.IntEnum):
    """Delivery policy of a stream."""

    LATEST = 0  # readers get the newest frame; older ones are skipped and counted
    EVERY = 1  # the writer waits for the slowest reader; no frame is lost


class State(enum.IntEnum):
    """Life cycle of a stream, as shown by ``stats()`` and ``framebus ls``.

    connecting -> live -> (stalled ->) reconnecting -> connecting -> live ...;
    live -> ended (a finite source is done); any -> failed (gave up); any -> closed.
    """

    CONNECTING = 0
    LIVE = 1
    ENDED = 2
    FAILED = 3
    CLOSED = 4
    STALLED = 5
    RECONNECTING = 6


class Hdr(enum.IntEnum):
    """Header word offsets (bytes) in the control segment."""

    MAGIC = 0
    VERSION = 8
    CONTROL_SIZE = 16
    N_SLOTS = 24
    MAX_READERS = 32
    MODE = 40
    OWNER_PID = 48
    OWNER_START = 56
    WRITER_PID = 64
    WRITER_START = 72
    STATE = 80
    LATEST = 88  # pack_latest(seq, slot); seq 0 = no frame yet
    FRAME_FUTEX = 96  # 32-bit word bumped on every publish and state change
    PROGRESS_FUTEX = 104  # 32-bit word bumped when an every-mode reader advances
    DATA_GEN = 112
    SLOT_CAPACITY = 120
    CAPTURED = 128
    DROPPED = 136
    HEARTBEAT_NS = 144  # CLOCK_MONOTONIC when the writer last made progress (not stuck in a read)
    FPS_MILLI = 152  # measured capture rate x 1000
    SOURCE_FPS = 160  # the source's nominal rate, IEEE-754 double bits (0 unknown)
    FRAME_COUNT = 168  # frames in a finite source + 1 (0 unknown)
    STARTED_NS = 176  # time.time_ns() at creation
    LAST_FRAME_NS = 184  # time.time_ns() of the newest frame
    RECONNECTS = 192
    ERROR_KIND = 200  # errors.error_code() of the last error
    INSTANCE = 208  # random id of this stream instance: names its data segments
    ALLOCATING = 216  # bytes the writer is allocating for a new data generation (0: none)
    BACKEND = 224  # 16 bytes: the name of the backend the capture uses, ASCII, NUL padded
    SEEK = 240  # the seek request/reply word (pack_seek); both spare in layout 1: 0 = none
    ERROR_MSG = 256  # 256 bytes of UTF-8, NUL padded
    SOURCE_DESC = 512  # 256 bytes of UTF-8 (credentials removed), NUL padded
    # the format of the stream's frames, known before the first is in the ring (the capture
    # writes it once its first frame is decoded; a VideoWriter given frameSize at once)
    FORMAT_WIDTH = 768
    FORMAT_HEIGHT = 776
    FORMAT_CHANNELS = 784  # 0 for a 2-D (grey) frame
    FORMAT_DTYPE = 792  # dtype code; 0: no format known yet
    # where the last seek landed, written by the capture before it answers the request
    SEEK_LANDED = 800  # request serial << 48 | (the index the source says it is at + 1); 0 none
    SEEK_MEDIA = 808  # the media time it reports there, nanoseconds + MEDIA_TIME_BIAS; 0 none
    # the launch ticket: the publisher offers one before it starts a capture, the capture
    # claims it (ticket -> its pid) before it writes anything, or exits (see Control)
    LAUNCH = 816
    # the packet ring beside the frame ring (bus/_packets.py): its segment's size, 0 for none
    # (spare and 0 in streams of framebus before it: no version change)
    PACKETS = 824
    SLOTS = 832  # first slot descriptor


HEADER_TEXT_BYTES = 256
BACKEND_BYTES = 16


class SeekPhase(enum.IntEnum):
    """Where a seek request stands (in the ``SEEK`` word)."""

    IDLE = 0  # no request (also: cancelled by its requester)
    REQUESTED = 1  # a reader asks the capture to go to ``value`` (a frame index)
    DONE = 2  # done: the first frame from the new position will carry seq ``value``
    REFUSED = 3  # the source could not seek there


@dataclass(frozen=True)
class Seek:
    """The ``SEEK`` word, unpacked: ``seekable`` (written by the capture when its source is
    open), the request's ``serial``, its ``phase`` and ``value``."""

    seekable: bool
    serial: int
    phase: SeekPhase
    value: int


SEEK_VALUE_MAX = (1 << 44) - 1
SEEK_SERIALS = 1 << 16


def pack_seek(seek: Seek) -> int:
    if not 0 <= seek.value <= SEEK_VALUE_MAX:
        raise ValueError(f"seek value {seek.value} out of range")
    return (
        int(seek.seekable) << 62
        | int(seek.phase) << 60
        | (seek.serial % SEEK_SERIALS) << 44
        | seek.value
    )


def unpack_seek(word: int) -> Seek:
    """Every bit pattern unpacks to a valid :class:`Seek` (the word is anyone's bytes)."""
    return Seek(
        bool(word >> 62 & 1),
        word >> 44 & (SEEK_SERIALS - 1),
        SeekPhase(word >> 60 & 3),
        word & SEEK_VALUE_MAX,
    )


class Slot(enum.IntEnum):
    """Offsets inside one 128-byte slot descriptor (the words after ``MEDIA_TIME`` are spare)."""

    FRAME_SEQ = 0
    GEN = 8
    HEIGHT = 16
    WIDTH = 24
    CHANNELS = 32  # 0 for a 2-D (grey) frame
    DTYPE = 40
    TIMESTAMP_NS = 48  # time.time_ns() at capture
    POS = 56  # the frame's index in its source
    MEDIA_TIME = 64  # the backend's own time of the frame, nanoseconds + MEDIA_TIME_BIAS; 0 none
    # spare and 0 in streams of framebus before them (0: the local clock): no version change
    CLOCK = 72  # whose clock TIMESTAMP_NS is: an index into CLOCKS
    CLOCK_OFFSET = 80  # this machine's clock minus the camera's, ns + MEDIA_TIME_BIAS; 0 none
    CLOCK_JITTER = 88  # how much that offset varies, ns + 1; 0 none


SLOT_DESC_SIZE = 128
MEDIA_TIME_BIAS = 1 << 62
"""Added to a media time in nanoseconds (which may be negative) so that 0 means none."""
MEDIA_TIME_MAX_NS = 10**18
"""Media times beyond ±31 years are not a file's: refused when written, ignored when read."""


MAX_CHANNELS = 64
"""The most channels a frame may have (what a reader accepts in a slot descriptor)."""


def media_ns(seconds: object) -> int | None:
    """A media time in seconds (a source's or a FrameInfo's: anything) as nanoseconds, or None
    if it is not a finite number within what a header word holds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if not math.isfinite(seconds) or abs(seconds) > MEDIA_TIME_MAX_NS / 1e9:
        return None
    return round(seconds * 1e9)


def pack_media(media_ns: int | None) -> int:
    """A media time as its header word (0: none, or out of range)."""
    if media_ns is None or not -MEDIA_TIME_MAX_NS <= media_ns <= MEDIA_TIME_MAX_NS:
        return 0
    return media_ns + MEDIA_TIME_BIAS


def unpack_media(word: int) -> int | None:
    """The media time in nanoseconds a header word holds (None: none, or out of range: the
    word is anyone's bytes)."""
    if not word:
        return None
    media_ns = word - MEDIA_TIME_BIAS
    return media_ns if -MEDIA_TIME_MAX_NS <= media_ns <= MEDIA_TIME_MAX_NS else None


CLOCKS = ("local", "camera", "untrusted")
"""A frame's timestamp is this machine's (``local``: when the capture had it), the camera's
(``camera``: RTCP sender reports map its RTP times to its wall clock), or this machine's
because the camera's clock is too far from it (``untrusted``)."""
MAX_CLOCK_NS = 10**15  # an offset or jitter beyond ±11.6 days is anyone's bytes


def pack_clock(kind: str, offset_ns: int | None, jitter_ns: int | None) -> tuple[int, int, int]:
    """The three descriptor words of a frame's clock."""
    offset = (
        0 if offset_ns is None or abs(offset_ns) > MAX_CLOCK_NS else offset_ns + MEDIA_TIME_BIAS
    )
    jitter = 0 if jitter_ns is None or not 0 <= jitter_ns <= MAX_CLOCK_NS else jitter_ns + 1
    return CLOCKS.index(kind), offset, jitter


def unpack_clock(kind: int, offset: int, jitter: int) -> tuple[str, int | None, int | None]:
    """(kind, offset ns, jitter ns) of the three words (anyone's bytes: checked)."""
    name = CLOCKS[kind] if 0 <= kind < len(CLOCKS) else "local"
    off = offset - MEDIA_TIME_BIAS if offset else None
    jit = jitter - 1 if jitter else None
    if off is not None and abs(off) > MAX_CLOCK_NS:
        off = None
    if jit is not None and not 0 <= jit <= MAX_CLOCK_NS:
        jit = None
    return name, off, jit


class Rdr(enum.IntEnum):
    """Offsets inside one 64-byte reader record."""

    PID = 0  # 0: free; REAPING: being freed; else the reader's pid
    START = 8  # the reader process's start time (pid reuse guard); 0 while registering
    PIN = 16  # slot index being read, or NONE
    CURSOR = 24  # seq of the last frame consumed; NONE while the record is free
    DELIVERED = 32
    SKIPPED = 40
    ATTACHED_NS = 48


READER_SIZE = 64

_DTYPES: tuple[np.dtype[np.generic], ...] = (
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.int16),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.int8),
    np.dtype(np.int32),
)


@dataclass(frozen=True)
class ControlLayout:
    """Where the slot descriptors and reader records of a control segment are."""

    n_slots: int
    max_readers: int

    def __post_init__(self) -> None:
        if not 2 <= self.n_slots <= 255:
            raise ValueError(f"slots must be 2..255, got {self.n_slots}")
        if not 1 <= self.max_readers <= 1024:
            raise ValueError(f"max_readers must be 1..1024, got {self.max_readers}")

    @property
    def readers_offset(self) -> int:
        return int(Hdr.SLOTS) + self.n_slots * SLOT_DESC_SIZE

    @property
    def size(self) -> int:
        return self.readers_offset + self.max_readers * READER_SIZE

    def slot(self, index: int, field: Slot) -> int:
        return int(Hdr.SLOTS) + index * SLOT_DESC_SIZE + int(field)

    def reader(self, index: int, field: Rdr) -> int:
        return self.readers_offset + index * READER_SIZE + int(field)


def valid_name(name: object) -> bool:
    """Whether ``name`` is a stream name: 1-48 letters, digits, '_' or '-', starting with a
    letter or digit (the one rule: local streams, ``zmq://`` URLs, listings, ``sample``)."""
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid stream name, else raise :class:`InvalidStreamName`."""
    if not valid_name(name):
        raise InvalidStreamName(
            f"invalid stream name {name!r}: use 1-48 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def control_name(name: str) -> str:
    return CONTROL_PREFIX + name


def data_name(name: str, instance: int, gen: int) -> str:
    """Data segments carry the stream instance: a reader of a replaced stream cannot map the
    new stream's pixels by mistake."""
    return f"{CONTROL_PREFIX}{name}.{instance:08x}-{gen}"


def pack_latest(seq: int, slot: int) -> int:
    return (seq << 8) | slot


def unpack_latest(word: int) -> tuple[int, int]:
    return word >> 8, word & 0xFF


def slot_bytes(nbytes: int) -> int:
    """Slot size for frames of ``nbytes``: rounded up to 4 KiB so slots start on pages."""
    return max(4096, (nbytes + 4095) // 4096 * 4096)


_CODES = {dt: i + 1 for i, dt in enumerate(_DTYPES)}


def dtype_code(dtype: np.dtype[np.generic]) -> int:
    code = _CODES.get(np.dtype(dtype))
    if code is None:
        supported = ", ".join(str(d) for d in _DTYPES)
        raise ValueError(f"frames of dtype {dtype} are not supported (use {supported})")
    return code


def dtype_from_code(code: int) -> np.dtype[np.generic]:
    if not 1 <= code <= len(_DTYPES):
        raise ValueError(f"unknown dtype code {code}")
    return _DTYPES[code - 1]


MIN_CONTROL_SIZE = int(Hdr.SLOTS)  # the header alone
MAX_CONTROL_SIZE = ControlLayout(255, 1024).size
