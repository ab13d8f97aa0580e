"""The rules of the house (docs/design.md, section 1), checked on the source text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "framebus"
FILES = sorted(p for p in PKG.rglob("*.py") if "gst_rtsp_server" not in p.name)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the framebus modules ``path`` imports."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("framebus")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("framebus"):
                continue
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}  # `from . import x` imports x
    return out


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_only_bus_touches_header_words(path: Path) -> None:
    if in_package(module_name(path), "framebus.bus"):
        return
    text = path.read_text()
    for word in ("Hdr.", "Rdr.", "Slot."):
        assert word not in text, f"{module_name(path)} touches header words ({word})"


LOW = ("framebus.bus", "framebus.sources", "framebus.wire", "framebus._platform", "framebus._zmq",
       "framebus._hosts", "framebus._frames")  # fmt: skip
HIGH = ("framebus.publisher", "framebus.reader", "framebus.videocapture", "framebus.capture",
        "framebus.cli", "framebus.sinks", "framebus.registry", "framebus.web")  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_low_layers_import_nothing_above_them(path: Path) -> None:
    me = module_name(path)
    if not any(in_package(me, low) for low in LOW):
        return
    above = sorted(n for n in imports(path) if any(in_package(n, h) for h in HIGH))
    assert not above, f"{me} imports {above}"


PUBLIC = {"framebus", "framebus.errors", "framebus.limits"}
# what a wing's sending half (a sink) shares with its receiving half (a source): the transport's
# own protocol, no reading API, so a sink may use it
WING_SHARED = (
    "framebus._zmq",  # the ZeroMQ wing: URLs, socket options, CURVE key files
    "framebus._hosts",  # what the network wings ask of a host name (no I/O)
    "framebus._frames",  # decoded frames as BGR, for the file sampler as for the RTSP backend
    "framebus._exit",  # closing what owns a thread at interpreter exit, before threads freeze
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_sinks_and_web_use_only_the_public_api(path: Path) -> None:
    me = module_name(path)
    wing = next((w for w in ("framebus.sinks", "framebus.web") if in_package(me, w)), None)
    if wing is None:
        return
    ok = (wing, "framebus.sinks")
    private = sorted(
        n
        for n in imports(path)
        if not any(in_package(n, w) for w in ok) and n not in PUBLIC
        and n.rpartition(".")[0] not in PUBLIC and not any(in_package(n, s) for s in WING_SHARED)
    )  # fmt: skip
    assert not private, f"{me} imports {private}"


# re-exports of a moved name, kept for one release: the only imports allowed to point upwards
SHIMS = {("framebus.capture", "framebus.videocapture")}


def test_no_import_cycles() -> None:
    modules = {module_name(p): p for p in FILES}
    graph = {
        m: {
            n
            for n in imports(p)
            if n in modules and n != m and not n.endswith("__main__") and (m, n) not in SHIMS
        }
        for m, p in modules.items()
    }
    # a package's __init__ re-exports its own modules: that edge is not a cycle
    for m in graph:
        graph[m] = {n for n in graph[m] if not in_package(n, m)}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*path[path.index(n) :], n] if n in path else [m, n]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
