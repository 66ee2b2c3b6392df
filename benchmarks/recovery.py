"""Time to recover under load: from drift onset to the new version serving, N policies evaluating.

Run by ``benchmarks.scale`` after the operator phase's idle period. For each of the first
k ModelDeployments (``--recover``, 3) one extra DriftPolicy, ``interval: 10s`` (the API's
minimum) and ``for: 10s``, queries a gauge this process serves, which the local Prometheus
scrapes (a ``file_sd`` target, every 2 s); the N policies of the phase keep evaluating
(``interval: 1m``). Once a policy's first evaluation has seen the gauge in bounds (its
first status write), the gauge leaves its bound: the onset, right after an evaluation,
so detection waits a whole interval (the worst phase, which the goal's bound assumes).
Watches record each step to the new version serving; the goal is

    recover <= interval + for + training + rollout + 2 s

with training the Job's run (Job created to Complete) and rollout the Deployment's
(its template at the new version to Available): what Kubernetes and the workload take.
The rest is the operator's overhead, split by stage in ``Recovery.stage_overheads``.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

INTERVAL_S = 10.0  # DriftPolicy interval: the API's minimum
FOR_S = 10.0  # how long the value must stay out of bounds
COOLDOWN = "1h"  # the policy's trigger cooldown: one retrain
METRIC = "bench_drift_value"
IN_BOUNDS = 0.04
OUT_OF_BOUNDS = 0.31
MAX = 0.2
GOAL_OVERHEAD_S = 2.0
RECOVER_MODELS = 3

# The steps, in order; all but onset and scraped come from watches (monotonic clock).
STEPS = (
    "evaluated",  # the policy's first status write with the value in bounds
    "onset",  # the gauge set out of bounds
    "scraped",  # Prometheus answers the new value (polled every 0.1 s)
    "seen",  # the policy's status: breachedSince set (the first evaluation out of bounds)
    "detected",  # the policy's status: triggerCount >= 1
    "tj_created",  # TrainingJob <model>-v2 first seen
    "job_created",  # its batch/v1 Job first seen
    "job_complete",  # the Job's Complete=True
    "tj_succeeded",  # the TrainingJob's phase Succeeded
    "deployment_updated",  # the Deployment's pod template at version 2
    "deployment_available",  # ... rolled out: updated and available replicas, Available=True
    "serving",  # the ModelDeployment: servingVersion "2" and Ready=True
)


# ---------------------------------------------------------------- the arithmetic (pure)
@dataclass
class Recovery:
    """One model's way from drift onset to its new version serving (monotonic seconds)."""

    model: str
    at: dict[str, float] = field(default_factory=dict)
    # How long before the onset the policy had evaluated (its own last-evaluation gauge):
    # the onset's phase in the interval; 0 is the worst phase.
    onset_after_evaluation: float = float("nan")
    interval: float = INTERVAL_S
    for_: float = FOR_S

    def span(self, start: str, end: str) -> float:
        return self.at.get(end, math.nan) - self.at.get(start, math.nan)

    def since_onset(self, step: str) -> float:
        return self.span("onset", step)

    @property
    def recover(self) -> float:
        return self.since_onset("serving")

    @property
    def training(self) -> float:
        """The Job's run: created to Complete (what the workload and Kubernetes take)."""
        return self.span("job_created", "job_complete")

    @property
    def rollout(self) -> float:
        """The Deployment's rollout: its template at the new version to Available."""
        return self.span("deployment_updated", "deployment_available")

    @property
    def budget(self) -> float:
        """What the goal allows before its 2 s: interval + for + training + rollout."""
        return self.interval + self.for_ + self.training + self.rollout

    @property
    def overhead(self) -> float:
        return self.recover - self.budget

    @property
    def within_goal(self) -> bool:
        return self.overhead <= GOAL_OVERHEAD_S

    def stage_overheads(self) -> dict[str, float]:
        """The overhead by stage; they add up to ``overhead``.

        detect: onset to the TrainingJob created, beyond interval + for; train: the
        TrainingJob created to Succeeded, beyond the Job's run; roll out: the TrainingJob
        Succeeded to the ModelDeployment serving it, beyond the Deployment's rollout.
        """
        return {
            "detect": self.since_onset("tj_created") - self.interval - self.for_,
            "train": self.span("tj_created", "tj_succeeded") - self.training,
            "roll out": self.span("tj_succeeded", "serving") - self.rollout,
        }


