"""framebus's own RTSP client with PyAV's decoder as a source (see :mod:`._rtsp`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import (
    SourceOpenError,
    SourceUnsupported,
)
from ._ffmpeg import decoder_threads, over_udp
from ._rtsp import MAX_ACCESS_UNIT, Depacketizer, RTSPClient
from .base import Source
from .opencv import OpenCVSource
from .pyav import import_av
from .spec import Media

__all__ = ["RTSPSource"]

log = logging.getLogger("framebus.capture")


class RTSPSource(Source):
    """framebus's own RTSP client with PyAV's decoder: a frame is decoded the moment its last
    RTP packet arrives, one frame interval sooner than through FFmpeg's RTSP demuxer (see
    :mod:`framebus.sources._rtsp`). H.264 and H.265 over RTP/TCP.

    With a ``fallback`` (the automatic backend choice), a stream it cannot handle (another
    codec, a server that will not send RTP over TCP) is opened with the fallback instead; an
    OpenCV fallback then asks a server that refused TCP for RTP over UDP.
    """

    # Frames over MAX_ACCESS_UNIT are dropped as they come (the depacketizer never holds more);
    # this many in a row with no frame between them is a server this client cannot take: fail,
    # rather than stay live with no frames when reconnecting is off.
    MAX_OVERSIZED = 100

    def __init__(self, media: Media, fallback: Source | None = None) -> None:
        self.media = media
        self.label = media.label
        self.live = True
        self.fps: float | None = None
        self._fallback = fallback
        self._delegate: Source | None = None
        self._client: RTSPClient | None = None
        self._depack: Depacketizer | None = None
        self._decoder: Any = None
        self._av: Any = None
        self._pending: list[Any] = []
        self._errors = 0

    def open(self) -> None:
        av = self._av = import_av()
        m = self.media
        assert isinstance(m.target, str)
        client = RTSPClient(
            m.target, m.label, open_timeout=m.open_timeout, read_timeout=m.read_timeout
        )
        try:
            media = client.open()
            self._depack = Depacketizer(media.codec, media.parameter_sets())
            decoder = av.CodecContext.create("hevc" if media.codec == "H265" else "h264", "r")
        except SourceUnsupported as exc:
            if self._fallback is None:
                client.close()
                raise SourceUnsupported(f"{exc} (backend 'opencv' or 'av' may open it)") from None
            log.info("%s; opening it with FFmpeg instead", exc)
            if client.tcp_refused and isinstance(self._fallback, OpenCVSource):
                # known to refuse TCP: FFmpeg asks for UDP at once (asking for TCP first, it
                # takes only a 461 for an answer, not a 400 or a UDP reply)
                self._fallback = OpenCVSource(over_udp(self._fallback.media))
            try:
                # our connection stays up until FFmpeg's is: a server that prepared the stream
                # for our DESCRIBE may tear it down when we leave, while FFmpeg asks for it
                # (seen with GStreamer's server: about one open in six failed)
                self._delegate = self._fallback
                self._delegate.open()
            finally:
                client.close()
            self.fps, self.live = self._delegate.fps, self._delegate.live
            return
        except BaseException:
            client.close()
            raise
        decoder.flags |= av.codec.context.Flags.low_delay
        threads = decoder_threads(m) or 1
        decoder.thread_type = "SLICE"  # frame threading adds a frame of delay per thread
        decoder.thread_count = threads
        self._client, self._decoder = client, decoder
        self.fps = media.framerate

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        if self._delegate is not None:
            return self._delegate.read_into(out)
        av, client, depack, decoder = self._av, self._client, self._depack, self._decoder
        assert client is not None and depack is not None
        while not self._pending:
            for unit in depack.push(client.read_packet()):
                try:
                    self._pending += decoder.decode(av.Packet(unit))
                    self._errors = 0
                except av.error.FFmpegError as exc:
                    self._errors += 1
                    if self._errors >= 50:
                        raise SourceOpenError(f"{self.label}: cannot decode the stream") from exc
            if depack.oversized_streak >= self.MAX_OVERSIZED:
                raise SourceOpenError(
                    f"{self.label}: the server sends frames over {MAX_ACCESS_UNIT} bytes"
                )
        return to_bgr(self._pending.pop(0), out)

    def close(self) -> None:
        if self._delegate is not None:
            self._delegate.close()
            self._delegate = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._decoder = None
        self._pending = []


def to_bgr(frame: Any, out: np.ndarray | None) -> np.ndarray:
    """A decoded frame as BGR, converted straight into ``out`` when it fits."""
    import cv2

    shape = (frame.height, frame.width, 3)
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0:
        yuv = frame.to_ndarray()  # planar I420, (h * 3/2, w)
        if out is not None and out.shape == shape and out.dtype == np.uint8:
            cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420, dst=out)
            return out
        converted: np.ndarray = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
        return converted
    bgr: np.ndarray = frame.to_ndarray(format="bgr24")
    return bgr
