"""A real RTSP server for tests and benchmarks: GStreamer's RTSP server, H.264 over RTP.

Runs under Debian's own /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,ugly}); it needs neither numpy nor framebus.

Each frame carries its send time as a barcode: 64 black/white blocks across the top 32 rows,
bit i (left to right) of ``time.time_ns() // 1000`` — so any reader can measure the true age
of a frame (``framebus.testing.barcode.read_timestamp``).

usage: gst_rtsp_server.py --port P [--address A] [--mount /cam] [--size 1280x720] [--fps 25]
                          [--user U --password P [--auth basic|digest]] [--hang-after N]
                          [--codec h264|h265|jpeg] [--protocols all|udp|tcp]
                          [--tcp-refusal 461|400] [--log FILE] [--replay FILE.h264]
                          [--clock-offset SECONDS]
Prints "READY <port>" on stdout once it listens on --address (default 127.0.0.1).

--protocols limits the RTP transports it accepts (GStreamer's default, all, is UDP, UDP multicast
and TCP); a TCP SETUP to a server limited to UDP is answered 461 Unsupported Transport, or with
--tcp-refusal 400 Bad Request (as some cameras do), and serves each client a pipeline of its own.
RTP over UDP is sent from ports on --address.
--log appends the transport of each SETUP it accepts (tcp, udp, udp-mcast) to FILE, a line each.
--clock-offset makes the camera's clock that far from this machine's (-0.8: 0.8 s behind): the
wall-clock times of its RTCP sender reports come from a clock shifted so, as a camera whose
clock is off sends them (the frames' barcodes stay this machine's send times).
--replay serves a pre-encoded H.264 stream (Annex-B, each access unit starting with an access
unit delimiter after a 4-byte start code, 00 00 00 01 09, the first a keyframe) in a loop at
--fps instead of encoding test video: a camera that costs this machine next to no CPU (no
barcodes: the frames' times come from the RTCP sender reports), for measuring many cameras at
once. Each mount plays it from its own start (its first client's), so the mounts' phases differ.
"""

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

BARCODE_BITS = 64
BARCODE_ROWS = 32
BLACK, WHITE = 16, 235


