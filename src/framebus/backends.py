"""Old home of the decoding backends (until 0.1); they live in :mod:`framebus.sources` now.

Kept for one release so that imports of ``framebus.backends`` keep working.
"""

from __future__ import annotations

from .sources._diagnose import diagnose
from .sources._ffmpeg import ffmpeg_options
from .sources._open import av_available, make_media_source
from .sources.opencv import OpenCVSource
from .sources.pyav import PyAVSource
from .sources.rtsp import RTSPSource

__all__ = [
    "OpenCVSource",
    "PyAVSource",
    "RTSPSource",
    "av_available",
    "diagnose",
    "ffmpeg_options",
    "make_media_source",
]
