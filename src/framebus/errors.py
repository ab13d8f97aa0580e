"""Every exception framebus raises on purpose.

The hierarchy::

    FramebusError
    ├── InvalidStreamName        the name is not 1-48 of [A-Za-z0-9_-], starting alphanumeric
    ├── StreamNotFound           attach()/ls of a name no publisher serves
    ├── StreamExists             publish() of a name a live publisher already serves
    ├── TooManyReaders           every reader record of the stream is taken
    ├── IncompatibleStream       the segment is not framebus's, or of another layout version
    ├── WireFormatError          bytes that are not a valid frame message (framebus.wire)
    ├── PipeFormatError          a byte stream on a pipe (frames, y4m, MJPEG) that is cut short or
    │                            not what it claims; the message names the byte offset
    ├── SourceError              the frame source cannot deliver
    │   ├── SourceNotFound       no such file, no such camera, or the server has no such path (404)
    │   ├── SourceUnreachable    connection refused, host unreachable, or no answer in time
    │   ├── SourceAuthError      the server refused the credentials (401/403)
    │   └── SourceOpenError      the source exists but cannot be opened or decoded
    │       └── SourceUnsupported  a codec, packetization or RTSP dialect the backend lacks
    │           └── FrameTooLarge  a frame over the decoded-size budget (framebus.limits)
    ├── SharedMemoryFull         /dev/shm has no room for the ring (Docker: raise --shm-size)
    ├── PublisherLost            the publisher of an attached stream died
    ├── StreamEnded              the stream ended and every frame was delivered
    ├── NoEncodedFrames          attach_encoded() of a stream whose source hands out no encoded
    │                            frames (only framebus's RTSP client does)
    ├── ReadTimeout              no new frame within the timeout given to a read
    ├── WriteTimeout             an every-mode VideoWriter's readers took no frame within the
    │                            timeout given to a write
    ├── SinkClosed               a sink or subscription was closed: no more items (sinks)
    ├── PlatformError            the OS lacks something framebus needs (Linux /dev/shm, libatomic)
    ├── PushError                a push to a media server cannot go on
    │   ├── PushUnreachable      connection refused, host unreachable, no answer in time, dropped
    │   ├── PushAuthError        the server refused the credentials (401/403)
    │   └── PushRefused          the server refused the stream (a status, a transport, bad bytes)
    ├── RecordError              a recording cannot go on
    │   └── DiskFull             the recording's disk (or quota) is full
    ├── KeyFileError             a CURVE key file or directory is missing or not a key (zmq)
    └── ConfigError              a config file (serve --config) that is not what it must be

SourceUnreachable has RemoteUnreachable (no answer from a zmq:// exporter in time), which has
RemoteBusy (the exporter answered, but has no receiver slot free), and SourceAuthError has
RemoteAuthError (the CURVE handshake with an exporter failed).

Every class takes one human-readable message: the command line prints it as a single line.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DiskFull",
    "FrameTooLarge",
    "FramebusError",
    "IncompatibleStream",
    "InvalidStreamName",
    "KeyFileError",
    "NoEncodedFrames",
    "PipeFormatError",
    "PlatformError",
    "PublisherLost",
    "PushAuthError",
    "PushError",
    "PushRefused",
    "PushUnreachable",
    "ReadTimeout",
    "RecordError",
    "RemoteAuthError",
    "RemoteBusy",
    "RemoteUnreachable",
    "SharedMemoryFull",
    "SinkClosed",
    "SourceAuthError",
    "SourceError",
    "SourceNotFound",
    "SourceOpenError",
    "SourceUnreachable",
    "SourceUnsupported",
    "StreamEnded",
    "StreamExists",
    "StreamNotFound",
    "TooManyReaders",
    "WireFormatError",
    "WriteTimeout",
    "error_class",
    "error_code",
]


class FramebusError(Exception):
    """Base class of every error framebus raises on purpose."""


class InvalidStreamName(FramebusError, ValueError):
    """A stream name that is not 1-48 characters of ``[A-Za-z0-9_-]`` starting alphanumeric."""


class StreamNotFound(FramebusError, LookupError):
    """No live publisher serves this stream name."""


class StreamExists(FramebusError):
    """A live publisher already serves this stream name."""


class TooManyReaders(FramebusError):
    """Every reader record of the stream is taken (raise ``max_readers`` when publishing)."""


class IncompatibleStream(FramebusError):
    """The shared-memory segment is not a framebus stream of this layout version."""


class WireFormatError(FramebusError, ValueError):
    """Bytes that are not a valid framebus frame message (bad magic, version, field or length)."""


class PipeFormatError(FramebusError, ValueError):
    """A byte stream read from a pipe (framebus frames, y4m, MJPEG) that is truncated, holds
    garbage, or uses something framebus cannot read. The one-line message names the byte offset
    in the stream and what was expected there."""


class SourceError(FramebusError):
    """The frame source cannot deliver frames."""


class SourceNotFound(SourceError, FileNotFoundError):
    """The source does not exist (a missing file, a camera index with no device)."""


class SourceUnreachable(SourceError, ConnectionError):
    """The source's server cannot be reached: refused, unreachable, or silent."""


