"""Fresh data per trigger: dataset placeholders, the data window and the champion a run gets.

A ModelDeployment's ``spec.training.dataset`` is a template: ``{triggerTime}``,
``{triggerDate}``, ``{version}``, ``{model}`` and ``{namespace}`` in ``uri`` and ``version``
are filled in, and a ``window`` becomes ``windowStart``/``windowEnd`` (end = the trigger
time), when a run is triggered. The TrainingJob records the resolved values, its trainer
gets them (PERENNIAL_DATASET_*, PERENNIAL_DATA_WINDOW_*), and so does the version's lineage,
also when a pass adopts the TrainingJob after a crash. The version serving when a run is
triggered is its champion (PERENNIAL_CHAMPION_*). The spec hash stays the template's.

Expected values are written out literally. Time is fixed: ``NOW`` is 2026-11-30 06:00 UTC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from perennial.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus, ModelVersionRecord
from perennial.api.trainingjob import Dataset, TrainingJobSpec, TrainingJobStatus
from perennial.domain import modeldeployment as md
from perennial.domain.modeldeployment_plan import ObservedModel, plan_modeldeployment
from perennial.domain.plan import Plan
from perennial.domain.training import (
    ObservedRun,
    TrainingJobRef,
    desired_job,
    plan_trainingjob,
    resolve_dataset,
    run_dataset,
)

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
MODEL, NAMESPACE = "churn", "ml"
UID = "0b7c3d2e-0000-4000-8000-00000000c0de"
REF = md.ModelRef(MODEL, NAMESPACE, UID, generation=1)
TRAINER = "registry.example/churn-trainer:2.3.0"
TEMPLATE = {
    "uri": "s3://data/{namespace}/{model}/{triggerDate}/{triggerTime}/v{version}",
    "version": "{triggerDate}",
    "window": "24h",
}
SERVING_V1: dict[str, Any] = {
    "phase": "Serving",
    "latestVersion": "1",
    "servingVersion": "1",
    "servingModelUri": "s3://models/churn/1",
    "versions": [{"version": "1", "trainingJob": "churn-v1", "state": "Serving", "modelUri": "s3://models/churn/1"}],
}
WINDOW_ENV = ("PERENNIAL_DATA_WINDOW_START", "PERENNIAL_DATA_WINDOW_END")
CHAMPION_ENV = ("PERENNIAL_CHAMPION_VERSION", "PERENNIAL_CHAMPION_MODEL_URI")


def dataset(**fields: Any) -> Dataset:
    return Dataset.model_validate(fields)


def resolve(data: Mapping[str, Any], at: datetime = NOW, version: str = "7") -> dict[str, Any]:
    resolved = resolve_dataset(
        Dataset.model_validate(data), model=MODEL, version=version, namespace=NAMESPACE, trigger_time=at
    )
    assert resolved is not None
    return resolved.to_api()


def model_spec(data: Mapping[str, Any] | None = TEMPLATE, **training: Any) -> ModelDeploymentSpec:
    document: dict[str, Any] = {"image": TRAINER, "output": {"modelUri": "s3://models/{model}/{version}"}, **training}
    if data is not None:
        document["dataset"] = dict(data)
    return ModelDeploymentSpec.model_validate({"training": document, "serving": {"image": "registry.example/s:1"}})


def observe(
    spec: ModelDeploymentSpec,
    status: Mapping[str, Any] | None = None,
    *,
    now: datetime = NOW,
    runs: Mapping[str, md.Run] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> ObservedModel:
    return ObservedModel(
        ref=REF,
        spec=spec,
        annotations=dict(annotations or {}),
        status=ModelDeploymentStatus.model_validate(status or {}),
        runs=dict(runs or {}),
        runs_listed=True,
        deployment=None,
        drift_requests=[],
        now=now,
    )


def created(body: Mapping[str, Any], phase: str | None = "Running") -> md.Run:
    """What a later pass knows of a TrainingJob a plan created (the API server stored it)."""
    stored = {**body, "metadata": {**body["metadata"], "creationTimestamp": "2026-11-30T06:00:01Z"}}
    if phase is not None:
        stored["status"] = {"phase": phase}
    return md.run_from(stored)


def record(plan: Plan[ModelDeploymentStatus], version: str) -> dict[str, Any]:
    found = [r.to_api() for r in plan.status.versions or [] if r.version == version]
    assert len(found) == 1, found
    return found[0]


def trainer_env(training_job: Mapping[str, Any], created_at: datetime = NOW) -> list[tuple[str, str]]:
    """The env of the Job the TrainingJob controller makes for ``training_job``, as (name, value)."""
    ref = TrainingJobRef(training_job["metadata"]["name"], training_job["metadata"]["namespace"], "tj-uid", 1)
    job = desired_job(ref, TrainingJobSpec.model_validate(training_job["spec"]), created_at)
    return [(e["name"], e.get("value", "")) for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]


def hand_made_env(created_at: datetime, **spec: Any) -> dict[str, str]:
    document = {"image": TRAINER, "output": {"modelUri": "s3://models/{model}/{version}"}, "model": MODEL, **spec}
    return dict(
        trainer_env({"metadata": {"name": "churn-experiment", "namespace": NAMESPACE}, "spec": document}, created_at)
    )


# ---------------------------------------------------------------- resolving placeholders
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://data/{triggerTime}", "s3://data/2026-11-30T06:00:00Z"),
        ("s3://data/{triggerDate}", "s3://data/2026-11-30"),
        ("s3://data/{version}", "s3://data/7"),
        ("s3://data/{model}", "s3://data/churn"),
        ("s3://data/{namespace}", "s3://data/ml"),
        ("s3://data/{model}/{model}-{triggerDate}", "s3://data/churn/churn-2026-11-30"),
        ("s3://data/churn/fixed/", "s3://data/churn/fixed/"),
    ],
)
def test_each_placeholder_is_filled_in(uri: str, expected: str) -> None:
    assert resolve({"uri": uri, "version": uri}) == {"uri": expected, "version": expected}


def test_the_trigger_time_is_utc_to_the_second() -> None:
    # 23:30:00.75 at UTC-5 is 04:30:00.75 the next day in UTC.
    moment = datetime(2026, 11, 30, 23, 30, 0, 750000, tzinfo=timezone(timedelta(hours=-5)))

    resolved = resolve({"uri": "{triggerTime}", "version": "{triggerDate}"}, at=moment)

    assert resolved == {"uri": "2026-12-01T04:30:00Z", "version": "2026-12-01"}


def test_no_dataset_resolves_to_none() -> None:
    assert resolve_dataset(None, model=MODEL, version="1", namespace=NAMESPACE, trigger_time=NOW) is None


def test_resolving_does_not_change_the_template() -> None:
    template = dataset(**TEMPLATE)

    resolve_dataset(template, model=MODEL, version="7", namespace=NAMESPACE, trigger_time=NOW)

    assert template.to_api() == TEMPLATE


def test_a_resolved_dataset_resolves_to_itself_at_any_later_time() -> None:
    once = resolve(TEMPLATE)

    assert resolve(once, at=NOW + timedelta(days=3), version="9") == once


# ---------------------------------------------------------------- the window
@pytest.mark.parametrize(
    ("window", "start"),
    [
        ("24h", "2026-11-29T06:00:00Z"),
        ("1h30m", "2026-11-30T04:30:00Z"),
        ("1s", "2026-11-30T05:59:59Z"),
        ("1500ms", "2026-11-30T05:59:58Z"),  # whole seconds: the window widens, never narrows
    ],
)
def test_a_window_ends_at_the_trigger_time(window: str, start: str) -> None:
    resolved = resolve({"window": window})

    assert resolved == {"window": window, "windowStart": start, "windowEnd": "2026-11-30T06:00:00Z"}


def test_without_a_window_there_is_no_start_or_end() -> None:
    assert resolve({"uri": "s3://data/{triggerDate}"}) == {"uri": "s3://data/2026-11-30"}


def test_an_explicit_window_is_kept() -> None:
    explicit = {"window": "24h", "windowStart": "2026-01-01T00:00:00Z", "windowEnd": "2026-01-08T00:00:00Z"}

    assert resolve(explicit) == explicit


# ---------------------------------------------------------------- the TrainingJob a ModelDeployment creates
def test_the_training_job_records_the_resolved_dataset_and_its_trigger_time() -> None:
    plan = plan_modeldeployment(observe(model_spec()))

    job = plan.create[0]
    assert job["metadata"]["annotations"]["perennial.dev/triggered-at"] == "2026-11-30T06:00:00Z"
    assert job["spec"]["dataset"] == {
        "uri": "s3://data/ml/churn/2026-11-30/2026-11-30T06:00:00Z/v1",
        "version": "2026-11-30",
        "window": "24h",
        "windowStart": "2026-11-29T06:00:00Z",
        "windowEnd": "2026-11-30T06:00:00Z",
    }
    TrainingJobSpec.model_validate(job["spec"])  # a valid TrainingJob spec


def test_the_lineage_records_the_resolved_dataset() -> None:
    plan = plan_modeldeployment(observe(model_spec()))

    assert record(plan, "1")["dataset"] == {
        "uri": "s3://data/ml/churn/2026-11-30/2026-11-30T06:00:00Z/v1",
        "version": "2026-11-30",
        "window": "24h",
        "windowStart": "2026-11-29T06:00:00Z",
        "windowEnd": "2026-11-30T06:00:00Z",
    }


def test_a_template_without_placeholders_or_window_is_recorded_as_written() -> None:
    fixed = {"uri": "s3://data/churn/2026-11-20/", "version": "2026-11-20"}

    plan = plan_modeldeployment(observe(model_spec(fixed)))

    assert plan.create[0]["spec"]["dataset"] == fixed
    assert record(plan, "1")["dataset"] == fixed


def test_the_first_run_has_no_champion() -> None:
    plan = plan_modeldeployment(observe(model_spec()))

    assert "champion" not in plan.create[0]["spec"]
    assert "champion" not in record(plan, "1")
    names = [name for name, _ in trainer_env(plan.create[0])]
    assert not set(CHAMPION_ENV) & set(names)


def test_a_retrain_records_the_serving_version_as_its_champion() -> None:
    request = {"perennial.dev/retrain-request": "r1"}

    plan = plan_modeldeployment(observe(model_spec(), SERVING_V1, annotations=request))

    assert plan.create[0]["spec"]["champion"] == {"version": "1", "modelUri": "s3://models/churn/1"}
    assert record(plan, "2")["champion"] == {"version": "1", "modelUri": "s3://models/churn/1"}


def test_the_champion_is_the_serving_version_not_a_rollout_in_progress() -> None:
    status = {
        **SERVING_V1,
        "latestVersion": "2",
        "rollout": {"version": "2", "previousVersion": "1", "startedAt": "2026-11-30T05:59:00Z"},
        "versions": [
            *SERVING_V1["versions"],
            {"version": "2", "trainingJob": "churn-v2", "state": "Candidate", "modelUri": "s3://models/churn/2"},
        ],
    }

    champion = md.champion_of(ModelDeploymentStatus.model_validate(status))

    assert champion is not None
    assert champion.to_api() == {"version": "1", "modelUri": "s3://models/churn/1"}


def test_nothing_serving_is_no_champion() -> None:
    assert md.champion_of(ModelDeploymentStatus()) is None


def test_the_trainer_gets_the_resolved_dataset_its_window_and_the_champion() -> None:
    request = {"perennial.dev/retrain-request": "r1"}
    plan = plan_modeldeployment(observe(model_spec(), SERVING_V1, annotations=request))

    # The Job is created later (another controller, another pass): the values do not move.
    env = trainer_env(plan.create[0], created_at=NOW + timedelta(minutes=3))

    names = [name for name, _ in env]
    assert names == [
        "PERENNIAL_MODEL",
        "PERENNIAL_VERSION",
        "PERENNIAL_MODEL_URI",
        "PERENNIAL_DATASET_URI",
        "PERENNIAL_DATASET_VERSION",
        "PERENNIAL_HYPERPARAMETERS",
        "PERENNIAL_TRIGGER",
        *WINDOW_ENV,
        *CHAMPION_ENV,
    ]
    values = dict(env)
    assert values["PERENNIAL_DATASET_URI"] == "s3://data/ml/churn/2026-11-30/2026-11-30T06:00:00Z/v2"
    assert values["PERENNIAL_DATASET_VERSION"] == "2026-11-30"
    assert values["PERENNIAL_DATA_WINDOW_START"] == "2026-11-29T06:00:00Z"
    assert values["PERENNIAL_DATA_WINDOW_END"] == "2026-11-30T06:00:00Z"
    assert values["PERENNIAL_CHAMPION_VERSION"] == "1"
    assert values["PERENNIAL_CHAMPION_MODEL_URI"] == "s3://models/churn/1"


def test_the_users_env_still_comes_last() -> None:
    spec = model_spec(env=[{"name": "LOG_LEVEL", "value": "info"}])
    plan = plan_modeldeployment(observe(spec, SERVING_V1, annotations={"perennial.dev/retrain-request": "r1"}))

    assert trainer_env(plan.create[0])[-1] == ("LOG_LEVEL", "info")


def test_two_retrains_at_different_times_train_on_different_data() -> None:
    spec = model_spec()
    first = plan_modeldeployment(observe(spec, SERVING_V1, annotations={"perennial.dev/retrain-request": "r1"}))
    finished = created(first.create[0], "Succeeded")
    later_status = first.status.model_copy(deep=True)
    later_status.active_training_job = None
    later_status.versions = [
        r if r.version != "2" else r.model_copy(update={"state": "Candidate"}) for r in later_status.versions or []
    ]

    second = plan_modeldeployment(
        dataclasses.replace(
            observe(spec, annotations={"perennial.dev/retrain-request": "r2"}, now=NOW + timedelta(days=1, seconds=7)),
            status=later_status,
            runs={"2": finished},
        )
    )

    assert [body["metadata"]["name"] for body in second.create] == ["churn-v3"]
    assert record(first, "2")["dataset"]["uri"] == "s3://data/ml/churn/2026-11-30/2026-11-30T06:00:00Z/v2"
    assert record(second, "3")["dataset"] == {
        "uri": "s3://data/ml/churn/2026-12-01/2026-12-01T06:00:07Z/v3",
        "version": "2026-12-01",
        "window": "24h",
        "windowStart": "2026-11-30T06:00:07Z",
        "windowEnd": "2026-12-01T06:00:07Z",
    }


# ---------------------------------------------------------------- the spec hash stays the template's
def test_the_spec_hash_is_the_templates_and_a_later_pass_sees_no_spec_change() -> None:
    spec = model_spec()
    first = observe(spec)
    plan = plan_modeldeployment(first)
    v1 = created(plan.create[0], "Succeeded")

    next_day = NOW + timedelta(days=1)
    a_day_later = plan_modeldeployment(
        dataclasses.replace(first, status=plan.status.model_copy(deep=True), runs={"1": v1}, now=next_day)
    )

    assert plan.create[0]["metadata"]["annotations"]["perennial.dev/training-spec-hash"] == md.training_hash(spec)
    assert a_day_later.status.training_spec_hash == plan.status.training_spec_hash == md.training_hash(spec)
    assert a_day_later.create == []  # the resolved values changed; the spec did not
    assert md.pending_triggers(spec, {}, a_day_later.status, NOW + timedelta(days=1)) == []


def test_adding_a_window_is_a_spec_change_and_a_spec_without_one_keeps_its_hash() -> None:
    fixed = {"uri": "s3://data/churn/", "version": "1"}

    assert md.training_hash(model_spec(fixed)) == md.training_hash(model_spec(dict(fixed)))
    assert md.training_hash(model_spec({**fixed, "window": "24h"})) != md.training_hash(model_spec(fixed))


# ---------------------------------------------------------------- a crash, an adoption
def test_an_adopted_training_job_restores_the_same_dataset_and_champion() -> None:
    before = observe(model_spec(), SERVING_V1, annotations={"perennial.dev/retrain-request": "r1"})
    written = plan_modeldeployment(before)

    # The pass died before writing status; the next one, a minute later, finds the TrainingJob.
    crashed = dataclasses.replace(before, runs={"2": created(written.create[0])}, now=NOW + timedelta(minutes=1))
    restored = plan_modeldeployment(crashed)

    assert restored.create == []
    assert record(restored, "2") == record(written, "2")
    assert record(restored, "2")["dataset"]["windowEnd"] == "2026-11-30T06:00:00Z"
    assert record(restored, "2")["champion"] == {"version": "1", "modelUri": "s3://models/churn/1"}


def test_the_version_record_is_what_adoption_reads() -> None:
    job = md.training_job_for(
        REF,
        model_spec(),
        4,
        md.Trigger("Drift", "churn-drift", "psi 0.3"),
        {"perennial.dev/triggered-at": "2026-11-30T06:00:00Z"},
        champion=md.champion_of(ModelDeploymentStatus.model_validate(SERVING_V1)),
    )

    assert md.version_record(job) == md.adopted_record(created(job))
    ModelVersionRecord.model_validate(md.version_record(job).to_api())


def test_a_training_job_needs_its_trigger_time() -> None:
    with pytest.raises(ValueError, match=r"perennial\.dev/triggered-at"):
        md.training_job_for(REF, model_spec(), 1, md.Trigger("Initial"), {})


# ---------------------------------------------------------------- a TrainingJob created by hand
def test_a_hand_made_window_ends_at_the_training_jobs_creation() -> None:
    values = hand_made_env(
        datetime(2026, 11, 30, 7, 15, 30, tzinfo=UTC), dataset={"uri": "s3://d/{triggerDate}", "window": "6h"}
    )

    assert values["PERENNIAL_DATASET_URI"] == "s3://d/2026-11-30"
    assert values["PERENNIAL_DATA_WINDOW_START"] == "2026-11-30T01:15:30Z"
    assert values["PERENNIAL_DATA_WINDOW_END"] == "2026-11-30T07:15:30Z"


def test_a_hand_made_explicit_window_is_the_trigger_time() -> None:
    explicit = {"windowStart": "2026-11-01T00:00:00Z", "windowEnd": "2026-11-08T00:00:00+00:00"}

    values = hand_made_env(NOW, dataset={"uri": "s3://d/{triggerTime}", **explicit})

    assert values["PERENNIAL_DATASET_URI"] == "s3://d/2026-11-08T00:00:00Z"
    assert values["PERENNIAL_DATA_WINDOW_START"] == "2026-11-01T00:00:00Z"
    assert values["PERENNIAL_DATA_WINDOW_END"] == "2026-11-08T00:00:00Z"


def test_a_hand_made_run_without_window_or_champion_gets_neither() -> None:
    values = hand_made_env(NOW, dataset={"uri": "s3://d/", "version": "v1"})

    assert (values["PERENNIAL_DATASET_URI"], values["PERENNIAL_DATASET_VERSION"]) == ("s3://d/", "v1")
    assert not (set(WINDOW_ENV) | set(CHAMPION_ENV)) & set(values)


def test_a_hand_made_champion_reaches_the_trainer() -> None:
    values = hand_made_env(NOW, champion={"version": "3", "modelUri": "s3://models/churn/3"})

    assert (values["PERENNIAL_CHAMPION_VERSION"], values["PERENNIAL_CHAMPION_MODEL_URI"]) == (
        "3",
        "s3://models/churn/3",
    )


def test_run_dataset_of_a_hand_made_run_uses_its_name_as_version() -> None:
    spec = TrainingJobSpec.model_validate(
        {"image": TRAINER, "output": {"modelUri": "s3://m/{version}"}, "dataset": {"uri": "s3://d/{version}"}}
    )
    ref = TrainingJobRef("experiment-4", NAMESPACE, "uid")

    resolved = run_dataset(ref, spec, NOW)

    assert resolved is not None
    assert resolved.uri == "s3://d/experiment-4"


def test_the_training_job_plan_resolves_against_the_creation_time() -> None:
    spec = TrainingJobSpec.model_validate(
        {"image": TRAINER, "output": {"modelUri": "s3://m/{version}"}, "dataset": {"window": "1h"}}
    )
    ref = TrainingJobRef("experiment-5", NAMESPACE, "uid", 1)
    observed = ObservedRun(
        ref, spec, TrainingJobStatus(), None, (), NOW + timedelta(minutes=2), created_at=NOW - timedelta(seconds=1)
    )

    job = next(c for c in plan_trainingjob(observed).create if c["kind"] == "Job")

    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["PERENNIAL_DATA_WINDOW_START"], env["PERENNIAL_DATA_WINDOW_END"]) == (
        "2026-11-30T04:59:59Z",
        "2026-11-30T05:59:59Z",
    )
