"""A stream's control segment: its header words behind typed accessors, its reader table.

Every encoding of a header field (fps x 1000, frame count + 1, texts, the writer's identity)
is written here once; nothing outside ``bus/`` reads or writes a header word. The header is
validated before anything else reads it: a file in /dev/shm may hold anyone's bytes.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
from collections.abc import Callable

import numpy as np

from .. import _platform as plat
from ..errors import (
    FramebusError,
    IncompatibleStream,
    PublisherLost,
    SharedMemoryFull,
    StreamEnded,
    StreamNotFound,
    error_class,
    error_code,
)
from ._layout import (
    BACKEND_BYTES,
    HEADER_TEXT_BYTES,
    MAGIC,
    MAX_CONTROL_SIZE,
    MIN_CONTROL_SIZE,
    NONE,
    READER_SIZE,
    REAPING,
    SEEK_SERIALS,
    SEEK_VALUE_MAX,
    VERSION,
    ControlLayout,
    Hdr,
    Mode,
    Rdr,
    Seek,
    SeekPhase,
    Slot,
    State,
    control_name,
    dtype_code,
    dtype_from_code,
    pack_media,
    pack_seek,
    unpack_clock,
    unpack_latest,
    unpack_media,
    unpack_seek,
)

__all__ = ["Control", "create_control"]

_OVER = (State.ENDED, State.FAILED)
_CREATION_WAIT = 1.0  # a control segment younger than this may still lack its magic
_MODES = frozenset(int(m) for m in Mode)
_STATES = frozenset(int(s) for s in State)
_BACKEND_RE = re.compile(rb"[A-Z0-9_]{1,16}")


class Control:
    """A mapped control segment: header words, slot descriptors and reader records."""

    def __init__(self, name: str, seg: plat.Segment) -> None:
        self.name = name
        self.seg = seg
        self.words = seg.words
        try:
            self._validate()
        except BaseException:
            seg.close()
            raise
        self.layout = ControlLayout(self.words.load(Hdr.N_SLOTS), self.words.load(Hdr.MAX_READERS))
        self.mode = Mode(self.words.load(Hdr.MODE))
        self.u64 = np.ndarray((seg.size // 8,), np.uint64, buffer=seg.mm)
        self.seek_serial = -1  # the serial of this mapping's last seek request that was served
        self.readers = self.u64[self.layout.readers_offset // 8 : self.layout.size // 8].reshape(
            self.layout.max_readers, READER_SIZE // 8
        )

    def _validate(self) -> None:
        """Check the header before anything else reads it: the file may be anyone's bytes."""
        name, seg, w = self.name, self.seg, self.words
        if seg.size < MIN_CONTROL_SIZE:
            raise IncompatibleStream(
                f"stream {name!r}: its control segment is truncated ({seg.size} bytes)"
            )
        # the creator writes MAGIC last: wait for it only if the file is young enough to be
        # in creation (an old file without it is garbage, not worth a wait), and never longer
        # than that (a modification time in the future is anyone's to set)
        give_up = time.monotonic() + _CREATION_WAIT
        while w.load(Hdr.MAGIC) != MAGIC:
            now = time.monotonic()
            if time.time() - seg.mtime > _CREATION_WAIT or now > give_up:
                raise IncompatibleStream(f"stream {name!r}: shared memory is not a framebus stream")
            time.sleep(0.01)
        version = w.load(Hdr.VERSION)
        if version != VERSION:
            raise IncompatibleStream(
                f"stream {name!r} uses layout version {version}, "
                f"this framebus reads version {VERSION}: use the same framebus version"
            )
        n_slots, max_readers = w.load(Hdr.N_SLOTS), w.load(Hdr.MAX_READERS)
        try:
            layout = ControlLayout(n_slots, max_readers)
        except ValueError as exc:
            raise IncompatibleStream(f"stream {name!r}: bad header: {exc}") from None
        if w.load(Hdr.CONTROL_SIZE) != layout.size or seg.size < layout.size:
            raise IncompatibleStream(
                f"stream {name!r}: bad header: control size {w.load(Hdr.CONTROL_SIZE)} "
                f"(file {seg.size} bytes, layout {layout.size})"
            )
        if w.load(Hdr.MODE) not in _MODES or w.load(Hdr.STATE) not in _STATES:
            raise IncompatibleStream(f"stream {name!r}: bad header: unknown mode or state")

    @classmethod
    def open(cls, name: str) -> Control:
        try:
            seg = plat.Segment.open(control_name(name), max_size=MAX_CONTROL_SIZE)
        except FileNotFoundError:
            raise StreamNotFound(f"no stream named {name!r} (see `framebus ls`)") from None
        except plat.SegmentRefused as exc:
            raise IncompatibleStream(f"stream {name!r}: {exc}") from None
        except OSError as exc:  # e.g. a file this user may not open
            raise IncompatibleStream(f"stream {name!r}: cannot open it: {exc.strerror}") from None
        return cls(name, seg)

    def close(self) -> None:
        del self.u64, self.readers
        self.seg.close()

    # -- header fields -------------------------------------------------------------------------

    def get(self, field: int) -> int:
        return int(self.u64[field // 8])

    def put(self, field: int, value: int) -> None:
        self.u64[field // 8] = value

    @property
    def state(self) -> State:
        raw = self.words.load(Hdr.STATE)
        if raw not in _STATES:  # validated at open; a later write can only be a forgery
            raise IncompatibleStream(f"stream {self.name!r}: bad header: state {raw}")
        return State(raw)

    def set_state(self, state: State) -> bool:
        """Move to ``state`` unless the stream is already over: closed is final, and ended or
        failed give way only to closed (and ended to a seek: :meth:`revive`). Returns whether
        the state changed."""
        while True:
            old = self.words.load_sc(Hdr.STATE)
            if old == State.CLOSED or (old in _OVER and state is not State.CLOSED):
                return False
            if self.words.cas(Hdr.STATE, old, int(state)):
                self.notify()
                return True

    def notify(self) -> None:
        """Wake every reader sleeping on this stream."""
        self.words.bump32(Hdr.FRAME_FUTEX)
        plat.futex_wake(self.seg.address + Hdr.FRAME_FUTEX)

    def text(self, field: Hdr) -> str:
        raw = bytes(self.seg.mm[field : field + HEADER_TEXT_BYTES])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def set_text(self, field: Hdr, value: str) -> None:
        raw = value.encode("utf-8")[: HEADER_TEXT_BYTES - 1]
        self.seg.mm[field : field + HEADER_TEXT_BYTES] = raw.ljust(HEADER_TEXT_BYTES, b"\0")

    def publisher_alive(self) -> bool:
        return plat.process_alive(*self.owner)

    # -- typed fields: each encoding is written here once --------------------------------------

    @property
    def owner(self) -> tuple[int, int]:
        """(pid, start time) of the publisher process."""
        return self.get(Hdr.OWNER_PID), self.get(Hdr.OWNER_START)

    @property
    def writer(self) -> tuple[int, int]:
        """(pid, start time) of the process running the capture (0, 0 before one started)."""
        return self.get(Hdr.WRITER_PID), self.get(Hdr.WRITER_START)

    def claim_writer(self) -> None:
        """Record this process as the stream's capture (start time first: pid is the key)."""
        me = os.getpid()
        self.put(Hdr.WRITER_START, plat.process_start_time(me) or 0)
        self.put(Hdr.WRITER_PID, me)

    @property
    def instance(self) -> int:
        """The random id of this stream instance (it names the data segments)."""
        return self.get(Hdr.INSTANCE)

    @property
    def error_message(self) -> str:
        return self.text(Hdr.ERROR_MSG)

    @property
    def error_kind(self) -> type[FramebusError]:
        """The class of the last error recorded (SourceError if none or unknown)."""
        return error_class(self.get(Hdr.ERROR_KIND))

    def end_error(self) -> FramebusError | None:
        """What a reader raises now that the stream is over: StreamEnded (ended, closed),
        PublisherLost, or the error it failed with; None while it is not over."""
        state = self.state  # checked: a header is anyone's bytes
        if state in (State.ENDED, State.CLOSED):
            return StreamEnded(f"stream {self.name!r} ended")
        if state is State.FAILED:
            kind = self.error_kind
            if kind is PublisherLost:  # its capture outlived it and ended the stream
                return PublisherLost(f"the publisher of stream {self.name!r} died")
            return kind(f"stream {self.name!r} failed: {self.error_message}")
        return None

    def record_error(self, exc: BaseException | None, message: str | None = None) -> None:
        """Leave the reason of a failure for the publisher and the readers (``exc``'s class
        travels as a code; ``message`` defaults to its text)."""
        if exc is not None:
            self.put(Hdr.ERROR_KIND, error_code(exc))
            if message is None:
                message = (
                    str(exc) if isinstance(exc, FramebusError) else f"{type(exc).__name__}: {exc}"
                )
        self.set_text(Hdr.ERROR_MSG, message or "")

    @property
    def allocating(self) -> int:
        """Bytes of shared memory the writer is allocating right now (0: none)."""
        return self.get(Hdr.ALLOCATING)

    @allocating.setter
    def allocating(self, nbytes: int) -> None:
        self.words.store_sc(Hdr.ALLOCATING, nbytes)

    @property
    def backend(self) -> str:
        """The name of the backend the capture uses (``"FFMPEG"``, ``"PYAV"``, ...; "" until
        the source is open, or if the header holds anything but such a name)."""
        raw = bytes(self.seg.mm[Hdr.BACKEND : Hdr.BACKEND + BACKEND_BYTES]).rstrip(b"\0")
        return raw.decode() if _BACKEND_RE.fullmatch(raw) else ""

    @backend.setter
    def backend(self, name: str) -> None:
        raw = name.encode()
        if not _BACKEND_RE.fullmatch(raw):
            raise ValueError(f"a backend name is 1-16 of A-Z, 0-9, _: {name!r}")
        self.seg.mm[Hdr.BACKEND : Hdr.BACKEND + BACKEND_BYTES] = raw.ljust(BACKEND_BYTES, b"\0")

    # -- seeking: a reader asks, the capture answers, through the SEEK word ----------------------

    @property
    def seekable(self) -> bool:
        """True while a capture whose source can seek runs (it says so once the source is open)."""
        return unpack_seek(self.words.load_sc(Hdr.SEEK)).seekable

    @seekable.setter
    def seekable(self, flag: bool) -> None:
        """The capture: its source is open, and can seek or not. Forgets any request a
        previous capture left unanswered."""
        self.words.store_sc(Hdr.SEEK, pack_seek(Seek(flag, 0, SeekPhase.IDLE, 0)))
        self.notify()

    def end_seeking(self) -> None:
        """The capture is done: refuse a pending request, keep an answer already given (its
        requester may not have read it yet), and take no more requests."""
        w = self.words
        while True:
            raw = w.load_sc(Hdr.SEEK)
            old = unpack_seek(raw)
            phase = SeekPhase.REFUSED if old.phase is SeekPhase.REQUESTED else old.phase
            if w.cas(Hdr.SEEK, raw, pack_seek(Seek(False, old.serial, phase, old.value))):
                break
        self.notify()

    def seek(self, frame: int, timeout: float, consume: Callable[[int], None]) -> int | None:
        """Ask the capture to continue from frame index ``frame``; wait for its answer.

        Returns the seq the first frame from the new position will carry, or None if the
        source cannot seek, the stream is over, or no answer came within ``timeout`` (the
        request is withdrawn then; a capture that took it meanwhile still seeks).
        ``consume(seq)`` is called with the seq after the newest frame whenever every frame in
        the ring is known to come from the old position: the requester consumes them unread,
        or an every-mode capture would wait for it instead of taking the request.
        """
        w = self.words
        frame = min(max(frame, 0), SEEK_VALUE_MAX)
        deadline = time.monotonic() + timeout
        while True:  # take the word: one request at a time, from any reader of any process
            raw = w.load_sc(Hdr.SEEK)
            old = unpack_seek(raw)
            if not old.seekable:
                return None
            if old.phase is not SeekPhase.REQUESTED:
                consume(unpack_latest(w.load_sc(Hdr.LATEST))[0] + 1)
                mine = Seek(True, (old.serial + 1) % SEEK_SERIALS, SeekPhase.REQUESTED, frame)
                if w.cas(Hdr.SEEK, raw, pack_seek(mine)):
                    self.wake_writer()  # an every-mode capture may sleep, waiting for readers
                    break
                continue
            if not self._wait_seek(deadline):
                return None
        requested = pack_seek(mine)
        while True:
            # the capture answers before it publishes the first frame from the new position:
            # a frame seen while the request still stands is from the old one
            newest = unpack_latest(w.load_sc(Hdr.LATEST))[0]
            raw = w.load_sc(Hdr.SEEK)
            if raw == requested:
                consume(newest + 1)
                if self._wait_seek(deadline):
                    continue
                withdrawn = pack_seek(Seek(True, mine.serial, SeekPhase.IDLE, 0))
                if w.cas(Hdr.SEEK, requested, withdrawn):
                    return None
                continue  # answered just now: read the answer
            now = unpack_seek(raw)
            if now.serial != mine.serial or now.phase is not SeekPhase.DONE:
                return None  # refused, or the capture restarted meanwhile (or forged bytes)
            self.seek_serial = mine.serial  # whose landing to read (seek_landing)
            return now.value

    def _wait_seek(self, deadline: float) -> bool:
        token = self.change_token()
        left = deadline - time.monotonic()
        # (an ended file's capture waits for a seek: ended is no reason to give up)
        if left <= 0 or self.state in (State.CLOSED, State.FAILED):
            return False
        self.wait_change(token, min(left, 0.05))
        return True

    def revive(self) -> bool:
        """ended -> live, the one way out of ended but to closed: a seek brought a finished
        file back. False if the stream is not ended (closed meanwhile, say)."""
        if self.words.cas(Hdr.STATE, int(State.ENDED), int(State.LIVE)):
            self.notify()
            return True
        return False

    def progress_token(self) -> int:
        """The progress futex word: read it, check a condition, then :meth:`wait_progress`."""
        return self.words.load32(Hdr.PROGRESS_FUTEX)

    def wait_progress(self, token: int, timeout: float) -> None:
        """The capture sleeps until a reader advances or asks (:meth:`wake_writer`)."""
        plat.futex_wait(self.seg.address + Hdr.PROGRESS_FUTEX, token, timeout)

    def seek_request(self) -> int | None:
        """The capture: the frame index a reader asked for, if a request is pending."""
        seek = unpack_seek(self.words.load(Hdr.SEEK))
        return seek.value if seek.phase is SeekPhase.REQUESTED else None

    def answer_seek(
        self,
        frame: int,
        first_seq: int | None,
        landed: int | None = None,
        media_ns: int | None = None,
    ) -> None:
        """The capture: the request for ``frame`` was served (the first frame from there will
        carry ``first_seq``), or refused (None). A withdrawn request stays withdrawn.
        ``landed``/``media_ns``: the position and media time the source reports after the seek
        (what cv2 answers before the next read), for :meth:`seek_landing`."""
        w = self.words
        old = unpack_seek(w.load_sc(Hdr.SEEK))
        if old.phase is not SeekPhase.REQUESTED or old.value != frame:
            return
        # the media word first, then the position word that names the request: a requester
        # reads them the other way round (see seek_landing)
        w.store_sc(Hdr.SEEK_MEDIA, pack_media(media_ns))
        pos = landed + 1 if landed is not None and 0 <= landed <= SEEK_VALUE_MAX else 0
        w.store_sc(Hdr.SEEK_LANDED, old.serial << 48 | pos)
        phase = SeekPhase.REFUSED if first_seq is None else SeekPhase.DONE
        reply = Seek(old.seekable, old.serial, phase, first_seq or 0)
        w.cas(Hdr.SEEK, pack_seek(old), pack_seek(reply))
        self.notify()

    def seek_landing(self, serial: int) -> tuple[int | None, float | None]:
        """(frame index, media time in seconds) the source reported after serving seek request
        ``serial``; None for what it did not say, and for both if the words are another
        request's already (a seek by another reader, answered meanwhile)."""
        w = self.words
        landed = w.load_sc(Hdr.SEEK_LANDED)
        media = unpack_media(w.load_sc(Hdr.SEEK_MEDIA))
        if w.load_sc(Hdr.SEEK_LANDED) != landed or landed >> 48 != serial:
            return None, None
        pos = landed & ((1 << 48) - 1)
        return (
            pos - 1 if 0 < pos <= SEEK_VALUE_MAX + 1 else None,
            None if media is None else media / 1e9,
        )

    # -- the launch ticket: one capture per launch -----------------------------------------------

    def offer_launch(self) -> int:
        """The publisher, before it starts a capture: a new ticket (random, top bit set, so it
        is never a pid). The capture started with it claims it; any other capture cannot."""
        ticket = 1 << 63 | int.from_bytes(os.urandom(8), "little") >> 2
        self.words.store_sc(Hdr.LAUNCH, ticket)
        return ticket

    def claim_launch(self, ticket: int) -> bool:
        """The capture, before it writes anything: take ``ticket`` (it becomes this pid). False
        if the publisher withdrew it, or it is another launch's: then this capture must exit."""
        return self.words.cas(Hdr.LAUNCH, ticket, os.getpid())

    def withdraw_launch(self, ticket: int) -> int | None:
        """The publisher gives up on a launch: no capture may claim ``ticket`` from now on.
        Returns None if none did, else the pid of the capture that claimed it (it runs: adopt
        it rather than start another, or two captures would write one ring)."""
        if self.words.cas(Hdr.LAUNCH, ticket, 0):
            return None
        claimant = self.words.load_sc(Hdr.LAUNCH)
        return claimant if 0 < claimant < 1 << 32 else None

    def capture_died(self) -> None:
        """The capture exited on its own (not stopped by us). If it was allocating shared
        memory then, the kernel killed it for want of memory (the OOM killer's SIGKILL) or the
        memory failed it (SIGBUS): record :class:`SharedMemoryFull`, which is never retried,
        instead of whatever error an earlier capture left."""
        nbytes = self.allocating
        if not nbytes:
            return
        self.allocating = 0
        self.record_error(
            SharedMemoryFull(
                f"not enough shared memory: the capture process died while allocating "
                f"{nbytes / 2**20:.1f} MiB of it (killed by the kernel for want of memory?); "
                "use fewer slots or smaller frames, or free memory"
            )
        )

    @property
    def source_desc(self) -> str:
        return self.text(Hdr.SOURCE_DESC)

    @property
    def source_fps(self) -> float | None:
        """The source's nominal frame rate, exactly as its backend gave it (None if unknown,
        and for what a forged header may hold: not finite, not positive, above 1e6)."""
        fps: float = struct.unpack("<d", struct.pack("<Q", self.get(Hdr.SOURCE_FPS)))[0]
        return fps if math.isfinite(fps) and 0 < fps <= 1e6 else None

    @source_fps.setter
    def source_fps(self, fps: float | None) -> None:
        bits = struct.unpack("<Q", struct.pack("<d", float(fps)))[0] if fps else 0
        self.put(Hdr.SOURCE_FPS, bits)

    @property
    def packet_segment_size(self) -> int:
        """Bytes of the stream's packet segment (0: it has none). Unchecked: anyone's word."""
        return self.words.load(Hdr.PACKETS)  # acquire: the segment is ready when this is set

    @packet_segment_size.setter
    def packet_segment_size(self, size: int) -> None:
        self.words.store(Hdr.PACKETS, size)

    @property
    def frame_format(self) -> tuple[int, int, int, np.dtype[np.generic]] | None:
        """(width, height, channels, dtype) of the stream's frames before one is in the ring
        (None if not known, or not valid: the header is anyone's bytes)."""
        code = self.get(Hdr.FORMAT_DTYPE)
        if not code:
            return None
        width, height = self.get(Hdr.FORMAT_WIDTH), self.get(Hdr.FORMAT_HEIGHT)
        channels = self.get(Hdr.FORMAT_CHANNELS)
        try:
            dtype = dtype_from_code(code)
        except ValueError:
            return None
        if not (0 < width < 1 << 31 and 0 < height < 1 << 31 and channels <= 64):
            return None
        return width, height, channels, dtype

    def set_frame_format(self, shape: tuple[int, ...], dtype: np.dtype[np.generic]) -> None:
        """Say what the stream's frames are (``shape`` as numpy's), before one is published;
        the dtype word last: it says the others are there."""
        self.put(Hdr.FORMAT_WIDTH, shape[1])
        self.put(Hdr.FORMAT_HEIGHT, shape[0])
        self.put(Hdr.FORMAT_CHANNELS, shape[2] if len(shape) == 3 else 0)
        self.words.store_sc(Hdr.FORMAT_DTYPE, dtype_code(dtype))
        self.notify()

    @property
    def capture_fps(self) -> float:
        """The measured capture rate."""
        return self.get(Hdr.FPS_MILLI) / 1000

    @capture_fps.setter
    def capture_fps(self, fps: float) -> None:
        self.put(Hdr.FPS_MILLI, int(fps * 1000))

    @property
    def frame_count(self) -> int | None:
        """Frames of a finite source, if known."""
        stored = self.get(Hdr.FRAME_COUNT)  # count + 1, so that 0 means unknown
        return stored - 1 if stored else None

    @frame_count.setter
    def frame_count(self, count: int | None) -> None:
        self.put(Hdr.FRAME_COUNT, count + 1 if count else 0)  # 0 frames: as unknown

    def heartbeat(self) -> None:
        """The writer made progress (it is not stuck inside its source)."""
        self.put(Hdr.HEARTBEAT_NS, time.monotonic_ns())

    def idle_seconds(self) -> float:
        """Seconds since the writer's last heartbeat."""
        return (time.monotonic_ns() - self.get(Hdr.HEARTBEAT_NS)) / 1e9

    @property
    def captured(self) -> int:
        return self.get(Hdr.CAPTURED)

    @property
    def last_frame_ns(self) -> int:
        """``time.time_ns()`` of the newest frame (0 before the first)."""
        return self.get(Hdr.LAST_FRAME_NS)

    @property
    def reconnects(self) -> int:
        return self.get(Hdr.RECONNECTS)

    def count_reconnect(self) -> None:
        self.put(Hdr.RECONNECTS, self.reconnects + 1)

    def newest_size(self) -> tuple[int, int]:
        """(width, height) of the newest frame; before the first, of the format the capture
        announced (:meth:`set_frame_format`); (0, 0) if neither is known."""
        seq, slot = unpack_latest(self.get(Hdr.LATEST))
        if not seq or slot >= self.layout.n_slots:
            known = self.frame_format
            return (known[0], known[1]) if known is not None else (0, 0)
        return self.get(self.layout.slot(slot, Slot.WIDTH)), self.get(
            self.layout.slot(slot, Slot.HEIGHT)
        )

    def newest_clock(self) -> tuple[str, int | None, int | None]:
        """(whose clock, offset ns, jitter ns) of the newest frame (``local`` before any)."""
        seq, slot = unpack_latest(self.get(Hdr.LATEST))
        if not seq or slot >= self.layout.n_slots:
            return "local", None, None
        return unpack_clock(
            self.get(self.layout.slot(slot, Slot.CLOCK)),
            self.get(self.layout.slot(slot, Slot.CLOCK_OFFSET)),
            self.get(self.layout.slot(slot, Slot.CLOCK_JITTER)),
        )

    def reader_totals(self) -> tuple[int, int, int]:
        """(readers attached, frames delivered, frames skipped) summed over the readers."""
        rows = self.active_readers()
        if not len(rows):
            return 0, 0, 0
        return (
            len(rows),
            int(rows[:, Rdr.DELIVERED // 8].sum()),
            int(rows[:, Rdr.SKIPPED // 8].sum()),
        )

    def change_token(self) -> int:
        """The frame futex word: read it, check a condition, then :meth:`wait_change`."""
        return self.words.load32(Hdr.FRAME_FUTEX)

    def wait_change(self, token: int, timeout: float) -> None:
        """Sleep until a frame or state change after ``token`` was read, at most ``timeout``."""
        plat.futex_wait(self.seg.address + Hdr.FRAME_FUTEX, token, timeout)

    def taken(self, rows: np.ndarray) -> np.ndarray:
        """Mask of the rows of a reader table whose record belongs to a reader."""
        pids = rows[:, Rdr.PID // 8]
        mask: np.ndarray = (pids != 0) & (pids != REAPING)
        return mask

    def active_readers(self) -> np.ndarray:
        """Rows of the reader table whose record is taken (a snapshot)."""
        rows: np.ndarray = self.readers.copy()
        taken: np.ndarray = rows[self.taken(rows)]
        return taken

    def reap_dead_readers(self) -> int:
        """Free the records of readers whose process died (kill -9 mid-read included)."""
        freed = 0
        w, lay = self.words, self.layout
        for i in range(lay.max_readers):
            pid = w.load(lay.reader(i, Rdr.PID))
            if pid in (0, REAPING):
                continue
            start = w.load(lay.reader(i, Rdr.START))
            # START is 0 from the claim until the reader wrote it: dead only if pid is gone
            if start:
                alive = plat.process_alive(pid, start)
            else:
                alive = plat.process_start_time(pid) is not None
            if alive or not w.cas(lay.reader(i, Rdr.PID), pid, REAPING):
                continue  # alive, or the record changed hands meanwhile
            w.store(lay.reader(i, Rdr.PIN), NONE)
            w.store(lay.reader(i, Rdr.CURSOR), NONE)
            w.store(lay.reader(i, Rdr.START), 0)
            w.store_sc(lay.reader(i, Rdr.PID), 0)
            freed += 1
        if freed:
            self.wake_writer()
        return freed

    def wake_writer(self) -> None:
        self.words.bump32(Hdr.PROGRESS_FUTEX)
        plat.futex_wake(self.seg.address + Hdr.PROGRESS_FUTEX)


def create_control(
    name: str, n_slots: int, max_readers: int, mode: Mode, source_desc: str
) -> Control:
    """Create and initialise the control segment of a new stream (FileExistsError if taken)."""
    layout = ControlLayout(n_slots, max_readers)
    seg = plat.Segment.create(control_name(name), layout.size)
    w = seg.words
    me = os.getpid()
    for field, value in (
        (Hdr.VERSION, VERSION),
        (Hdr.CONTROL_SIZE, layout.size),
        (Hdr.N_SLOTS, n_slots),
        (Hdr.MAX_READERS, max_readers),
        (Hdr.MODE, int(mode)),
        (Hdr.OWNER_PID, me),
        (Hdr.OWNER_START, plat.process_start_time(me) or 0),
        (Hdr.STATE, int(State.CONNECTING)),
        (Hdr.STARTED_NS, time.time_ns()),
        (Hdr.INSTANCE, int.from_bytes(os.urandom(4), "little")),
    ):
        w.store(field, value)
    for i in range(max_readers):
        w.store(layout.reader(i, Rdr.PIN), NONE)
        w.store(layout.reader(i, Rdr.CURSOR), NONE)
    raw = source_desc.encode("utf-8")[: HEADER_TEXT_BYTES - 1]
    seg.mm[Hdr.SOURCE_DESC : Hdr.SOURCE_DESC + len(raw)] = raw
    w.store_sc(Hdr.MAGIC, MAGIC)  # last: the segment is now a stream
    return Control(name, seg)
