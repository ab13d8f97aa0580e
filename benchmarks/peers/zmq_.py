"""The peers of the ``network`` scenario: frames between machines over ZeroMQ, each peer as its
documentation shows, its sender and its receiver each in a process of its own.

- imagezmq ``ImageSender``/``ImageHub``, REQ/REP (the default) with ``send_image`` (raw) and
  ``send_jpg``, and PUB/SUB (``REQ_REP=False``) with ``send_jpg`` and ``send_image``;
- vidgear ``NetGear`` with its defaults (pattern 0, ``zmq.PAIR``, a reply per frame, JPEG by
  simplejpeg when installed; the receiver's thread fills a 96-frame deque that ``recv()``
  pops from the old end, busy-waiting while it is empty);
- the seeds' PUB/SUB (seed 004): ``send_multipart([b"camera_A", base64.b64encode(jpeg)])``;
- framebus: ``framebus serve NAME=testpattern:WxH@FPS --zmq tcp://...`` (JPEG, or raw with
  ``--zmq-codec raw``) and ``framebus.attach("zmq://HOST:PORT/NAME")``;
- a plain pyzmq PUSH/PULL of the same raw bytes (the engine's limit, for frames/s only).

Every peer's sender draws framebus's test pattern (:class:`framebus.sources.pattern.PatternSource`,
the code ``framebus serve testpattern`` runs), paced like a camera, and paints the capture time
on it as the barcode of :func:`framebus.testing.paint_timestamp` before encoding; its receiver
reads the barcode back from the decoded frame. framebus carries the capture time in its wire
header (``reader.info.timestamp``).
"""

from __future__ import annotations

import base64
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from ..common import exit_with_parent

__all__ = [
    "NET_PEERS",
    "NetPeer",
    "framebus_serve_command",
    "framebus_zmq_missing",
    "peer_missing",
    "receive_main",
    "send_main",
]

STREAM = "camera_A"


@dataclass(frozen=True)
class NetPeer:
    key: str
    label: str
    codec: str
    """``jpeg`` or ``raw``: what crosses the wire."""
    fanout: bool
    """Several receivers can take one sender's frames (PUB/SUB)."""
    settings: str
    framebus: bool = False
    reference: bool = False
    """Only a reference for the raw frames/s (no age, no barcode)."""


NET_PEERS: dict[str, NetPeer] = {
    p.key: p
    for p in (
        NetPeer(
            "imagezmq-reqrep-raw", "imagezmq REQ/REP send_image", "raw", False,
            "`ImageSender(connect_to=...)`, `send_image(name, frame)` (waits for the hub's "
            "reply); `ImageHub(open_port=...)`, `recv_image()`, the consumer's work, then "
            "`send_reply(b'OK')`, as imagezmq's examples do",
        ),
        NetPeer(
            "imagezmq-reqrep-jpg", "imagezmq REQ/REP send_jpg", "jpeg", False,
            "as REQ/REP above with `cv2.imencode('.jpg', frame, [IMWRITE_JPEG_QUALITY, 95])` "
            "and `send_jpg`/`recv_jpg` + `cv2.imdecode` (quality 95 as its examples)",
        ),
        NetPeer(
            "imagezmq-pubsub-jpg", "imagezmq PUB/SUB send_jpg", "jpeg", True,
            "`ImageSender(connect_to='tcp://*:PORT', REQ_REP=False)` (binds a PUB), `send_jpg`; "
            "`ImageHub(open_port='tcp://HOST:PORT', REQ_REP=False)`, `recv_jpg`, no reply; "
            "ZeroMQ's default high-water marks (1000 messages)",
        ),
        NetPeer(
            "imagezmq-pubsub-raw", "imagezmq PUB/SUB send_image", "raw", True,
            "PUB/SUB as above with `send_image`/`recv_image`",
        ),
        NetPeer(
            "netgear", "vidgear NetGear (defaults)", "jpeg", False,
            "`NetGear(address=HOST, port=PORT, logging=False)`, `send(frame)`; "
            "`NetGear(receive_mode=True, ...)`, `recv()`: pattern 0 (`zmq.PAIR`) with a reply per "
            "frame, JPEG quality 90 by simplejpeg, a 96-frame receive deque",
        ),
        NetPeer(
            "seeds-b64", "seeds' base64 JPEG PUB/SUB", "jpeg", True,
            "seed 004: PUB `send_multipart([b'camera_A', base64.b64encode(jpeg)])` with "
            "`cv2.imencode('.jpg', frame)` (quality 95); SUB `recv_multipart`, `b64decode`, "
            "`cv2.imdecode`; the seed's 640x480 resize and 10 ms sleep left out",
        ),
        NetPeer(
            "framebus-jpeg", "framebus zmq (JPEG)", "jpeg", True,
            "`framebus serve NAME=testpattern:WxH@FPS --zmq tcp://HOST:PORT` (its default JPEG "
            "quality), `framebus.attach('zmq://HOST:PORT/NAME')`, `read_frame()`",
            framebus=True,
        ),
        NetPeer(
            "framebus-raw", "framebus zmq (raw)", "raw", True,
            "as above with `--zmq-codec raw`",
            framebus=True,
        ),
        NetPeer(
            "pyzmq", "plain pyzmq PUSH/PULL (bytes)", "raw", False,
            "`PUSH.send(frame, copy=False)` of one precomputed frame as fast as it goes, "
            "`PULL.recv(copy=False)`: no drawing, no decoding, the engine's limit",
            reference=True,
        ),
    )
}  # fmt: skip


