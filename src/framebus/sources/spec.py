"""What a stream captures from, as data: typed specs that travel to the capture process as
JSON (never pickle), and the redaction of credentials in URLs."""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, Literal, Union

from .._urls import check_url, redact, redact_text, secrets_of
from ..errors import (
    SourceError,
    SourceNotFound,
    SourceOpenError,
)
from .base import Source

__all__ = [
    "Media",
    "Remote",
    "Pipe",
    "SourceLike",
    "Spec",
    "TestPattern",
    "check_file",
    "check_url",
    "is_test_pattern",
    "redact",
    "redact_text",
    "secrets_of",
    "spec_from_json",
    "spec_to_json",
    "to_spec",
]


@dataclass(frozen=True)
class TestPattern:
    """A synthetic moving pattern: a camera for demos and tests, no hardware needed.

    ``pattern="bars"`` draws moving colour bars with the frame number; ``pattern="counter"``
    fills every byte of frame ``n`` with ``n % 256`` (to check that no frame is ever torn).
    ``fps=None`` produces frames as fast as possible; ``frames=None`` never ends.
    """

    __test__ = False  # not a pytest test class

    width: int = 640
    height: int = 480
    fps: float | None = 30.0
    frames: int | None = None
    pattern: Literal["bars", "counter"] = "bars"

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"TestPattern size must be positive, got {self.width}x{self.height}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"TestPattern fps must be positive or None, got {self.fps}")
        if self.frames is not None and self.frames < 0:
            raise ValueError(f"TestPattern frames must be >= 0 or None, got {self.frames}")
        if self.pattern not in ("bars", "counter"):
            raise ValueError(f"TestPattern pattern must be 'bars' or 'counter': {self.pattern!r}")

    open_timeout: ClassVar[float] = 10.0

    @property
    def is_live(self) -> bool:
        return self.frames is None

    @property
    def label(self) -> str:
        """A short description for logs, ``ls`` and the status line."""
        rate = f"@{self.fps:g}" if self.fps else "@max"
        return f"testpattern:{self.width}x{self.height}{rate}"


@dataclass(frozen=True)
class Media:
    """A camera index, video file or URL, with the settings to open it.

    Plain ``0``, ``"video.mp4"`` or ``"rtsp://..."`` mean ``Media(that)`` with these defaults.

    * ``backend``: ``"auto"`` (the default: ``"rtsp"`` for ``rtsp://`` URLs when PyAV is
      installed and no FFmpeg options or OpenCV parameters are given, else ``"opencv"``),
      ``"opencv"`` (``cv2.VideoCapture``: FFmpeg, or V4L2 for camera indexes), ``"av"`` (PyAV's
      FFmpeg demuxer and decoder) or ``"rtsp"`` (framebus's own RTSP client and PyAV's
      decoder: each frame is decoded as soon as its last packet arrives, a frame interval sooner
      than through FFmpeg's RTSP demuxer; H.264/H.265 over TCP. ``"auto"`` falls back to
      OpenCV for other codecs or servers that refuse TCP).
    * ``ffmpeg_options``: FFmpeg options, over framebus's low-latency defaults for live URLs
      (``rtsp_transport=tcp+udp`` with ``rtsp_flags=prefer_tcp``: TCP, or UDP when the server
      refuses TCP; ``fflags=nobuffer``, ``flags=low_delay``).
    * ``cv2_params``: extra OpenCV open parameters, ``(cv2.CAP_PROP_..., value, ...)``.
    * ``decoder_threads``: None means 1 for live sources (lowest latency: FFmpeg's frame
      threading delays each frame by one interval per extra thread) and FFmpeg's choice for files;
      raise it to trade latency for decoding throughput (e.g. 4K on a weak CPU).
    * ``open_timeout``/``read_timeout``: seconds.
    * ``live``: None means URLs and cameras are live, files are not.
    """

    target: str | int
    backend: Literal["auto", "opencv", "av", "rtsp"] = "auto"
    ffmpeg_options: dict[str, str] | None = None
    cv2_params: tuple[int, ...] = ()
    decoder_threads: int | None = None
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    live: bool | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "opencv", "av", "rtsp"):
            raise ValueError(
                f"backend must be 'auto', 'opencv', 'av' or 'rtsp', not {self.backend!r}"
            )
        if self.backend == "rtsp" and not (
            isinstance(self.target, str) and self.target.lower().startswith("rtsp://")
        ):
            raise ValueError("backend 'rtsp' reads rtsp:// URLs only")
        if isinstance(self.target, os.PathLike):
            object.__setattr__(self, "target", os.fspath(self.target))
        if not isinstance(self.target, (str, int)) or isinstance(self.target, bool):
            raise TypeError(f"Media target must be a path, URL or camera index: {self.target!r}")
        if len(self.cv2_params) % 2:
            raise ValueError("cv2_params must be pairs: (cv2.CAP_PROP_..., value, ...)")
        object.__setattr__(self, "cv2_params", tuple(int(v) for v in self.cv2_params))

    def resolved_backend(self, av_available: bool) -> str:
        """The backend that will open this source (``"auto"`` decided)."""
        if self.backend != "auto":
            return self.backend
        rtsp = isinstance(self.target, str) and self.target.lower().startswith("rtsp://")
        if rtsp and av_available and not self.ffmpeg_options and not self.cv2_params:
            return "rtsp"
        return "opencv"

    @property
    def is_url(self) -> bool:
        return isinstance(self.target, str) and "://" in self.target

    @property
    def is_live(self) -> bool:
        return self.live if self.live is not None else (self.is_url or isinstance(self.target, int))

    @property
    def label(self) -> str:
        """Credential-free name for logs and errors."""
        if isinstance(self.target, int):
            return f"camera:{self.target}"
        return redact(self.target) if self.is_url else self.target


