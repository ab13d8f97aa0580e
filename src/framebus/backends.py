"""Decoding backends for cameras, files and URLs: OpenCV's FFmpeg/V4L2 capture and PyAV.

Both open live sources with low-latency settings by default (design notes, section 4):
TCP for RTSP, no input buffering, low-delay decoding, and one decoder thread (FFmpeg's frame
threading delays every frame by one frame interval per extra thread). Both use open and read
timeouts. When a source cannot be opened, :func:`diagnose` tells the user why, specifically.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ._rtsp import MAX_ACCESS_UNIT, Depacketizer
from ._rtsp_client import RTSPClient
from .errors import (
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceOpenError,
    SourceUnreachable,
    SourceUnsupported,
)
from .sources import Media, Source

__all__ = [
    "OpenCVSource",
    "PyAVSource",
    "RTSPSource",
    "av_available",
    "diagnose",
    "ffmpeg_options",
    "make_media_source",
]

log = logging.getLogger("framebus.capture")

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}


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


def _decoder_threads(media: Media) -> int | None:
    if media.decoder_threads is not None:
        return media.decoder_threads
    return 1 if media.is_live else None


def make_media_source(media: Media) -> Source:
    """The source object for ``media``'s backend (see :meth:`Media.resolved_backend`)."""
    backend = media.resolved_backend(av_available())
    if backend == "rtsp":
        fallback = None if media.backend == "rtsp" else OpenCVSource(media)
        return RTSPSource(media, fallback)
    if backend == "av":
        return PyAVSource(media)
    return OpenCVSource(media)


def av_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class OpenCVSource(Source):
    """``cv2.VideoCapture`` (FFmpeg for files and URLs, V4L2 for camera indexes)."""

    def __init__(self, media: Media) -> None:
        self.media = media
        self.label = media.label
        self.live = media.is_live
        self._cap: Any = None
        self._count: int | None = None

    def open(self) -> None:
        import cv2

        m = self.media
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(m.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(m.read_timeout * 1000),
        ]
        threads = _decoder_threads(m)
        if threads is not None:
            params += [cv2.CAP_PROP_N_THREADS, threads]
        params += list(m.cv2_params)
        if isinstance(m.target, int):
            cap = cv2.VideoCapture(m.target, cv2.CAP_V4L2, params)
        else:
            # process-global and read at open(): safe, the capture process is ours alone
            opts = ffmpeg_options(m)
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(
                f"{k};{v}" for k, v in opts.items()
            )
            cap = cv2.VideoCapture(m.target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise diagnose(m)
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._count = count if count > 0 and not self.live else None

    @property
    def frame_count(self) -> int | None:
        return self._count

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        # decodes straight into the shared slot when the size is unchanged
        ok, frame = self._cap.read(out) if out is not None else self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PyAVSource(Source):
    """PyAV (FFmpeg's demuxers and decoders): slice threading for live streams, clean shutdown."""

    def __init__(self, media: Media) -> None:
        self.media = media
        self.label = media.label
        self.live = media.is_live
        self._container: Any = None
        self._frames: Iterator[Any] | None = None
        self._count: int | None = None

    def open(self) -> None:
        av = _import_av()
        m = self.media
        t0 = time.monotonic()
        try:
            container = av.open(
                m.target if isinstance(m.target, str) else f"/dev/video{m.target}",
                options=ffmpeg_options(m),
                timeout=(m.open_timeout, m.read_timeout),
            )
        except Exception as exc:
            raise _av_error(exc, m, time.monotonic() - t0) from None
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"cannot open {m.label}: it has no video stream")
        stream = container.streams.video[0]
        threads = _decoder_threads(m)
        if m.is_live:
            stream.thread_type = "SLICE"  # frame threading adds a frame of delay per thread
        if threads is not None:
            stream.codec_context.thread_count = threads
        rate = stream.average_rate or stream.base_rate
        self.fps = float(rate) if rate else None
        self._count = stream.frames or None if not m.is_live else None
        self._container = container
        self._frames = container.decode(stream)

    @property
    def frame_count(self) -> int | None:
        return self._count

    def read(self) -> np.ndarray | None:
        assert self._frames is not None
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as exc:
            if not self.live:
                return None
            raise _av_error(exc, self.media) from None
        arr: np.ndarray = frame.to_ndarray(format="bgr24")
        return arr

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None


class RTSPSource(Source):
    """framebus's own RTSP client with PyAV's decoder: a frame is decoded the moment its last
    RTP packet arrives, one frame interval sooner than through FFmpeg's RTSP demuxer (see
    :mod:`framebus._rtsp`). H.264 and H.265 over RTP/TCP.

    With a ``fallback`` (the automatic backend choice), a stream it cannot handle (another
    codec, a server that will not send RTP over TCP) is opened with the fallback instead.
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
        av = self._av = _import_av()
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
        threads = _decoder_threads(m) or 1
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
        return _to_bgr(self._pending.pop(0), out)

    def close(self) -> None:
        if self._delegate is not None:
            self._delegate.close()
            self._delegate = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._decoder = None
        self._pending = []


def _to_bgr(frame: Any, out: np.ndarray | None) -> np.ndarray:
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


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        raise SourceOpenError("this backend needs PyAV: pip install av") from None
    av.logging.set_level(None)  # PyAV's log callback can deadlock; and logs may hold URLs
    return av


def _av_error(exc: BaseException, media: Media, waited: float = 0.0) -> SourceError:
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
        return SourceUnreachable(
            f"{label}: connection refused (is the server running, is the port right?)"
        )
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT, errno.EAGAIN)
    ):
        return SourceUnreachable(f"{label}: no answer within {media.open_timeout:g} s")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return SourceUnreachable(f"{label}: host unreachable")
    if name in ("InvalidDataError", "DecoderNotFoundError", "PatchWelcomeError"):
        return SourceOpenError(f"{label}: not a video, or an unsupported format or codec")
    return SourceOpenError(f"{label}: cannot open ({name})")


def diagnose(media: Media) -> SourceError:
    """Why ``media`` could not be opened: the most specific error we can find out."""
    label = media.label
    if isinstance(media.target, int):
        return SourceOpenError(f"cannot open {label}: busy, or not a video capture device")
    if not media.is_url:
        if not os.path.exists(media.target):
            return SourceNotFound(f"no such file: {media.target}")
        return SourceOpenError(f"cannot open {label}: not a video, or an unsupported format")
    parts = urlsplit(media.target)
    host = parts.hostname or ""
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return SourceOpenError(f"cannot open {label}: invalid port in the URL")
    if host and port:
        try:
            socket.create_connection((host, port), timeout=media.open_timeout).close()
        except socket.gaierror:
            return SourceUnreachable(f"{label}: unknown host {host!r}")
        except ConnectionRefusedError:
            return SourceUnreachable(
                f"{label}: connection refused (is the server running, is the port right?)"
            )
        except TimeoutError:
            return SourceUnreachable(f"{label}: no answer within {media.open_timeout:g} s")
        except OSError as exc:
            return SourceUnreachable(f"{label}: {os.strerror(exc.errno or 0).lower()}")
    try:
        av = _import_av()
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
        return _av_error(exc, media, time.monotonic() - t0)
    return SourceOpenError(f"cannot open {label} with OpenCV (PyAV can: try backend='av')")
