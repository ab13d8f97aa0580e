"""URLs that may hold credentials (no I/O): :func:`redact` them for messages, find their
:func:`secrets_of` in a backend's text, :func:`check_url` before use — for the sources (camera
URLs) and the push (media-server URLs) alike."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import FramebusError, SourceOpenError

__all__ = ["check_url", "redact", "redact_text", "secrets_of"]

_SECRET_PARAM = re.compile(
    r"(?i)(^|[&;])((?:user(?:name)?|usr|pwd|pass(?:word)?|passwd|token|key|auth|secret)=)"
    r"[^&;]*"
)


def redact(url: str) -> str:
    """``url`` with its user name, password and credential-like query values replaced.

    When a URL cannot be split for certain (it does not parse, or an ``@`` follows the host
    part: a password with an unencoded ``/``, ``?`` or ``#`` ends the host part early and spills
    into the path), everything after ``scheme://`` is hidden: ``rtsp://***``.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return _hidden(url)
    if "@" in parts.path + parts.query + parts.fragment:
        return _hidden(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    if parts.query:
        parts = parts._replace(query=_SECRET_PARAM.sub(r"\1\2***", parts.query))
    return urlunsplit(parts)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://")
# a URL inside a text: up to the first space or quote
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://[^\s'\"]*")


def secrets_of(target: object) -> tuple[str, ...]:
    """The credentials in a source's URL — user name, password, secret query values — as
    written and percent-decoded (empty for anything else)."""
    if not isinstance(target, str) or "://" not in target:
        return ()
    found: list[str] = []
    # what urlsplit calls the user info, and (as redact() does when an @ follows the host part:
    # an unencoded / # or ? in a password) everything up to the last @
    after = target.partition("://")[2]
    for userinfo in (after.split("/", 1)[0].rpartition("@")[0], after.rpartition("@")[0]):
        if userinfo:
            found += userinfo.partition(":")[::2]
    try:
        query = urlsplit(target).query
    except ValueError:
        query = ""
    found += [m.group(0).partition("=")[2] for m in _SECRET_PARAM.finditer(query)]
    found = [s for s in found if s]
    return tuple(sorted({*found, *(unquote(s) for s in found)}, key=len, reverse=True))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` (an exception's message from a backend, which may quote the URL it was given)
    with each of ``secrets`` (:func:`secrets_of` the source's URL) replaced, then every URL in
    it redacted as :func:`redact` does. Without the secrets, a password holding a space or a
    quote can end the URL early and show."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)


def _hidden(url: str) -> str:
    scheme = _SCHEME.match(url)
    return f"{scheme[0]}***" if scheme else "<unparseable url>"


_NEEDS_HOST = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps"})
_ENCODE = (
    "a user name or password must be percent-encoded: a / # or ? in it ends the host part of "
    "the URL (write / as %2F, # as %23, ? as %3F, @ as %40)"
)


def check_url(url: str, error: type[FramebusError] = SourceOpenError) -> None:
    """Raise ``error`` naming what is wrong with ``url``, if it cannot be parsed or its port is
    invalid; the message never holds its credentials."""
    label = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # its text may quote the host part, credentials included: not shown
        host_part = url.partition("://")[2].split("/", 1)[0]
        why = (
            "a [ or ] that does not enclose an IPv6 address (in a user name or password, write "
            "[ as %5B and ] as %5D)"
            if "[" in host_part or "]" in host_part
            else "characters that are not allowed in a host name (" + _ENCODE + ")"
        )
        raise error(f"invalid URL {label}: {why}") from None
    spilled = "@" in parts.path + parts.query + parts.fragment and "@" not in parts.netloc
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if spilled and (port == 0 or parts.netloc.endswith(":")):
        # "user:pa/ss@host": what looks like a port is the start of the password
        raise error(f"invalid URL {label}: {_ENCODE}")
    if port == 0:  # the number is not shown: it might be part of a password
        raise error(f"invalid URL {label}: invalid port (a number from 1 to 65535)")
    if parts.scheme.lower() in _NEEDS_HOST and not parts.hostname:
        raise error(f"invalid URL {label}: no host")
