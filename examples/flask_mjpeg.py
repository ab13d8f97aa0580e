"""Seed 003, video streaming with Flask: the camera in a background process, MJPEG to browsers.

The seed copies each frame into a ``multiprocessing.Array``, marks it in its main loop
(``frame_marked``), JPEG-encodes it there as fast as the CPU goes (or once per viewer in
``gen()``), and serves ``/video_feed``. With framebus the capture process and the shared frame
are a named stream; the marking loop writes ``frame_marked`` into a second stream with
``framebus.VideoWriter`` (``like=`` keeps each frame's capture time); and
``framebus.web.mjpeg_stream`` is the ``gen()``: it encodes each new frame once for all viewers
of the process, only while someone watches, never faster than the frames come, and a slow
viewer skips frames instead of queueing them. ``/video_feed`` is the marked stream,
``/raw_feed`` the camera's.

    python examples/flask_mjpeg.py [SOURCE] [--host 127.0.0.1] [--port 5000]

then open http://127.0.0.1:5000/ (needs ``pip install 'framebus[web]' flask``).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import cv2
import flask

import framebus
import framebus.web

PAGE = '<!doctype html><title>framebus</title><img src="/video_feed" alt="camera">'


def make_app(marked: str, raw: str) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.route("/")
    def index() -> str:
        return PAGE

    def feed(name: str) -> flask.Response:
        frames = framebus.web.mjpeg_stream(name, environ=flask.request.environ)
        return flask.Response(frames, mimetype=framebus.web.MJPEG_MIMETYPE)

    app.add_url_rule("/video_feed", "video_feed", lambda: feed(marked))
    app.add_url_rule("/raw_feed", "raw_feed", lambda: feed(raw))
    return app


def mark_frames(camera: str, out: framebus.VideoWriter, stop: threading.Event) -> None:
    """The seed's main loop: ``frame_marked`` from each newest frame, written to ``out``."""
    with framebus.attach(camera) as cam:
        while not stop.is_set():
            try:
                frame = cam.read_frame(timeout=0.5)
            except framebus.ReadTimeout:
                continue
            assert cam.info is not None
            frame_marked = frame.copy()  # your drawing here; the camera's frame is read-only
            when = time.strftime("%H:%M:%S", time.localtime(cam.info.timestamp))
            cv2.putText(
                frame_marked, when, (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 128, 255), 3
            )
            out.write(frame_marked, like=cam.info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="testpattern:1280x720@30")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--name", default=f"flask-{os.getpid()}", help="the stream's name")
    args = parser.parse_args()
    marked = f"{args.name}-marked"
    # the seed's get_from_stream() process; other programs may attach to either stream as well
    with framebus.publish(args.name, args.source), framebus.VideoWriter(marked) as out:
        stop = threading.Event()
        marker = threading.Thread(target=mark_frames, args=(args.name, out, stop))
        marker.start()
        try:
            # threaded Werkzeug, as in the seed; the threads share one encoder per stream
            make_app(marked, args.name).run(host=args.host, port=args.port, threaded=True)
        finally:
            stop.set()
            marker.join()


if __name__ == "__main__":
    main()
