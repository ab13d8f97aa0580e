"""``framebus serve``: publish streams until Ctrl-C, with a live status table."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from ..config import StreamConfig, load_config
from ..errors import ConfigError
from ..limits import DEFAULT_MAX_CONNECTIONS
from ..publisher import Publisher, StreamOptions
from ._args import add_max_connections, seconds
from ._http import add_http_options, start_web
from ._table import table
from ._zmq import add_zmq_options, curve_source, start_exporter

__all__ = ["DEFAULT_SOURCE", "add_parser", "run"]

DEFAULT_SOURCE = "test=testpattern:1280x720@30"


def _parse_stream(arg: str) -> tuple[str, str]:
    name, sep, source = arg.partition("=")
    if not sep or not name or not source:
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE, got {arg!r}")
    return name, source


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="publish streams until Ctrl-C, with a live status table",
        description="Publish each NAME=SOURCE as a named stream until Ctrl-C. SOURCE is a camera "
        "index, a file, a URL, testpattern[:WxH[@FPS]] or zmq://HOST:PORT/NAME (a relay of another "
        "machine's stream). With no stream: "
        f"{DEFAULT_SOURCE}.",
    )
    p.add_argument("streams", nargs="*", type=_parse_stream, metavar="NAME=SOURCE")
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="streams (with their options, pushes and recordings), HTTP and ZeroMQ settings "
        "from a TOML file, checked before anything starts",
    )
    p.add_argument("--check", action="store_true", help="with --config: check the file, then exit")
    p.add_argument(
        "--mode",
        choices=("latest", "every"),
        help="delivery mode (default: latest for live sources, every for files)",
    )
    p.add_argument("--realtime", action="store_true", help="pace files at their frame rate")
    p.add_argument("--slots", type=int, default=4, help="frames kept in shared memory")
    p.add_argument("--max-readers", type=int, default=64)
    p.add_argument("--interval", type=seconds, default=1.0, help="status refresh, seconds")
    p.add_argument("--duration", type=seconds, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no status output")
    add_http_options(p, default=None)
    add_zmq_options(p, required=False)
    add_max_connections(p, default=None)
    p.set_defaults(run=run)


def options(args: argparse.Namespace) -> StreamOptions:
    """The stream options given on the command line."""
    return StreamOptions(
        mode=args.mode, slots=args.slots, max_readers=args.max_readers, realtime=args.realtime
    )


def _apply_config(args: argparse.Namespace) -> list[StreamConfig]:
    """The config file's streams; its HTTP and ZeroMQ settings put into ``args`` (where the
    command line gave none)."""
    cfg = load_config(args.config)
    if cfg.http is not None:  # the command line wins, key by key (never auth lost to --http)
        args.http = args.http or cfg.http.listen
        args.auth = args.auth or cfg.http.auth
    if cfg.zmq is not None:
        if not args.zmq:
            args.zmq, args.zmq_codec, args.zmq_quality = (
                cfg.zmq.listen,
                cfg.zmq.codec,
                cfg.zmq.quality,
            )
        args.curve = args.curve or cfg.zmq.curve
    if args.max_connections is None:  # (the command line wins)
        args.max_connections = cfg.max_connections
    names = {n for n, _ in args.streams}
    for stream in cfg.streams:
        if stream.name in names:
            raise ConfigError(
                f"{args.config}: streams.{stream.name}: given on the command line too"
            )
    return list(cfg.streams)


def run(args: argparse.Namespace, out: TextIO) -> int:
    configured = _apply_config(args) if args.config else []
    if args.max_connections is None:
        args.max_connections = DEFAULT_MAX_CONNECTIONS
    if args.check:
        if not args.config:
            raise ValueError("--check checks a --config file: give one")
        if args.auth:  # its contents, as the server would read them when it starts
            from ._http import check_auth

            check_auth(args.auth)
        print(f"{args.config}: {len(configured)} streams, fine", file=out)
        return 0
    streams = [(c.name, c.source) for c in configured] + list(args.streams)
    streams = streams or [_parse_stream(DEFAULT_SOURCE)]
    extra = {c.name: c.options for c in configured}
    pubs: list[Publisher] = []
    outputs: list[Any] = []  # the config's pushes and recorders
    server = None
    exporter = None
    try:
        for name, source in streams:
            opts = {**options(args), **extra.get(name, {})}
            pubs.append(Publisher(name, curve_source(source, args), **opts))
        outputs = _start_outputs(configured)
        if not args.quiet:
            names = ", ".join(p.name for p in pubs)
            print(
                f"framebus: serving {names}; attach with framebus.attach(NAME); Ctrl-C stops",
                file=out,
                flush=True,
            )
        server = start_web([p.name for p in pubs], args, out)
        exporter = start_exporter([p.name for p in pubs], args, out)
        _watch(pubs, args, out)
    except KeyboardInterrupt:
        pass
    finally:
        for output in outputs:
            output.close()
        if exporter is not None:
            exporter.close()  # first: receivers see a disconnect, not the streams ending
        if server is not None:
            server.stop()
        for p in pubs:
            p.close()
    return 0


def _start_outputs(configured: list[StreamConfig]) -> list[Any]:
    """The pushes and recorders the config file asks for, started."""
    started: list[Any] = []
    try:
        for c in configured:
            if c.push is not None:
                from ..mediaserver import push

                p = c.push
                started.append(push(c.name, p.url, fps=p.fps, transport=p.transport,
                                    encode=p.encode))  # fmt: skip
            if c.record is not None:
                from ..recording import record

                r = c.record
                started.append(record(c.name, r.out, segment=r.segment, pre=r.pre,
                                      keep_seconds=r.keep_seconds, keep_bytes=r.keep_bytes,
                                      encode=r.encode))  # fmt: skip
    except BaseException:
        for output in started:
            output.close()
        raise
    return started


def _watch(pubs: list[Publisher], args: argparse.Namespace, out: TextIO) -> None:
    """Redraw the status table every ``--interval`` until every stream is over."""
    tty = out.isatty()
    drawn = 0
    end = None if args.duration is None else time.monotonic() + args.duration
    while True:
        try:
            stats = [p.stats() for p in pubs]
        except OSError:  # out of descriptors for /proc, say: the streams go on, look again
            stats = []
        if stats and not args.quiet:
            lines = table(stats)
            if tty:
                if drawn:
                    out.write(f"\x1b[{drawn}F")
                out.write("".join(line + "\x1b[K\n" for line in lines))
                drawn = len(lines)
            else:
                out.write("\n".join(lines[1:]) + "\n")
            out.flush()
        if stats and all(s.state in ("ended", "failed", "closed") for s in stats):
            return
        wait = args.interval
        if end is not None:
            wait = min(wait, end - time.monotonic())
            if wait <= 0:
                return
        time.sleep(wait)
