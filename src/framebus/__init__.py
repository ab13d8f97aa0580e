"""framebus: capture once, fresh frames everywhere.

A drop-in ``VideoCapture`` whose capture runs in its own process and whose ``read()`` returns
the newest frame from a shared-memory ring, and named streams any process can attach to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import limits
from .capture import Reconnect
from .encoded import EncodedFrame, EncodedReader, attach_encoded
from .errors import (
    ConfigError,
    DiskFull,
    FramebusError,
    FrameTooLarge,
    IncompatibleStream,
    InvalidStreamName,
    KeyFileError,
    NoEncodedFrames,
    PipeFormatError,
    PlatformError,
    PublisherLost,
    PushAuthError,
    PushError,
    PushRefused,
    PushUnreachable,
    ReadTimeout,
    RecordError,
    RemoteAuthError,
    RemoteBusy,
    RemoteUnreachable,
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
    WriteTimeout,
)
from .gathering import BatchInfo, Gather, gather
from .publisher import Publisher, StreamOptions, publish
from .reader import RemoteReader, StreamReader, attach
from .registry import list_streams, prune
from .sources import Media, Remote, Source, TestPattern
from .stats import FrameInfo, StreamStats, WriterStats
from .videocapture import VideoCapture
from .writer import VideoWriter

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import pipe
    from .mediaserver import Push, PushStats, push
    from .sampling import SampleSummary, sample


def __getattr__(name: str) -> Any:
    # sampling and the pipe wing are imported when first used: every capture process imports
    # this package, and the sinks would add ~50 ms to each start (the wire format ~20 ms)
    if name in ("sample", "SampleSummary"):
        from . import sampling as module

        return getattr(module, name)
    if name in ("push", "Push", "PushStats"):  # (PyAV and the sinks: not for every capture)
        from . import mediaserver

        return getattr(mediaserver, name)
    if name == "pipe":
        import importlib

        return importlib.import_module(".pipe", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchInfo",
    "ConfigError",
    "DiskFull",
    "EncodedFrame",
    "EncodedReader",
    "FrameInfo",
    "FrameTooLarge",
    "FramebusError",
    "Gather",
    "IncompatibleStream",
    "InvalidStreamName",
    "KeyFileError",
    "Media",
    "NoEncodedFrames",
    "PipeFormatError",
    "PlatformError",
    "Publisher",
    "PublisherLost",
    "Push",
    "PushAuthError",
    "PushError",
    "PushRefused",
    "PushStats",
    "PushUnreachable",
    "Remote",
    "ReadTimeout",
    "Reconnect",
    "RecordError",
    "RemoteAuthError",
    "RemoteBusy",
    "RemoteReader",
    "RemoteUnreachable",
    "SampleSummary",
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
    "VideoWriter",
    "WireFormatError",
    "WriteTimeout",
    "WriterStats",
    "__version__",
    "attach",
    "attach_encoded",
    "gather",
    "limits",
    "list_streams",
    "pipe",
    "prune",
    "publish",
    "push",
    "sample",
]
