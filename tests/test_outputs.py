"""framebus.outputs: the status files of pushes and recorders are untrusted input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from framebus import _platform as plat
from framebus.outputs import PREFIX, StatusFile, _parse, list_outputs, prune_outputs

SHM = Path(plat.SHM_DIR)


def test_a_status_file_is_listed_while_its_process_lives_and_then_pruned() -> None:
    status = StatusFile("record", "door", "/var/rec")
    status.update("recording", "passthrough", "", {"segments": 2})
    try:
        [o] = [o for o in list_outputs("door") if o.pid == os.getpid()]
        assert (o.kind, o.state, o.counts) == ("record", "recording", {"segments": 2})
    finally:
        status.close()
    assert not (SHM / status.name).exists()
    # a process that died without removing its file: ignored, then pruned
    code = (
        "from framebus.outputs import StatusFile\n"
        "s = StatusFile('push', 'yard', 'rtsp://x/y'); s.update('live', '', '', {})\n"
        "print(s.name)\n"
        "import os; os._exit(0)\n"
    )
    name = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    assert (SHM / name).exists()
    assert not [o for o in list_outputs() if o.stream == "yard" and o.target == "rtsp://x/y"]
    assert prune_outputs() >= 1 and not (SHM / name).exists()


def test_hostile_files_are_left_out(tmp_path: Path) -> None:
    start = plat.process_start_time(os.getpid())
    made = []
    try:
        good = {"kind": "push", "stream": "s", "target": "t", "state": "live", "detail": "",
                "error": "", "counts": {}}  # fmt: skip
        bad = [
            b"x" * 5000,  # too big
            b"\x80\x81",  # not UTF-8
            b"[" * 100_000,  # deep
            json.dumps({**good, "kind": "exec"}).encode(),
            json.dumps({**good, "counts": {"n": -1}}).encode(),
            json.dumps({**good, "counts": {"n": 1.5}}).encode(),
            json.dumps({**good, "state": "a\nb"}).encode(),
            json.dumps({**good, "extra": 1}).encode(),
        ]
        for i, data in enumerate(bad):
            path = SHM / f"{PREFIX}{os.getpid()}.{start}.{900 + i}"
            path.write_bytes(data)
            made.append(path)
        link = SHM / f"{PREFIX}{os.getpid()}.{start}.999"
        target = tmp_path / "elsewhere"
        target.write_text(json.dumps(good))
        link.symlink_to(target)  # a link: not followed
        made.append(link)
        assert [o for o in list_outputs() if o.pid == os.getpid()] == []
    finally:
        for p in made:
            p.unlink(missing_ok=True)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=8)
        ),
        max_leaves=20,
    )
)
def test_the_parser_takes_any_json_and_returns_or_refuses(value: object) -> None:  # fmt: skip
    try:
        status = _parse(json.dumps(value).encode(), 1)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    assert status.kind in ("push", "record")
