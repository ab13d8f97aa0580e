"""Test helpers that ship with framebus: a real RTSP server, and the send-time barcode.

:class:`RTSPServer` runs GStreamer's RTSP server (Debian packages ``python3-gi
gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
gstreamer1.0-plugins-ugly``) under the system's ``/usr/bin/python3`` on 127.0.0.1. Every frame
carries its send time as a barcode; :func:`read_timestamp` decodes it from a received frame, so
the true age of a frame can be measured for any reader. :func:`paint_timestamp` paints the same
barcode on a frame of one's own (it survives JPEG).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

__all__ = ["CHROMIUM_FLAGS", "RTSPRecordServer", "RTSPServer", "chromium_path", "encode_replay",
           "paint_timestamp", "read_timestamp", "rtsp_server_available"]  # fmt: skip

# Debian's chromium, headless, for the page's tests and benchmarks: without the
# background-networking flags it keeps trying to reach Google's hosts on a machine with no
# internet; no sandbox as root, no GPU on these machines
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """Debian's (or Ubuntu's) chromium, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


SERVER_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
_BITS, _ROWS = 64, 32


def rtsp_server_available() -> bool:
    """True if the system Python has GStreamer's RTSP server bindings."""
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def encode_replay(
    path: str | os.PathLike[str],
    *,
    size: str = "1280x720",
    fps: int = 25,
    seconds: float = 20.0,
    bitrate: str = "4M",
) -> None:
    """Encode ``seconds`` of camera-like H.264 (FFmpeg's ``testsrc2`` with sensor noise,
    High profile, no B-frames, a keyframe every 2 s, as cameras send) to ``path`` for
    ``RTSPServer(replay=path)``: Annex-B with an access unit delimiter before each unit."""
    width, height = size.split("x")
    source = f"testsrc2=size={width}x{height}:rate={fps},noise=alls=12:allf=t"
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
           "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
           "-pix_fmt", "yuv420p", "-bf", "0", "-g", str(2 * fps), "-b:v", bitrate,
           "-maxrate", bitrate, "-bufsize", bitrate, "-x264-params", "aud=1", "-f", "h264",
           os.fspath(path)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


class RTSPServer:
    """A real RTSP server on 127.0.0.1 serving H.264 test video with send-time barcodes.

    ``with RTSPServer(size="640x360", fps=25) as srv: url = srv.url()``. ``stop()``/``start()``
    (or ``restart(size=...)``) simulate a camera reboot or reconfiguration on the same port;
    ``hang_after=N`` makes it stop sending after N frames while keeping connections open.
    With ``user``/``password`` it asks for ``auth`` (Basic or Digest) authentication;
    ``codec="h265"`` or ``"jpeg"`` serves H.265 (x265) or RTP/JPEG instead of H.264.
    ``address`` and ``netns`` serve from another address, in a network namespace
    (``ip netns``) of the caller's. ``protocols="udp"`` (or ``"tcp"``) limits the RTP
    transports it accepts (``"all"``: UDP, UDP multicast and TCP); a server limited to UDP
    answers a TCP ``SETUP`` with ``tcp_refusal``: 461 Unsupported Transport (GStreamer's own
    answer) or 400 Bad Request (as some cameras do). :meth:`transports` tells which transport
    each accepted ``SETUP`` chose. ``replay=PATH`` serves a pre-encoded H.264 file (Annex-B,
    an access unit delimiter before each access unit, see :func:`encode_replay`) in a loop at
    ``fps`` instead of encoding test video: cameras that cost next to no CPU (no barcodes).
    ``clock_offset=-0.8`` sends RTCP sender reports by a clock 0.8 s behind this machine's (a
    camera whose clock is off); the barcodes stay this machine's send times.
    """

    def __init__(
        self,
        *,
        size: str = "640x360",
        fps: int = 25,
        mounts: tuple[str, ...] = ("/cam",),
        user: str | None = None,
        password: str | None = None,
        hang_after: int | None = None,
        port: int | None = None,
        auth: Literal["basic", "digest"] = "basic",
        codec: Literal["h264", "h265", "jpeg"] = "h264",
        address: str = "127.0.0.1",
        netns: str | None = None,
        protocols: Literal["all", "udp", "tcp"] = "all",
        tcp_refusal: Literal[461, 400] = 461,
        replay: str | os.PathLike[str] | None = None,
        clock_offset: float | None = None,
    ) -> None:
        self.size, self.fps, self.mounts = size, fps, mounts
        self.user, self.password, self.hang_after = user, password, hang_after
        self.auth, self.codec = auth, codec
        self.address, self.netns = address, netns
        self.protocols, self.tcp_refusal = protocols, tcp_refusal
        self.replay, self.clock_offset = replay, clock_offset
        self.port = port or _free_port()
        self.proc: subprocess.Popen[str] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None

    def url(self, mount: str | None = None, *, credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if self.user and credentials else ""
        return f"rtsp://{auth}{self.address}:{self.port}{mount or self.mounts[0]}"

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            raise RuntimeError("RTSP server already running")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--size", self.size,
               "--fps", str(self.fps), "--address", self.address]  # fmt: skip
        if self.netns:  # ip netns exec runs the server itself (exec), so its pid is the server's
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        for m in self.mounts:
            cmd += ["--mount", m]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or "", "--auth", self.auth]
        cmd += ["--codec", self.codec, "--protocols", self.protocols]
        cmd += ["--tcp-refusal", str(self.tcp_refusal), "--log", str(self._log_path())]
        if self.hang_after is not None:
            cmd += ["--hang-after", str(self.hang_after)]
        if self.replay is not None:
            cmd += ["--replay", os.fspath(self.replay)]
        if self.clock_offset is not None:
            cmd += [f"--clock-offset={self.clock_offset!r}"]  # (-1e-05 is no option)
        self._launch(cmd, timeout)

    def _launch(self, cmd: list[str], timeout: float) -> None:
        """Start the server's process and wait for its ``READY`` line."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")

    def _log_path(self) -> Path:
        if self._logdir is None:  # (removed when this object is collected, or at exit)
            self._logdir = tempfile.TemporaryDirectory(prefix="framebus-rtsp-")
        return Path(self._logdir.name) / "setups"

    def transports(self) -> list[str]:
        """The RTP transport of each ``SETUP`` the server accepted so far, in order, since it
        was made (across restarts): ``"tcp"``, ``"udp"`` or ``"udp-mcast"``."""
        try:
            return self._log_path().read_text().split()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.communicate()

    def kill(self) -> None:
        """Kill the server at once, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def restart(self, **changes: object) -> None:
        """Stop, apply ``changes`` (e.g. ``size="320x240"``), start again on the same port."""
        self.stop()
        for key, value in changes.items():
            setattr(self, key, value)
        self.start()

    def __enter__(self) -> RTSPServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


