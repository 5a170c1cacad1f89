"""The mount's tuning helpers: finding the mount's device in mountinfo, and the GC settings."""

from __future__ import annotations

import gc
from pathlib import Path

from mosaic.node.mount import tuning

MOUNTINFO = (
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
    "41 22 0:39 / /tmp/old\\040mnt rw,nosuid,nodev - fuse.mosaic mosaic rw,user_id=0\n"
    "42 22 0:40 / /tmp/a\\040b\\134c rw,nosuid,nodev - fuse.mosaic mosaic rw,user_id=0\n"
    "43 22 0:41 / /tmp/old\\040mnt rw,nosuid,nodev - fuse.mosaic mosaic rw,user_id=0\n"
)


def test_mount_device_reads_escaped_paths_and_takes_the_last_mount(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert tuning.mount_device(Path("/tmp/a b\\c"), str(info)) == "0:40"
    assert tuning.mount_device(Path("/tmp/old mnt"), str(info)) == "0:41"  # stacked: the top one
    assert tuning.mount_device(Path("/tmp/none"), str(info)) is None
    assert tuning.mount_device(Path("/tmp/a b\\c"), str(tmp_path / "missing")) is None


def test_set_read_ahead_without_a_mount_says_no(tmp_path: Path) -> None:
    assert tuning.set_read_ahead(tmp_path) is False


def test_tune_gc_freezes_and_raises_thresholds() -> None:
    old = gc.get_threshold()
    try:
        tuning.tune_gc()
        assert gc.get_threshold() == tuning.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)
