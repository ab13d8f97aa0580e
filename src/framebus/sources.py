"""Frame sources: the :class:`Source` protocol, :class:`TestPattern`, and OpenCV capture.

Anything a stream can capture from is described by a *spec* that survives a trip to the
capture process as JSON (never pickle): a camera index, a file path, a URL or a
:class:`TestPattern`. A :class:`Source` object written by the user is run in a capture thread
of the publishing process instead, since arbitrary Python objects cannot travel as JSON.
"""

from __future__ import annotations

import abc
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Union
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .errors import SourceError, SourceNotFound, SourceOpenError

__all__ = [
    "Source",
    "SourceLike",
    "TestPattern",
    "describe",
    "is_live",
    "open_spec",
    "redact",
    "to_spec",
]


class Source(abc.ABC):
    """A frame producer that framebus can capture from (the ``002`` "override write" idea).

    Subclasses implement :meth:`read`; :meth:`open` and :meth:`close` are optional. A source
    object passed to :func:`framebus.publish` or :class:`framebus.VideoCapture` runs in a capture
    thread of the publishing process; frames are copied into the shared ring as they come.

    Class attributes a subclass may set:

    * ``live`` -- True for sources that produce frames in real time (cameras): streams default to
      ``mode="latest"``. False for finite sources (recordings): ``mode="every"``.
    * ``fps`` -- the nominal frame rate, reported by ``get(CAP_PROP_FPS)``; None if unknown.
    """

    live: bool = True
    fps: float | None = None

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device or file. Raise :class:`framebus.SourceError` if impossible."""

    @abc.abstractmethod
    def read(self) -> np.ndarray | None:
        """Return the next frame (H x W or H x W x C array), or None at the end of the source."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        """Like :meth:`read`, but may decode into ``out`` (the previous frame's slot) and return it.

        The default ignores ``out``; built-in sources override it to save a copy.
        """
        return self.read()

    @property
    def frame_count(self) -> int | None:
        """Number of frames of a finite source, if known."""
        return None


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


SourceLike = Union[int, str, "os.PathLike[str]", TestPattern, Source]

_PATTERN_RE = re.compile(r"(?:testpattern|pattern)(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?")


def to_spec(source: SourceLike) -> dict[str, Any]:
    """Check ``source`` quickly in the caller's process and turn it into a JSON-able spec.

    Raises :class:`SourceNotFound` for a missing file or camera device, ``TypeError`` for an
    object that is not a source.
    """
    if isinstance(source, TestPattern):
        return {"kind": "pattern", **asdict(source)}
    if isinstance(source, bool):
        raise TypeError("source must be a camera index, path, URL, TestPattern or Source")
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        index = int(source)
        if not os.path.exists(f"/dev/video{index}"):
            raise SourceNotFound(f"camera {index} not found: no /dev/video{index}")
        return {"kind": "camera", "index": index}
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(
            f"source must be a camera index, path, URL, TestPattern or Source, not {source!r}"
        )
    m = _PATTERN_RE.fullmatch(source)
    if m:
        w, h, fps = m.groups()
        pattern = TestPattern(int(w or 1280), int(h or 720), float(fps or 30))
        return {"kind": "pattern", **asdict(pattern)}
    if "://" in source:
        return {"kind": "url", "url": source}
    if not os.path.isfile(source):
        raise SourceNotFound(f"no such file: {source}")
    return {"kind": "file", "path": os.path.abspath(source)}


def is_live(spec: dict[str, Any]) -> bool:
    if spec["kind"] == "pattern":
        return spec["frames"] is None
    return spec["kind"] in ("camera", "url")


def redact(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def describe(spec: dict[str, Any]) -> str:
    """A short, credential-free description of a spec, for logs, ``ls`` and the status line."""
    kind = spec["kind"]
    if kind == "pattern":
        rate = f"@{spec['fps']:g}" if spec["fps"] else "@max"
        return f"testpattern:{spec['width']}x{spec['height']}{rate}"
    if kind == "camera":
        return f"camera:{spec['index']}"
    if kind == "url":
        return redact(spec["url"])
    if kind == "file":
        return str(spec["path"])
    return str(kind)


def open_spec(spec: dict[str, Any]) -> Source:
    """Build the source object for a spec (in the capture process)."""
    kind = spec["kind"]
    if kind == "pattern":
        fields = {k: spec[k] for k in ("width", "height", "fps", "frames", "pattern")}
        return PatternSource(TestPattern(**fields))
    if kind == "camera":
        return OpenCVSource(int(spec["index"]), f"camera:{spec['index']}", live=True)
    if kind == "url":
        return OpenCVSource(spec["url"], redact(spec["url"]), live=True)
    if kind == "file":
        return OpenCVSource(spec["path"], spec["path"], live=False)
    raise SourceError(f"unknown source kind {kind!r}")


class PatternSource(Source):
    """Produces :class:`TestPattern` frames, paced at its fps."""

    _BARS = np.array(
        [
            [255, 255, 255],
            [0, 255, 255],
            [255, 255, 0],
            [0, 255, 0],
            [255, 0, 255],
            [0, 0, 255],
            [255, 0, 0],
            [16, 16, 16],
        ],
        dtype=np.uint8,
    )

    def __init__(self, pattern: TestPattern) -> None:
        self.pattern = pattern
        self.fps = pattern.fps
        self.live = pattern.frames is None
        self._n = 0
        self._t0 = 0.0
        w, h = pattern.width, pattern.height
        self._period = max(8, w // 2)
        if pattern.pattern == "bars":
            # the bars twice over: frame k is a window of this strip, so moving costs one copy
            cols = np.arange(w + self._period) % self._period * 8 // self._period
            self._strip = np.ascontiguousarray(
                np.broadcast_to(self._BARS[cols], (h, w + self._period, 3))
            )

    @property
    def frame_count(self) -> int | None:
        return self.pattern.frames

    def open(self) -> None:
        self._t0 = time.monotonic()

    def read(self) -> np.ndarray | None:
        return self.read_into(None)

    def read_into(self, out: np.ndarray | None) -> np.ndarray | None:
        p = self.pattern
        if p.frames is not None and self._n >= p.frames:
            return None
        if p.fps:
            delay = self._t0 + self._n / p.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1 / p.fps:  # fell behind (a pause): a camera does not burst, resync
                self._t0 -= delay
        shape = (p.height, p.width, 3)
        if out is None or out.shape != shape or out.dtype != np.uint8:
            out = np.empty(shape, np.uint8)
        if p.pattern == "counter":
            out.fill(self._n % 256)
        else:
            off = (self._n * 4) % self._period
            np.copyto(out, self._strip[:, off : off + p.width])
            _draw_label(out, f"framebus {self._n}")
        self._n += 1
        return out


def _draw_label(img: np.ndarray, text: str) -> None:
    import cv2

    scale = max(0.5, img.shape[0] / 480)
    org = (int(10 * scale), int(40 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), int(5 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), int(2 * scale))


class OpenCVSource(Source):
    """A camera index, file or URL read through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, label: str, *, live: bool) -> None:
        self.target = target
        self.label = label
        self.live = live
        self._cap: Any = None
        self._count: int | None = None

    def open(self) -> None:
        import cv2

        if isinstance(self.target, int):
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            what = "not a video or an unsupported format" if not self.live else "cannot connect"
            raise SourceOpenError(f"cannot open {self.label}: {what}")
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
        ok, frame = self._cap.read(out) if out is not None else self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
