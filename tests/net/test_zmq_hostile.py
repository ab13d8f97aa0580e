"""A hostile or broken peer of the ZeroMQ wing: a server whose listing is an attack on the
terminal, key files that are not files, and bad options, each a one-line error."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

import framebus
from framebus.net import export, generate_keys, list_exports


class ListServer:
    """A ROUTER that answers every LIST with ``body``."""

    def __init__(self, body: bytes) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.body = body
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(100):
                peer, request = self.sock.recv_multipart()
                if request == b"LIST":
                    self.sock.send_multipart([peer, b"LIST " + self.body])

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def list_server() -> Iterator[Any]:
    made: list[ListServer] = []

    def make(body: bytes) -> ListServer:
        made.append(ListServer(body))
        return made[-1]

    yield make
    for server in made:
        server.close()


def listing(**kw: Any) -> str:
    return '{"streams": [' + entry(**kw) + "]}"


def entry(**kw: Any) -> str:
    row = {"name": "cam", "state": "live", "width": 320, "height": 240, "fps": 30.0,
           "mode": "latest", "codec": "jpeg", "receivers": 0}  # fmt: skip
    row.update(kw)
    import json

    return json.dumps(row)


HOSTILE = {
    "escape in name": listing(name="\x1b[2J\x1b]0;pwned\x07cam"),
    "line break in name": listing(name="cam\r\nroot  live"),
    "escape in state": listing(state="\x1b[31mlive"),
    "nested": '{"streams": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "nan fps": listing(fps=float("nan")),
    "not an object": "[1, 2]",
}


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_ls_never_prints_what_a_hostile_server_sends(list_server: Any, body: str) -> None:
    """Before: escape sequences and CR/LF in names went to the terminal raw; deep nesting gave
    a RecursionError traceback."""
    server = list_server(body.encode())
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "ls", f"zmq://127.0.0.1:{server.port}"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1, out
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framebus: error:"), out.stderr
    assert "the LIST answer is not valid" in lines[0]
    assert b"\x1b" not in out.stdout + out.stderr and b"\r" not in out.stdout + out.stderr


def test_a_valid_listing_still_lists(list_server: Any) -> None:
    server = list_server(listing().encode())
    rows = list_exports(f"zmq://127.0.0.1:{server.port}", timeout=10)
    assert rows == [
        {"name": "cam", "state": "live", "width": 320, "height": 240, "fps": 30.0,
         "mode": "latest", "codec": "jpeg", "receivers": 0}
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "x"])
def test_ls_refuses_a_timeout_that_is_not_a_positive_number(value: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "ls", "zmq://127.0.0.1:1", "--timeout", value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "expected a positive number of seconds" in out.stderr
    with pytest.raises(ValueError, match="timeout"):
        list_exports("zmq://127.0.0.1:1", timeout=float(value) if value != "x" else -1)


def test_key_files_that_are_not_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    """Before: server_key=/dev/zero ran the process out of memory; a missing key file was
    reported as "not a key file"."""
    keys = tmp_path / "keys"
    generate_keys(keys)
    with pytest.raises(framebus.KeyFileError, match="not a regular file"):
        framebus.attach(
            "zmq://127.0.0.1:1/cam", server_key="/dev/zero", client_key=keys / "client.key_secret"
        )
    with pytest.raises(framebus.KeyFileError, match="No such file"):
        framebus.attach(
            "zmq://127.0.0.1:1/cam", server_key=tmp_path / "missing.key",
            client_key=keys / "client.key_secret",
        )  # fmt: skip
    huge = tmp_path / "huge.key"
    with huge.open("wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(framebus.KeyFileError, match="not a key file"):
        framebus.attach(
            "zmq://127.0.0.1:1/cam", server_key=huge, client_key=keys / "client.key_secret"
        )
    (keys / "clients" / "evil.key").symlink_to("/dev/zero")
    with pytest.raises(framebus.KeyFileError, match=r"evil\.key is not a regular file"):
        export("tcp://127.0.0.1:0", curve=keys)


def test_a_bad_key_appearing_in_clients_keeps_the_old_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    caplog.set_level(logging.WARNING, "framebus.zmq")
    keys = tmp_path / "keys"
    generate_keys(keys)
    with framebus.publish("t-keys-" + str(id(tmp_path) % 10**6),
                          framebus.TestPattern(64, 48, fps=10)) as pub,\
            export("tcp://127.0.0.1:0", [pub.name], curve=keys) as ex:  # fmt: skip
        (keys / "clients" / "evil.key").symlink_to("/dev/zero")
        time.sleep(2.5)  # two looks at the folder
        with framebus.attach(ex.url(pub.name), curve=keys, timeout=10) as reader:
            reader.read_frame()  # still admitted, the exporter still alive
        assert ex.stats().restarts == 0
    assert any("evil.key" in r.getMessage() for r in caplog.records)
