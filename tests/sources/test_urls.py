"""URLs hold secrets: every parse error is a SourceOpenError saying what is wrong, raised in the
caller's process, and neither it nor redact() ever shows the credentials (with a hypothesis
property test over random passwords). FRAMEBUS_FUZZ_SECONDS=N runs the properties longer."""

from __future__ import annotations

import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import framebus
from conftest import framebus_segments
from framebus.sources import redact, redact_text, secrets_of, to_spec
from fuzzing import fuzz

SECRET = "hunter2"
ENCODE = "must be percent-encoded"

BAD_URLS = [
    (f"rtsp://user:pa/ss{SECRET}@127.0.0.1:1/x", ENCODE),
    (f"rtsp://user:{SECRET}/@127.0.0.1:1/x", ENCODE),
    (f"rtsp://user:{SECRET}#2@127.0.0.1:1/x", ENCODE),
    (f"rtsp://user:{SECRET}?x@127.0.0.1:1/x", ENCODE),
    (f"rtsp://user:/{SECRET}@127.0.0.1:1/x", ENCODE),
    (f"rtsp://user:{SECRET}@127.0.0.1:99999/x", "invalid port"),
    (f"rtsp://user:{SECRET}@127.0.0.1:-1/x", "invalid port"),
    (f"rtsp://user:{SECRET}@127.0.0.1:0/x", "invalid port"),
    (f"rtsp://user:{SECRET}@127.0.0.1:55x/x", "invalid port"),
    ("rtsp://[::1", "IPv6"),
    (f"rtsp://user:{SECRET}@[::1/x", "IPv6"),
    (f"rtsp://user:{SECRET}]@10.0.0.1/x", "IPv6"),
    (f"rtsp://user:{SECRET}[zz]@10.0.0.1/x", "IPv6"),
    (f"rtsp://user:{SECRET}\uff03@10.0.0.1/x", "not allowed"),
    (f"rtsp://user:{SECRET}@/x", "no host"),
    ("http:///video.mjpg", "no host"),
]


@pytest.mark.parametrize(("url", "needle"), BAD_URLS)
def test_bad_urls_raise_source_open_error_without_the_secret(url: str, needle: str) -> None:
    with pytest.raises(framebus.SourceOpenError, match="invalid URL") as info:
        to_spec(url)
    assert needle in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in redact(url)
    with pytest.raises(framebus.SourceOpenError) as info2:
        to_spec(framebus.Media(url))  # a Media is checked as a plain string is
    assert SECRET not in str(info2.value)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://user:p%2Fss%23x%3Fy@127.0.0.1:1/x",  # what the error asks for
        "rtsp://user:p@ss:word@10.0.0.1:554/a/b?c=d",  # @ and : in a password need no encoding
        "rtsp://[::1]:8554/stream",
        "rtsp://cam.local/live@main",  # an @ in the path (ambiguous, but valid)
        "http://cam/video.cgi?user=me@example.com&pwd=x",
        "udp://@239.0.0.1:1234",  # FFmpeg's multicast listening syntax
        "rtsp://cam:/x",  # an empty port means the default one
    ],
)
def test_valid_urls_pass(url: str) -> None:
    spec = to_spec(url)
    assert isinstance(spec, framebus.Media) and spec.target == url


def test_redact_keeps_the_host_and_hides_what_it_cannot_split() -> None:
    assert redact("rtsp://u:p@[::1]:8554/x") == "rtsp://***@[::1]:8554/x"
    assert redact("rtsp://u:p@ss@Cam.local/x") == "rtsp://***@Cam.local/x"
    assert redact(f"rtsp://u:{SECRET}/x@10.0.0.1/x") == "rtsp://***"
    assert redact(f"rtsp://u:{SECRET}@h:99999/x") == "rtsp://***"
    assert redact("rtsp://[::1") == "rtsp://***"
    assert redact("not a url [") == "not a url ["  # nothing to hide: no credentials syntax
    assert redact("http://cam/v?token=abc&res=hd") == "http://cam/v?token=***&res=hd"


@pytest.mark.parametrize(("url", "needle"), BAD_URLS[:7])
def test_publish_and_videocapture_raise_in_the_callers_process(
    url: str, needle: str, stream_name: str
) -> None:
    before = framebus_segments()
    t0 = time.monotonic()
    with pytest.raises(framebus.SourceOpenError) as info:
        framebus.publish(stream_name, url)
    with pytest.raises(framebus.SourceOpenError) as info2:
        framebus.VideoCapture(url)
    assert time.monotonic() - t0 < 2  # no capture process was started to find out
    for exc in (info.value, info2.value):
        assert needle in str(exc) and SECRET not in str(exc)
    assert framebus_segments() == before


@pytest.mark.parametrize(("url", "needle"), [BAD_URLS[0], BAD_URLS[2], BAD_URLS[5], BAD_URLS[9]])
def test_serve_prints_one_line_without_the_secret(url: str, needle: str, stream_name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "framebus", "serve", f"{stream_name}={url}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framebus: error: invalid URL"), out.stderr
    assert needle in lines[0]
    assert SECRET not in out.stdout + out.stderr


