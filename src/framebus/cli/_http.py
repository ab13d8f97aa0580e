"""The ``--http``/``--auth`` options that ``serve`` and ``web`` share."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from ..errors import FramebusError

__all__ = ["add_http_options", "check_auth", "start_web"]


def _bind(text: str) -> tuple[str, int]:
    from ..web._server import parse_bind

    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_http_options(p: argparse.ArgumentParser, *, default: str | None) -> None:
    p.add_argument(
        "--http",
        type=_bind,
        default=_bind(default) if default else None,
        metavar="[HOST:]PORT",
        help="serve the streams to browsers (MJPEG, a page, JSON, metrics)"
        + (f" (default {default})" if default else "; e.g. --http 8080"),
    )
    p.add_argument(
        "--auth",
        metavar="FILE|env:VAR",
        help="HTTP Basic authentication: user:password from FILE or the environment variable",
    )


def _web() -> Any:
    try:
        from .. import web
    except ImportError as exc:
        raise FramebusError(
            f"the web view needs framebus[web] (pip install 'framebus[web]'): {exc}"
        ) from None
    return web


def check_auth(source: str) -> None:
    """What ``--auth`` (or a config file's ``http.auth``) names holds ``user:password``."""
    _web().read_auth(source)


def web_app(names: list[str] | None, args: argparse.Namespace) -> tuple[Any, Any]:
    """(the ASGI app, its encoder hub) for ``names`` (None: every stream)."""
    web = _web()
    auth = web.read_auth(args.auth) if args.auth else None
    hub = web.EncoderHub()
    return web.app(names, hub=hub, auth=auth), hub


def make_server(names: list[str] | None, args: argparse.Namespace, out: TextIO) -> Any:
    """A :class:`framebus.web.WebServer` for ``--http``, not started; prints where to look."""
    from .._hosts import is_loopback
    from ..web import WebServer

    app, hub = web_app(names, args)
    host, port = args.http
    server = WebServer(app, host, port, hub=hub, max_connections=args.max_connections)
    if not args.auth and not is_loopback(host):
        print(
            f"framebus: warning: serving {host} without --auth: anyone who can reach port "
            f"{server.port} sees the streams",
            file=sys.stderr,
        )
    print(f"framebus: open {server.url} in a browser", file=out, flush=True)
    return server


def start_web(names: list[str], args: argparse.Namespace, out: TextIO) -> Any:
    """Start the server of ``--http`` in a thread (None without ``--http``)."""
    if args.http is None:
        return None
    server = make_server(names, args, out)
    server.start()
    return server