RECORD_SCRIPT = Path(__file__).with_name("gst_rtsp_server_record.py")


class RTSPRecordServer(RTSPServer):
    """A real RTSP server that takes pushes on ``/in`` (ANNOUNCE/RECORD) and serves what was
    pushed, unchanged, on ``/out``: ``push_url()``, ``play_url()``. ``protocols="udp"`` makes
    the record mount refuse RTP over TCP (461). :meth:`events` lists what happened: ``setup
    tcp``/``setup udp``, ``record``, ``au BYTES KEY``, ``teardown``. ``stop``/``start``/``kill``
    as :class:`RTSPServer`'s (the same port)."""

    def __init__(
        self,
        *,
        codec: Literal["h264", "h265"] = "h264",
        protocols: Literal["all", "udp", "tcp"] = "all",
        port: int | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        super().__init__(codec=codec, protocols=protocols, port=port, address=address)

    def push_url(self) -> str:
        return f"rtsp://{self.address}:{self.port}/in"

    def play_url(self) -> str:
        return f"rtsp://{self.address}:{self.port}/out"

    def start(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            raise RuntimeError("RTSP server already running")
        cmd = [SYSTEM_PYTHON, str(RECORD_SCRIPT), "--port", str(self.port), "--address",
               self.address, "--codec", self.codec, "--protocols", self.protocols,
               "--log", str(self._log_path())]  # fmt: skip
        self._launch(cmd, timeout)

    def events(self) -> list[str]:
        """What the server saw so far (across restarts), a line each."""
        try:
            return self._log_path().read_text().splitlines()
        except FileNotFoundError:
            return []

    def __enter__(self) -> RTSPRecordServer:
        self.start()
        return self


def read_timestamp(frame: np.ndarray) -> float | None:
    """The send time (``time.time()``) painted by :class:`RTSPServer`, or None if unreadable."""
    if frame.ndim < 2 or frame.shape[0] < _ROWS or frame.shape[1] < _BITS * 4:
        return None
    bw = frame.shape[1] // _BITS
    band = frame[8 : _ROWS - 8].astype(np.float32)
    if band.ndim == 3:
        band = band.mean(axis=2)
    cols = band.mean(axis=0)
    value = 0
    for i in range(_BITS):
        level = float(cols[i * bw + bw // 4 : i * bw + 3 * bw // 4].mean())
        if 70 < level < 180:
            return None  # neither black nor white: not a barcode
        if level >= 128:
            value |= 1 << i
    seconds = value / 1e6
    return seconds if 1e9 < seconds < 1e10 else None


def paint_timestamp(frame: np.ndarray, seconds: float) -> None:
    """Paint ``seconds`` (a ``time.time()``) on ``frame`` (H x W or H x W x C uint8, at least
    32 x 256) in place, as the barcode :class:`RTSPServer` paints: 64 black/white blocks across
    the top 32 rows, bit i of the microseconds in block i. :func:`read_timestamp` reads it."""
    if frame.ndim < 2 or frame.shape[0] < _ROWS or frame.shape[1] < _BITS * 4:
        raise ValueError(f"a frame of {frame.shape} is too small for the barcode")
    bw = frame.shape[1] // _BITS
    stamp = int(seconds * 1e6)
    bits = (stamp >> np.arange(_BITS, dtype=np.uint64).astype(np.int64)) & 1
    row = np.repeat(np.where(bits == 1, 235, 16).astype(np.uint8), bw)
    band = frame[:_ROWS]
    band[...] = 16
    if band.ndim == 3:
        band[:, : row.size] = row[None, :, None]
    else:
        band[:, : row.size] = row[None, :]
