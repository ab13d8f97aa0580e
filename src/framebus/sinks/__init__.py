"""Sinks: the output side of framebus (web, network, pipes, sampling), on one shared base.

Every sink attaches to one stream, picks frames (:class:`Pick`), encodes each chosen frame
once and hands the same result to each consumer through its mailbox: a one-item
:class:`LatestSlot`, or for frames that depend on each other (H.264, :mod:`.h264`) a
:class:`~framebus.sinks.gop.GopSlot` that skips whole groups of pictures.
The pipe writer (:mod:`framebus.pipe.sink`) has one consumer, the pipe, and pulls instead: it
reads the newest frame only when the pipe has taken the previous one (see its docstring).
:mod:`.hub` holds the sinks of a process under one idle policy.
"""

from __future__ import annotations

from .base import (
    ConsumerStats,
    Encoded,
    FrameSink,
    LatestSlot,
    Mailbox,
    MailboxBase,
    Pick,
    PickKind,
    SinkClosed,
    SinkStats,
    Subscription,
)

__all__ = [
    "ConsumerStats",
    "Encoded",
    "FrameSink",
    "LatestSlot",
    "Mailbox",
    "MailboxBase",
    "Pick",
    "PickKind",
    "SinkClosed",
    "SinkStats",
    "Subscription",
]
