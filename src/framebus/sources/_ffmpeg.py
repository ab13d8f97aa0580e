"""FFmpeg settings shared by every backend: low-latency defaults for live sources (design
notes, section 4): RTP over TCP for RTSP when the server takes it (UDP when it refuses TCP), no
input buffering, low-delay decoding, one decoder thread (FFmpeg's frame threading delays every
frame by one frame interval per extra thread)."""

from __future__ import annotations

import dataclasses

from .spec import Media

__all__ = ["RTSP_DEFAULTS", "decoder_threads", "ffmpeg_options", "over_udp"]

# FFmpeg's RTSP demuxer sends SETUP over TCP first (prefer_tcp) and, if the server answers 461
# Unsupported Transport, over UDP; never multicast. OpenCV's own default is prefer_tcp too, which
# setting OPENCV_FFMPEG_CAPTURE_OPTIONS replaces. (A bare rtsp_transport=tcp cannot read a
# UDP-only server; with neither option FFmpeg tries UDP first.)
RTSP_DEFAULTS = {"rtsp_transport": "tcp+udp", "rtsp_flags": "prefer_tcp"}


def ffmpeg_options(media: Media) -> dict[str, str]:
    """FFmpeg demuxer options: low-latency defaults for live URLs, then the user's own."""
    opts: dict[str, str] = {}
    if media.is_live and isinstance(media.target, str) and "://" in media.target:
        if media.target.lower().startswith("rtsp"):
            opts.update(RTSP_DEFAULTS)
        opts["fflags"] = "nobuffer"
        opts["flags"] = "low_delay"
    opts.update({str(k): str(v) for k, v in (media.ffmpeg_options or {}).items()})
    return opts


def over_udp(media: Media) -> Media:
    """``media`` with FFmpeg asking for RTP over UDP at once, unless the user chose a transport:
    for a server known to refuse TCP (FFmpeg's prefer_tcp retries over UDP after a 461 only, not
    after the 400 some cameras answer, nor after a SETUP reply that names UDP)."""
    user = {str(k): str(v) for k, v in (media.ffmpeg_options or {}).items()}
    return dataclasses.replace(media, ffmpeg_options={"rtsp_transport": "udp", **user})


def decoder_threads(media: Media) -> int | None:
    if media.decoder_threads is not None:
        return media.decoder_threads
    return 1 if media.is_live else None
