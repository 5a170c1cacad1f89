"""One event loop per process: the daemon's backends run on the daemon's own trio loop.

`BackendHub.running` opens the backends on the caller's loop; synchronous engine code in
worker threads calls back into it. The CLI keeps its helper-thread loop ("mosaic-backends").
Here: the hub's in-loop mode in process with a dir backend, the refusal of a second loop,
and real daemons that upload a fetched pack and serve a remote read with no helper thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from mosaic.node.cloud.cloud import Cloud
from mosaic.node.cloud.hub import THREAD_NAME, BackendHub, HubClosed, pack_object_name
from mosaic.node.errors import StorageError
from mosaic.node.store.home import BackendConfig, Home
from mosaic.node.store.store import Store

from .conftest import Cluster, MosaicNode, wait_until

TIMEOUT = 30.0


def os_thread_names(pid: int | str = "self") -> list[str]:
    """The OS names of a process's threads (Linux /proc; a thread may end while we look)."""
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            continue
    return names


def helper_threads() -> tuple[int, int]:
    """Helper-loop threads of this process: (Python threads, OS threads) with that name."""
    return (sum(1 for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()),
            os_thread_names().count(THREAD_NAME))


def dir_backend(path: Path) -> tuple[BackendConfig, ...]:
    path.mkdir(parents=True, exist_ok=True)  # a dir backend's root exists (backend add makes it)
    return (BackendConfig("nas", "dir", {"path": str(path)}),)


async def wait_for(pred, what: str, timeout: float = 5.0) -> None:  # noqa: ANN001
    """Poll `pred` on the loop with short waits, bounded by a deadline."""
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.01)


# ---------------------------------------------------------------- in process

def test_helper_thread_hub_is_named_for_the_os(tmp_path: Path) -> None:
    """The probe the daemon test relies on: the CLI's helper loop shows in /proc."""
    def named() -> int:
        return os_thread_names().count(THREAD_NAME)

    before = named()
    hub = BackendHub(dir_backend(tmp_path / "nas"), {})
    try:
        assert not hub.in_loop
        assert named() == before + 1
    finally:
        hub.close()
    # the OS thread may outlive Python's join() by a moment
    wait_until(lambda: named() == before, 5.0, "the helper thread to end", interval=0.01)


