"""JPEG in one place (framebus._jpeg): every wing that receives JPEG gets OpenCV's pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framebus import _jpeg


def picture() -> np.ndarray:
    rng = np.random.default_rng(7)
    img = cv2.resize(rng.integers(0, 255, (24, 32, 3), np.uint8), (320, 240))
    return np.asarray(img)


@pytest.mark.parametrize("grey", [False, True])
def test_decode_gives_opencvs_pixels(grey: bool) -> None:
    frame = picture()
    if grey:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    data = _jpeg.encode(frame, 80)
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    got = _jpeg.decode(data, grey=grey)
    assert got.shape == expected.shape and np.array_equal(got, expected)
    assert _jpeg.size(data) in (None, (320, 240))


def test_what_is_not_a_jpeg_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        _jpeg.decode(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError):
        _jpeg.encode(np.zeros((4, 4), np.float64))