def median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def summary(recoveries: list[Recovery]) -> str:
    """The main table's cell: median recover s (median overhead s), or "-"."""
    if not recoveries:
        return "-"
    recover = median([r.recover for r in recoveries])
    overhead = median([r.overhead for r in recoveries])
    return f"{recover:.1f} ({overhead:+.1f})"


def timeline(recovery: Recovery) -> str:
    """Every step after the onset, in seconds from it (for the log)."""
    steps = [s for s in STEPS if s not in ("evaluated", "onset")]
    return ", ".join(f"{s} {recovery.since_onset(s):.2f}" for s in steps)


def table_rows(n: int, recoveries: list[Recovery]) -> list[str]:
    """Rows of the time-to-recover table (header in ``TABLE_HEADER``)."""
    rows = []
    for r in recoveries:
        stages = r.stage_overheads()
        verdict = "yes" if r.within_goal else ("?" if math.isnan(r.overhead) else "no")
        rows.append(
            f"| {n} | {r.model} | {r.recover:.1f} "
            f"| {r.since_onset('tj_created'):.1f} ({r.interval + r.for_:.0f}; scraped {r.since_onset('scraped'):.1f},"
            f" detected {r.since_onset('detected'):.1f}) "
            f"| {r.span('tj_created', 'tj_succeeded'):.1f} ({r.training:.1f}) "
            f"| {r.span('tj_succeeded', 'serving'):.1f} ({r.rollout:.1f}) "
            f"| {r.overhead:+.1f} ({stages['detect']:+.1f} / {stages['train']:+.1f} / {stages['roll out']:+.1f}) "
            f"| {r.onset_after_evaluation:.2f} | {verdict} |"
        )
    return rows


TABLE_HEADER = [
    "| N | model | recover s | onset → TrainingJob s (interval + for; Prometheus scraped, policy triggered) "
    "| TrainingJob → Succeeded s (Job ran) | Succeeded → serving s (Deployment rolled out) "
    "| overhead s (detect / train / roll out) | onset after evaluation s | overhead ≤ 2 s |",
    "|---" * 9 + "|",
]


# ---------------------------------------------------------------- the gauge
class GaugeExporter:
    """``bench_drift_value{model=...}`` served on loopback for Prometheus, in a thread."""

    def __init__(self, values: Mapping[str, float]) -> None:
        self.values = dict(values)
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def exposition(self) -> str:
        with self.lock:
            lines = [f'{METRIC}{{model="{model}"}} {value}' for model, value in sorted(self.values.items())]
        return f"# TYPE {METRIC} gauge\n" + "\n".join(lines) + "\n"

    def set(self, model: str, value: float) -> None:
        with self.lock:
            self.values[model] = value

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def query(job: str, model: str) -> str:
    return f'max({METRIC}{{job="{job}",model="{model}"}})'


def policy(model: str, job: str) -> dict[str, Any]:
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "DriftPolicy",
        "metadata": {"name": f"{model}-recover", "labels": {"perennial.dev/bench-recover": "true"}},
        "spec": {
            "targetRef": {"name": model},
            "interval": f"{INTERVAL_S:.0f}s",
            "metrics": [{"name": "drift", "query": query(job, model), "max": MAX, "for": f"{FOR_S:.0f}s"}],
            "trigger": {"cooldown": COOLDOWN},
        },
    }
