"""Whole wire frames (no I/O): a frame packed into header and payload, and a message unpacked
and checked into its header and a view of its payload (RAW pixels as an array, in place)."""

from __future__ import annotations

import time

import numpy as np

from ..errors import WireFormatError
from .header import (
    _BPP,
    _FORMATS,
    _JPEG_SOI,
    HEADER_SIZE,
    MAX_PAYLOAD,
    Buffer,
    Codec,
    FrameHeader,
    PixelFormat,
    _bytes_view,
    encode_header,
    parse_header,
)

__all__ = ["pack_frame", "pack_frame_bytes", "raw_array", "unpack_frame", "unpack_parts"]


def _check_payload(header: FrameHeader, payload: Buffer) -> None:
    if len(payload) != header.payload_len:
        raise WireFormatError(
            f"wire: payload of {len(payload)} bytes, header says payload_len {header.payload_len}"
        )
    if header.codec is Codec.JPEG and payload[:2] != _JPEG_SOI:
        raise WireFormatError(
            f"wire: JPEG payload starts with {bytes(payload[:2])!r}, not the SOI marker FF D8"
        )


def unpack_frame(
    message: Buffer, *, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameHeader, memoryview]:
    """Header and payload of one whole frame message (header + payload, nothing more)."""
    view = _bytes_view(message)
    header = parse_header(view, max_payload=max_payload)
    if len(view) != header.message_size:
        raise WireFormatError(
            f"wire: message of {len(view)} bytes, header says {header.message_size} "
            f"({HEADER_SIZE} + payload_len {header.payload_len})"
        )
    payload = view[HEADER_SIZE:]
    _check_payload(header, payload)
    return header, payload


def unpack_parts(
    header: Buffer, payload: Buffer, *, max_payload: int = MAX_PAYLOAD
) -> tuple[FrameHeader, memoryview]:
    """Like :func:`unpack_frame` for a frame received in two parts (:func:`pack_frame`'s)."""
    head = _bytes_view(header)
    if len(head) != HEADER_SIZE:
        raise WireFormatError(f"wire: header part of {len(head)} bytes, need {HEADER_SIZE}")
    parsed = parse_header(head, max_payload=max_payload)
    body = _bytes_view(payload)
    _check_payload(parsed, body)
    return parsed, body


def raw_array(header: FrameHeader, payload: Buffer) -> np.ndarray:
    """The numpy array of a RAW frame: a view of ``payload`` (read-only if it is), honouring the
    stride. 2-D for one-channel formats."""
    if header.codec is not Codec.RAW:
        raise WireFormatError(f"wire: codec {header.codec.name} has no raw pixels (decode it)")
    view = _bytes_view(payload)
    _check_payload(header, view)
    dtype, channels = _FORMATS[header.pixel_format]
    size = dtype.itemsize
    if channels == 1:
        strides: tuple[int, ...] = (header.stride, size)
    else:
        strides = (header.stride, channels * size, size)
    return np.ndarray(header.shape, dtype, buffer=view, strides=strides)


def pack_frame(
    frame: np.ndarray,
    *,
    seq: int,
    session: int,
    capture_ns: int,
    send_ns: int | None = None,
    codec: Codec = Codec.RAW,
    payload: Buffer | np.ndarray | None = None,
) -> tuple[bytes, memoryview]:
    """One frame as ``(header, payload)``: send both, in order (``send_multipart``, ``writev``,
    ``writelines``), or join them with :func:`pack_frame_bytes`.

    RAW: the payload is a view of ``frame``'s pixels, with no copy when ``frame`` is C-contiguous
    (else one packed copy): send it before anything overwrites the frame. JPEG: ``payload`` is
    the JPEG the caller encoded from ``frame``, whose shape and dtype the header describes.
    ``send_ns`` defaults to now. ValueError for a frame the wire cannot carry."""
    fmt = PixelFormat.of(frame)
    height, width = int(frame.shape[0]), int(frame.shape[1])
    if codec is Codec.RAW:
        if payload is not None:
            raise ValueError("payload= is for JPEG frames: a RAW payload is the frame itself")
        dtype = _FORMATS[fmt][0]
        pixels = frame if frame.dtype == dtype else frame.astype(dtype)
        pixels = np.ascontiguousarray(pixels)
        view = pixels.reshape(-1).view(np.uint8).data
    elif codec is Codec.JPEG:
        if payload is None:
            raise ValueError("a JPEG frame needs payload=, the JPEG encoded from the frame")
        view = _bytes_view(payload)
        if view[:2] != _JPEG_SOI:
            raise ValueError("payload= does not start with the JPEG SOI marker FF D8")
    else:
        raise ValueError(f"unknown codec {codec!r}")
    header = FrameHeader(
        codec,
        fmt,
        width,
        height,
        width * _BPP[fmt],
        view.nbytes,
        seq,
        session,
        capture_ns,
        time.time_ns() if send_ns is None else send_ns,
    )
    return encode_header(header), view


def pack_frame_bytes(
    frame: np.ndarray,
    *,
    seq: int,
    session: int,
    capture_ns: int,
    send_ns: int | None = None,
    codec: Codec = Codec.RAW,
    payload: Buffer | np.ndarray | None = None,
) -> bytes:
    """:func:`pack_frame` joined into one message (one copy of the payload)."""
    head, body = pack_frame(
        frame,
        seq=seq,
        session=session,
        capture_ns=capture_ns,
        send_ns=send_ns,
        codec=codec,
        payload=payload,
    )
    return b"".join((head, body))
