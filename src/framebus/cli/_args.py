"""Argument types the commands share: each refuses a bad value with a one-line usage error."""

from __future__ import annotations

import argparse
import math

__all__ = ["seconds"]


def seconds(arg: str) -> float:
    """A positive, finite number of seconds (not nan, inf, 0 or negative)."""
    try:
        value = float(arg)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {arg!r}")
    return value
