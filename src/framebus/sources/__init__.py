"""Frame sources: what a stream captures from.

* ``base``: the :class:`Source` base class that user sources subclass;
* ``spec``: typed specs of the built-in sources (:class:`TestPattern`, :class:`Media`), their
  JSON form for the trip to the capture process (never pickle), and :func:`redact`;
* ``_open``: spec -> source object, the one module that knows every backend;
* one module per backend: ``pattern``, ``opencv``, ``pyav``, ``pipe`` (standard input),
  ``rtsp`` (with ``_rtsp/``, framebus's
  own RTSP client); ``_ffmpeg`` (their shared FFmpeg settings), ``_net`` (socket errors worded
  once), ``_diagnose`` (why a source does not open).

A new kind of source is a spec dataclass in ``spec`` and a backend module; nothing above
``sources/`` changes.
"""

from __future__ import annotations

from ._open import open_spec
from .base import Source
from .spec import (
    Media,
    Pipe,
    Remote,
    SourceLike,
    Spec,
    TestPattern,
    redact,
    redact_text,
    secrets_of,
    spec_from_json,
    spec_to_json,
    to_spec,
)

__all__ = [
    "Media",
    "Remote",
    "Pipe",
    "Source",
    "SourceLike",
    "Spec",
    "TestPattern",
    "open_spec",
    "redact",
    "redact_text",
    "secrets_of",
    "spec_from_json",
    "spec_to_json",
    "to_spec",
]
