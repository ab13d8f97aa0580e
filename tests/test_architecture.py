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
            names = {f"{name}.{a.name}" for a in node.names}  # `from . import x` imports x
            out |= names
            if not all(is_module(n) for n in names):  # only submodules: not the package's body
                out.add(name)
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


LOW = ("framebus.bus", "framebus.sources", "framebus.wire", "framebus._platform", "framebus._hosts",
       "framebus._frames", "framebus._order", "framebus._jpeg", "framebus._h264", "framebus._rtsp",
       "framebus._rtp", "framebus._fmp4", "framebus.outputs", "framebus._urls",
       # the ZeroMQ wing's receiving half and what both halves share: a source's floor
       "framebus.net.protocol", "framebus.net._sockets", "framebus.net.dial",
       "framebus.net.link", "framebus.net.receiver", "framebus.net.source", "framebus.net.limits",
       # the pipe wing's reading half: the source of `cam=-` and its parsers
       "framebus.pipe.framing", "framebus.pipe.mjpeg", "framebus.pipe.y4m",
       "framebus.pipe.source")  # fmt: skip
HIGH = ("framebus.publisher", "framebus.writer", "framebus.reader", "framebus.videocapture",
        "framebus.capture", "framebus.cli", "framebus.sinks", "framebus.registry", "framebus.web",
        "framebus.feeds", "framebus.sampling", "framebus.mediaserver", "framebus.gathering",
        "framebus.net.server", "framebus.net.sink", "framebus.net.exporter",
        "framebus.net.config", "framebus.net.feed", "framebus.net.listing")  # fmt: skip


def is_package_init(name: str) -> bool:
    return (PKG.parent / name.replace(".", "/") / "__init__.py").exists()


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_low_layers_import_nothing_above_them(path: Path) -> None:
    me = module_name(path)
    if not any(in_package(me, low) for low in LOW):
        return
    above = sorted(
        n
        for n in imports(path)
        if any(in_package(n, h) for h in HIGH)
        or (n == "framebus.net" or n == "framebus")  # a package's __init__ is its top floor
    )
    assert not above, f"{me} imports {above}"


# the public modules: what a user imports (each name checked against the module's __all__)
PUBLIC = {
    "framebus",
    "framebus.errors",
    "framebus.limits",
    "framebus.wire",
    "framebus.pipe",
    "framebus.outputs",
}
# what a wing's sending half (a sink) shares with its receiving half (a source) and the other
# wings: no reading API, so a sink may use it
WING_SHARED = (
    "framebus._hosts",  # what the network wings ask of a host name (no I/O)
    "framebus._frames",  # decoded frames as BGR, for the file sampler as for the RTSP backend
    "framebus._exit",  # closing what owns a thread at interpreter exit, before threads freeze
    "framebus._order",  # the order of wire frames (session, seq), for every wire reader
    "framebus._jpeg",  # the JPEG codec, for every wing that sends or receives JPEG (no I/O)
    "framebus._h264",  # H.264 access units (no I/O), for every wing that sends them
    "framebus._rtsp",  # RTSP messages, SDP, authentication (no I/O): the camera client's, push's
    "framebus._rtp",  # RTP out (no I/O): packets, sender reports, the SDP a push announces
    "framebus._fmp4",  # fragmented MP4 (no I/O): the web's MSE player's, the recordings'
    "framebus._urls",  # URLs with credentials (no I/O): redacted, checked; cameras' and pushes'
)
# the sending halves: they read streams as any user does, through the public API
WINGS = {
    "framebus.sinks": ("framebus.sinks",),
    "framebus.web": ("framebus.web", "framebus.sinks"),
    "framebus.net.server": ("framebus.net", "framebus.sinks"),
    "framebus.net.sink": ("framebus.net", "framebus.sinks"),
    "framebus.net.exporter": ("framebus.net", "framebus.sinks"),
    "framebus.net.config": ("framebus.net", "framebus.sinks"),
    "framebus.pipe.sink": ("framebus.pipe", "framebus.sinks"),
    "framebus.mediaserver": ("framebus.mediaserver", "framebus.sinks"),
}


def public_names(module: str) -> set[str]:
    """The ``__all__`` of a framebus module, read from its source."""
    path = PKG.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PKG.parent / module.replace(".", "/") / "__init__.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def is_module(name: str) -> bool:
    base = PKG.parent / name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def allowed_for_a_wing(name: str, own: tuple[str, ...]) -> bool:
    """Whether a sending half may import ``name``: its own wing's modules, the shared private
    ones, a public module, or a name a public module exports (``from framebus import
    _platform`` is a private module, not a public name: refused)."""
    if any(in_package(name, o) for o in own) or any(in_package(name, s) for s in WING_SHARED):
        return True
    if name in PUBLIC:
        return True
    parent, _, leaf = name.rpartition(".")
    return parent in PUBLIC and not is_module(name) and leaf in public_names(parent)


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_sending_halves_use_only_the_public_api(path: Path) -> None:
    me = module_name(path)
    wing = next((w for w in WINGS if in_package(me, w)), None)
    if wing is None:
        return
    private = sorted(n for n in imports(path) if not allowed_for_a_wing(n, WINGS[wing]))
    assert not private, f"{me} imports {private}"


def test_the_check_sees_a_private_module_imported_by_name() -> None:
    assert not allowed_for_a_wing("framebus._platform", ("framebus.sinks",))
    assert not allowed_for_a_wing("framebus.bus", ("framebus.sinks",))
    assert allowed_for_a_wing("framebus.attach", ("framebus.sinks",))
    assert not allowed_for_a_wing("framebus.no_such_name", ("framebus.sinks",))


def test_no_import_cycles() -> None:
    modules = {module_name(p): p for p in FILES}
    graph = {
        m: {n for n in imports(p) if n in modules and n != m and not n.endswith("__main__")}
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
