#!/bin/sh
# Install the system tools the tests need (Debian/Ubuntu, as root).
# Idempotent: a no-op when everything is already present.
#   tools/install-test-deps.sh          # install missing tools
# - rclone: the rclone backend's conformance tests
# - fuse3, libfuse3-dev, pkg-config: the FUSE mount (pyfuse3 builds against libfuse3)
# - chromium, chromium-driver: the web UI's tests in a real headless browser
# Python test dependencies come from `pip install -e '.[test]'`, not from here.
set -eu

missing=""
command -v rclone >/dev/null 2>&1 || missing="$missing rclone"
command -v fusermount3 >/dev/null 2>&1 || missing="$missing fuse3"
[ -e /usr/include/fuse3/fuse_lowlevel.h ] || missing="$missing libfuse3-dev"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"

if [ -z "$missing" ]; then
    echo "install-test-deps: all present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: need root to install:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # word splitting wanted: one package per word
apt-get install -y -qq --no-install-recommends $missing
echo "install-test-deps: installed:$missing"
