"""The mount's decoding threads (node/mount/chunks.py `Decoders`) on their own: order, results, stop."""

from __future__ import annotations

import threading

import trio

from mosaic.node.mount.chunks import AHEAD, DEMAND, Decoders


def _blocker(release: threading.Event, started: threading.Event):
    def task() -> str:
        started.set()
        release.wait(10)
        return "blocker"
    return task


async def test_a_waited_for_task_goes_before_read_ahead_and_results_come_back_on_the_loop() -> None:
    loop_thread = threading.current_thread()
    ran: list[str] = []
    results: dict[str, object] = {}
    all_done = trio.Event()
    release, started = threading.Event(), threading.Event()
    d = Decoders(1)

    def record(name: str):
        def done(result: object, error: BaseException | None) -> None:
            assert threading.current_thread() is loop_thread
            results[name] = error if error is not None else result
            if len(results) == 5:
                all_done.set()
        return done

    def task(name: str):
        def run() -> str:
            ran.append(name)
            if name == "bad":
                raise ValueError("a corrupt chunk")
            return name.upper()
        return run

    d.submit(AHEAD, _blocker(release, started), record("blocker"))
    await trio.to_thread.run_sync(started.wait, 10)
    d.submit(AHEAD, task("ahead1"), record("ahead1"))
    d.submit(AHEAD, task("bad"), record("bad"))
    d.submit(DEMAND, task("demand"), record("demand"))
    d.submit(AHEAD, task("ahead2"), record("ahead2"))
    release.set()
    with trio.fail_after(10):
        await all_done.wait()
    assert ran == ["demand", "ahead1", "bad", "ahead2"]
    assert results["demand"] == "DEMAND" and results["blocker"] == "blocker"
    assert isinstance(results["bad"], ValueError)
    await trio.to_thread.run_sync(d.close)


async def test_close_drops_queued_tasks_and_waits_for_running_ones() -> None:
    ran: list[str] = []
    release, started = threading.Event(), threading.Event()
    d = Decoders(2)
    d.submit(DEMAND, _blocker(release, started), lambda r, e: ran.append(str(r)))
    await trio.to_thread.run_sync(started.wait, 10)
    for i in range(20):
        d.submit(AHEAD, lambda i=i: release.wait(10) and ran.append(f"late{i}"),
                 lambda r, e: None)
    closing = threading.Thread(target=d.close)
    closing.start()
    await trio.sleep(0)
    release.set()
    with trio.fail_after(10):
        await trio.to_thread.run_sync(closing.join)
    with trio.fail_after(10):  # the blocker's result, posted to the loop before close returned
        while "blocker" not in ran:
            await trio.sleep(0)
    # at most the task the idle thread had already taken ran; the rest were dropped
    assert len([r for r in ran if r.startswith("late")]) <= 1
    assert "blocker" in ran
