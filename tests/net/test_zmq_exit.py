"""A script that forgets ``release()`` / ``close()`` on a ZeroMQ object still exits at once.

The bug this guards against: at exit a remote reader's cleanup terminated its ZeroMQ context
while the receiver's daemon thread, frozen by interpreter finalization, still held its
sockets: the script hung for ever on every exit path.
"""

from __future__ import annotations

import signal
import time

import pytest

from conftest import Procs

# A hang is for ever; a healthy exit takes a fraction of a second (the figures are in the
# issue's note). The bound only has to tell the two apart on a loaded machine.
EXIT_WITHIN = 5.0

HOWS = {
    "plain": (None, 0),
    "raise": (None, 1),
    "exit": (None, 3),
    "sigint": (signal.SIGINT, -signal.SIGINT),  # Ctrl-C: KeyboardInterrupt, then SIGINT again
    "sigterm": (signal.SIGTERM, 128 + signal.SIGTERM),  # framebus's handler: an orderly exit
}


@pytest.mark.parametrize("how", list(HOWS))
@pytest.mark.parametrize("what", ["reader", "capture", "exporter"])
def test_a_script_that_forgets_release_exits_at_once(
    procs: Procs, stream_name: str, what: str, how: str
) -> None:
    sig, status = HOWS[how]
    p = procs.python("zmq_exit.py", stream_name, what, "wait" if sig else how)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line == "ending\n", p.communicate(timeout=30)
    started = time.monotonic()
    if sig is not None:
        time.sleep(0.2)  # into its sleep
        p.send_signal(sig)
    try:
        p.wait(timeout=EXIT_WITHIN)
    except Exception:
        pytest.fail(f"{what} / {how}: the script did not exit within {EXIT_WITHIN} s")
    took = time.monotonic() - started
    _, err = p.communicate(timeout=5)
    assert p.returncode == status, err
    print(f"{what} / {how}: exited in {took:.3f} s")
