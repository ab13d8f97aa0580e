"""The decoded-size budget: how large a frame framebus agrees to decode (no I/O).

Compressed pictures are small and their pixels are not: a 300-byte JPEG may claim
16384x16384 pixels (805 MB as BGR), a 198 KB H.264 file 8192x8192 frames. Every place that
decodes bytes framebus did not produce itself (a ``zmq://`` message, MJPEG, y4m or framebus
frames on a pipe, a file being sampled, a camera's stream) checks the size the bytes
*declare* against this budget before decoding or allocating, and refuses with
:class:`~framebus.errors.FrameTooLarge`.

(:func:`connection_budget` is the other budget here: how many connections a network wing may
keep open, given the process's descriptor limit.)

The budget is :data:`DEFAULT_MAX_PIXELS` (8K UHD, 7680x4320 = 33.2 Mpx: about 100 MB as a BGR
frame) unless the environment variable ``FRAMEBUS_MAX_PIXELS`` says otherwise; processes
framebus starts (captures, the exporter) inherit it. :func:`set_max_pixels` sets it for this
process and those it starts.
"""

from __future__ import annotations

import os

from .errors import FrameTooLarge

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_PIXELS", "ENV", "check_pixels",
           "connection_budget", "max_pixels", "per_address_connections",
           "set_max_pixels"]  # fmt: skip

DEFAULT_MAX_PIXELS = 7680 * 4320
"""8K UHD: the largest frame framebus decodes unless told otherwise."""
ENV = "FRAMEBUS_MAX_PIXELS"
_CEILING = 16384 * 16384  # framebus's largest frame at all (16384 pixels a side)


def _parse(text: str) -> int | None:
    text = text.strip().replace("_", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 12:  # int() takes "²" too
        return None
    value = int(text)
    return value if 1 <= value <= _CEILING else None


def max_pixels() -> int:
    """The budget in pixels: ``FRAMEBUS_MAX_PIXELS`` if it is a whole number in 1..16384²,
    else :data:`DEFAULT_MAX_PIXELS`."""
    value = _parse(os.environ.get(ENV, ""))
    return DEFAULT_MAX_PIXELS if value is None else value


def set_max_pixels(pixels: int) -> None:
    """Set the budget for this process and the processes it starts from now on."""
    if not isinstance(pixels, int) or not 1 <= pixels <= _CEILING:
        raise ValueError(f"max pixels must be a whole number in 1..{_CEILING}, not {pixels!r}")
    os.environ[ENV] = str(pixels)


def check_pixels(width: int, height: int, what: str) -> None:
    """Raise FrameTooLarge if a ``width`` x ``height`` frame is over the budget; ``what``
    names the frame in the message (e.g. ``"zmq://host:5555/cam: a JPEG"``)."""
    budget = max_pixels()
    if width * height > budget:
        raise FrameTooLarge(
            f"{what}: {width}x{height} pixels ({width * height / 1e6:.1f} Mpx) are over the "
            f"decoded-size budget of {budget / 1e6:.1f} Mpx; not decoded "
            f"(set {ENV} to allow larger frames)"
        )


DEFAULT_MAX_CONNECTIONS = 1000
"""Connections a network wing (the web view, the ZeroMQ exporter) keeps open at most."""


def per_address_connections(max_connections: int) -> int:
    """Connections one client address may hold: a quarter of all (at least 16), so one host
    cannot take every place while others wait."""
    return max(16, max_connections // 4)


def connection_budget(wanted: int) -> int:
    """``wanted`` connections, or half this process's descriptor limit if that is less: a
    network wing never takes the descriptors the rest of the process needs (rings, /proc,
    files), so running out of them stays its own problem."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))
