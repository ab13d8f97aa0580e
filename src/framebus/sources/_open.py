"""Spec -> source object: the one module that knows every backend.

Each backend's module is imported when a spec needs it: a capture process imports the one
it uses (a file's capture has no use for the RTSP client), which keeps its start short.
"""

from __future__ import annotations

import importlib.util

from .base import Source
from .spec import Media, Pipe, Remote, Spec, TestPattern

__all__ = ["av_available", "make_media_source", "open_spec"]


def open_spec(spec: Spec) -> Source:
    """Build the source object for a spec (in the capture process)."""
    if isinstance(spec, TestPattern):
        from .pattern import PatternSource

        return PatternSource(spec)
    if isinstance(spec, Remote):
        from ..net.source import ZmqSource  # pyzmq is an extra: imported only for zmq:// sources

        return ZmqSource(spec)
    if isinstance(spec, Pipe):
        from ..pipe.source import PipeSource

        return PipeSource(spec)
    return make_media_source(spec)


def make_media_source(media: Media) -> Source:
    """The source object for ``media``'s backend (see :meth:`Media.resolved_backend`)."""
    from .opencv import OpenCVSource

    backend = media.resolved_backend(av_available())
    if backend == "rtsp":
        from .rtsp import RTSPSource

        fallback = None if media.backend == "rtsp" else OpenCVSource(media)
        return RTSPSource(media, fallback)
    if backend == "av":
        from .pyav import PyAVSource

        return PyAVSource(media)
    return OpenCVSource(media)


def av_available() -> bool:
    """Whether PyAV is installed, without importing it (0.05-0.2 s: every capture of a file
    asks, and only RTSP URLs need it)."""
    return importlib.util.find_spec("av") is not None
