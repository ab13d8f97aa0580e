"""The public surface: every module says what it exports, and the package exports the API."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import framebus
import framebus.errors

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(framebus.__path__, "framebus.")
    if not m.name.endswith("__main__") and "gst_rtsp_server" not in m.name
)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_has_what_it_declares(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_every_error_is_exported_at_the_top() -> None:
    errors = {
        n
        for n in framebus.errors.__all__
        if isinstance(getattr(framebus.errors, n), type)
        and issubclass(getattr(framebus.errors, n), framebus.FramebusError)
    }
    assert errors <= set(framebus.__all__)


def test_the_old_module_paths_are_gone() -> None:
    """framebus.backends and framebus.capture.VideoCapture were kept for one release (0.1)."""
    with pytest.raises(ImportError):
        import framebus.backends  # type: ignore[import-not-found]  # noqa: F401
    with pytest.raises(ImportError):
        from framebus.capture import VideoCapture  # type: ignore[attr-defined]  # noqa: F401
