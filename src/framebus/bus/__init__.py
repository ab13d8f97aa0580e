"""The bus: the shared-memory frame ring every frame crosses.

The only package that reads or writes header words. ``_layout`` is the byte layout (no I/O),
``_protocol`` the slot protocol (one writer, any number of readers, in any processes).
"""

from __future__ import annotations