def test_a_path_that_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(framebus.SourceOpenError, match="not a regular file, not a video file"):
        to_spec("/dev/null")
    with pytest.raises(framebus.SourceOpenError, match="is a directory"):
        to_spec(str(tmp_path))
    with pytest.raises(framebus.SourceNotFound, match="no such file"):
        to_spec(str(tmp_path / "missing.mp4"))
    with pytest.raises(framebus.SourceNotFound, match="no such file"):
        to_spec(str(tmp_path / "missing" / "x.mp4"))


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "1" * 5000])
def test_digits_that_are_not_a_camera_index_are_a_file_name(text: str) -> None:
    # str.isdigit() takes "²", "٣" and 5,000 digits; int() raised ValueError on the first and
    # the last, and a camera index is none of them: each is a (missing) file's name
    missing = (framebus.SourceNotFound, framebus.SourceOpenError)
    with pytest.raises(missing, match=r"no such file|too long"):
        to_spec(text)


# -- properties -----------------------------------------------------------------------------


# printable characters, the URL delimiters among them (no tab or newline: urlsplit drops those)
PASSWORD_CHARS = string.ascii_letters + string.digits + string.punctuation + " "
passwords = st.text(PASSWORD_CHARS, min_size=4, max_size=24)
hosts = st.sampled_from(["10.0.0.7", "cam.local", "[::1]", "[fe80::1]", "h"])
ports = st.sampled_from(["", ":554", ":8554", ":99999", ":0", ":-1", ":x"])
paths = st.sampled_from(["", "/", "/stream1", "/a/b.sdp", "/live?channel=1", "/x#frag"])
schemes = st.sampled_from(["rtsp", "rtsps", "http", "rtmp", "udp"])
users = st.sampled_from(["", "user", "admin", "a:b"])


@fuzz(400)
@given(scheme=schemes, user=users, password=passwords, host=hosts, port=ports, path=paths)
def test_no_password_survives_redact_or_to_spec(
    scheme: str, user: str, password: str, host: str, port: str, path: str
) -> None:
    url = f"{scheme}://{user}:{password}@{host}{port}{path}"
    rest = url.replace(password, "", 1)
    assume(password not in rest)  # else "the password" is also an honest part of the URL
    assume(password not in f"{scheme}://***@{host}{port}{path}")  # or of redact()'s own text
    assert password not in redact(url)
    try:
        spec = to_spec(url)
    except framebus.SourceOpenError as exc:
        assert password not in str(exc)
    else:
        assert isinstance(spec, framebus.Media)
        assert password not in spec.label


@fuzz(400)
@given(
    scheme=schemes, user=users, password=passwords, host=hosts, port=ports, path=paths,
    quote=st.sampled_from(["'", '"', " ", "(", "<", ""]),
)  # fmt: skip
def test_no_password_survives_in_a_backends_message(
    scheme: str, user: str, password: str, host: str, port: str, path: str, quote: str
) -> None:
    """A backend's exception text quoting a URL framebus accepted (FFmpeg's and OpenCV's do):
    what the capture leaves in the header is redact_text() of it, given the URL's secrets."""
    url = f"{scheme}://{user}:{password}@{host}{port}{path}"
    try:
        to_spec(url)
    except framebus.SourceOpenError:
        return  # never given to a backend
    rest = url.replace(password, "", 1)
    assume(password not in rest and password not in f"{scheme}://***@{host}{port}{path}")
    close = {"(": ")", "<": ">"}.get(quote, quote)
    text = f"[Errno 5] I/O error: {quote}{url}{close}; retrying {url}"
    assert password not in redact_text(text, secrets_of(url))
    if not set(password) & set(" '\""):  # the URL alone shows where the password ends
        assert password not in redact_text(text)
    assert redact_text("no URL here: a plain message") == "no URL here: a plain message"


def test_a_sources_error_reaches_the_publisher_without_its_password(stream_name: str) -> None:
    class Leaky(framebus.Source):
        def open(self) -> None:
            raise RuntimeError(f"cannot reach rtsp://admin:{SECRET}@10.0.0.9/live?token=t0k3n")

        def read(self) -> None:
            return None

    with pytest.raises(framebus.FramebusError) as caught:
        framebus.publish(stream_name, Leaky())
    text = str(caught.value)
    assert "RuntimeError: cannot reach rtsp://***@10.0.0.9/live" in text
    assert SECRET not in text and "t0k3n" not in text


@fuzz(300)
@given(url=st.text(PASSWORD_CHARS, max_size=60).map(lambda s: "rtsp://" + s))
def test_to_spec_of_any_url_is_a_media_or_source_open_error(url: str) -> None:
    try:
        spec = to_spec(url)
    except framebus.SourceOpenError:
        return
    assert isinstance(spec, framebus.Media)
    redact(url)  # never raises either