def peer_missing(peer: NetPeer) -> str | None:
    """The Python package ``peer`` needs that is not installed, if any."""
    import importlib.util

    needs = {"imagezmq": "imagezmq", "netgear": "vidgear"}
    for prefix, package in needs.items():
        if peer.key.startswith(prefix) and importlib.util.find_spec(package) is None:
            return package
    return "pyzmq" if importlib.util.find_spec("zmq") is None else None


def framebus_zmq_missing() -> str | None:
    """Why framebus's rows cannot run (no pyzmq, or no ``serve --zmq`` in this framebus)."""
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "pyzmq is not installed"
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return None if "--zmq" in out.stdout else "this framebus has no `serve --zmq`"


def framebus_serve_command(
    peer: NetPeer, name: str, width: int, height: int, fps: float | None, bind: str, port: int
) -> list[str]:
    rate = 1000 if fps is None else fps  # 1000 fps: as fast as it goes
    source = f"testpattern:{width}x{height}@{rate:g}"
    cmd = [sys.executable, "-m", "framebus", "serve", f"{name}={source}"]
    cmd += ["--zmq", f"tcp://{bind}:{port}", "--quiet"]
    if peer.codec == "raw":
        cmd += ["--zmq-codec", "raw"]
    return cmd


# --- the senders ---------------------------------------------------------------------------------


def _jpeg(frame: np.ndarray, quality: int = 95) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf  # type: ignore[no-any-return]


def send_main(
    key: str,
    width: int,
    height: int,
    fps: float | None,
    bind: str,
    connect: str,
    port: int,
    sent: Any,
) -> None:
    """The sender of peer ``key`` until SIGTERM: binds on ``bind`` or connects to ``connect``
    (whichever the peer does) at ``port``; counts its frames in ``sent`` (a shared integer)."""
    exit_with_parent()
    from framebus.sources.pattern import PatternSource
    from framebus.sources.spec import TestPattern
    from framebus.testing import paint_timestamp

    if key == "pyzmq":
        _send_plain(width, height, bind, port, sent)
        return
    source = PatternSource(TestPattern(width, height, fps))
    source.open()

    def frames() -> Iterator[np.ndarray]:
        while True:
            frame = source.read()
            assert frame is not None
            paint_timestamp(frame, time.time())
            yield frame

    with contextlib.ExitStack() as stack:
        if key.startswith("imagezmq"):
            import imagezmq

            reqrep = "reqrep" in key
            address = f"tcp://{connect}:{port}" if reqrep else f"tcp://{bind}:{port}"
            sender = imagezmq.ImageSender(connect_to=address, REQ_REP=reqrep)
            stack.callback(sender.close)
            for frame in frames():
                if key.endswith("jpg"):
                    sender.send_jpg(STREAM, _jpeg(frame))
                else:
                    sender.send_image(STREAM, frame)
                sent.value += 1
        elif key == "netgear":
            from vidgear.gears import NetGear

            server = NetGear(address=connect, port=str(port), logging=False)
            stack.callback(server.close)
            for frame in frames():
                server.send(frame)
                sent.value += 1
        elif key == "seeds-b64":
            import zmq

            context = zmq.Context()
            publisher = context.socket(zmq.PUB)
            stack.callback(context.term)
            stack.callback(publisher.close, 0)
            publisher.bind(f"tcp://{bind}:{port}")
            for frame in frames():
                publisher.send_multipart([STREAM.encode(), base64.b64encode(_jpeg(frame))])
                sent.value += 1
        else:
            raise ValueError(f"no sender for {key!r}")


def _send_plain(width: int, height: int, bind: str, port: int, sent: Any) -> None:
    import zmq

    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    try:
        sock.bind(f"tcp://{bind}:{port}")
        while True:
            sock.send(frame, copy=False)
            sent.value += 1
    finally:
        sock.close(0)
        ctx.term()


# --- the receivers -------------------------------------------------------------------------------


class _Receiver:
    """One peer's receiving end: :meth:`get` returns (decoded frame or None, capture time or
    None) the way the peer's users get a frame; :meth:`done` after the consumer's work."""

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        raise NotImplementedError

    def done(self) -> None:
        pass

    def close(self) -> None:
        pass


def _poll(sock: Any, timeout: float) -> bool:
    return bool(sock.poll(int(timeout * 1000)))


