"""The scale benchmark's pure parts: the time-to-recover arithmetic, its rows, the write counts' formats.

The benchmark itself runs against a local cluster (`make bench`); what it computes from its
watches is checked here.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections import Counter

import pytest
from benchmarks import recovery
from benchmarks.recovery import GaugeExporter, Recovery
from benchmarks.scale import Result, StepWatcher, fmt_counts, per_object, table


def recovered(model: str = "m0000", **shift: float) -> Recovery:
    """A recovery 24.5 s long: detection at interval + for (20 s) + 0.3, the Job ran 1.0 s
    inside 1.8 s of TrainingJob, the Deployment rolled out in 0.4 s inside 2.4 s."""
    at = {
        "evaluated": -0.05,
        "onset": 0.0,
        "scraped": 1.2,
        "seen": 10.0,
        "tj_created": 20.3,
        "detected": 20.4,
        "job_created": 20.5,
        "job_complete": 21.5,
        "tj_succeeded": 22.1,
        "deployment_updated": 23.0,
        "deployment_available": 23.4,
        "serving": 24.5,
    }
    for step, delta in shift.items():
        at[step] += delta
    return Recovery(model, at, onset_after_evaluation=0.05)


def test_the_overhead_is_what_recovering_took_beyond_the_goals_terms() -> None:
    r = recovered()
    assert r.recover == pytest.approx(24.5)
    assert r.training == pytest.approx(1.0)
    assert r.rollout == pytest.approx(0.4)
    assert r.budget == pytest.approx(10 + 10 + 1.0 + 0.4)
    assert r.overhead == pytest.approx(24.5 - 21.4)
    assert not r.within_goal


def test_the_stage_overheads_add_up_to_the_overhead() -> None:
    r = recovered()
    stages = r.stage_overheads()
    assert stages == {
        "detect": pytest.approx(0.3),
        "train": pytest.approx(1.8 - 1.0),
        "roll out": pytest.approx(2.4 - 0.4),
    }
    assert sum(stages.values()) == pytest.approx(r.overhead)


def test_within_the_goal_at_two_seconds_of_overhead_or_less() -> None:
    # Serving 1.1 s earlier: overhead 3.1 - 1.1 = 2.0 s.
    assert recovered(serving=-1.1).within_goal
    assert not recovered(serving=-1.0).within_goal


def test_a_step_never_seen_leaves_the_numbers_unknown_not_wrong() -> None:
    r = recovered()
    del r.at["serving"]
    assert math.isnan(r.recover)
    assert math.isnan(r.overhead)
    assert not r.within_goal
    (row,) = recovery.table_rows(5, [r])
    assert row.endswith("| ? |")


def test_the_summary_cell_is_the_median_recovery_and_overhead() -> None:
    runs = [recovered("a"), recovered("b", serving=1.0), recovered("c", serving=5.0)]
    assert recovery.summary(runs) == "25.5 (+4.1)"
    assert recovery.summary([]) == "-"


def test_a_row_per_model_under_the_header() -> None:
    rows = recovery.table_rows(1000, [recovered()])
    assert rows == [
        "| 1000 | m0000 | 24.5 | 20.3 (20; scraped 1.2, detected 20.4) | 1.8 (1.0) | 2.4 (0.4) "
        "| +3.1 (+0.3 / +0.8 / +2.0) | 0.05 | no |"
    ]
    assert all(row.count("|") == recovery.TABLE_HEADER[0].count("|") for row in rows)


def test_the_timeline_lists_every_step_from_the_onset() -> None:
    text = recovery.timeline(recovered())
    assert text.startswith("scraped 1.20, seen 10.00, detected 20.40, tj_created 20.30")
    assert text.endswith("serving 24.50")


def test_the_policy_queries_its_own_series_at_the_apis_minimum_interval() -> None:
    policy = recovery.policy("m0001", "bench-drift-ns")
    assert policy["metadata"]["name"] == "m0001-recover"
    assert policy["spec"]["interval"] == "10s"
    (metric,) = policy["spec"]["metrics"]
    assert metric == {
        "name": "drift",
        "query": 'max(bench_drift_value{job="bench-drift-ns",model="m0001"})',
        "max": 0.2,
        "for": "10s",
    }


def test_the_exporter_serves_the_gauge_it_is_set_to() -> None:
    exporter = GaugeExporter({"m0000": 0.04, "m0001": 0.04})
    try:
        exporter.set("m0001", 0.31)
        with urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        exporter.close()
    assert text == (
        '# TYPE bench_drift_value gauge\nbench_drift_value{model="m0000"} 0.04\nbench_drift_value{model="m0001"} 0.31\n'
    )


def test_idle_writes_are_counted_not_rounded_away() -> None:
    before = Counter({("PATCH", "driftpolicies/status"): 10})
    after = Counter({("PATCH", "driftpolicies/status"): 12, ("PATCH", "leases"): 40})
    writes = per_object(before, after, 1)
    assert writes == {"PATCH driftpolicies/status": 2}
    assert fmt_counts(writes, 3000) == "PATCH driftpolicies/status 2 (0.001 / object)"
    assert fmt_counts({}, 3000) == "none"


def test_the_table_has_the_recovery_column_and_section() -> None:
    result = Result(5, total=4.0, baseline_total=2.0, idle_seconds=120, recoveries=[recovered()])
    text = table([result])
    header, separator, row = text.splitlines()[:3]
    assert header.endswith("| ratio | recover s (overhead s) |")
    assert separator.count("|---") == header.count("|") - 1
    assert row.endswith("| 2.00 | 24.5 (+3.1) |")
    assert (
        "| 5 | operator idle: 120 s after all Ready, 5 policies evaluating"
        " (all writes in the window, goal none) | none |" in text
    )
    assert recovery.TABLE_HEADER[0] in text
    assert "Time to recover" not in table([Result(5)])


async def test_a_step_watcher_wakes_the_waiter_of_that_step_and_model_only() -> None:
    watcher = StepWatcher(
        None,  # no API: the test feeds it objects
        "/apis/x",
        {"up": lambda o: o["metadata"]["name"] if o.get("up") else None},
    )
    waiting = asyncio.ensure_future(watcher.wait_step("up", "a", limit=5))
    watcher._observe({"metadata": {"name": "b"}, "up": True})
    watcher._observe({"metadata": {"name": "a"}})
    await asyncio.sleep(0)
    assert not waiting.done()
    watcher._observe({"metadata": {"name": "a"}, "up": True})
    await asyncio.wait_for(waiting, 1)
    assert set(watcher.reached) == {("up", "a"), ("up", "b")}
    await watcher.wait_step("up", "b", limit=0.1)  # already reached: at once
    with pytest.raises(TimeoutError):
        await watcher.wait_step("up", "c", limit=0.05)
