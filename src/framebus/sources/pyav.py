"""PyAV (FFmpeg's demuxers and decoders) as a source, and the mapping of its errors."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._h264 import is_keyframe
from ..errors import (
    FrameTooLarge,
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceUnreachable,
    SourceUnsupported,
)
from ..limits import check_pixels
from ._ffmpeg import decoder_threads, ffmpeg_options
from ._net import refused
from .base import Source
from .spec import Media

__all__ = ["PyAVSource", "av_error", "import_av"]

# FFmpeg's decoder names of the codecs whose access units a live stream hands out
_PASSED_ON = {"h264": "H264", "hevc": "H265"}


class PyAVSource(Source):
    """PyAV (FFmpeg's demuxers and decoders): slice threading for live streams, clean shutdown."""

    backend_name = "PYAV"

    def __init__(self, media: Media) -> None:
        self.media = media
        self.label = media.label
        self.live = media.is_live
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._stream: Any = None
        self._pending: Any = None  # the frame a seek decoded up to, returned by the next read
        self._count: int | None = None
        self._media: float | None = None
        self._codec: str | None = None  # of the access units handed out (live H.264/H.265)

    def open(self) -> None:
        av = import_av()
        m = self.media
        t0 = time.monotonic()
        try:
            container = av.open(
                m.target if isinstance(m.target, str) else f"/dev/video{m.target}",
                options=ffmpeg_options(m),
                timeout=(m.open_timeout, m.read_timeout),
            )
        except Exception as exc:
            raise av_error(exc, m, time.monotonic() - t0) from None
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"cannot open {m.label}: it has no video stream")
        stream = container.streams.video[0]
        try:  # the decoded-size budget, from the codec parameters, before a frame is decoded
            ctx = stream.codec_context
            check_pixels(int(ctx.width or 0), int(ctx.height or 0), f"{m.label}: its frames")
        except FrameTooLarge:
            container.close()
            raise
        threads = decoder_threads(m)
        if m.is_live:
            stream.thread_type = "SLICE"  # frame threading adds a frame of delay per thread
        if threads is not None:
            stream.codec_context.thread_count = threads
        rate = stream.average_rate or stream.base_rate
        self.fps = float(rate) if rate else None
        self._count = stream.frames or None if not m.is_live else None
        self._container = container
        self._stream = stream
        self._codec = _PASSED_ON.get(stream.codec_context.name) if m.is_live else None
        self._frames = self._decode()
        self.seekable = not m.is_live and self.fps is not None

    def seek(self, frame: int) -> int | None:
        """To the keyframe before ``frame - 1``, then decode up to ``frame`` (found by its
        presentation time, as OpenCV does): exact for constant-rate files. The media time is
        then the frame before's, which cv2 reports after a seek."""
        if not self.seekable or self.fps is None:
            return None
        frame = max(frame, 0) if self._count is None else min(max(frame, 0), self._count)
        stream, fps = self._stream, self.fps
        start, tb = stream.start_time or 0, stream.time_base
        before = max(frame - 1, 0)
        self._container.seek(start + int(before / fps / tb), stream=stream, backward=True)
        self._frames = self._decode()
        self._pending = previous = None
        try:
            for decoded in self._frames:
                if decoded.pts is None or round((decoded.pts - start) * tb * fps) >= frame:
                    self._pending = decoded
                    break
                previous = decoded
        except Exception:  # a damaged file: reading on from here ends it
            return None
        self._media = self._seconds(previous.pts) if previous is not None else None
        if frame == 0:
            self._media = 0.0
        return frame

    @property
    def frame_count(self) -> int | None:
        return self._count

    def encoded_codec(self) -> str | None:
        """A live H.264 or H.265 stream's access units are handed out (``access_units``) as
        they are demuxed, before they are decoded."""
        return self._codec

    def _decode(self) -> Iterator[Any]:
        """The stream's frames: ``container.decode`` where nobody takes the access units, else
        a demux loop that hands each one out (Annex-B, parameter sets before keyframes) as it
        is decoded."""
        container, stream = self._container, self._stream
        if self._codec is None:
            yield from container.decode(stream)
            return
        from av.bitstream import BitStreamFilterContext

        name = "h264_mp4toannexb" if self._codec == "H264" else "hevc_mp4toannexb"
        annexb = BitStreamFilterContext(name, stream)  # length-prefixed NAL units → Annex-B
        extra = bytes(stream.codec_context.extradata or b"")
        params = extra if extra.startswith((b"\0\0\1", b"\0\0\0\1")) else b""
        for packet in container.demux(stream):
            frames = packet.decode()  # first: the filter takes the packet's data over
            listener = self.access_units
            if listener is not None and packet.size:
                for out in annexb.filter(packet):
                    data = bytes(out)
                    key = bool(out.is_keyframe)
                    if key and params and self._codec == "H264" and not is_keyframe(data):
                        data = params + data  # the parameter sets only the SDP carried
                    listener(data, key)
            yield from frames

    def read(self) -> np.ndarray | None:
        assert self._frames is not None
        frame, self._pending = self._pending, None
        try:
            if frame is None:
                frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as exc:
            if not self.live:
                return None
            raise av_error(exc, self.media) from None
        self._media = self._seconds(frame.pts)
        arr: np.ndarray = frame.to_ndarray(format="bgr24")
        return arr

    def _seconds(self, pts: int | None) -> float | None:
        """A presentation time in seconds from the stream's start, as OpenCV computes it."""
        if pts is None or self._stream is None:
            return None
        return float((pts - (self._stream.start_time or 0)) * self._stream.time_base)

    def frame_media_time(self) -> float | None:
        return self._media

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None
            self._stream = self._pending = None


