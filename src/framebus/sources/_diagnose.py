"""Why a source could not be opened: the most specific error that can be found out."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

from ..errors import (
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceUnreachable,
)
from ._ffmpeg import ffmpeg_options
from ._net import connect
from .pyav import av_error, import_av
from .spec import Media

__all__ = ["diagnose"]

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}


def diagnose(media: Media) -> SourceError:
    """Why ``media`` could not be opened: the most specific error we can find out."""
    label = media.label
    if isinstance(media.target, int):
        return SourceOpenError(f"cannot open {label}: busy, or not a video capture device")
    if not media.is_url:
        if not os.path.exists(media.target):
            return SourceNotFound(f"no such file: {media.target}")
        return SourceOpenError(f"cannot open {label}: not a video, or an unsupported format")
    try:
        parts = urlsplit(media.target)
        host = parts.hostname or ""
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:  # to_spec() refuses such URLs; its text may hold credentials
        return SourceOpenError(f"cannot open {label}: the URL cannot be parsed")
    if host and port:
        try:
            connect(host, port, media.open_timeout, label).close()
        except SourceUnreachable as exc:
            return exc
    try:
        av = import_av()
    except SourceOpenError:
        return SourceOpenError(
            f"cannot open {label}: the server answers but the stream cannot be opened (wrong "
            "path or credentials?); install PyAV (pip install av) for a precise diagnosis"
        )
    t0 = time.monotonic()
    try:
        av.open(
            media.target,
            options=ffmpeg_options(media),
            timeout=(media.open_timeout, media.read_timeout),
        ).close()
    except Exception as exc:
        return av_error(exc, media, time.monotonic() - t0)
    return SourceOpenError(f"cannot open {label} with OpenCV (PyAV can: try backend='av')")
