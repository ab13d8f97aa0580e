"""framebus serve --config: the TOML file checked before anything starts (good, each kind of
bad, fuzzed), the service it runs with its health endpoint, the systemd unit and the example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import framebus
from conftest import wait_until
from framebus.config import load_config, parse_config
from framebus.testing import RTSPServer, rtsp_server_available
from webtools import http_get

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "framebus.toml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path: Path) -> None:
    (tmp_path / "auth").write_text("me:secret\n")
    (tmp_path / "rec").mkdir()
    cfg = load_config(write(tmp_path, f"""
max_connections = 200
[http]
listen = "0.0.0.0:8080"
auth = "{tmp_path / 'auth'}"
[zmq]
listen = "tcp://0.0.0.0:5555"
codec = "raw"
[streams.door]
source = "rtsp://user:pass@10.0.0.7/stream1"
slots = 6
mode = "latest"
reconnect = {{ stall_timeout = 10, backoff_max = 60 }}
push = "rtsp://mediamtx:8554/door"
record = {{ out = "{tmp_path / 'rec'}", segment = 300, keep = ["7d", "50G"], pre = 10 }}
[streams.yard]
source = "testpattern:640x480@10"
reconnect = false
push = {{ url = "rtsp://mediamtx:8554/yard", fps = 10, transport = "udp", encode = true }}
"""))  # fmt: skip
    assert cfg.max_connections == 200 and cfg.http is not None and cfg.zmq is not None
    assert cfg.http.listen == ("0.0.0.0", 8080) and cfg.zmq.codec == "raw"
    door, yard = cfg.streams
    assert (door.name, door.options["slots"]) == ("door", 6)
    assert door.options["reconnect"] == framebus.Reconnect(stall_timeout=10, backoff_max=60)
    assert door.record is not None and door.record.keep_seconds == 7 * 86400
    assert door.record.keep_bytes == 50 << 30 and door.record.segment == 300
    assert yard.options["reconnect"] is False
    assert yard.push is not None and (yard.push.fps, yard.push.transport) == (10, "udp")
    clips = parse_config({"streams": {"c": {"source": "testpattern",
                                            "record": {"out": str(tmp_path), "segment": False,
                                                       "pre": 5}}}})  # fmt: skip
    assert clips.streams[0].record is not None and clips.streams[0].record.segment is None
    assert (
        load_config(ROOT / "deploy" / "framebus.toml.example").streams
        if (ROOT / "deploy" / "framebus.toml.example").exists()
        else True
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("streams = [", "not valid TOML"),
        ("[http]\nlisten = 8080", "streams: missing"),
        ("[streams]", "streams: empty"),
        ("[streams.a]\nsource = 'testpattern'\nslot = 4", "streams.a.slot: unknown key"),
        ("[streams.a]\nsource = 'testpattern'\nslots = 'four'",
         "streams.a.slots: expected an integer from 2 to 255, not 'four'"),
        ("[streams.a]\nsource = 'testpattern'\nslots = 1", "streams.a.slots: expected an integer"),
        ("[streams.a]\nsource = 'testpattern'\nmode = 'fast'", "streams.a.mode: expected one of"),
        ("[streams.a]\nsource = 'testpattern'\nrealtime = 'yes'", "expected true or false"),
        ("[streams.a]\nslots = 4", "streams.a.source: missing"),
        ("[streams.'a b']\nsource = 'testpattern'", "streams.'a b': not a stream name"),
        ("[streams.a]\nsource = '/no/such/file.mp4'", "streams.a.source: "),
        ("[streams.a]\nsource = 'rtsp://admin:se/cret@cam/p'", "must be percent-encoded"),
        ("[streams.a]\nsource = 'testpattern'\nreconnect = { stall = 3 }",
         "streams.a.reconnect.stall: unknown key"),
        ("[streams.a]\nsource = 'testpattern'\nreconnect = { backoff_factor = 0.5 }",
         "streams.a.reconnect: backoff_factor must be >= 1"),
        ("[streams.a]\nsource = 'testpattern'\npush = 'http://x/y'",
         "streams.a.push.url: expected an rtsp:// URL"),
        ("[streams.a]\nsource = 'testpattern'\npush = { url = 'rtsp://x/y', fps = 0 }",
         "streams.a.push.fps: expected a number from 0.1 to 240"),
        ("[streams.a]\nsource = 'testpattern'\nrecord = { out = '/no/such/dir' }",
         "streams.a.record.out: no such directory"),
        ("[streams.a]\nsource = 'testpattern'\nrecord = { out = '/tmp', keep = '7 weeks' }",
         "streams.a.record.keep: expected an age"),
        ("[http]\nlisten = 'nowhere:x'\n[streams.a]\nsource = 'testpattern'", "http.listen: "),
        ("[http]\nauth = '/no/such/auth'\n[streams.a]\nsource = 'testpattern'",
         "http.auth: no such file"),
        ("[zmq]\nlisten = 'udp://x:1'\n[streams.a]\nsource = 'testpattern'",
         "zmq.listen: expected tcp://"),
        ("[zmq]\nlisten = 'tcp://x:port'\n[streams.a]\nsource = 'testpattern'", "zmq.listen: "),
        ("[streams.a]\nsource = 'testpattern'\nrecord = { out = '/tmp', keep = '0s' }",
         "streams.a.record.keep: keeping nothing"),
        ("colour = 'blue'\n[streams.a]\nsource = 'testpattern'", "colour: unknown key"),
    ],
)  # fmt: skip
def test_each_kind_of_bad_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(framebus.ConfigError) as caught:
        load_config(write(tmp_path, text))
    said = str(caught.value)
    assert message in said, said
    assert said.startswith(str(tmp_path / "framebus.toml") + ": ")
    assert "\n" not in said and "cret" not in said


def test_files_that_are_not_config_files(tmp_path: Path) -> None:
    with pytest.raises(framebus.ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(framebus.ConfigError, match="larger than"):
        load_config(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(framebus.ConfigError, match="not UTF-8"):
        load_config(binary)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
_keys = st.sampled_from(["source", "slots", "mode", "push", "record", "reconnect", "realtime",
                         "max_readers", "start_timeout", "x"])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["streams", "http", "zmq", "max_connections", "y"]),
                    _values | st.dictionaries(st.text(max_size=8), st.dictionaries(
                        _keys, _values, max_size=5), max_size=3), max_size=4)
)  # fmt: skip
def test_any_document_is_taken_or_refused_with_a_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = parse_config(data, "fuzz.toml")
    except framebus.ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ") and "\n" not in str(exc)
        return
    assert cfg.streams


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "framebus", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_check_says_fine_or_one_line(tmp_path: Path) -> None:
    good = write(tmp_path, "[streams.a]\nsource = 'testpattern:320x240@10'\n")
    done = run_cli("serve", "--config", str(good), "--check")
    assert done.returncode == 0 and "1 streams, fine" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[streams.a]\nsource = 'testpattern'\nslots = 'x'\n")
    done = run_cli("serve", "--config", str(bad), "--check")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("framebus: error: ") and "streams.a.slots" in done.stderr


def test_relative_paths_are_next_to_the_file(tmp_path: Path, monkeypatch: Any) -> None:
    """A service starts in / : relative paths in the file are the file's directory's."""
    home = tmp_path / "etc"
    (home / "rec").mkdir(parents=True)
    (home / "keys").mkdir()
    (home / "auth").write_text("me:secret\n")
    (home / "clip.mp4").write_bytes(b"\0" * 16)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(write(home, """
