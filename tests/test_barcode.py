"""The send-time barcode of framebus.testing: painted on any frame, read back, through JPEG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framebus.testing import paint_timestamp, read_timestamp


@pytest.mark.parametrize("shape", [(240, 320, 3), (1080, 1920, 3), (480, 640)])
def test_painted_time_is_read_back_through_jpeg(shape: tuple[int, ...]) -> None:
    frame = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    assert read_timestamp(frame) is None  # noise is no barcode
    paint_timestamp(frame, 1_764_590_000.123456)
    _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 50])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    for f in (frame, decoded):
        assert read_timestamp(f) == pytest.approx(1_764_590_000.123456, abs=2e-6)


def test_too_small_a_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        paint_timestamp(np.zeros((16, 320, 3), np.uint8), 1e9)
