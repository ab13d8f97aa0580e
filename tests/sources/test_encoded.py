"""A stream's encoded frames (framebus.attach_encoded): the access units framebus's RTSP client
received, as the camera sent them, beside the decoded frames; real GStreamer servers."""

from __future__ import annotations

import av
import pytest

import framebus
from conftest import wait_until
from framebus.testing import RTSPServer, read_timestamp, rtsp_server_available

pytestmark = pytest.mark.skipif(
    not rtsp_server_available(), reason="needs GStreamer's RTSP server (gir1.2-gst-rtsp-server)"
)
FAST = framebus.Reconnect(stall_timeout=2.0, backoff_initial=0.2, backoff_max=1.0)


def decodes(frame: framebus.EncodedFrame) -> bool:
    decoder = av.CodecContext.create(frame.codec, "r")
    return bool(decoder.decode(av.Packet(frame.data)))


def test_the_camera_access_units_decode_to_the_frames_it_sent(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240") as srv,
        framebus.publish(stream_name, srv.url()),
        framebus.attach_encoded(stream_name) as encoded,
    ):
        assert encoded.codec == "h264"
        assert wait_until(lambda: encoded.gop() != [], timeout=10)
        gop = encoded.gop()
        assert gop[0].key and [f.index for f in gop] == list(range(gop[0].index, gop[-1].index + 1))
        decoder = av.CodecContext.create("h264", "r")
        for frame in gop:
            decoder.decode(av.Packet(frame.data))
        indexes, ages = [], []
        for _ in range(25):
            frame = encoded.read(10)
            indexes.append(frame.index)
            for picture in decoder.decode(av.Packet(frame.data)):
                sent = read_timestamp(picture.to_ndarray(format="bgr24"))
                assert sent is not None
                ages.append(frame.timestamp - sent)
        assert indexes == list(range(gop[-1].index + 1, gop[-1].index + 26))  # none lost
        assert len(ages) == 25 and min(ages) >= 0 and max(ages) < 1.0
        assert encoded.lost == 0


def test_pyav_hands_out_a_live_stream_s_access_units(stream_name: str) -> None:
    """``backend="av"`` (FFmpeg's RTSP demuxer): the access units come from its demux loop,
    each keyframe with its parameter sets, and decode."""
    with (
        RTSPServer(size="320x240") as srv,
        framebus.publish(stream_name, framebus.Media(srv.url(), backend="av")),
        framebus.attach_encoded(stream_name) as encoded,
    ):
        assert encoded.codec == "h264"
        frame = encoded.read(10)
        while not frame.key:
            frame = encoded.read(10)
        decoder = av.CodecContext.create("h264", "r")
        pictures = decoder.decode(av.Packet(frame.data))
        for _ in range(10):
            later = encoded.read(10)
            assert later.index == frame.index + 1
            pictures += decoder.decode(av.Packet(later.data))
            frame = later
        assert len(pictures) >= 10 and read_timestamp(pictures[-1].to_ndarray(format="bgr24"))


def test_h265_is_handed_out_too(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240", codec="h265") as srv,
        framebus.publish(stream_name, srv.url()),
        framebus.attach_encoded(stream_name) as encoded,
    ):
        assert encoded.codec == "h265" and encoded.read(10).data.startswith(b"\0\0\0\1")


def test_streams_without_them_say_so(stream_name: str) -> None:
    with (
        framebus.publish(stream_name, framebus.TestPattern(64, 48, fps=10)),
        pytest.raises(framebus.NoEncodedFrames),
    ):
        framebus.attach_encoded(stream_name)
    with pytest.raises(framebus.StreamNotFound):
        framebus.attach_encoded(stream_name)


def test_the_end_of_the_stream_ends_the_reader(stream_name: str) -> None:
    with RTSPServer(size="320x240") as srv:
        pub = framebus.publish(stream_name, srv.url())
        encoded = framebus.attach_encoded(stream_name)
        try:
            encoded.read(10)
            pub.close()
            with pytest.raises(framebus.StreamEnded):
                while True:
                    encoded.read(10)
        finally:
            encoded.release()
            pub.close()


def test_a_capture_that_stops_handing_them_out_ends_the_readers(stream_name: str) -> None:
    from framebus.bus import Control

    with (
        RTSPServer(size="320x240") as srv,
        framebus.publish(stream_name, srv.url()),
        framebus.attach_encoded(stream_name) as encoded,
    ):
        encoded.read(10)
        ctl = Control.open(stream_name)
        try:
            ctl.packet_segment_size = 0  # what the capture does when FFmpeg takes over
        finally:
            ctl.close()
        with pytest.raises(framebus.NoEncodedFrames):
            while True:
                encoded.read(10)


def test_a_reconnect_goes_on_in_the_same_ring_from_a_keyframe(stream_name: str) -> None:
    with (
        RTSPServer(size="320x240") as srv,
        framebus.publish(stream_name, srv.url(), reconnect=FAST) as pub,
        framebus.attach_encoded(stream_name) as encoded,
    ):
        last = encoded.read(10).index
        srv.restart()
        assert wait_until(lambda: pub.stats().reconnects >= 1, timeout=20)
        frame = encoded.read(20)
        while not frame.key:  # frames read before the restart, if any; then its keyframe
            frame = encoded.read(20)
        assert frame.index > last  # the same ring, numbered on
        assert decodes(frame)
