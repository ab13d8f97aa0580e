"""A real browser (Debian's headless Chromium, driven by Playwright) shows the live picture."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import framebus
from conftest import wait_until
from framebus.testing import (
    CHROMIUM_FLAGS,
    RTSPServer,
    chromium_path,
    read_timestamp,
    rtsp_server_available,
)

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")

ARGS = list(CHROMIUM_FLAGS)

# the test pattern's colour bars, BGR
BARS = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0), "yellow": (0, 255, 255)}


def bars(width: int, height: int) -> np.ndarray:
    """The test pattern's four bars, still."""
    colours = np.array(list(BARS.values()), np.uint8)
    return np.ascontiguousarray(np.broadcast_to(colours[np.arange(width) * 4 // width],
                                                (height, width, 3)))  # fmt: skip


def colours_seen(png: bytes) -> set[str]:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    seen = set()
    for name, bgr in BARS.items():
        near = np.abs(img.astype(int) - np.array(bgr)).max(axis=2) < 48
        if near.mean() > 0.01:  # at least 1 % of the pixels: a bar, not a stray pixel
            seen.add(name)
    return seen


@pytest.fixture
def browser() -> Any:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# a tile shows a picture: its canvas has drawn a decoded frame (H.264) or its <img> has one
SHOWING = (
    "(name) => { const f = document.querySelector(`figure[data-stream='${name}']`);"
    " if (!f) return false;"
    " if (f.dataset.codec === 'h264' || f.dataset.codec === 'mse') return !!f.dataset.captured;"
    " const i = f.querySelector('img'); return f.dataset.codec === 'mjpeg' && i.naturalWidth > 0 }"
)


def tile_state(page: Any, name: str) -> dict[str, Any]:
    """What the page says of a tile: codec, capture time of the frame drawn, canvas size."""
    return dict(
        page.evaluate(
            "(name) => { const f = document.querySelector(`figure[data-stream='${name}']`);"
            " const c = f.querySelector('canvas');"
            " return { codec: f.dataset.codec, captured: Number(f.dataset.captured || 0),"
            " size: [c.width, c.height], caption: f.querySelector('figcaption').innerText,"
            " opened: Number(f.dataset.opened || 0), first: Number(f.dataset.first || 0) } }",
            name,
        )
    )


def test_the_page_plays_each_stream_as_h264(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"http://127.0.0.1:{w.port}/")
        page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        tile = page.locator(f'figure[data-stream="{stream_name}"]')
        state = tile_state(page, stream_name)
        assert state["codec"] == "h264" and state["size"] == [640, 360]
        assert "live" in state["caption"] and "H.264" in state["caption"]
        assert colours_seen(tile.locator("canvas").screenshot()) == set(BARS)
        codecs = w.hub.stats(stream_name).codecs
        assert codecs["h264"].viewers == 1 and codecs["mjpeg"].viewers == 0
        # it keeps playing: the frame drawn gets newer
        before = state["captured"]
        page.wait_for_timeout(500)
        assert tile_state(page, stream_name)["captured"] > before
        page.close()


def test_a_query_forces_mjpeg(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"http://127.0.0.1:{w.port}/?codec=mjpeg")
        page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        tile = page.locator(f'figure[data-stream="{stream_name}"]')
        state = tile_state(page, stream_name)
        assert state["codec"] == "mjpeg" and "MJPEG" in state["caption"]
        assert colours_seen(tile.locator("img").screenshot()) == set(BARS)
        codecs = w.hub.stats(stream_name).codecs
        assert codecs["mjpeg"].viewers == 1 and codecs["h264"].viewers == 0
        page.close()


def test_media_source_extensions_play_where_webcodecs_is_missing(
    web: Any, stream_name: str, browser: Any
) -> None:
    """Plain HTTP from another machine has no WebCodecs: the page plays fragmented MP4 in a
    <video> at the live edge (?codec=mse forces that player here, on 127.0.0.1)."""
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"http://127.0.0.1:{w.port}/?codec=mse")
        page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        tile = page.locator(f'figure[data-stream="{stream_name}"]')
        state = tile_state(page, stream_name)
        assert state["codec"] == "mse" and "H.264 (MSE)" in state["caption"]
        # (a screenshot taken while the player jumps to the live edge may catch no picture)
        assert wait_until(
            lambda: colours_seen(tile.locator("video").screenshot()) == set(BARS), timeout=10
        )
        # playing, near the live edge: the frame shown gets newer and stays recent (a jump
        # back to the live edge may show a frame one interval older once: compare from here)
        before = tile_state(page, stream_name)["captured"]

        def newer_and_recent() -> bool:
            shown = tile_state(page, stream_name)["captured"]
            return bool(shown > before and time.time() - shown < 2.0)

        assert wait_until(newer_and_recent, timeout=10)
        page.close()


