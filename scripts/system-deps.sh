#!/usr/bin/env bash
# Install the Debian/Ubuntu packages framebus needs, if any is missing.
#   usage: system-deps.sh runtime|test
# runtime:
#   libatomic1  atomic operations on shared memory
#   python3-venv  `python3 -m venv` for .venv (Debian's python3 lacks ensurepip without it)
# test (and benchmarks), in addition:
#   ffmpeg      makes sample video files in tests
#   python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-*   the real RTSP test server
#               (-ugly: x264 for H.264, -bad: x265 for H.265)
#   util-linux  unshare: a network namespace with no route, for the unreachable-host test
#   iproute2    ip netns + veth: a camera on its own "cable", pulled and plugged back in a test
#   chromium    a real browser for the web view's tests (driven by Playwright)
#   systemd     systemd-analyze: the service unit in deploy/ is verified by a test
set -euo pipefail
packages=(libatomic1 python3-venv)
if [ "${1:-test}" = "test" ]; then
  packages+=(ffmpeg python3 python3-gi gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad util-linux iproute2 chromium systemd)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "framebus: please install: ${missing[*]} (no apt-get on this machine)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "framebus: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