[http]
auth = "auth"
[zmq]
listen = "tcp://127.0.0.1:5555"
curve = "keys"
[streams.a]
source = "clip.mp4"
record = { out = "rec" }
[streams.b]
source = "testpattern:320x240@10"
[streams.c]
source = "rtsp://10.0.0.7/live"
"""))  # fmt: skip
    assert cfg.http is not None and cfg.http.auth == str(home / "auth")
    assert cfg.zmq is not None and cfg.zmq.curve == str(home / "keys")
    a, b, c = cfg.streams
    assert a.source == str(home / "clip.mp4") and a.record is not None
    assert a.record.out == str(home / "rec")
    assert (b.source, c.source) == ("testpattern:320x240@10", "rtsp://10.0.0.7/live")
    # a path relative to the working directory, not the file's, is not found
    (elsewhere / "other.mp4").write_bytes(b"\0" * 16)
    with pytest.raises(framebus.ConfigError, match=r"streams\.x\.source"):
        load_config(write(home, "[streams.x]\nsource = 'other.mp4'\n"))


def test_check_reads_the_auth_file(tmp_path: Path) -> None:
    (tmp_path / "auth").write_text("no colon here\n")
    path = write(tmp_path, "[http]\nauth = 'auth'\n[streams.a]\nsource = 'testpattern'\n")
    done = run_cli("serve", "--config", str(path), "--check")
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "expected user:password" in done.stderr and "no colon" not in done.stderr
    (tmp_path / "auth").write_text("me:secret\n")
    assert run_cli("serve", "--config", str(path), "--check").returncode == 0


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    from framebus.cli import build_parser
    from framebus.cli.serve import _apply_config
    from framebus.limits import DEFAULT_MAX_CONNECTIONS

    path = write(tmp_path, "max_connections = 9\n[streams.a]\nsource = 'testpattern'\n")
    given = build_parser().parse_args(["serve", "--config", str(path), "--max-connections", "7"])
    _apply_config(given)
    assert given.max_connections == 7
    unsaid = build_parser().parse_args(["serve", "--config", str(path)])
    _apply_config(unsaid)
    assert unsaid.max_connections == 9
    plain = tmp_path / "plain.toml"
    plain.write_text("[streams.a]\nsource = 'testpattern'\n")
    neither = build_parser().parse_args(["serve", "--config", str(plain)])
    _apply_config(neither)
    assert neither.max_connections is None  # (run() applies the default after the file)
    assert DEFAULT_MAX_CONNECTIONS != 9


def health(port: int) -> int:
    try:
        return http_get(port, "/healthz")[0]
    except OSError:  # (not listening yet)
        return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not rtsp_server_available(), reason="needs GStreamer's RTSP server")
def test_a_service_from_one_file_and_its_health(stream_name: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "auth").write_text("me:secret\n")
    with RTSPServer(size="320x240") as cam:
        cfg = write(tmp_path, f"""