def test_a_codec_the_browser_cannot_decode_falls_back_to_mjpeg(
    web: Any, stream_name: str, browser: Any
) -> None:
    """A stream whose H.264 profile this browser lacks (a decoder that says so only for the
    stream's own codec string) plays as MJPEG, and the tile says why."""
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.add_init_script(
            "const real = VideoDecoder.isConfigSupported.bind(VideoDecoder);"
            "VideoDecoder.isConfigSupported = async (c) => c.codec === 'avc1.42E01E'"
            " ? real(c) : { supported: false, config: c };"
        )
        page.goto(f"http://127.0.0.1:{w.port}/")
        page.wait_for_function(
            "(name) => { const f = document.querySelector(`figure[data-stream='${name}']`);"
            " return f && f.dataset.codec === 'mjpeg' && f.querySelector('img').naturalWidth > 0 }",
            arg=stream_name,
            timeout=20_000,
        )
        tile = page.locator(f'figure[data-stream="{stream_name}"]')
        assert colours_seen(tile.locator("img").screenshot()) == set(BARS)
        why = page.evaluate(
            "(name) => document.querySelector(`figure[data-stream='${name}'] .codec`).title",
            stream_name,
        )
        assert "not playable" in why and "avc1" in why
        page.close()


def test_a_late_joiner_shows_a_picture_at_once(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=25)):
        first = browser.new_page()
        first.goto(f"http://127.0.0.1:{w.port}/")
        first.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        for _ in range(3):  # joining at several points of the group of pictures
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{w.port}/")
            page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
            state = tile_state(page, stream_name)
            waited = state["first"] - state["opened"]  # ms, from the WebSocket's creation
            assert 0 < waited < 500, state
            page.close()
            first.wait_for_timeout(700)
        first.close()


def test_a_size_change_and_a_restart_keep_playing(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    writer = framebus.VideoWriter(stream_name, fps=25)
    stop = threading.Event()
    size = [(320, 240)]

    def feed() -> None:
        while not stop.wait(0.04):
            width, height = size[0]
            writer.write(bars(width, height))

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{w.port}/")
        page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        assert tile_state(page, stream_name)["size"] == [320, 240]
        size[0] = (640, 360)
        page.wait_for_function(
            "(name) => { const c = document.querySelector(`figure[data-stream='${name}'] canvas`);"
            " return c.width === 640 && c.height === 360 }",
            arg=stream_name,
            timeout=10_000,
        )
        assert colours_seen(
            page.locator(f'figure[data-stream="{stream_name}"] canvas').screenshot()
        )
    finally:
        stop.set()
        feeder.join(10)
        writer.release()
    # the stream ends and is published again under the same name: the tile plays it
    ended = tile_state(page, stream_name)["captured"]
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page.wait_for_function(
            "([name, t]) => Number(document.querySelector(`figure[data-stream='${name}']`)"
            ".dataset.captured) > t + 0.5",
            arg=[stream_name, ended],
            timeout=20_000,
        )
        assert tile_state(page, stream_name)["codec"] == "h264"
    page.close()


def test_the_mjpeg_url_plays_in_the_browser(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 640, "height": 360})
        page.goto(f"http://127.0.0.1:{w.port}/streams/{stream_name}.mjpg", wait_until="commit")
        page.wait_for_function(
            "() => { const i = document.querySelector('img'); return i && i.naturalWidth > 0 }",
            timeout=20_000,
        )
        assert colours_seen(page.screenshot()) == set(BARS)
        page.close()


EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def orange_share(png: bytes) -> float:
    """The share of a screenshot's pixels in the example's box colour (BGR 0, 128, 255)."""
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return float((np.abs(img.astype(int) - np.array((0, 128, 255))).max(axis=2) < 40).mean())


def test_the_detector_example_shows_its_boxes_beside_the_camera(
    stream_name: str, browser: Any
) -> None:
    """examples/detect_and_show.py: a detector process writes annotated frames with
    VideoWriter; the page shows them live beside the camera, both tiles with their age."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "detect_and_show.py"), "testpattern:640x360@15",
         "--name", stream_name, "--port", "0", "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "camera and detections at http://" in line, proc.stderr.read() if proc.stderr else ""
        url = line.split(" at ", 1)[1].strip()
        page = browser.new_page(viewport={"width": 1400, "height": 600})
        page.goto(url)
        tiles = {}
        for name in (stream_name, f"{stream_name}-boxes"):
            page.wait_for_function(SHOWING, arg=name, timeout=30_000)
            tiles[name] = page.locator(f'figure[data-stream="{name}"]')
        for tile in tiles.values():  # both with an age from the camera
            assert re.search(r"age \d", tile.locator("figcaption").inner_text(timeout=10_000))
        camera = tiles[stream_name].locator("canvas").screenshot()  # H.264 in this browser
        boxes = tiles[f"{stream_name}-boxes"].locator("canvas").screenshot()
        assert colours_seen(camera) == set(BARS) and orange_share(camera) < 0.001
        assert "red" in colours_seen(boxes) and orange_share(boxes) > 0.005  # the boxes drawn
        page.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), err


needs_rtsp = pytest.mark.skipif(
    not rtsp_server_available(), reason="needs GStreamer's RTSP server (gir1.2-gst-rtsp-server)"
)

BARCODE = (
    "(name) => { const c = document.querySelector(`figure[data-stream='${name}'] canvas`);"
    " const x = document.createElement('canvas'); x.width = c.width; x.height = 32;"
    " const g = x.getContext('2d'); g.drawImage(c, 0, 0);"
    " return [Date.now() / 1000, x.toDataURL('image/png')] }"
)


def tile_barcode(page: Any, name: str) -> tuple[float, float | None]:
    """(now, the send time the RTSP server painted on the frame the tile shows)."""
    import base64

    now, url = page.evaluate(BARCODE, name)
    png = base64.b64decode(url.split(",", 1)[1])
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return now, read_timestamp(img)


@needs_rtsp
def test_a_camera_plays_passed_through_and_through_a_restart_with_a_new_size(
    web: Any, stream_name: str, browser: Any
) -> None:
    """The camera's own H.264 on the tile (its send-time barcode read off the canvas, fresh);
    the camera restarts at another size: the tile plays on, at the new size."""
    w = web()
    policy = framebus.Reconnect(stall_timeout=2.0, backoff_initial=0.2, backoff_max=1.0)
    with (
        RTSPServer(size="640x360") as srv,
        framebus.publish(stream_name, srv.url(), reconnect=policy) as pub,
    ):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"http://127.0.0.1:{w.port}/")
        page.wait_for_function(SHOWING, arg=stream_name, timeout=20_000)
        page.wait_for_function(  # the caption says so at its next refresh (every second)
            "(name) => document.querySelector(`figure[data-stream='${name}'] figcaption`)"
            '.innerText.includes("camera\'s")',
            arg=stream_name,
            timeout=10_000,
        )
        assert tile_state(page, stream_name)["codec"] == "h264"
        now, sent = tile_barcode(page, stream_name)
        assert sent is not None and 0 <= now - sent < 1.0
        assert w.hub.stats(stream_name).codecs["h264"].encodes == 0  # passed through
        srv.restart(size="480x272")
        assert wait_until(lambda: pub.stats().reconnects >= 1, timeout=20)
        page.wait_for_function(
            "(name) => document.querySelector(`figure[data-stream='${name}'] canvas`).width"
            " === 480",
            arg=stream_name,
            timeout=20_000,
        )
        page.wait_for_timeout(500)
        now, sent = tile_barcode(page, stream_name)
        assert sent is not None and 0 <= now - sent < 1.0
        page.close()
