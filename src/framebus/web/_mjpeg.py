"""``multipart/x-mixed-replace`` framing of JPEG frames (no I/O).

After each JPEG the next boundary goes out at once: browsers paint a part only when the next
part begins (Chrome), so a part whose boundary waited for the next frame would always be shown
one frame late.
"""

from __future__ import annotations

from framebus import FrameInfo

__all__ = ["BOUNDARY", "MJPEG_MIMETYPE", "first_chunk", "part", "part_pieces"]

BOUNDARY = "framebus-frame"
MJPEG_MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"

_OPEN = f"--{BOUNDARY}\r\n".encode()
_NEXT = f"\r\n--{BOUNDARY}\r\n".encode()


def first_chunk() -> bytes:
    """What a response body starts with: the first boundary."""
    return _OPEN


def part_pieces(jpeg: bytes, info: FrameInfo) -> tuple[bytes, bytes, bytes]:
    """One part as (headers, the JPEG, the boundary that ends it), to be written in order."""
    head = (
        "Content-Type: image/jpeg\r\n"
        f"Content-Length: {len(jpeg)}\r\n"
        f"X-Framebus-Seq: {info.seq}\r\n"
        f"X-Framebus-Timestamp: {info.timestamp:.6f}\r\n"
        "\r\n"
    ).encode()
    return head, jpeg, _NEXT


def part(jpeg: bytes, info: FrameInfo) -> bytes:
    """One part (headers, the JPEG) and the boundary that ends it, in one bytes object."""
    return b"".join(part_pieces(jpeg, info))
