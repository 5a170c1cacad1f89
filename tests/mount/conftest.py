"""Fixtures for the FUSE face: a node and `mosaic mount --foreground` as a subprocess.

Every mount is unmounted in teardown, even when the test failed: SIGTERM first
(the clean path), then `fusermount3 -u -z` and SIGKILL if the process did not go.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MOSAIC_CMD, Cli, mosaic_env

MOUNT_TIMEOUT = 20.0


def wait_until(pred: Callable[[], object], timeout: float, what: str,
               interval: float = 0.05) -> object:
    """Poll `pred` until it returns something truthy; AssertionError after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Mount:
    """A running `mosaic mount --foreground` of one node home."""

    def __init__(self, cli: Cli, mountpoint: Path, *extra: str):
        self.cli, self.path = cli, mountpoint
        self.proc = subprocess.Popen(
            [*MOSAIC_CMD, "--home", str(cli.home), "mount", str(mountpoint), "--foreground",
             *extra], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=mosaic_env())
        try:
            wait_until(lambda: os.path.ismount(mountpoint) or self.proc.poll() is not None,
                       MOUNT_TIMEOUT, "the mount")
        except AssertionError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise AssertionError(f"mosaic mount exited {self.proc.returncode}: {err.decode()}")

    def stats(self) -> dict:
        import json
        return json.loads((self.path / ".mosaic" / "stats").read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the mount (SIGTERM); returns the exit status. Falls back to force."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False,
                           capture_output=True)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=MOUNT_TIMEOUT)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()
        return self.proc.returncode


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """mounter(cli, *extra) -> a Mount at a fresh folder; all are stopped at teardown."""
    if shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"):
        pytest.fail("the mount tests need fuse3 (fusermount3, /dev/fuse): "
                    "tools/install-test-deps.sh installs it")
    mounts: list[Mount] = []

    def make(cli: Cli, *extra: str) -> Mount:
        mp = tmp_path / f"mnt{len(mounts)}"
        mp.mkdir()
        m = Mount(cli, mp, *extra)
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.stop()
