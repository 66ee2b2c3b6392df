"""The work queue: collapsing, one reconcile per key at a time, retries, scheduled looks, metrics."""

import asyncio
from collections.abc import Awaitable, Callable

from perennial.adapters import metrics
from perennial.adapters.store import Key
from perennial.adapters.workqueue import WorkQueue

A: Key = ("ml", "a")
B: Key = ("ml", "b")


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` every 5 ms until it holds; fail after ``within`` seconds."""
    for _ in range(int(within / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {within}s")


def recorder(calls: list[Key], result: float | None = None) -> Callable[[Key], Awaitable[float | None]]:
    async def reconcile(key: Key) -> float | None:
        calls.append(key)
        return result

    return reconcile


async def test_adds_before_a_worker_runs_collapse_into_one_reconcile() -> None:
    calls: list[Key] = []
    queue = WorkQueue("Collapse", recorder(calls), workers=2)
    for _ in range(5):
        queue.add(A)
    queue.add(B)
    assert len(queue) == 2
    queue.start()
    await eventually(lambda: len(calls) == 2)
    await asyncio.sleep(0.05)
    await queue.stop()
    assert sorted(calls) == [A, B]


async def test_a_key_is_never_reconciled_twice_at_once_and_a_change_meanwhile_is_not_lost() -> None:
    running = 0
    overlap = False
    calls = 0
    release = asyncio.Event()

    async def reconcile(key: Key) -> float | None:
        nonlocal running, overlap, calls
        running += 1
        overlap = overlap or running > 1
        calls += 1
        if calls == 1:
            await release.wait()
        running -= 1
        return None

    queue = WorkQueue("Serial", reconcile, workers=4)
    queue.start()
    queue.add(A)
    await eventually(lambda: calls == 1)
    queue.add(A)  # while the first reconcile runs: marked dirty, not started on another worker
    queue.add(A)
    await asyncio.sleep(0.05)
    assert calls == 1
    release.set()
    await eventually(lambda: calls == 2)  # the change seen meanwhile gets exactly one more look
    await asyncio.sleep(0.05)
    await queue.stop()
    assert calls == 2
    assert not overlap


async def test_a_failing_reconcile_is_retried_with_growing_backoff() -> None:
    moments: list[float] = []

    async def reconcile(key: Key) -> float | None:
        moments.append(asyncio.get_running_loop().time())
        if len(moments) < 3:
            raise RuntimeError("the API server said no")
        return None

    queue = WorkQueue("Backoff", reconcile, workers=1, base_delay=0.05)
    queue.start()
    queue.add(A)
    await eventually(lambda: len(moments) == 3)
    await queue.stop()
    first_gap, second_gap = moments[1] - moments[0], moments[2] - moments[1]
    assert first_gap >= 0.045
    assert second_gap >= 0.095  # doubled


async def test_requeue_after_schedules_another_look_and_the_earliest_schedule_wins() -> None:
    calls: list[Key] = []
    queue = WorkQueue("Later", recorder(calls), workers=1)
    queue.start()
    queue.add_after(A, 10.0)
    queue.add_after(A, 0.05)  # earlier: replaces the 10 s timer
    queue.add_after(A, 5.0)  # later than the pending one: ignored
    await eventually(lambda: calls == [A], within=2.0)
    await asyncio.sleep(0.1)
    await queue.stop()
    assert calls == [A]


async def test_depth_and_wait_are_exported_per_kind() -> None:
    def sample(name: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"kind": "Measured"}) or 0.0

    calls: list[Key] = []
    queue = WorkQueue("Measured", recorder(calls), workers=1)
    waited_before = sample("perennial_workqueue_wait_seconds_count")
    queue.add(A)
    queue.add(B)
    assert sample("perennial_workqueue_depth") == 2
    queue.start()
    await eventually(lambda: len(calls) == 2)
    await queue.stop()
    assert sample("perennial_workqueue_depth") == 0
    assert sample("perennial_workqueue_wait_seconds_count") - waited_before == 2


async def test_a_queue_stopped_and_started_again_keeps_keys_and_schedules_new_looks() -> None:
    """A replica that lost and regained the Lease: timers of the first term do not block new ones."""
    calls: list[Key] = []
    queue = WorkQueue("Terms", recorder(calls), workers=1)
    queue.start()
    queue.add_after(A, 0.05)  # a look scheduled in the first term, cancelled by the stop
    await queue.stop()
    queue.add(B)  # queued while standing by
    queue.add_after(A, 0.1)  # the second term's look at A, later than the cancelled one
    queue.start()
    await eventually(lambda: sorted(calls) == [A, B])
    await queue.stop()