@dataclass(frozen=True)
class Remote:
    """A stream another machine exports over ZeroMQ: ``zmq://HOST:PORT/NAME``.

    Plain ``"zmq://..."`` strings mean ``Remote(that)``. CURVE: ``curve`` is a key directory
    (``framebus keys generate``: its ``server.key`` and ``client.key_secret`` are used), or give
    ``server_key`` (the exporter's public key file) and ``client_key`` (this receiver's key
    pair file) one by one. ``open_timeout``: seconds to wait for the exporter's first answer;
    ``read_timeout``: seconds without a frame before the capture reconnects;
    ``max_message``: the largest frame message accepted, header included.
    """

    url: str
    curve: str | None = None
    server_key: str | None = None
    client_key: str | None = None
    open_timeout: float = 5.0
    read_timeout: float = 5.0
    max_message: int = 64 * 1024 * 1024 + 64

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith("zmq://"):
            raise ValueError(f"Remote needs a zmq://HOST:PORT/NAME URL, not {self.url!r}")
        if self.curve is not None:
            d = os.fspath(self.curve)
            object.__setattr__(self, "curve", d)
            if self.server_key is None:
                object.__setattr__(self, "server_key", os.path.join(d, "server.key"))
            if self.client_key is None:
                object.__setattr__(self, "client_key", os.path.join(d, "client.key_secret"))
        for key in ("server_key", "client_key"):  # the capture process may run elsewhere
            path = getattr(self, key)
            if path is not None:
                object.__setattr__(self, key, os.path.abspath(os.fspath(path)))
        if (self.server_key is None) != (self.client_key is None):
            raise ValueError("CURVE needs both server_key and client_key (or curve=DIR)")
        for t in (self.open_timeout, self.read_timeout):
            if not (t > 0 and math.isfinite(t)):
                raise ValueError(f"Remote timeouts must be positive seconds, got {t}")
        if not 64 < self.max_message <= 0xFFFF_FFFF:
            raise ValueError(f"max_message must be 65..{0xFFFF_FFFF}, got {self.max_message}")

    is_live: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return self.url


@dataclass(frozen=True)
class Pipe:
    """Frames from standard input (``fd=0``, what ``"-"`` means) or another readable file
    descriptor of the publishing process: framebus wire frames, a y4m (YUV4MPEG2) stream or
    concatenated JPEGs (MJPEG), told apart by their first bytes (:mod:`framebus.pipe.source`).

    A pipe is finite: the stream ends at end of input, defaults to ``mode="every"`` (the
    producer is paced by the slowest reader through the pipe; pass ``mode="latest"`` for a live
    camera behind ffmpeg) and is never reconnected (a pipe cannot be reopened). The capture
    process receives a duplicate of the descriptor; the spec itself still travels as JSON on
    the capture's own stdin. The publishing process must not read the descriptor itself (the
    two would share its bytes).
    """

    fd: int = 0
    origin: str = ""
    """What the descriptor is, for messages (the capture's duplicate keeps ``"stdin"``)."""

    open_timeout: ClassVar[float] = 30.0  # the producer (ffmpeg opening a camera) may be slow

    def __post_init__(self) -> None:
        if isinstance(self.fd, bool) or not isinstance(self.fd, int) or self.fd < 0:
            raise ValueError(f"Pipe fd must be a file descriptor number, got {self.fd!r}")

    @property
    def is_live(self) -> bool:
        return False

    @property
    def label(self) -> str:
        return self.origin or ("stdin" if self.fd == 0 else f"fd:{self.fd}")


