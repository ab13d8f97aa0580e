"""framebus's own RTSP client with PyAV's decoder as a source (see :mod:`._rtsp`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._frames import bgr24
from ..errors import (
    SourceError,
    SourceOpenError,
    SourceUnsupported,
)
from ._ffmpeg import decoder_threads, over_udp
from ._rtsp import MAX_ACCESS_UNIT, Depacketizer, RTSPClient
from ._rtsp.clock import CameraClock
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
    codec, a server that will not send RTP over TCP: a :class:`~framebus.SourceUnsupported`)
    is opened with the fallback instead, also when that shows only while playing (an RTP
    packetization this client lacks): the fallback then takes over in place. An OpenCV
    fallback asks a server that refused TCP for RTP over UDP at once. A server that breaks the
    protocol is no reason to try FFmpeg (it would get the same bytes, for its whole timeout):
    that fails with this client's own error.

    Without a fallback (``backend="rtsp"``) a SourceUnsupported is raised as it is; the
    supervisor does not reconnect after one (another attempt would meet the same stream).
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
        self.backend_name = "FRAMEBUS_RTSP"
        self._fallback = fallback
        self._delegate: Source | None = None
        self._switched_for = ""  # why the fallback took over while playing
        self._delegate_frames = 0
        self._client: RTSPClient | None = None
        self._depack: Depacketizer | None = None
        self._decoder: Any = None
        self._av: Any = None
        self._pending: list[Any] = []
        self._errors = 0
        self._codec: str | None = None  # once open with this client (not the fallback)
        self._clock: CameraClock | None = None  # the camera's, from its RTCP sender reports
        self._arrivals: dict[int, tuple[int, float]] = {}  # decoder pts -> (RTP time, arrival)
        self._pts = 0
        self._time: tuple[int, tuple[str, int | None, int | None]] | None = None

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
                raise self._unsupported(str(exc)) from None
            log.info("%s; opening it with FFmpeg instead", exc)
            if client.tcp_refused and isinstance(self._fallback, OpenCVSource):
                # known to refuse TCP: FFmpeg asks for UDP at once (asking for TCP first, it
                # takes only a 461 for an answer, not a 400 or a UDP reply)
                self._fallback = OpenCVSource(over_udp(self._fallback.media))
            self._take_over(client, str(exc))
            return
        except BaseException:
            client.close()
            raise
        decoder.flags |= av.codec.context.Flags.low_delay
        threads = decoder_threads(m) or 1
        decoder.thread_type = "SLICE"  # frame threading adds a frame of delay per thread
        decoder.thread_count = threads
        self._client, self._decoder = client, decoder
        self._codec = media.codec
        self._clock = CameraClock(media.clock_rate)
        self.fps = media.framerate

    def encoded_codec(self) -> str | None:
        """The codec of the access units this client assembles (none once FFmpeg took over)."""
        return self._codec if self._delegate is None else None

    def _unsupported(self, reason: str) -> SourceUnsupported:
        return SourceUnsupported(f"{reason} (backend 'opencv' or 'av' may open it)")

    def _take_over(self, client: RTSPClient, reason: str) -> None:
        """Open the fallback, then close ``client``: our connection stays up until FFmpeg's
        is (a server that prepared the stream for our DESCRIBE may tear it down when we leave,
        while FFmpeg asks for it; seen with GStreamer's server: about one open in six failed).
        If the fallback fails too, its error says what this client found; after a switch while
        playing it is a SourceUnsupported (FFmpeg lacks what this client lacks: for good)."""
        assert self._fallback is not None
        said = reason.removeprefix(f"{self.label}: ")
        self._delegate = self._fallback  # (closed by close(), whatever happens)
        try:
            self._delegate.open()
        except SourceError as exc:
            if self._switched_for:
                raise SourceUnsupported(
                    f"{reason}, and FFmpeg cannot open it either ({exc})"
                ) from None
            raise type(exc)(f"{exc} (framebus's RTSP client: {said})") from None
        finally:
            client.close()
        self.fps, self.live = self._delegate.fps, self._delegate.live
        self.backend_name = self._delegate.backend_name  # the capture loop reports the switch

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        if self._delegate is not None:
            return self._read_delegate(out)
        av, client, depack, decoder = self._av, self._client, self._depack, self._decoder
        assert client is not None and depack is not None
        clock = self._clock
        assert clock is not None
        while not self._pending:
            try:
                units = depack.push_units(client.read_packet())
            except SourceUnsupported as exc:  # a packetization only seen while playing
                return self._switch(f"{self.label}: {exc}", out)
            while client.reports:
                report = client.reports.popleft()
                clock.report(report.wall, report.rtp)
            listener = self.access_units
            for unit, key, rtp in units:
                if listener is not None:
                    listener(unit, key)
                packet = av.Packet(unit)
                self._pts += 1
                packet.pts = self._pts  # (the decoder hands it to the frame: its times below)
                self._arrivals[self._pts] = (rtp, client.arrival)
                if len(self._arrivals) > 64:  # (a unit the decoder dropped leaves its entry)
                    del self._arrivals[next(iter(self._arrivals))]
                try:
                    self._pending += decoder.decode(packet)
                    self._errors = 0
                except av.error.FFmpegError as exc:
                    self._errors += 1
                    if self._errors >= 50:
                        raise SourceOpenError(f"{self.label}: cannot decode the stream") from exc
            if depack.oversized_streak >= self.MAX_OVERSIZED:
                raise SourceOpenError(
                    f"{self.label}: the server sends frames over {MAX_ACCESS_UNIT} bytes"
                )
        frame = self._pending.pop(0)
        self._time = None
        got = self._arrivals.pop(frame.pts, None) if frame.pts is not None else None
        if got is not None:
            taken, kind = clock.frame(*got)
            self._time = round(taken * 1e9), (kind, _ns(clock.offset), _ns(clock.jitter))
        return to_bgr(frame, out)

    def frame_time_ns(self) -> int | None:
        """The camera's capture time of the frame last read when its RTCP sender reports
        are trusted; else None (the capture stamps it as it has it, after decoding)."""
        if self._delegate is not None or self._time is None or self._time[1][0] != "camera":
            return None
        return self._time[0]

    def frame_clock(self) -> tuple[str, int | None, int | None] | None:
        if self._delegate is not None or self._time is None:
            return None
        return self._time[1]

    def _switch(self, reason: str, out: np.ndarray | None) -> np.ndarray | None:
        """What this client cannot read turned up while playing: the fallback takes over
        here (a reconnect would be a fresh capture process that meets it again), or, with
        none, the stream fails for good."""
        if self._fallback is None:
            raise self._unsupported(reason)
        log.warning("%s; reading it with FFmpeg from now on", reason)
        client, self._client = self._client, None
        assert client is not None
        self._depack = self._decoder = None
        self._codec = None  # FFmpeg hands out no access units
        self._switched_for = reason
        self._take_over(client, reason)
        return self._read_delegate(out)

    def _read_delegate(self, out: np.ndarray | None) -> np.ndarray | None:
        assert self._delegate is not None
        frame = self._delegate.read_into(out)
        if frame is None and self._switched_for and not self._delegate_frames:
            # FFmpeg lacks it too (it has no STAP-B, MTAP or FU-B either): for good
            raise SourceUnsupported(f"{self._switched_for}, and FFmpeg read no frame of it")
        self._delegate_frames += frame is not None
        return frame

    def close(self) -> None:
        if self._delegate is not None:
            self._delegate.close()
            self._delegate = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._decoder = None
        self._pending = []


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def to_bgr(frame: Any, out: np.ndarray | None) -> np.ndarray:
    """A decoded frame as BGR (:func:`framebus._frames.bgr24`), copied into ``out`` when it
    fits."""
    view = bgr24(frame)
    if out is not None and out.shape == view.shape and out.dtype == np.uint8:
        np.copyto(out, view)
        return out
    return view