class Frames:
    """Makes I420 frames: a grey field, a moving bar, and the barcode of the send time."""

    def __init__(self, width, height, fps, hang_after):
        self.w, self.h, self.fps = width, height, fps
        self.hang_after = hang_after
        self.n = 0
        self.t0 = None
        chroma = (width // 2) * (height // 2)
        self.base_y = bytes([96]) * (width * height)
        self.uv = bytes([128]) * (2 * chroma)
        self.bw = width // BARCODE_BITS

    def next_frame(self):
        if self.hang_after is not None and self.n >= self.hang_after:
            return None  # a camera that stops sending but keeps the connection open
        if self.t0 is None:
            self.t0 = time.monotonic()
        due = self.t0 + self.n / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # paused for long (no client): resync, do not burst
            self.t0 = time.monotonic() - self.n / self.fps
        w, h = self.w, self.h
        y = bytearray(self.base_y)
        bar_x = (self.n * 8) % max(1, w - 40)
        bar = bytes([200]) * 40
        for row in range(BARCODE_ROWS + 8, h):
            off = row * w + bar_x
            y[off : off + 40] = bar
        stamp = time.time_ns() // 1000
        row_bytes = b"".join(
            bytes([WHITE if (stamp >> i) & 1 else BLACK]) * self.bw for i in range(BARCODE_BITS)
        )
        row_bytes += bytes([BLACK]) * (w - len(row_bytes))
        for row in range(BARCODE_ROWS):
            y[row * w : (row + 1) * w] = row_bytes
        self.n += 1
        return bytes(y) + self.uv


class AccessUnits:
    """The access units of a pre-encoded H.264 file, one per call at ``fps``, in a loop."""

    AUD = b"\x00\x00\x00\x01\x09"

    def __init__(self, units, fps):
        self.units = units
        self.fps = fps
        self.n = 0
        self.t0 = None

    def next_frame(self):
        if self.t0 is None:
            self.t0 = time.monotonic()
        delay = self.t0 + self.n / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # paused for long: resync, do not burst
            self.t0 = time.monotonic() - self.n / self.fps
        unit = self.units[self.n % len(self.units)]
        self.n += 1
        return unit


class ShiftedClock(Gst.SystemClock):
    """The wall clock ``offset`` seconds off, counted from 1900 (NTP's epoch): rtpbin takes the
    clock's time as it is for the sender reports' NTP times (ntp-time-source=clock-time)."""

    NTP_EPOCH = 2208988800  # seconds from 1900 to 1970

    def __init__(self, offset):
        super().__init__()
        self.offset = round((self.NTP_EPOCH + offset) * 1e9)
        self.set_property("clock-type", Gst.ClockType.REALTIME)

    def do_get_internal_time(self):
        return Gst.SystemClock.do_get_internal_time(self) + self.offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--mount", action="append", default=None)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--auth", choices=("basic", "digest"), default="basic")
    ap.add_argument("--hang-after", type=int)
    ap.add_argument("--codec", choices=("h264", "h265", "jpeg"), default="h264")
    ap.add_argument("--protocols", choices=("all", "udp", "tcp"), default="all")
    ap.add_argument("--tcp-refusal", type=int, choices=(461, 400), default=461)
    ap.add_argument("--log")
    ap.add_argument("--replay")
    ap.add_argument("--clock-offset", type=float)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    mounts = args.mount or ["/cam"]

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={args.fps}/1"
    encoders = {
        "h264": f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "bitrate=4000 ! rtph264pay name=pay0 pt=96 config-interval=1",
        "h265": f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "bitrate=4000 ! rtph265pay name=pay0 pt=96 config-interval=1",
        "jpeg": "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26",
    }
    launch = (
        f"( appsrc name=src is-live=true format=time do-timestamp=true caps={caps} "
        f"! {encoders[args.codec]} )"
    )
    replay = None
    if args.replay:
        if args.codec != "h264" or args.hang_after is not None:
            print("--replay serves H.264 as it is: no --codec, no --hang-after", file=sys.stderr)
            sys.exit(2)
        with open(args.replay, "rb") as f:
            replay = [AccessUnits.AUD + part for part in f.read().split(AccessUnits.AUD)]
        if len(replay) < 2:  # (the first part is what comes before the first delimiter)
            print("--replay: no access unit delimiters in the file", file=sys.stderr, flush=True)
            sys.exit(2)
        replay = replay[1:]
        h264 = f"video/x-h264,stream-format=byte-stream,alignment=au,framerate={args.fps}/1"
        launch = (
            f"( appsrc name=src is-live=true format=time do-timestamp=true caps={h264} "
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )

    def on_configure(factory, media):
        if replay is not None:
            frames = AccessUnits(replay, args.fps)
        else:
            frames = Frames(width, height, args.fps, args.hang_after)
        appsrc = media.get_element().get_child_by_name("src")
        if args.clock_offset is not None:  # sender reports by the pipeline's (shifted) clock

            def on_element(_bin, _sub, element):
                if element.get_factory() and element.get_factory().get_name() == "rtpbin":
                    element.set_property("ntp-time-source", "clock-time")

            media.get_element().get_parent().connect("deep-element-added", on_element)

        def need_data(src, _length):
            data = frames.next_frame()
            if data is not None:  # not pushing starves the pipeline: the stream goes silent
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))

        appsrc.connect("need-data", need_data)

    protocols = {
        "all": GstRtsp.RTSPLowerTrans.UDP
        | GstRtsp.RTSPLowerTrans.UDP_MCAST
        | GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
    }[args.protocols]
    # RTP over UDP from ports on --address (by default GStreamer binds them on every address)
    udp_ports = GstRtspServer.RTSPAddressPool()
    first = (args.port if args.port + 128 <= 65535 else args.port - 128) & ~1
    udp_ports.add_range(args.address, args.address, first, first + 127, 0)

    for mount in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_protocols(protocols)
        factory.set_address_pool(udp_ports)
        # a hung camera hangs per connection; a shared media is unusable for a moment after a
        # client that was refused TCP leaves (the next DESCRIBE gets a 503): not like a camera
        factory.set_shared(args.hang_after is None and args.protocols != "udp")
        factory.connect("media-configure", on_configure)
        if args.clock_offset is not None:
            factory.set_clock(ShiftedClock(args.clock_offset))
        if args.user:
            factory.add_role_from_structure(
                Gst.Structure.new_from_string(
                    "user, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"
                )
            )
        server.get_mount_points().add_factory(mount, factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.auth == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password or "", token)
        else:
            basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
            auth.add_basic(basic, token)
        server.set_auth(auth)

    def on_pre_setup(_client, ctx):
        _, transport = ctx.request.get_header(GstRtsp.RTSPHeaderField.TRANSPORT, 0)
        if args.protocols == "udp" and "TCP" in (transport or "").upper():
            return GstRtsp.RTSPStatusCode.BAD_REQUEST
        return GstRtsp.RTSPStatusCode.OK

    def on_setup(_client, ctx):
        lower = ctx.trans.get_transport().lower_transport
        name = {
            GstRtsp.RTSPLowerTrans.TCP: "tcp",
            GstRtsp.RTSPLowerTrans.UDP: "udp",
            GstRtsp.RTSPLowerTrans.UDP_MCAST: "udp-mcast",
        }.get(lower, str(lower))
        with open(args.log, "a") as f:
            f.write(name + "\n")

    def on_client(_server, client):
        if args.tcp_refusal == 400:
            client.connect("pre-setup-request", on_pre_setup)
        if args.log:
            client.connect("setup-request", on_setup)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr, flush=True)
        sys.exit(2)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
