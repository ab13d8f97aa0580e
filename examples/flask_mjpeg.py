"""Seed 003, video streaming with Flask: the camera in a background process, MJPEG to browsers.

The seed copies each frame into a ``multiprocessing.Array``, JPEG-encodes it in the main loop
as fast as the CPU goes (or once per viewer in ``gen()``), and serves ``/video_feed``. With
framebus the capture process and the shared frame are a named stream, and
``framebus.web.mjpeg_stream`` is the ``gen()``: it encodes each new frame once for all viewers
of the process, only while someone watches, never faster than the camera, and a slow viewer
skips frames instead of queueing them.

    python examples/flask_mjpeg.py [SOURCE] [--host 127.0.0.1] [--port 5000]

then open http://127.0.0.1:5000/ (needs ``pip install 'framebus[web]' flask``).
"""

from __future__ import annotations

import argparse
import os

import flask

import framebus
import framebus.web

PAGE = '<!doctype html><title>framebus</title><img src="/video_feed" alt="camera">'


def make_app(name: str) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.route("/")
    def index() -> str:
        return PAGE

    @app.route("/video_feed")
    def video_feed() -> flask.Response:
        frames = framebus.web.mjpeg_stream(name, environ=flask.request.environ)
        return flask.Response(frames, mimetype=framebus.web.MJPEG_MIMETYPE)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:1280x720@30")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--name", default=f"flask-{os.getpid()}", help="the stream's name")
    args = parser.parse_args()
    # the seed's get_from_stream() process; other programs may attach to args.name as well
    with framebus.publish(args.name, args.source):
        # threaded Werkzeug, as in the seed; the threads share one encoder per stream
        make_app(args.name).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
