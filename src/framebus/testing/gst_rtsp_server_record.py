"""A real RTSP server that takes pushes, for tests and benchmarks: GStreamer's RTSP server with a
record mount (ANNOUNCE/RECORD) whose access units it serves again, unchanged, on a play mount.

Runs under Debian's own /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-{base,good,bad}); it needs neither numpy nor framebus.

usage: gst_rtsp_server_record.py --port P [--address A] [--record /in] [--play /out]
                                 [--codec h264|h265] [--protocols all|udp|tcp] [--log FILE]
Prints "READY <port>" on stdout once it listens. --protocols limits the transports the record
mount takes (a TCP SETUP to a UDP-only mount is answered 461). --log appends a line per event:
"setup tcp|udp" for each record SETUP, "record" when a push starts, "au <bytes> <key 0|1>" for
each access unit pushed, "teardown" when a pusher leaves.
"""

import argparse
import signal
import socket
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--record", default="/in")
    ap.add_argument("--play", default="/out")
    ap.add_argument("--codec", choices=("h264", "h265"), default="h264")
    ap.add_argument("--protocols", choices=("all", "udp", "tcp"), default="all")
    ap.add_argument("--log")
    args = ap.parse_args()
    log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115

    def note(line):
        if log is not None:
            log.write(line + "\n")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    # a client per thread: a player's DESCRIBE waits for the pushed stream's first access unit,
    # which the pusher's own connection must then be free to deliver
    server.get_thread_pool().set_max_threads(8)
    c = args.codec
    caps = f"video/x-{c},stream-format=byte-stream,alignment=au"
    record = GstRtspServer.RTSPMediaFactory()
    record.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    # the relay: the pushed RTP, depayloaded and payloaded again, to a UDP port on loopback that
    # the play mount reads (no Python between the two pipelines); a tee hands each access unit
    # to the log
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        relay = probe.getsockname()[1]
    record.set_launch(
        f"( rtp{c}depay name=depay0 ! {c}parse config-interval=-1 ! {caps} ! tee name=t "
        f"t. ! queue ! rtp{c}pay pt=96 config-interval=-1 mtu=1400 "
        f"! udpsink host=127.0.0.1 port={relay} sync=false async=false "
        "t. ! queue ! appsink name=sink emit-signals=true sync=false async=false )"
    )
    record.set_protocols(
        {
            "all": GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP,
            "udp": GstRtsp.RTSPLowerTrans.UDP,
            "tcp": GstRtsp.RTSPLowerTrans.TCP,
        }[args.protocols]
    )
    udp_ports = GstRtspServer.RTSPAddressPool()
    first = (args.port if args.port + 128 <= 65535 else args.port - 128) & ~1
    udp_ports.add_range(args.address, args.address, first, first + 127, 0)
    record.set_address_pool(udp_ports)
    play = GstRtspServer.RTSPMediaFactory()
    rtp_caps = f"application/x-rtp,media=video,clock-rate=90000,encoding-name={c.upper()}"
    play.set_launch(
        f'( udpsrc address=127.0.0.1 port={relay} caps="{rtp_caps}" ! rtp{c}depay '
        f"! {c}parse config-interval=-1 ! rtp{c}pay name=pay0 pt=96 config-interval=-1 )"
    )
    play.set_shared(True)
    play.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)

    def on_sample(sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        note(f"au {buf.get_size()} {int(key)}")
        return Gst.FlowReturn.OK

    def on_record(_factory, media):
        sink = media.get_element().get_child_by_name("sink")
        sink.connect("new-sample", on_sample)
        note("record")

    record.connect("media-configure", on_record)
    server.get_mount_points().add_factory(args.record, record)
    server.get_mount_points().add_factory(args.play, play)

    def on_setup(_client, ctx):
        lower = ctx.trans.get_transport().lower_transport
        note("setup " + ("tcp" if lower == GstRtsp.RTSPLowerTrans.TCP else "udp"))

    def on_client(_server, client):
        client.connect("setup-request", on_setup)
        client.connect("teardown-request", lambda _c, _ctx: note("teardown"))

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
