"""y4m (``ffmpeg ... -f yuv4mpegpipe -``) from a pipe: the stream header and frame lines parsed
with bounded lengths, 8-bit 4:2:0 and mono frames converted to BGR / grey."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import PipeFormatError
from ..limits import check_pixels
from ..wire import (
    MAX_DIMENSION,
    MAX_PAYLOAD,
)

__all__ = ["MAX_Y4M_LINE", "Y4M_COLORSPACES", "Y4MHeader", "parse_y4m_frame_line",
           "parse_y4m_header", "y4m_to_bgr"]  # fmt: skip

MAX_Y4M_LINE = 256
"""The longest y4m stream header or frame header line accepted, newline included (ffmpeg
writes about 60 bytes and reads at most about 96)."""
Y4M_COLORSPACES = ("420jpeg", "420mpeg2", "420paldv", "420", "mono")
"""The y4m colour spaces framebus converts (``C`` absent means ``420jpeg``)."""
Y4M_MAGIC = b"YUV4MPEG2"


# -- y4m ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Y4MHeader:
    """A parsed y4m stream header."""

    width: int
    height: int
    fps: float | None
    colorspace: str

    @property
    def frame_size(self) -> int:
        """Bytes of one frame's planes."""
        if self.colorspace == "mono":
            return self.width * self.height
        chroma = ((self.width + 1) // 2) * ((self.height + 1) // 2)
        return self.width * self.height + 2 * chroma


_DIGITS = re.compile(rb"[0-9]{1,9}")
_RATIO = re.compile(rb"([0-9]{1,9}):([0-9]{1,9})")


def parse_y4m_header(line: bytes, *, offset: int = 0, max_frame: int = MAX_PAYLOAD) -> Y4MHeader:
    """The stream header ``line`` (without its newline): ``YUV4MPEG2`` then space-separated
    tagged parameters (W, H, F, I, A, C, X; others ignored). PipeFormatError naming what is
    wrong: a bad magic, a missing or out-of-range size, a bad ratio, an unknown colour space."""

    def bad(what: str) -> PipeFormatError:
        return PipeFormatError(f"pipe: y4m stream header at byte offset {offset}: {what}")

    if len(line) >= MAX_Y4M_LINE:
        raise bad(f"longer than {MAX_Y4M_LINE} bytes")
    tokens = line.split(b" ")
    if tokens[0] != Y4M_MAGIC:
        raise bad(f"expected {Y4M_MAGIC.decode()}, got {tokens[0][:16]!r}")
    width = height = None
    fps: float | None = None
    colorspace = "420jpeg"
    for token in tokens[1:]:
        if not token:
            raise bad("an empty parameter (two spaces in a row, or a trailing space)")
        tag, value = chr(token[0]), token[1:]
        if tag in "WH":
            if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_DIMENSION:
                raise bad(f"{tag}{value[:16].decode('latin-1')!r}: expected 1..{MAX_DIMENSION}")
            if tag == "W":
                width = int(value)
            else:
                height = int(value)
        elif tag in "FA":
            m = _RATIO.fullmatch(value)
            if m is None:
                raise bad(f"{tag}{value[:16].decode('latin-1')!r}: expected a ratio N:D")
            num, den = int(m[1]), int(m[2])
            if tag == "F":
                fps = num / den if num and den else None  # 0:0 means unknown
        elif tag == "I":
            if value not in (b"p", b"t", b"b", b"m", b"?"):
                raise bad(f"I{value[:16].decode('latin-1')!r}: expected p, t, b, m or ?")
        elif tag == "C":
            colorspace = value[:32].decode("latin-1")
            if colorspace not in Y4M_COLORSPACES:
                shown = colorspace if colorspace.isprintable() else repr(colorspace)
                raise bad(
                    f"colour space C{shown} is not supported (framebus reads C"
                    + ", C".join(Y4M_COLORSPACES)
                    + "; give ffmpeg -pix_fmt yuv420p)"
                )
        # X (extensions) and unknown tags are ignored, as the format says
    if width is None or height is None:
        raise bad("no W (width) or no H (height) parameter")
    check_pixels(width, height, f"pipe: y4m stream at byte offset {offset}: frames")
    header = Y4MHeader(width, height, fps, colorspace)
    if header.frame_size > max_frame:
        raise bad(f"frames of {header.frame_size} bytes, more than the {max_frame} allowed")
    return header


def parse_y4m_frame_line(line: bytes, *, offset: int = 0) -> None:
    """Check a frame header line (without its newline): ``FRAME``, then optional parameters."""
    if line[:5] != b"FRAME" or (len(line) > 5 and line[5:6] != b" "):
        raise PipeFormatError(
            f"pipe: y4m frame at byte offset {offset}: expected FRAME, got {line[:16]!r}"
        )


def y4m_to_bgr(header: Y4MHeader, planes: memoryview, out: np.ndarray | None) -> np.ndarray:
    import cv2

    w, h = header.width, header.height
    data = np.frombuffer(planes, np.uint8)
    if header.colorspace == "mono":
        grey = data.reshape(h, w)
        if out is not None and out.shape == (h, w) and out.dtype == np.uint8:
            np.copyto(out, grey)
            return out
        return grey.copy()
    if w % 2 or h % 2:  # cv2's I420 needs even sizes: pad the luma, convert, crop
        w2, h2 = w + w % 2, h + h % 2
        luma = np.pad(data[: w * h].reshape(h, w), ((0, h2 - h), (0, w2 - w)), mode="edge")
        data = np.concatenate([luma.reshape(-1), data[w * h :]])
        bgr = cv2.cvtColor(data.reshape(h2 * 3 // 2, w2), cv2.COLOR_YUV2BGR_I420)
        return np.ascontiguousarray(bgr[:h, :w])
    i420 = data.reshape(h * 3 // 2, w)
    if out is not None and out.shape == (h, w, 3) and out.dtype == np.uint8:
        cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420, dst=out)
        return out
    return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))
