"""The pure core: names, word packing, slot sizes, layout bounds."""

from __future__ import annotations

import numpy as np
import pytest

import framebus
from framebus.bus import _layout as lay_mod


@pytest.mark.parametrize("name", ["a", "cam1", "front-door_2", "A" * 48])
def test_valid_names(name: str) -> None:
    assert lay_mod.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a.b", "a/b", "a b", "A" * 49, "é", "_x"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(framebus.InvalidStreamName, match="invalid stream name"):
        lay_mod.validate_name(name)


def test_latest_word_round_trip() -> None:
    for seq, slot in [(0, 0), (1, 3), (2**50, 254)]:
        assert lay_mod.unpack_latest(lay_mod.pack_latest(seq, slot)) == (seq, slot)


def test_slot_bytes_page_aligned() -> None:
    assert lay_mod.slot_bytes(1) == 4096
    assert lay_mod.slot_bytes(1920 * 1080 * 3) % 4096 == 0
    assert lay_mod.slot_bytes(1920 * 1080 * 3) >= 1920 * 1080 * 3


def test_dtype_codes() -> None:
    for dt in (np.uint8, np.uint16, np.float32):
        assert lay_mod.dtype_from_code(lay_mod.dtype_code(np.dtype(dt))) == np.dtype(dt)
    with pytest.raises(ValueError, match="not supported"):
        lay_mod.dtype_code(np.dtype(np.complex64))


def test_layout_fields_do_not_overlap() -> None:
    lay = lay_mod.ControlLayout(4, 8)
    assert lay.readers_offset == lay_mod.Hdr.SLOTS + 4 * lay_mod.SLOT_DESC_SIZE
    assert lay.size == lay.readers_offset + 8 * lay_mod.READER_SIZE
    assert max(f for f in lay_mod.Hdr if f < lay_mod.Hdr.ERROR_MSG) + 8 <= lay_mod.Hdr.ERROR_MSG
    with pytest.raises(ValueError):
        lay_mod.ControlLayout(1, 8)
    with pytest.raises(ValueError):
        lay_mod.ControlLayout(4, 0)


def test_public_modules_define_all() -> None:
    import importlib

    for mod in ("errors", "sources", "stats", "reader", "publisher", "capture", "registry"):
        m = importlib.import_module(f"framebus.{mod}")
        assert hasattr(m, "__all__"), mod
        for name in m.__all__:
            assert hasattr(m, name), (mod, name)
    for name in framebus.__all__:
        assert hasattr(framebus, name)
