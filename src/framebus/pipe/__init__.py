"""Frames through a pipe, in two lines each side: seed 004's ``write.py | read.py`` done right.

write.py::

    for frame in frames_from_somewhere:
        framebus.pipe.write(sys.stdout.buffer, frame)

read.py::

    for frame, info in framebus.pipe.frames(sys.stdin.buffer):
        ...

The bytes are framebus's wire format (:mod:`framebus.wire`, the one frame codec): each frame
is a 64-byte header (magic, size, pixel format, seq, session, capture time, CRC) and its
pixels, so a reader knows where each frame ends without waiting for end of input (the seed's
hang), checks every field before using it, and never needs a length it has to trust. It is
what ``framebus cat NAME`` writes and what ``framebus serve cam=-`` reads.

Reading is bounded: each header (64 bytes) is read and validated before anything else, then
its payload (at most ``max_payload`` bytes, 64 MiB by default, checked before the buffer is
allocated) is read straight into a buffer of its own, which the frame array is a view of: one
frame buffered, no search, no quadratic concatenation, no extra copy. End of input at a frame
boundary ends :func:`frames` cleanly (an empty input yields nothing); a frame cut short is a
:class:`~framebus.errors.PipeFormatError` naming its byte offset, and so is a header that is not
valid: a wrong magic, a bad CRC, an absurd size (``resync=True`` skips such garbage up to the
next valid header instead, with :class:`~framebus.wire.StreamDecoder`).

Writing flushes each frame, so the reader gets it at once; it blocks while the pipe is full
(the kernel holds 64 KiB by default). A program that must never wait for its reader should not
write from its capture loop: publish a stream and run ``framebus cat NAME`` instead, which
takes the newest frame whenever the pipe has room.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import BinaryIO, Protocol

import numpy as np

from .._order import FrameOrder
from ..stats import FrameInfo
from ..wire import MAX_PAYLOAD, new_session, pack_frame
from .framing import CHUNK, ReadInto, decode_wire, wire_records

__all__ = ["frames", "write"]

_SESSION = new_session()  # this process's frames: a reader sees a restart as a new session
_SEQ = itertools.count(1)


class _Writable(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


def write(fileobj: BinaryIO | _Writable, frame: np.ndarray, info: FrameInfo | None = None) -> int:
    """Write ``frame`` (``HxW`` or ``HxWxC``; uint8, uint16, int16 or float32; 1, 3 or 4
    channels) to the binary file ``fileobj`` as one wire frame, and flush it. Returns the bytes
    written.

    ``info`` (a :class:`framebus.FrameInfo`, from a reader or from :func:`frames`) gives the
    frame's seq and capture time; without it the frames of this process are numbered 1, 2, ...
    and stamped now. ValueError for a frame the wire cannot carry (e.g. float64: convert it).
    """
    if info is None:
        seq, capture_ns = next(_SEQ), time.time_ns()
    else:
        seq, capture_ns = info.seq, round(info.timestamp * 1e9)
    header, payload = pack_frame(frame, seq=seq, session=_SESSION, capture_ns=capture_ns)
    fileobj.write(header)
    fileobj.write(payload)
    flush = getattr(fileobj, "flush", None)
    if flush is not None:
        flush()
    return len(header) + payload.nbytes


def frames(
    fileobj: BinaryIO, *, max_payload: int = MAX_PAYLOAD, resync: bool = False
) -> Iterator[tuple[np.ndarray, FrameInfo]]:
    """Each frame of the wire-format byte stream ``fileobj`` (a binary file: ``sys.stdin.buffer``,
    a pipe, a socket's ``makefile("rb")``) as ``(frame, info)``, until end of input.

    ``frame`` is a writable array of its own (a view of the buffer its payload was read
    into). ``info``: ``seq`` and ``timestamp`` are the writer's (capture time), ``pos`` counts
    the frames of this stream from 0, ``skipped`` is the gap in the writer's seq since the
    previous frame (0 after a writer restart).
    Raises :class:`~framebus.errors.PipeFormatError` for a truncated or invalid frame (see the
    module docstring); ``max_payload`` bounds one frame's payload.
    """
    readinto: ReadInto = getattr(fileobj, "readinto", None) or _readinto_of(fileobj)
    order = FrameOrder(keep_stale=True)  # a pipe delivers what it is sent, in order
    for pos, (header, payload, offset) in enumerate(
        wire_records(readinto, max_payload=max_payload, resync=resync)
    ):
        frame = decode_wire(header, payload, offset)  # a view of its own buffer: writable
        skipped = order.place(header.session, header.seq) or 0
        yield (
            frame,
            FrameInfo(
                seq=header.seq,
                timestamp=header.capture_ns / 1e9,
                pos=pos,
                skipped=skipped,
                width=header.width,
                height=header.height,
            ),
        )


def _readinto_of(fileobj: BinaryIO) -> ReadInto:
    """``readinto`` for an object that only has ``read(n)``."""

    def readinto(view: memoryview) -> int:
        data = fileobj.read(min(len(view), CHUNK))
        view[: len(data)] = data
        return len(data)

    return readinto