class SourceAuthError(SourceError, PermissionError):
    """The source's server refused the credentials (wrong or missing user name or password)."""


class SourceOpenError(SourceError):
    """The source exists but cannot be opened or decoded."""


class SourceUnsupported(SourceOpenError):
    """The source uses a codec, RTP packetization or RTSP dialect the chosen backend lacks
    (the automatic backend choice then falls back to FFmpeg). Another attempt would meet it
    again: a stream is not reconnected after one."""


class FrameTooLarge(SourceUnsupported):
    """A frame whose declared size (a JPEG's, a video stream's, a wire header's) is over the
    decoded-size budget: refused before anything is decoded or allocated, so a few hundred
    bytes claiming 16384x16384 pixels cannot cost gigabytes. The budget:
    :func:`framebus.limits.max_pixels` (``FRAMEBUS_MAX_PIXELS``)."""


class SharedMemoryFull(FramebusError, MemoryError):
    """There is not enough free shared memory (``/dev/shm``) for the ring."""


class PublisherLost(FramebusError):
    """The publisher of an attached stream died without closing it."""


class StreamEnded(FramebusError):
    """The stream ended and this reader has received every frame it will get."""


class NoEncodedFrames(FramebusError, LookupError):
    """The stream has no encoded frames beside its decoded ones: its source does not hand them
    out (framebus's RTSP client does; files, cameras and written streams do not)."""


class ReadTimeout(FramebusError, TimeoutError):
    """No new frame arrived within the timeout given to a read."""


class WriteTimeout(FramebusError, TimeoutError):
    """An every-mode :class:`~framebus.VideoWriter` found no free slot within the timeout given
    to ``write()``: a reader has not taken the frames before (or no reader has attached yet)."""


class SinkClosed(FramebusError):
    """The sink or the subscription was closed: no more items will come."""


class PlatformError(FramebusError, OSError):
    """The operating system lacks something framebus needs."""


class PushError(FramebusError):
    """A push to a media server cannot go on (it retries unless told not to)."""


class PushUnreachable(PushError, ConnectionError):
    """The media server refused the connection, did not answer in time, or dropped it."""


class PushAuthError(PushError, PermissionError):
    """The media server refused the push's credentials (401/403)."""


class PushRefused(PushError):
    """The media server refused the stream: an error status, no transport framebus can send
    over, or bytes that are not RTSP."""


class RecordError(FramebusError, OSError):
    """A recording cannot go on: its directory cannot be written."""


class DiskFull(RecordError):
    """The recording's disk (or quota) is full: recording stopped, the files written are whole."""


class ConfigError(FramebusError, ValueError):
    """A config file (``framebus serve --config``) is unreadable, not TOML, or has a key that is
    unknown or has a bad value; the message names the file and the key."""


class KeyFileError(FramebusError, ValueError):
    """A CURVE key file or key directory is missing, unreadable or holds no key."""


class RemoteUnreachable(SourceUnreachable):
    """A ``zmq://`` exporter did not answer in time: wrong host, closed port, firewall."""


class RemoteBusy(RemoteUnreachable):
    """A ``zmq://`` exporter answered ``busy``: it serves its maximum of receivers, or of
    receivers from this address. A slot may free up: retrying later can work."""


class RemoteAuthError(SourceAuthError):
    """The CURVE handshake with a ``zmq://`` exporter failed (wrong, missing or unwanted key)."""


# Codes for the errors a capture process reports through the stream header.
_CODES: dict[int, type[FramebusError]] = {
    1: SourceNotFound,
    2: SourceOpenError,
    3: SharedMemoryFull,
    4: SourceError,
    5: SourceUnreachable,
    6: SourceAuthError,
    7: SourceUnsupported,
    8: PublisherLost,  # a capture that outlived its publisher ended the stream for it
    9: PipeFormatError,  # standard input (``-``) that is not framebus frames, y4m or MJPEG
    10: FrameTooLarge,
}


def error_code(exc: BaseException) -> int:
    """The header code of ``exc`` (the most specific known class)."""
    specific = sorted(_CODES.items(), key=lambda kv: -len(kv[1].__mro__))
    for code, cls in specific:
        if isinstance(exc, cls):
            return code
    return 4


def error_class(code: int) -> type[FramebusError]:
    return _CODES.get(code, SourceError)
