"""The passthrough sink: a camera's own H.264, from the stream's packet ring to every viewer as
the camera encoded it — no decode, no encode (:func:`framebus.attach_encoded`).

Buffering: each consumer has a :class:`~framebus.sinks.gop.GopSlot`; the sink keeps the
current group of pictures (:class:`~framebus.sinks.gop.GopCache`) and a newcomer starts from
it at once, since framebus cannot ask a camera for a keyframe. The packet ring itself keeps the
newest 8 MiB and never waits for this sink; what the sink's reader misses there (it fell that
far behind) is skipped to the next keyframe. While nobody watches the sink reads nothing; the
first viewer after that starts at the ring's newest keyframe (its group of pictures handed over
as catching-up frames: the prefill of :class:`~framebus.sinks.gop.GopSlot`). It attaches no reader
to the stream's frames (on an every-mode stream an idle one would hold the capture up).

When the capture stops handing out encoded frames (its RTSP client gave the stream to FFmpeg)
the sink ends with :class:`~framebus.NoEncodedFrames`: the hub then makes an encoder instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import framebus
from framebus import EncodedFrame, FrameInfo, ReadTimeout
from framebus._h264 import AccessUnit, codec_string, picture_size

from .base import Encoded, FrameSink, Mailbox
from .gop import GopCache, GopSlot

__all__ = ["PassthroughSink"]

_POLL = 0.2  # the longest read: close() and the last unsubscribe are noticed this soon


class PassthroughSink(FrameSink[AccessUnit]):
    """The encoded frames of stream ``name`` (H.264 only: raises NoEncodedFrames for a stream
    without them, or with H.265, which browsers do not decode), passed on unchanged."""

    reads_frames = False

    def __init__(self, name: str) -> None:
        encoded = framebus.attach_encoded(name)
        if encoded.codec != "h264":
            encoded.release()
            raise framebus.NoEncodedFrames(f"stream {name!r} carries {encoded.codec}, not h264")
        self._encoded = encoded
        self._gop = GopCache()  # guarded by the sink's lock
        self._restart = True  # (guarded) the worker starts again at the ring's newest keyframe
        self._last_index: int | None = None
        self._codec = ""
        self._size = (0, 0)
        try:
            super().__init__(name)
        except BaseException:
            encoded.release()
            raise

    def encode(self, frame: np.ndarray, info: FrameInfo) -> AccessUnit:
        raise NotImplementedError("a passthrough sink passes encoded frames on")  # pragma: no cover

    def _mailbox(self, notify: Callable[[], None] | None) -> Mailbox[Encoded[AccessUnit]]:
        slot = GopSlot(notify)
        if self._subs:
            slot.prefill(self._gop.items)  # the worker is reading: its group is current
        else:
            self._restart = True  # the worker was idle: it starts again at the newest key
            self._gop.clear()
        return slot

    def _delivering(self, item: Encoded[AccessUnit]) -> None:
        self._gop.add(item)

    def _next_item(self) -> Encoded[AccessUnit] | None:
        with self._cond:
            restart, self._restart = self._restart, False
        if restart:
            self._start_over()
            return None
        try:
            frame = self._encoded.read(_POLL)
        except ReadTimeout:
            return None
        except framebus.NoEncodedFrames as exc:  # the viewers' end; the hub makes an encoder
            raise framebus.StreamEnded(str(exc)) from None
        with self._cond:
            self._frames_read += 1
            if not self._subs or self._closed or self._restart:
                return None  # (a restart's group of pictures holds this frame too)
        return self._item(frame)

    def _start_over(self) -> None:
        """Hand the ring's current group of pictures to every consumer (they all joined while
        nobody watched: each waits for a keyframe) as catching-up frames, and go on after it."""
        self._last_index = None
        items = [it for it in map(self._item, self._encoded.gop()) if it is not None]
        with self._cond:
            for item in items:
                self._gop.add(item)
            subs = list(self._subs)
        for sub in subs:
            mailbox = sub.mailbox
            if isinstance(mailbox, GopSlot):
                mailbox.prefill(items)

    def _item(self, frame: EncodedFrame) -> Encoded[AccessUnit] | None:
        """``frame`` as the sink's item; None for one that cannot be decoded (after a gap)."""
        gap = self._last_index is not None and frame.index != self._last_index + 1
        if (gap or self._last_index is None) and not frame.key:
            with self._cond:
                self._frames_skipped += 1
            return None  # what follows a lost frame decodes only from the next keyframe
        self._last_index = frame.index
        if frame.key:  # the size its SPS says (the decoded frames' may still be the old one)
            self._codec = codec_string(frame.data) or self._codec
            self._size = picture_size(frame.data) or self._encoded.frame_size()
        au = AccessUnit(frame.data, frame.key, self._codec, *self._size, frame.index)
        info = FrameInfo(frame.index, frame.timestamp, frame.index, 0, *self._size)
        return Encoded(au, info)

    @property
    def lost(self) -> int:
        """Frames the packet ring overwrote before this sink read them."""
        return self._encoded.lost

    def close(self) -> None:
        super().close()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._encoded.release()  # (a worker still reading releases nothing: left alone)