async def test_hub_runs_on_the_callers_loop(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    data = os.urandom(20_000)
    pid = os.urandom(32)
    before = helper_threads()
    with trio.fail_after(TIMEOUT):
        async with BackendHub.running(dir_backend(nas), {}) as hub:
            assert hub.in_loop and set(hub.backends) == {"nas"}
            assert helper_threads() == before
            uploaded: list = []

            def sync_engine() -> bytes:  # what upload_pending and remote_copies do
                hub.put_many([("nas", pid, lambda: data)], lambda b, p, e: uploaded.append((b, p, e)))
                return hub.get_range("nas", pid, 1000, 300)

            assert await trio.to_thread.run_sync(sync_engine) == data[1000:1300]
            assert uploaded == [("nas", pid, None)]
            assert (nas / pack_object_name(pid)).read_bytes() == data
            assert hub.latency("nas") > 0

            fetched: list = []
            await trio.to_thread.run_sync(
                hub.fetch_many, [(pid, ["nas"])],
                lambda p, blob, b, errs: fetched.append((p, blob, b, errs)) or True)
            assert fetched == [(pid, data, "nas", [])]
            assert helper_threads() == before

            # a second loop in this process is refused: on the loop's thread and in a worker
            with pytest.raises(RuntimeError, match="trio loop"):
                BackendHub(dir_backend(nas), {})

            def second_hub() -> BaseException | None:
                try:
                    BackendHub(dir_backend(nas), {}).close()
                except RuntimeError as e:
                    return e
                return None

            err = await trio.to_thread.run_sync(second_hub)
            assert isinstance(err, RuntimeError) and "already owns its backends" in str(err)
            # the loop's own thread cannot block on its hub
            with pytest.raises(RuntimeError, match="blocking"):
                hub.get_range("nas", pid, 0, 1)
        with pytest.raises(HubClosed):
            await trio.to_thread.run_sync(hub.get_range, "nas", pid, 0, 1)
    # the in-loop hub is gone: the CLI's helper-thread mode works again (off the loop's thread)
    await trio.to_thread.run_sync(lambda: BackendHub(dir_backend(nas), {}).close())


async def test_stopping_the_hub_ends_calls_in_flight(tmp_path: Path) -> None:
    """On SIGTERM the daemon stops its hub: a call a worker thread waits on ends at once."""
    with trio.fail_after(TIMEOUT):
        async with BackendHub.running(dir_backend(tmp_path / "nas"), {}) as hub:
            outcome: list[BaseException] = []

            def blocked() -> None:
                try:
                    hub.run(trio.sleep_forever)
                except HubClosed as e:
                    outcome.append(e)

            async with trio.open_nursery() as n:
                n.start_soon(trio.to_thread.run_sync, blocked)
                await wait_for(lambda: hub._calls, "the call to start")
                hub.stop()
            assert len(outcome) == 1
            with pytest.raises(HubClosed):
                await trio.to_thread.run_sync(hub.run, trio.sleep, 0)


async def test_cloud_uses_the_hub_it_is_given(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store.create(home, no_passphrase=True).close()
    h = Home(home)
    h.write_config(replace(h.read_config(), backends=dir_backend(tmp_path / "nas")))
    with trio.fail_after(TIMEOUT):
        async with BackendHub.running(dir_backend(tmp_path / "nas"), {}) as hub:
            store = await trio.to_thread.run_sync(Store.open, home)
            try:
                cloud = Cloud(store, hub=hub)
                assert await trio.to_thread.run_sync(lambda: cloud.hub) is hub
                assert list(await trio.to_thread.run_sync(
                    lambda: list(cloud.remote_copies(os.urandom(32), 0, 10)))) == []
                cloud.close()  # not its hub to close: it still works
                await trio.to_thread.run_sync(hub.run, trio.sleep, 0)
                with pytest.raises(StorageError):
                    _ = cloud.hub
                # a cloud without a hub may not start a second loop beside this one
                lazy = Cloud(store)
                with pytest.raises(RuntimeError, match="already owns its backends"):
                    await trio.to_thread.run_sync(lambda: lazy.hub)
                lazy.close()
            finally:
                await trio.to_thread.run_sync(store.close)


# ---------------------------------------------------------------- real daemons

def _pending(node: MosaicNode) -> int:
    st = node.doc("status")
    return sum(p["packs"] for p in st["pending"].values())  # type: ignore[index]


def test_daemon_uploads_and_reads_backends_on_its_own_loop(cluster: Cluster, tmp_path: Path) -> None:
    """b fetches a file from a, stores it as a pack its daemon uploads to a dir backend;
    after b's cache is trimmed, c gets the file from b, which reads it back from the backend.
    Through all of it b's daemon has no "mosaic-backends" helper thread."""
    a, b, c = cluster.add_nodes("a", "b", "c")
    nas = tmp_path / "nas"
    b.ok("backend", "add", "dir", "nas", str(nas))
    data = os.urandom(600_000)
    ref = a.put_bytes(data, "blob")
    cluster.link((a, b))
    cluster.start(a, b)
    assert b.proc is not None
    b_pid = b.proc.pid
    threads: set[str] = set()

    def sample() -> None:
        threads.update(os_thread_names(b_pid))
        assert THREAD_NAME not in threads, f"b's daemon started a helper loop: {sorted(threads)}"

    def uploaded() -> bool:
        sample()
        packs = list(nas.glob("packs/*/*"))
        return bool(packs) and b.get_bytes(ref) == data and _pending(b) == 0

    wait_until(uploaded, TIMEOUT, "b to fetch the file and upload its pack", diagnose=cluster.logs)
    # the probe sees threads: trio's workers are "Trio thread N" while idle and "FN from
    # MODULE" (cut to 15 bytes) while they run; a sample may catch only the running kind
    assert any(n.startswith("Trio thread") or " from " in n for n in threads), sorted(threads)

    trimmed = b.doc("cache", "trim", "--to", "0")
    assert trimmed["local_packs"] == 0, trimmed  # type: ignore[index]

    cluster.link((b, c))
    cluster.start(c)

    def served() -> bool:
        sample()
        return c.get_bytes(ref) == data

    wait_until(served, TIMEOUT, "c to get the file through b's backend", diagnose=cluster.logs)
    sample()
    assert b.doc("cache")["local_packs"] == 0  # type: ignore[index]  # b read it remotely
    assert not b.log_lines(r"WARNING|ERROR|Traceback"), cluster.logs()
    assert b.stop() == 0
