"""Argument types the commands share: each refuses a bad value with a one-line usage error."""

from __future__ import annotations

import argparse
import contextlib
import math

from ..limits import DEFAULT_MAX_CONNECTIONS

__all__ = ["add_max_connections", "connections", "quiet_library_logs", "raise_fd_limit", "seconds"]


def seconds(arg: str) -> float:
    """A positive, finite number of seconds (not nan, inf, 0 or negative)."""
    try:
        value = float(arg)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {arg!r}")
    return value


def connections(arg: str) -> int:
    """A connection limit: a whole number 1..1000000."""
    value = int(arg) if arg.isascii() and arg.isdigit() else 0
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(
            f"expected a number of connections 1..1000000, got {arg!r}"
        )
    return value


def add_max_connections(
    p: argparse.ArgumentParser, default: int | None = DEFAULT_MAX_CONNECTIONS
) -> None:
    """``--max-connections``; ``default=None`` leaves it None when not given (a config file's
    value may apply: the command line wins)."""
    p.add_argument(
        "--max-connections",
        type=connections,
        default=default,
        metavar="N",
        help="connections each network wing (--http, --zmq) keeps open at most; beyond, new ones "
        f"are refused (default {DEFAULT_MAX_CONNECTIONS}, at most half the descriptor limit)",
    )


def raise_fd_limit() -> None:
    """Raise this process's soft limit of open descriptors to its hard limit (systemd's
    default soft limit, 1024, is a few hundred viewers): the wings' caps stay below it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # a hard limit the kernel refuses (above fs.nr_open): keep the soft one
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def quiet_library_logs() -> None:
    """The command prints its own status lines: framebus's log records (warnings Python would
    print to stderr with no handler set) would say each thing twice."""
    import logging

    logging.getLogger("framebus").addHandler(logging.NullHandler())
    logging.getLogger("framebus").propagate = False
