"""The bus: the shared-memory frame ring every frame crosses.

The only package that reads or writes header words; everything above it uses these names.

* ``_layout``: the byte layout of the segments and the pure rules around it (no I/O);
* ``_control``: a mapped control segment, validated, with typed accessors for its fields;
* ``_protocol``: the slot protocol, one :class:`RingWriter` and any number of
  :class:`RingReader` s in any processes;
* ``_packets``: the packet ring beside it (a camera's encoded access units), one
  :class:`PacketRingWriter` and any number of :class:`PacketRingReader` s;
* ``_segments``: creating, taking over, finding and removing a stream's segments.
"""

from __future__ import annotations

from ._control import Control
from ._layout import (
    CLOCKS,
    MAX_CHANNELS,
    SEEK_VALUE_MAX,
    Mode,
    State,
    dtype_code,
    media_ns,
    valid_name,
    validate_name,
)
from ._packets import PacketCodec, PacketRecord, PacketRingReader, PacketRingWriter
from ._protocol import FrameMeta, RingReader, RingWriter
from ._segments import (
    CAPTURE_MODULE,
    create_stream,
    dead_stream,
    orphaned_data_streams,
    remove_orphaned,
    remove_stream,
    stream_names,
)

__all__ = [
    "CAPTURE_MODULE",
    "CLOCKS",
    "MAX_CHANNELS",
    "SEEK_VALUE_MAX",
    "Control",
    "FrameMeta",
    "Mode",
    "PacketCodec",
    "PacketRecord",
    "PacketRingReader",
    "PacketRingWriter",
    "RingReader",
    "RingWriter",
    "State",
    "create_stream",
    "dead_stream",
    "dtype_code",
    "media_ns",
    "orphaned_data_streams",
    "remove_orphaned",
    "remove_stream",
    "stream_names",
    "valid_name",
    "validate_name",
]