SourceLike = Union[int, str, "os.PathLike[str]", TestPattern, Media, Remote, Pipe, Source]
Spec = TestPattern | Media | Remote | Pipe
"""What a built-in source is, as data: it travels to the capture process as JSON."""

_PATTERN_RE = re.compile(r"(?:testpattern|pattern)(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?")


def is_test_pattern(text: str) -> bool:
    """Whether ``text`` names the test pattern (``testpattern[:WxH[@FPS]]``, or ``pattern``)."""
    return _PATTERN_RE.fullmatch(text) is not None


def to_spec(source: SourceLike) -> Spec:
    """Check ``source`` quickly in the caller's process and turn it into a typed spec.

    Raises :class:`SourceNotFound` for a missing file or camera device,
    :class:`SourceOpenError` for a path that is not a file or a URL that cannot be parsed (see
    :func:`check_url`: credentials never appear in the message), ``TypeError`` for an object
    that is not a source.
    """
    if isinstance(source, (TestPattern, Remote)):
        return source
    if isinstance(source, str) and source == "-":
        source = Pipe()
    if isinstance(source, Pipe):
        _check_pipe(source)
        return source
    if isinstance(source, bool):
        raise TypeError("source must be a camera index, path, URL, TestPattern or Source")
    if isinstance(source, str):
        m = _PATTERN_RE.fullmatch(source)
        if m:
            w, h, fps = m.groups()
            return TestPattern(int(w or 1280), int(h or 720), float(fps or 30))
        if source.startswith("zmq://"):
            return Remote(source)
        if source.isascii() and source.isdigit() and len(source) <= 9:  # a camera index
            source = int(source)
    if isinstance(source, (int, str, os.PathLike)):
        source = Media(source if isinstance(source, (int, str)) else os.fspath(source))
    if not isinstance(source, Media):
        raise TypeError(
            f"source must be a camera index, path, URL, TestPattern, Media or Source: {source!r}"
        )
    if isinstance(source.target, int):
        if not os.path.exists(f"/dev/video{source.target}"):
            raise SourceNotFound(f"camera {source.target} not found: no /dev/video{source.target}")
    elif source.is_url:
        check_url(source.target)
    else:
        check_file(source.target)
        source = replace(source, target=os.path.abspath(source.target))
    return source


def _check_pipe(pipe: Pipe) -> None:
    """A descriptor the capture can read: open, not a terminal, not a directory."""
    try:
        st = os.fstat(pipe.fd)
    except OSError:
        raise SourceOpenError(f"cannot read {pipe.label}: it is closed") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceOpenError(f"cannot read {pipe.label}: it is a directory")
    if os.isatty(pipe.fd):
        raise SourceOpenError(
            f"cannot read {pipe.label}: it is a terminal; pipe frames into it, e.g. "
            "ffmpeg -i in.mp4 -f yuv4mpegpipe - | framebus serve cam=-"
        )


def check_file(path: str) -> None:
    """That ``path`` is a regular file (SourceNotFound, or SourceOpenError saying what it is)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceNotFound(f"no such file: {path}") from None
    except OSError as exc:
        raise SourceOpenError(f"cannot open {path}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    camera = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(path))
    hint = f" (for this camera, give its index: {camera[1]})" if camera else ""
    raise SourceOpenError(f"cannot open {path}: it is {what}, not a video file{hint}")


# the JSON form of a spec, for the trip to the capture process: {"kind": ..., **fields}
_KINDS: dict[str, type[TestPattern] | type[Media] | type[Remote] | type[Pipe]] = {
    "pattern": TestPattern,
    "media": Media,
    "remote": Remote,
    "pipe": Pipe,
}


def spec_to_json(spec: Spec) -> dict[str, Any]:
    kind = next(k for k, cls in _KINDS.items() if isinstance(spec, cls))
    return {"kind": kind, **asdict(spec)}


def spec_from_json(data: dict[str, Any]) -> Spec:
    """The spec :func:`spec_to_json` wrote (the dataclasses validate every field again)."""
    fields = dict(data)
    cls = _KINDS.get(fields.pop("kind", None))
    if cls is None:
        raise SourceError(f"unknown source kind {data.get('kind')!r}")
    if cls is Media:
        fields["cv2_params"] = tuple(fields.get("cv2_params") or ())
    return cls(**fields)
