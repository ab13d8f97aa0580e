"""The picture a push sends while its stream has nothing to send: "no signal", and why."""

from __future__ import annotations

import numpy as np

__all__ = ["placeholder"]


def placeholder(width: int, height: int, name: str, reason: str) -> np.ndarray:
    """A dark grey BGR picture of ``width`` x ``height`` naming the stream and ``reason``."""
    import cv2

    img = np.full((max(2, height), max(2, width), 3), 48, np.uint8)
    scale = max(0.4, width / 1280 * 1.5)
    lines = [(f"{name}: no signal", scale), (reason, scale * 0.6)]
    y = height // 2 - int(20 * scale)
    for text, size in lines:
        thick = max(1, int(2 * size))
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, thick)
        org = (max(0, (width - w) // 2), y + h)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, size, (200, 200, 200), thick)
        y += h + int(24 * size)
    return img