def import_av() -> Any:
    try:
        import av
    except ImportError:
        raise SourceOpenError("this backend needs PyAV: pip install av") from None
    av.logging.set_level(None)  # PyAV's log callback can deadlock; and logs may hold URLs
    return av


def av_error(exc: BaseException, media: Media, waited: float = 0.0) -> SourceError:
    """Map a PyAV exception to framebus's error for the user's mistake (URL redacted).

    ``waited``: how long the failed call took; FFmpeg reports a server that never answers
    as invalid data once its timeout has run out.
    """
    name = type(exc).__name__
    label = media.label
    if media.is_url and waited >= media.open_timeout * 0.9:
        return SourceUnreachable(f"{label}: no answer within {media.open_timeout:g} s")
    if name in ("HTTPUnauthorizedError", "HTTPForbiddenError"):
        return SourceAuthError(
            f"{label}: the server refused the credentials (wrong user name or password?)"
        )
    if name == "HTTPNotFoundError" or (isinstance(exc, OSError) and exc.errno == errno.ENOENT):
        where = "the server has no stream at this path" if media.is_url else "no such file"
        return SourceNotFound(f"{label}: {where}")
    if isinstance(exc, ConnectionRefusedError):
        return refused(label)
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT, errno.EAGAIN)
    ):
        return SourceUnreachable(f"{label}: no answer within {media.open_timeout:g} s")
    if isinstance(exc, OSError) and exc.errno == errno.EPROTONOSUPPORT and media.is_url:
        # FFmpeg's RTSP demuxer: every transport allowed was answered 461 Unsupported Transport
        allowed = ffmpeg_options(media).get("rtsp_transport", "")
        return SourceUnsupported(
            f"{label}: the server refused the RTP transport (rtsp_transport={allowed})"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return SourceUnreachable(f"{label}: host unreachable")
    if name in ("InvalidDataError", "DecoderNotFoundError", "PatchWelcomeError"):
        return SourceOpenError(f"{label}: not a video, or an unsupported format or codec")
    return SourceOpenError(f"{label}: cannot open ({name})")
