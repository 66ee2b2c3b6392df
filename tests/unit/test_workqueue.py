"""The work queue: collapsing, one reconcile per key at a time, retries, scheduled looks, metrics."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from perennial.adapters import metrics
from perennial.adapters.store import Key
from perennial.adapters.workqueue import WorkQueue, batch_delay

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


def sample(name: str, controller: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"controller": controller}) or 0.0


async def test_client_go_metrics_move_as_keys_are_added_and_processed() -> None:
    """adds, depth, queue and work duration: labelled by the controller, its kind in lower case."""
    release = asyncio.Event()
    calls: list[Key] = []

    async def reconcile(key: Key) -> float | None:
        calls.append(key)
        if key == A:
            await release.wait()
        return None

    queue = WorkQueue("Measured", reconcile, workers=1)
    assert queue.controller == "measured"
    before = {
        name: sample(name, "measured")
        for name in (
            "perennial_workqueue_adds_total",
            "perennial_workqueue_queue_duration_seconds_count",
            "perennial_workqueue_work_duration_seconds_count",
        )
    }

    def moved(name: str) -> float:
        return sample(name, "measured") - before[name]

    queue.add(A)
    queue.add(B)
    queue.add(B)  # already waiting: not an add
    assert moved("perennial_workqueue_adds_total") == 2
    assert sample("perennial_workqueue_depth", "measured") == 2
    queue.start()
    await eventually(lambda: calls == [A])  # A is being reconciled, B waits
    assert sample("perennial_workqueue_depth", "measured") == 1
    assert moved("perennial_workqueue_queue_duration_seconds_count") == 1
    queue.add(A)  # while A runs: marked for one more look, counted once
    queue.add(A)
    assert moved("perennial_workqueue_adds_total") == 3
    release.set()
    await eventually(lambda: calls == [A, B, A])
    await eventually(lambda: moved("perennial_workqueue_work_duration_seconds_count") == 3)
    await queue.stop()
    assert sample("perennial_workqueue_depth", "measured") == 0
    assert moved("perennial_workqueue_queue_duration_seconds_count") == 3
    assert moved("perennial_workqueue_adds_total") == 3


async def test_unfinished_work_and_the_longest_running_reconcile_are_read_at_scrape_time() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def reconcile(key: Key) -> float | None:
        started.set()
        await release.wait()
        return None

    queue = WorkQueue("Stuck", reconcile, workers=2)
    queue.start()
    assert sample("perennial_workqueue_unfinished_work_seconds", "stuck") == 0
    queue.add(A)
    await started.wait()
    first = sample("perennial_workqueue_longest_running_processor_seconds", "stuck")
    await eventually(lambda: sample("perennial_workqueue_longest_running_processor_seconds", "stuck") > first)
    assert sample("perennial_workqueue_unfinished_work_seconds", "stuck") > 0  # grows while it is stuck
    release.set()
    await eventually(lambda: sample("perennial_workqueue_unfinished_work_seconds", "stuck") == 0)
    assert sample("perennial_workqueue_longest_running_processor_seconds", "stuck") == 0
    await queue.stop()


async def test_a_failed_reconcile_counts_a_retry() -> None:
    attempts = 0

    async def reconcile(key: Key) -> float | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("the API server said no")
        return None

    queue = WorkQueue("Retried", reconcile, workers=1, base_delay=0.01)
    retries = sample("perennial_workqueue_retries_total", "retried")
    adds = sample("perennial_workqueue_adds_total", "retried")
    queue.start()
    queue.add(A)
    await eventually(lambda: attempts == 2)
    await queue.stop()
    assert sample("perennial_workqueue_retries_total", "retried") - retries == 1
    assert sample("perennial_workqueue_adds_total", "retried") - adds == 2  # the add and the retry's


def test_every_controller_has_its_work_queue_series_from_the_start() -> None:
    for controller in ("trainingjob", "modeldeployment", "driftpolicy"):
        for name in (
            "perennial_workqueue_depth",
            "perennial_workqueue_adds_total",
            "perennial_workqueue_retries_total",
            "perennial_workqueue_queue_duration_seconds_count",
            "perennial_workqueue_work_duration_seconds_count",
            "perennial_workqueue_unfinished_work_seconds",
            "perennial_workqueue_longest_running_processor_seconds",
        ):
            assert metrics.REGISTRY.get_sample_value(name, {"controller": controller}) is not None, (name, controller)


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


def test_the_batch_grows_with_the_backlog_from_quiet_to_the_whole_batch() -> None:
    assert batch_delay(0, workers=16, quiet=0.1, batch=1.0) == 0.1
    assert batch_delay(8, workers=16, quiet=0.1, batch=1.0) == pytest.approx(0.55)
    assert batch_delay(16, workers=16, quiet=0.1, batch=1.0) == 1.0
    assert batch_delay(5000, workers=16, quiet=0.1, batch=1.0) == 1.0
    assert batch_delay(3, workers=0, quiet=0.1, batch=1.0) == 1.0


async def test_a_batched_add_on_an_idle_queue_waits_only_the_quiet_time_and_collapses_its_burst() -> None:
    calls: list[Key] = []
    queue = WorkQueue("QuietBatch", recorder(calls), workers=4)
    queue.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(5):  # one burst of a child's events
        queue.add_batched(A, quiet=0.05, batch=5.0)
    await eventually(lambda: calls == [A], within=2.0)
    assert loop.time() - started < 2.0  # the quiet time, not the 5 s batch
    await asyncio.sleep(0.1)
    assert calls == [A]
    await queue.stop()


async def test_a_batched_add_behind_a_backlog_waits_the_whole_batch() -> None:
    release = asyncio.Event()
    calls: list[Key] = []

    async def blocked(key: Key) -> float | None:
        calls.append(key)
        await release.wait()
        return None

    queue = WorkQueue("LoadedBatch", blocked, workers=1)
    queue.start()
    queue.add(B)
    await eventually(lambda: calls == [B])  # the one worker is busy: a backlog of one
    queue.add_batched(A, quiet=0.0, batch=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    release.set()
    await eventually(lambda: A in calls)
    assert loop.time() - started >= 0.25
    await queue.stop()