[http]
listen = "127.0.0.1:{port}"
auth = "{tmp_path / 'auth'}"
[streams.{stream_name}-a]
source = "testpattern:320x240@10"
slots = 3
[streams.{stream_name}-b]
source = "{cam.url()}"
reconnect = {{ stall_timeout = 1, backoff_initial = 0.2, backoff_max = 0.5 }}
""")  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebus", "serve", "--config", str(cfg), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_until(lambda: health(port) == 200, 30)
            _, _, body = http_get(port, "/healthz")  # no credentials needed
            assert json.loads(body) == {"ok": True, "live": 2, "streams": 2}
            assert http_get(port, "/api/streams")[0] == 401  # the rest needs them
            [a] = [s for s in framebus.list_streams() if s.name == f"{stream_name}-a"]
            assert (a.state, a.width) == ("live", 320)
            cam.stop()  # a camera goes away: the box is not healthy
            assert wait_until(lambda: health(port) == 503, 20)
            assert json.loads(http_get(port, "/healthz")[2])["live"] == 1
            cam.start()
            assert wait_until(lambda: health(port) == 200, 30)
        finally:
            proc.terminate()
            proc.communicate(timeout=15)
    assert proc.returncode in (0, 143)  # (143: SIGTERM's exit, the unit's SuccessExitStatus)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """The unit as shipped, its framebus pointed at this one (verify wants the command to be
    there)."""
    unit = (ROOT / "deploy" / "framebus.service").read_text()
    venv_bin = Path(sys.executable).parent
    wrapper = venv_bin / "framebus"
    if not wrapper.exists():
        pytest.skip("no framebus command in this environment")
    unit = unit.replace("/opt/framebus/bin/framebus", str(wrapper))
    unit = unit.replace("User=framebus", "User=root").replace("Group=framebus", "Group=root")
    path = tmp_path / "framebus.service"
    path.write_text(unit)
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, env=env)  # fmt: skip
    problems = [line for line in done.stderr.splitlines() if "framebus.service" in line]
    assert done.returncode == 0 and not problems, done.stderr


def test_the_example_config_is_a_good_file() -> None:
    example = (ROOT / "deploy" / "framebus.toml").read_text()
    example = example.replace('auth = "/etc/framebus/auth"', "# (auth: a file of yours)")
    cfg = parse_config(__import__("tomllib").loads(example), "deploy/framebus.toml")
    assert [s.name for s in cfg.streams] == ["door", "yard"]
