"""Per-model and per-policy series: set by a reconcile, one series a model (or policy metric), gone on delete."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import Metric

from perennial.adapters import metrics
from perennial.domain.plan import Count

NS = "metrics-test"


def series(name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name`` whose labels include ``labels``: {sorted labels: value}."""
    found = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def about(namespace: str, model: str) -> Iterator[str]:
    """The names of the samples that mention one model."""
    family: Metric
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace and sample.labels.get("model") == model:
                yield sample.name


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    metrics.forget_all_objects()


def export(model: str = "churn", **changes: object) -> None:
    values: dict[str, object] = {
        "ready": True,
        "automatic_retrains": "Active",
        "serving_version": "1",
        "last_training": 1_700_000_000.0,
        "max_training_age": 1_209_600.0,
        "counts": (),
    }
    values.update(changes)
    metrics.export_model(NS, model, **values)


def test_a_reconciled_model_has_its_series() -> None:
    export(counts=[Count("rollouts", {"result": "Started"}), Count("promotions", {"result": "Promoted"})])
    assert value("perennial_model_info", namespace=NS, model="churn", version="1") == 1
    assert value("perennial_model_ready", namespace=NS, model="churn") == 1
    assert value("perennial_model_automatic_retrains", namespace=NS, model="churn", state="Active") == 1
    assert value("perennial_model_automatic_retrains", namespace=NS, model="churn", state="CircuitOpen") == 0
    assert value("perennial_model_last_successful_training_timestamp_seconds", namespace=NS, model="churn") == (
        1_700_000_000.0
    )
    assert value("perennial_model_max_training_age_seconds", namespace=NS, model="churn") == 1_209_600.0
    rollouts = "perennial_model_rollouts_total"
    assert value(rollouts, namespace=NS, model="churn", result="Started") == 1
    assert value(rollouts, namespace=NS, model="churn", result="Succeeded") == 0  # there from the start
    assert value(rollouts, namespace=NS, model="churn", result="RolledBack") == 0


def test_one_series_a_model_as_its_state_moves() -> None:
    export(counts=[Count("rollouts", {"result": "Started"})])
    export(
        serving_version="2",
        ready=False,
        automatic_retrains="CircuitOpen",
        last_training=1_700_086_400.0,
        counts=[Count("rollouts", {"result": "Succeeded"})],
    )
    export(serving_version="2", counts=[Count("rollouts", {"result": "Started"})])
    assert series("perennial_model_info", namespace=NS, model="churn") == {
        (("model", "churn"), ("namespace", NS), ("version", "2")): 1.0
    }
    assert value("perennial_model_ready", namespace=NS, model="churn") == 1
    assert value("perennial_model_automatic_retrains", namespace=NS, model="churn", state="CircuitOpen") == 0
    assert value("perennial_model_automatic_retrains", namespace=NS, model="churn", state="Active") == 1
    assert value("perennial_model_last_successful_training_timestamp_seconds", namespace=NS, model="churn") == (
        1_700_086_400.0  # never back: an older value means the newer version's record was pruned (historyLimit)
    )
    assert value("perennial_model_rollouts_total", namespace=NS, model="churn", result="Started") == 2
    assert value("perennial_model_rollouts_total", namespace=NS, model="churn", result="Succeeded") == 1


def test_optional_gauges_have_no_series_without_a_value() -> None:
    export(last_training=None, max_training_age=None, serving_version=None)
    assert not series("perennial_model_last_successful_training_timestamp_seconds", namespace=NS)
    assert not series("perennial_model_max_training_age_seconds", namespace=NS)
    assert not series("perennial_model_info", namespace=NS)
    export()
    assert series("perennial_model_max_training_age_seconds", namespace=NS)
    export(max_training_age=None)  # the schedule was removed, or the model suspended
    assert not series("perennial_model_max_training_age_seconds", namespace=NS)


def test_deleting_a_model_removes_its_series_and_the_drift_values_that_name_it() -> None:
    export("churn", counts=[Count("rollouts", {"result": "Started"})])
    export("fraud")
    metrics.set_drift_values(NS, "churn-drift", "churn", {"feature_psi": 0.3})
    metrics.set_drift_values(NS, "fraud-drift", "fraud", {"feature_psi": 0.1})
    assert "perennial_drift_metric_value" in set(about(NS, "churn"))
    metrics.forget_model(NS, "churn")
    assert list(about(NS, "churn")) == []
    assert {
        "perennial_model_info",
        "perennial_model_ready",
        "perennial_model_rollouts_total",
        "perennial_drift_metric_value",
    } <= set(about(NS, "fraud"))
    metrics.forget_model(NS, "churn")  # twice (a resync and a watch event): nothing left to remove
    metrics.forget_model(NS, "never-reconciled")


def test_drift_values_name_the_target_and_follow_the_spec() -> None:
    gauge = "perennial_drift_metric_value"
    metrics.set_drift_values(NS, "churn-drift", "churn", {"feature_psi": 0.3, "online_auc": 0.91})
    assert value(gauge, namespace=NS, model="churn", policy="churn-drift", metric="feature_psi") == 0.3
    # An error this time (None) keeps the last value; a metric removed from the spec loses its series.
    metrics.set_drift_values(NS, "churn-drift", "churn", {"feature_psi": None})
    assert series(gauge, namespace=NS, policy="churn-drift") == {
        (("metric", "feature_psi"), ("model", "churn"), ("namespace", NS), ("policy", "churn-drift")): 0.3
    }
    # A new target: the series name it, the old ones are gone.
    metrics.set_drift_values(NS, "churn-drift", "churn-v2", {"feature_psi": 0.2})
    assert series(gauge, namespace=NS, policy="churn-drift") == {
        (("metric", "feature_psi"), ("model", "churn-v2"), ("namespace", NS), ("policy", "churn-drift")): 0.2
    }
    metrics.forget_model(NS, "churn")  # the old target: no longer this policy's
    assert series(gauge, namespace=NS, policy="churn-drift")
    metrics.forget_policy(NS, "churn-drift")
    assert not series(gauge, namespace=NS, policy="churn-drift")
    metrics.forget_policy(NS, "churn-drift")


def test_a_replica_that_stops_leading_drops_every_per_object_series() -> None:
    export("churn")
    export("fraud")
    metrics.set_drift_values(NS, "churn-drift", "churn", {"feature_psi": 0.3})
    metrics.forget_all_objects()
    for name in (
        "perennial_model_info",
        "perennial_model_ready",
        "perennial_model_automatic_retrains",
        "perennial_model_last_successful_training_timestamp_seconds",
        "perennial_model_max_training_age_seconds",
        "perennial_model_rollouts_total",
        "perennial_drift_metric_value",
    ):
        assert not series(name, namespace=NS), name
    # Operator-wide series stay.
    assert value("perennial_rollouts_total", result="Started") is not None
