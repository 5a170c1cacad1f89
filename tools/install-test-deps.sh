#!/bin/sh
# Install the system tools the backend tests need (Debian/Ubuntu, as root).
# Idempotent: a no-op when everything is already present.
#   tools/install-test-deps.sh          # install missing tools
# Python test dependencies come from `pip install -e '.[test]'`, not from here.
set -eu

missing=""
command -v rclone >/dev/null 2>&1 || missing="$missing rclone"

if [ -z "$missing" ]; then
    echo "install-test-deps: all present ($(rclone version 2>/dev/null | head -n 1))"
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
echo "install-test-deps: installed:$missing ($(rclone version | head -n 1))"
