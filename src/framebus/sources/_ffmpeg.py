"""FFmpeg settings shared by every backend: low-latency defaults for live sources (design
notes, section 4): TCP for RTSP, no input buffering, low-delay decoding, one decoder thread
(FFmpeg's frame threading delays every frame by one frame interval per extra thread)."""

from __future__ import annotations

from .spec import Media

__all__ = ["decoder_threads", "ffmpeg_options"]


def ffmpeg_options(media: Media) -> dict[str, str]:
    """FFmpeg demuxer options: low-latency defaults for live URLs, then the user's own."""
    opts: dict[str, str] = {}
    if media.is_live and isinstance(media.target, str) and "://" in media.target:
        if media.target.lower().startswith("rtsp"):
            opts["rtsp_transport"] = "tcp"
        opts["fflags"] = "nobuffer"
        opts["flags"] = "low_delay"
    opts.update({str(k): str(v) for k, v in (media.ffmpeg_options or {}).items()})
    return opts


def decoder_threads(media: Media) -> int | None:
    if media.decoder_threads is not None:
        return media.decoder_threads
    return 1 if media.is_live else None