class _ImageZmq(_Receiver):
    def __init__(self, key: str, bind: str, connect: str, port: int) -> None:
        import imagezmq

        self.reqrep = "reqrep" in key
        self.jpg = key.endswith("jpg")
        address = f"tcp://{bind}:{port}" if self.reqrep else f"tcp://{connect}:{port}"
        self.hub = imagezmq.ImageHub(open_port=address, REQ_REP=self.reqrep)

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        if not _poll(self.hub.zmq_socket, timeout):
            return None, None
        if self.jpg:
            import cv2

            _, buf = self.hub.recv_jpg()
            return cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR), None
        _, image = self.hub.recv_image()
        return image, None

    def done(self) -> None:
        if self.reqrep:
            self.hub.send_reply(b"OK")

    def close(self) -> None:
        self.hub.close()


class _NetGear(_Receiver):
    def __init__(self, bind: str, port: int) -> None:
        from vidgear.gears import NetGear

        self.client = NetGear(address=bind, port=str(port), receive_mode=True, logging=False)

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        return self.client.recv(), None  # no timeout: NetGear's recv() waits in a busy loop

    def close(self) -> None:
        # NetGear's receive thread dies with a ZMQError when its socket is closed under it
        import threading

        hook = threading.excepthook

        def quiet(args: Any) -> None:
            if not (args.thread and args.thread.name == "NetGear"):
                hook(args)

        threading.excepthook = quiet
        self.client.close()


class _Seeds(_Receiver):
    def __init__(self, connect: str, port: int) -> None:
        import zmq

        self.context = zmq.Context()
        self.subscriber = self.context.socket(zmq.SUB)
        self.subscriber.connect(f"tcp://{connect}:{port}")
        self.subscriber.setsockopt_string(zmq.SUBSCRIBE, STREAM)

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        import cv2

        if not _poll(self.subscriber, timeout):
            return None, None
        [_address, contents] = self.subscriber.recv_multipart()
        receive_frame = base64.b64decode(contents)
        frame = np.frombuffer(receive_frame, dtype=np.uint8)
        return cv2.imdecode(frame, 1), None

    def close(self) -> None:
        self.subscriber.close(0)
        self.context.term()


class _Framebus(_Receiver):
    def __init__(self, url: str) -> None:
        import framebus

        self.reader = framebus.attach(url, timeout=10)

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        from framebus.errors import ReadTimeout

        try:
            frame = self.reader.read_frame(timeout=timeout)
        except ReadTimeout:
            return None, None
        info = self.reader.info
        return frame, (info.timestamp if info is not None else None)

    def close(self) -> None:
        self.reader.release()


class _Plain(_Receiver):
    def __init__(self, connect: str, port: int) -> None:
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.connect(f"tcp://{connect}:{port}")

    def get(self, timeout: float) -> tuple[np.ndarray | None, float | None]:
        if not _poll(self.sock, timeout):
            return None, None
        msg = self.sock.recv(copy=False)
        return np.frombuffer(msg.buffer, np.uint8), None

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def _receiver(key: str, bind: str, connect: str, port: int, name: str) -> _Receiver:
    if key.startswith("imagezmq"):
        return _ImageZmq(key, bind, connect, port)
    if key == "netgear":
        return _NetGear(bind, port)
    if key == "seeds-b64":
        return _Seeds(connect, port)
    if key.startswith("framebus"):
        return _Framebus(f"zmq://{connect}:{port}/{name}")
    if key == "pyzmq":
        return _Plain(connect, port)
    if key == "framebus-local":  # the exporter's own ring on its machine, by name
        return _Framebus(name)
    raise ValueError(f"no receiver for {key!r}")


def receive_main(
    key: str,
    bind: str,
    connect: str,
    port: int,
    name: str,
    seconds: float,
    work: float,
    jitter: float,
    conn: Connection,
) -> None:
    """The receiver of peer ``key``: says ``("ready", None)``, then takes frames for ``seconds``
    (from its first frame), working ``work`` s (spread by +- ``jitter``/2) per frame, and sends
    ``("result", {"t": receive times, "age": ages, "frames": n, "unreadable": n})``; an error
    as ``("error", text)``. The receive time is taken once the frame is decoded."""
    exit_with_parent()
    from framebus.testing import read_timestamp

    try:
        rx = _receiver(key, bind, connect, port, name)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    times: list[float] = []
    ages: list[float] = []
    frames = unreadable = 0
    try:
        conn.send(("ready", None))
        end = None
        while end is None or time.monotonic() < end:
            frame, stamp = rx.get(1.0)
            now = time.time()
            if frame is None:
                if end is None and conn.poll():  # told to give up waiting for a first frame
                    break
                continue
            end = end or time.monotonic() + seconds
            frames += 1
            if key != "pyzmq":
                stamp = stamp if stamp is not None else read_timestamp(frame)
                if stamp is None:
                    unreadable += 1
                else:
                    times.append(now)
                    ages.append(now - stamp)
            if work:
                time.sleep(max(0.0, work + random.uniform(-jitter / 2, jitter / 2)))
            rx.done()
        conn.send(("result", {"t": times, "age": ages, "frames": frames, "unreadable": unreadable}))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        rx.close()
