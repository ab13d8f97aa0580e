"""One stream's frames as ZeroMQ wire messages, encoded once for every receiver."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from framebus import FrameInfo, wire
from framebus.sinks.base import FrameSink, Pick
from framebus.sinks.jpeg import encode_jpeg

__all__ = ["CodecName", "ZmqSink"]

CodecName = Literal["jpeg", "raw"]


class ZmqSink(FrameSink[bytes]):
    """One stream's frames as wire messages, encoded once for every receiver.

    ``codec="jpeg"`` (8-bit grey or BGR; BGRA loses alpha, 16-bit keeps its top byte) at
    ``quality``, or ``"raw"`` (lossless: any dtype and channel count the wire has). Each
    message is a private bytes object: header and payload, copied out of the ring once.
    Buffering: :class:`~framebus.sinks.FrameSink`'s (one item per consumer: the exporter).
    ``session`` is random per sink: a receiver sees a new sink (the exporter restarted, or
    the stream was published again) as a new session.
    """

    def __init__(self, name: str, *, codec: CodecName = "jpeg", quality: int = 80) -> None:
        if codec not in ("jpeg", "raw"):
            raise ValueError(f"codec must be 'jpeg' or 'raw', not {codec!r}")
        if not 1 <= quality <= 100:
            raise ValueError(f"quality must be 1..100, not {quality}")
        self.codec: CodecName = codec
        self.quality = quality
        self.session = wire.new_session()
        super().__init__(name, pick=Pick.newest())

    def encode(self, frame: np.ndarray, info: FrameInfo) -> bytes:
        capture_ns = int(info.timestamp * 1e9)
        if self.codec == "raw":
            return wire.pack_frame_bytes(
                frame, seq=info.seq, session=self.session, capture_ns=capture_ns
            )
        jpeg = encode_jpeg(frame, self.quality)
        grey = frame.ndim == 2 or frame.shape[2] == 1
        height, width = int(frame.shape[0]), int(frame.shape[1])
        header = wire.FrameHeader(
            wire.Codec.JPEG,
            wire.PixelFormat.GRAY8 if grey else wire.PixelFormat.BGR24,
            width,
            height,
            width * (1 if grey else 3),
            len(jpeg),
            info.seq,
            self.session,
            capture_ns,
            time.time_ns(),
        )
        return wire.encode_header(header) + jpeg
