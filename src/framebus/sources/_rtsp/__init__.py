"""framebus's own RTSP client: protocol (no I/O), depacketization (no I/O), and the socket client.

Why framebus speaks RTSP itself: FFmpeg's RTSP demuxer (behind OpenCV and PyAV) passes H.264 and
H.265 through a parser that finds the end of a frame only when the *next* frame begins, so every
frame waits one frame interval (40 ms at 25 fps) before it can be decoded. RTP marks the last
packet of each frame with the marker bit (RFC 6184 and 7798); assembling access units here lets a
frame be decoded the moment its last packet arrives.
"""

from __future__ import annotations

from ..._rtsp import (
    Interleaved,
    MessageParser,
    Response,
    ServerRequest,
    VideoMedia,
    authorization,
    control_url,
    format_request,
    interleaved_channel,
    parse_sdp,
    parse_session,
    small_number,
    split_credentials,
)
from .client import RTSPClient
from .depacketize import MAX_ACCESS_UNIT, MAX_NALS, START_CODE, Depacketizer, RtpPacket, parse_rtp

__all__ = [
    "MAX_ACCESS_UNIT",
    "MAX_NALS",
    "START_CODE",
    "Depacketizer",
    "Interleaved",
    "MessageParser",
    "RTSPClient",
    "Response",
    "RtpPacket",
    "ServerRequest",
    "VideoMedia",
    "authorization",
    "control_url",
    "format_request",
    "interleaved_channel",
    "parse_rtp",
    "parse_sdp",
    "parse_session",
    "small_number",
    "split_credentials",
]
