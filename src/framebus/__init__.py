"""framebus: capture once, fresh frames everywhere.

A drop-in ``VideoCapture`` whose capture runs in its own process and whose ``read()`` returns
the newest frame from a shared-memory ring, and named streams any process can attach to.
"""

from __future__ import annotations

from . import pipe
from .capture import Reconnect
from .errors import (
    FramebusError,
    IncompatibleStream,
    InvalidStreamName,
    PipeFormatError,
    PlatformError,
    PublisherLost,
    ReadTimeout,
    SharedMemoryFull,
    SinkClosed,
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceUnreachable,
    SourceUnsupported,
    StreamEnded,
    StreamExists,
    StreamNotFound,
    TooManyReaders,
    WireFormatError,
)
from .publisher import Publisher, StreamOptions, publish
from .reader import StreamReader, attach
from .registry import list_streams, prune
from .sources import Media, Source, TestPattern
from .stats import FrameInfo, StreamStats
from .videocapture import VideoCapture

__version__ = "0.1.0"

__all__ = [
    "FrameInfo",
    "FramebusError",
    "IncompatibleStream",
    "InvalidStreamName",
    "Media",
    "PipeFormatError",
    "PlatformError",
    "Publisher",
    "PublisherLost",
    "ReadTimeout",
    "Reconnect",
    "SharedMemoryFull",
    "SinkClosed",
    "Source",
    "SourceAuthError",
    "SourceError",
    "SourceNotFound",
    "SourceOpenError",
    "SourceUnreachable",
    "SourceUnsupported",
    "StreamEnded",
    "StreamExists",
    "StreamNotFound",
    "StreamOptions",
    "StreamReader",
    "StreamStats",
    "TestPattern",
    "TooManyReaders",
    "VideoCapture",
    "WireFormatError",
    "__version__",
    "attach",
    "list_streams",
    "pipe",
    "prune",
    "publish",
]
