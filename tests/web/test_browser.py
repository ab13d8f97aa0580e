"""A real browser (Debian's headless Chromium, driven by Playwright) shows the live picture."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import framebus

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")

# as the machine notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts on a machine with no internet
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# the test pattern's colour bars, BGR
BARS = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0), "yellow": (0, 255, 255)}


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


def test_the_page_shows_a_live_tile_per_stream(web: Any, stream_name: str, browser: Any) -> None:
    w = web()
    with framebus.publish(stream_name, framebus.TestPattern(640, 360, fps=15)):
        page = browser.new_page(viewport={"width": 900, "height": 700})
        page.goto(f"http://127.0.0.1:{w.port}/")
        tile = page.locator(f'figure[data-stream="{stream_name}"]')
        page.wait_for_function(
            "(name) => { const i = document.querySelector(`figure[data-stream='${name}'] img`);"
            " return i && i.naturalWidth > 0 }",
            arg=stream_name,
            timeout=20_000,
        )
        assert "live" in tile.locator("figcaption").inner_text(timeout=10_000)
        png = tile.locator("img").screenshot()
        assert colours_seen(png) == set(BARS)
        assert w.hub.stats(stream_name).viewers == 1
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
            page.wait_for_function(
                "(name) => { const i = document.querySelector(`figure[data-stream='${name}'] img`);"
                " return i && i.naturalWidth > 0 }",
                arg=name,
                timeout=30_000,
            )
            tiles[name] = page.locator(f'figure[data-stream="{name}"]')
        for tile in tiles.values():  # both with an age from the camera
            assert re.search(r"age \d", tile.locator("figcaption").inner_text(timeout=10_000))
        camera = tiles[stream_name].locator("img").screenshot()
        boxes = tiles[f"{stream_name}-boxes"].locator("img").screenshot()
        assert colours_seen(camera) == set(BARS) and orange_share(camera) < 0.001
        assert "red" in colours_seen(boxes) and orange_share(boxes) > 0.005  # the boxes drawn
        page.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), err
