"""``kubectl perennial``'s pure parts: the screens, the reasoning of ``why``, the patches and
the rules that refuse them, the error messages and exit codes, the kubeconfig's namespace.

Objects are built as the API server returns them (camelCase dicts) and read through the
plugin's own parsing; time is a fixed ``NOW``.
"""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from perennial.adapters.kube import DRIFT_POLICIES, MODEL_DEPLOYMENTS, ApiError
from perennial.kubectl import changes, cli, view, why
from perennial.kubectl.errors import ExitCode, PluginError, RefusedError
from perennial.kubectl.formatting import bounds, metrics_text, number, span, table
from perennial.kubectl.objects import Model, parse_model, policies_targeting
from perennial.kubectl.session import ConflictError, api_failure, connect, context_namespace

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RETRAIN_REQUEST = "perennial.dev/retrain-request"


def stamp(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(version: str, state: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": version,
        "trainingJob": f"churn-v{version}",
        "state": state,
        "trigger": {"reason": "Initial" if version == "1" else "Drift", "source": "churn-drift"},
    }
    if state not in ("Training", "Failed"):
        body["modelUri"] = f"s3://models/churn/{version}"
        body["metrics"] = {"auc": 0.9 + int(version) / 100, "loss": 0.2}
    body.update(fields)
    return body


def serving_model(**spec: Any) -> dict[str, Any]:
    """churn: v1 served first (Retired), v2 serves, v3 is a Candidate that did not beat it."""
    return {
        "apiVersion": "perennial.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "churn",
            "namespace": "ml",
            "generation": 4,
            "resourceVersion": "1234",
            "annotations": {},
        },
        "spec": {
            "training": {
                "image": "registry.example/churn-trainer:2.3.0",
                "output": {"modelUri": "s3://models/{model}/{version}"},
                "validation": [{"metric": "auc", "min": 0.9}],
            },
            "serving": {"image": "registry.example/churn-server:1.9.0", "replicas": 3},
            "promotion": {"policy": "Automatic", "requireImprovement": {"metric": "auc"}},
            "retraining": {"cooldown": "1h"},
            **spec,
        },
        "status": {
            "observedGeneration": 4,
            "phase": "Serving",
            "servingVersion": "2",
            "servingModelUri": "s3://models/churn/2",
            "latestVersion": "3",
            "replicas": 3,
            "readyReplicas": 3,
            "automaticRetrains": "Active",
            "lastRetrain": {"time": stamp(-timedelta(hours=3)), "reason": "Drift", "source": "churn-drift"},
            "versions": [
                record(
                    "1",
                    "Retired",
                    promotedAt=stamp(-timedelta(days=2)),
                    dataset={"uri": "s3://data/churn/2026-11-24/", "version": "2026-11-24"},
                    decision={"result": "Promoted", "reason": "validated; no version serving yet"},
                ),
                record(
                    "2",
                    "Serving",
                    promotedAt=stamp(-timedelta(days=1)),
                    dataset={
                        "uri": "s3://data/churn/",
                        "window": "24h",
                        "windowStart": stamp(-timedelta(days=2)),
                        "windowEnd": stamp(-timedelta(days=1)),
                    },
                    decision={"result": "Promoted", "reason": "auc 0.92 >= champion 0.91 + minDelta 0"},
                ),
                record(
                    "3",
                    "Candidate",
                    decision={"result": "NotPromoted", "reason": "auc 0.9 < champion 0.92 + minDelta 0"},
                    metrics={"auc": 0.9},
                ),
            ],
            "conditions": [
                condition("Ready", "True", "Serving", "version 2 is serving and available"),
                condition("Progressing", "False", "Stable", "no rollout in progress"),
                condition("Training", "False", "Idle", "no training running"),
                condition("Degraded", "False", "RolloutSucceeded", "version 2 serves"),
                condition("RetrainSuppressed", "False", "Started", "Drift started version 3"),
            ],
        },
    }


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp(-timedelta(hours=1)),
    }


def set_condition(body: dict[str, Any], type_: str, status: str, reason: str, message: str = "") -> None:
    conditions = body["status"]["conditions"]
    conditions[:] = [c for c in conditions if c["type"] != type_] + [condition(type_, status, reason, message)]


def policy(name: str = "churn-drift", *, target: str = "churn", drifting: bool = False, **spec: Any) -> dict[str, Any]:
    value = 0.31 if drifting else 0.05
    return {
        "metadata": {"name": name, "namespace": "ml", "resourceVersion": "77"},
        "spec": {
            "targetRef": {"name": target},
            "metrics": [
                {"name": "feature_psi", "query": "max(psi)", "max": 0.2},
                {"name": "online_auc", "query": "avg(auc)", "min": 0.85},
            ],
            **spec,
        },
        "status": {
            "lastEvaluationTime": stamp(-timedelta(seconds=30)),
            "metrics": [
                {"name": "feature_psi", "value": value, "max": 0.2, "breached": drifting},
                {"name": "online_auc", "error": "NoData"},
            ],
            "triggerCount": 1,
            "lastTriggerTime": stamp(-timedelta(hours=3)),
            "conditions": [
                condition("Ready", "True", "Evaluated", "2 metric(s) evaluated"),
                condition(
                    "Drifting",
                    "True" if drifting else "False",
                    "Breached" if drifting else "InBounds",
                    "feature_psi=0.31 > max 0.2" if drifting else "no sustained breach",
                ),
            ],
        },
    }


def model_of(body: dict[str, Any]) -> Model:
    return parse_model(body)


# ---------------------------------------------------------------- formatting
def test_spans_numbers_and_bounds_read_like_kubectl() -> None:
    assert [span(timedelta(seconds=s)) for s in (5, 119, 600, 3 * 3600 + 20 * 60, 30 * 3600)] == [
        "5s",
        "119s",
        "10m",
        "3h20m",
        "1d6h",
    ]
    assert [number(x) for x in (0.05, 3.0, 0.93412, None)] == ["0.05", "3", "0.9341", "-"]
    assert (bounds(0.85, None), bounds(None, 0.2), bounds(0.1, 0.9), bounds(None, None)) == (
        ">= 0.85",
        "<= 0.2",
        "[0.1, 0.9]",
        "-",
    )
    assert metrics_text({"loss": 0.2, "auc": 0.93, "a": 1, "b": 2}, first=["auc"]) == "auc=0.93 a=1 b=2 (+1)"
    assert table(["A", "LONGER"], [["xyz", "1"]]) == ["A     LONGER", "xyz   1"]


# ---------------------------------------------------------------- status
def test_status_screen_of_a_serving_model_shows_versions_policies_decisions_and_conditions() -> None:
    model = model_of(serving_model())
    policies = policies_targeting("churn", [policy(), policy("other", target="fraud")])
    screen = view.status_view(model, policies, NOW)
    text = view.render_status(screen, NOW)

    assert "Phase:             Serving" in text
    assert "Serving:           version 2  s3://models/churn/2" in text
    assert "Latest:            version 3 (Candidate)" in text
    assert "Replicas:          3/3 ready" in text
    assert "Auto retrains:     Active" in text
    assert "Last retrain:      Drift from churn-drift, 3h ago" in text
    # Only the policy that targets churn, with every metric of its spec.
    assert "churn-drift: Ready, not drifting" in text
    assert "other" not in text
    assert "feature_psi   0.05     <= 0.2    no" in text
    assert "online_auc    NoData   >= 0.85   -" in text
    # The last decisions, newest first.
    lines = text.splitlines()
    first = lines.index("Recent versions:") + 2
    assert lines[first].split()[:3] == ["3", "Candidate", "Drift"]
    assert "NotPromoted: auc 0.9 < champion 0.92 + minDelta 0" in lines[first]
    # Conditions in plain words.
    assert "  Ready: version 2 is serving and available  (for 1h)" in lines
    assert "  No rollout in progress  (for 1h)" in lines
    assert "  Not training  (for 1h)" in lines


def test_status_structured_output_is_what_the_screen_shows() -> None:
    body = serving_model(suspend=True, pinnedVersion="2")
    body["status"]["automaticRetrains"] = "Suspended"
    model = model_of(body)
    data = view.status_view(model, policies_targeting("churn", [policy()]), NOW).to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert data["servingVersion"] == "2"
    assert data["latestVersion"] == "3"
    assert data["latestState"] == "Candidate"
    assert data["pinnedVersion"] == "2"
    assert data["automaticRetrains"] == "Suspended"
    assert "spec.suspend is true" in data["automaticRetrainsReason"]
    assert [v["version"] for v in data["recentVersions"]] == ["3", "2", "1"]
    (dpol,) = data["driftPolicies"]
    assert dpol["drifting"] is False
    assert dpol["metrics"][0] == {"name": "feature_psi", "value": 0.05, "max": 0.2, "breached": False}
    assert [c["type"] for c in data["conditions"]] == [
        "Ready",
        "Progressing",
        "Training",
        "Degraded",
        "RetrainSuppressed",
    ]
    assert data["conditions"][0]["summary"] == "Ready: version 2 is serving and available"


def test_status_of_a_rollout_in_progress_and_a_breaker_says_so() -> None:
    body = serving_model()
    body["status"].update(
        phase="Rolling",
        rollout={"version": "3", "previousVersion": "2", "startedAt": stamp(-timedelta(minutes=2))},
        automaticRetrains="CircuitOpen",
        consecutiveFailures=3,
        activeTrainingJob="churn-v4",
    )
    body["status"]["versions"].append(record("4", "Training"))
    text = view.render_status(view.status_view(model_of(body), [], NOW), NOW)
    assert "Rollout:           version 3 replacing 2, started 2m ago, progressDeadline 10m (in 8m)" in text
    assert "Training:          churn-v4 (version 4, Drift)" in text
    assert "Auto retrains:     CircuitOpen: 3 runs in a row failed or were rejected" in text
    assert "none targets churn" in text


def test_status_and_why_of_a_canary_in_its_pause_say_where_it_is() -> None:
    body = serving_model()
    progress = "version 3: canary step 1/2 at 25% (1 canary, 3 stable replica(s)), paused until 2026-11-26T12:04:00Z"
    set_condition(body, "Progressing", "True", "CanaryStep", progress)
    body["status"].update(
        phase="Rolling",
        rollout={
            "version": "3",
            "previousVersion": "2",
            "startedAt": stamp(-timedelta(minutes=3)),
            "strategy": "Canary",
            "stage": "Step",
            "step": 1,
            "steps": 2,
            "weight": 25,
            "canaryReplicas": 1,
            "stableReplicas": 3,
            "pauseStartedAt": stamp(-timedelta(minutes=1)),
            "analysis": [{"name": "errors", "value": 0.004, "max": 0.01}, {"name": "latency", "error": "NoData"}],
        },
    )
    text = view.render_status(view.status_view(model_of(body), [], NOW), NOW)
    assert (
        "Rollout:           version 3 replacing 2, started 3m ago; canary step 1/2 at 25% (1 canary, 3 stable"
        " replicas), paused since 2026-11-26T11:59:00Z; analysis errors=0.004, latency=none"
    ) in text
    verdict = why.explain_promotion(model_of(body), NOW)
    assert verdict.state == "Rolling"
    assert f"Canary (CanaryStep): {progress}" in verdict.reasons
    assert "kubectl perennial promote churn 3   # skip the steps left" in verdict.hints


def test_why_an_aborted_canary_names_the_breach() -> None:
    body = serving_model()
    message = "version 3's canary failed its analysis at step 1: errors=0.2 > max 0.01; rolled back to version 2"
    body["status"]["versions"][2].update(
        state="RolledBack", rollback={"reason": "AnalysisFailed", "message": message, "time": stamp(timedelta(0))}
    )
    set_condition(body, "Degraded", "True", "AnalysisFailed", message)
    verdict = why.explain_promotion(model_of(body), NOW)
    assert f"Version 3 was rolled back (AnalysisFailed): {message}; the operator does not roll it out again" in (
        verdict.reasons
    )


def test_a_model_not_reconciled_yet_and_a_forbidden_policy_list_still_make_a_screen() -> None:
    body = serving_model()
    body["status"] = {}
    text = view.render_status(view.status_view(model_of(body), [], NOW, policies_error="forbidden: ..."), NOW)
    assert "Phase:             Unknown (not reconciled yet)" in text
    assert "(not shown: forbidden: ...)" in text
    assert "none yet: the operator has not reconciled this ModelDeployment" in text


def test_a_stale_status_is_pointed_out() -> None:
    body = serving_model()
    body["metadata"]["generation"] = 5
    text = view.render_status(view.status_view(model_of(body), [], NOW), NOW)
    assert "the operator has not acted on the latest spec yet (generation 5, observed 4)" in text


# ---------------------------------------------------------------- history
def test_history_lists_every_version_with_trigger_data_metrics_and_decision() -> None:
    model = model_of(serving_model())
    lines = view.render_history(model).splitlines()
    assert lines[0].split() == ["VERSION", "STATE", "TRIGGER", "DATA", "METRICS", "DECISION"]
    assert lines[1].startswith("1 ")
    assert "s3://data/churn/2026-11-24/ @2026-11-24" in lines[1]
    assert "auc=0.91 loss=0.2" in lines[1]
    assert "Initial (churn-drift)" in lines[1]
    assert lines[2].startswith("2 *")
    assert "s3://data/churn/ (24h to 2026-11-25T12:00:00Z)" in lines[2]
    assert "Drift (churn-drift)" in lines[2]
    assert "Promoted: auc 0.92 >= champion 0.91 + minDelta 0" in lines[2]
    assert "NotPromoted" in lines[3]
    assert lines[-1] == "* serving"

    document = view.history_document(model)
    assert document["servingVersion"] == "2"
    assert [v["version"] for v in document["versions"]] == ["1", "2", "3"]
    assert document["versions"][1]["dataset"]["window"] == "24h"


def test_history_of_a_model_without_versions() -> None:
    body = serving_model()
    body["status"] = {}
    assert view.render_history(model_of(body)) == "modeldeployment churn has no versions yet\n"


# ---------------------------------------------------------------- why
def test_why_a_suspended_model_does_not_retrain() -> None:
    explanation = why.explain(model_of(serving_model(suspend=True)), [], NOW)
    retraining = explanation.retraining
    assert retraining.state == "Blocked"
    assert retraining.reasons[0].startswith("spec.suspend is true: automatic retrains (Drift, Schedule, spec changes)")
    assert "a manual retrain still runs" in retraining.reasons[0]
    assert "No DriftPolicy targets churn: drift does not retrain it" in retraining.reasons
    assert "kubectl perennial resume churn" in retraining.hints


def test_why_an_open_circuit_breaker_blocks_automatic_retrains_with_its_evidence() -> None:
    body = serving_model(retraining={"maxConsecutiveFailures": 2})
    body["status"]["consecutiveFailures"] = 2
    body["status"]["versions"] += [
        record("4", "Rejected", decision={"result": "NotPromoted", "reason": "training Rejected: MetricBelowMin"}),
        record("5", "Failed", decision={"result": "NotPromoted", "reason": "training Failed: BackoffLimitExceeded"}),
    ]
    verdict = why.explain_retraining(model_of(body), [], NOW)
    assert verdict.state == "Blocked"
    reason = verdict.reasons[0]
    assert reason.startswith("The circuit breaker is open: 2 runs in a row failed or were rejected")
    assert "retraining.maxConsecutiveFailures 2" in reason
    assert "The last one, version 5: training Failed: BackoffLimitExceeded." in reason
    assert "kubectl perennial retrain churn" in reason


def test_why_the_futility_breaker_names_the_runs_that_did_not_beat_the_champion() -> None:
    body = serving_model(retraining={"maxConsecutiveNotPromoted": 1})
    body["status"]["consecutiveNotPromoted"] = 1
    verdict = why.explain_retraining(model_of(body), [], NOW)
    assert verdict.state == "Blocked"
    assert "The futility breaker is open (NoImprovement): 1 automatic runs in a row (version 3)" in verdict.reasons[0]


def test_why_a_drifting_policy_waits_for_the_cooldown() -> None:
    body = serving_model()
    body["status"]["lastAutomaticRetrain"] = stamp(-timedelta(minutes=20))
    verdict = why.explain_retraining(model_of(body), policies_targeting("churn", [policy(drifting=True)]), NOW)
    assert verdict.state == "Cooldown"
    assert verdict.reasons[0].startswith("In cooldown until 2026-11-26T12:40:00Z (in 40m): retraining.cooldown (1h)")
    assert any(r.startswith("DriftPolicy churn-drift is drifting: feature_psi=0.31 > max 0.2") for r in verdict.reasons)


def test_why_a_drifting_policy_that_only_observes_never_retrains() -> None:
    policies = policies_targeting("churn", [policy(drifting=True, trigger={"action": "Observe"})])
    verdict = why.explain_retraining(model_of(serving_model()), policies, NOW)
    assert verdict.state == "Idle"
    assert any("it only observes (trigger.action Observe)" in r for r in verdict.reasons)


def test_why_a_policy_that_cannot_evaluate_says_so() -> None:
    unready = policy()
    unready["status"]["conditions"][0] = condition(
        "Ready", "False", "PrometheusUnreachable", "http://prometheus:9090: connection refused"
    )
    verdict = why.explain_retraining(model_of(serving_model()), policies_targeting("churn", [unready]), NOW)
    assert (
        "DriftPolicy churn-drift cannot evaluate its metrics (PrometheusUnreachable):"
        " http://prometheus:9090: connection refused"
    ) in verdict.reasons


def test_why_a_training_in_progress_and_a_pending_request_wait() -> None:
    body = serving_model()
    body["status"]["activeTrainingJob"] = "churn-v4"
    body["status"]["versions"].append(record("4", "Training"))
    body["metadata"]["annotations"][RETRAIN_REQUEST] = "again"
    body["status"]["handledRetrainRequest"] = "before"
    verdict = why.explain_retraining(model_of(body), [], NOW)
    assert verdict.state == "Training"
    assert verdict.reasons[0].startswith("version 4 (TrainingJob churn-v4) is training now")
    assert any(r.endswith("it starts when churn-v4 finishes") for r in verdict.reasons)
    promotion = why.explain_promotion(model_of(body), NOW)
    assert promotion.state == "Training"
    assert "Version 4 is still training (TrainingJob churn-v4)" in promotion.reasons


def test_why_not_promoting_a_version_that_did_not_beat_the_champion() -> None:
    verdict = why.explain_promotion(model_of(serving_model()), NOW)
    assert verdict.state == "NotPromoted"
    assert verdict.reasons[0] == "Version 3 was validated but not promoted: auc 0.9 < champion 0.92 + minDelta 0"
    assert any(r.startswith("promotion.requireImprovement: a new version must maximize auc") for r in verdict.reasons)


def test_why_not_promoting_under_a_pin_and_under_manual_promotion() -> None:
    pinned = why.explain_promotion(model_of(serving_model(pinnedVersion="2")), NOW)
    assert pinned.state == "Pinned"
    assert pinned.reasons[0].startswith("spec.pinnedVersion is 2: the pin decides what serves")
    assert "kubectl perennial unpin churn" in pinned.hints

    body = serving_model(promotion={"policy": "Manual"})
    body["status"]["versions"][2]["decision"] = {"result": "Candidate", "reason": "promotion.policy is Manual"}
    manual = why.explain_promotion(model_of(body), NOW)
    assert manual.state == "Manual"
    assert "Candidates now: 3" in " ".join(manual.reasons)
    assert "kubectl perennial promote churn 3" in manual.hints


def test_why_a_rollout_a_rollback_and_an_up_to_date_model() -> None:
    body = serving_model()
    body["status"]["rollout"] = {"version": "3", "previousVersion": "2", "startedAt": stamp(-timedelta(minutes=1))}
    assert why.explain_promotion(model_of(body), NOW).state == "Rolling"

    body = serving_model()
    body["status"]["versions"][2]["state"] = "RolledBack"
    set_condition(body, "Degraded", "True", "RolledBack", "version 3 was not Available within 10m")
    verdict = why.explain_promotion(model_of(body), NOW)
    assert verdict.state == "Degraded"
    assert "Degraded (RolledBack): version 3 was not Available within 10m" in verdict.reasons
    assert any(r.startswith("Version 3 was rolled back") for r in verdict.reasons)

    body = serving_model()
    del body["status"]["versions"][2]
    body["status"]["latestVersion"] = "2"
    verdict = why.explain_promotion(model_of(body), NOW)
    assert verdict.state == "UpToDate"
    assert verdict.reasons == ["Version 2, the latest, serves: nothing waits for promotion"]


def test_why_renders_both_verdicts_in_words() -> None:
    text = why.render_explanation(why.explain(model_of(serving_model(suspend=True)), [], NOW))
    assert text.startswith("Retraining: Blocked\n  Automatic retrains are blocked.\n  - spec.suspend is true")
    assert "\nPromotion: NotPromoted\n" in text


# ---------------------------------------------------------------- changes
def test_pause_and_resume_set_spec_suspend_and_say_nothing_changes_when_it_would_not() -> None:
    change = changes.set_suspend(model_of(serving_model()), True)
    assert change.patch == {"spec": {"suspend": True}}
    assert change.changed == ["spec.suspend: false -> true"]
    assert not change.guarded
    assert changes.set_suspend(model_of(serving_model(suspend=True)), True).noop
    resume = changes.set_suspend(model_of(serving_model(suspend=True)), False)
    assert resume.patch == {"spec": {"suspend": False}}
    assert changes.set_suspend(model_of(serving_model()), False).noop


def test_promote_pins_a_trained_version_against_the_object_read() -> None:
    change = changes.promote(model_of(serving_model()), "3")
    assert change.patch == {"spec": {"pinnedVersion": "3"}}
    assert change.changed == ['spec.pinnedVersion: (unset) -> "3"']
    assert change.guarded
    assert "rolls it out (replacing version 2)" in change.message
    assert changes.promote(model_of(serving_model(pinnedVersion="3")), "3").noop
    assert "already serves" in changes.promote(model_of(serving_model()), "2").message
    assert changes.promote(model_of(serving_model()), "1").patch == {"spec": {"pinnedVersion": "1"}}


@pytest.mark.parametrize(
    ("version", "state", "message"),
    [
        ("9", None, "modeldeployment churn has no version 9 (its versions: 1, 2, 3); see kubectl perennial history"),
        ("v3", None, '"v3" is not a version: versions are whole numbers such as 3'),
        ("4", "Training", "version 4 of churn is still training"),
        ("4", "Failed", "version 4 of churn was Failed: training Failed: BackoffLimitExceeded; only a trained"),
        ("4", "Rejected", "version 4 of churn was Rejected: training Failed: BackoffLimitExceeded; only a trained"),
        ("4", "RolledBack", "version 4 of churn was rolled back"),
    ],
)
def test_promote_refuses_what_cannot_serve(version: str, state: str | None, message: str) -> None:
    body = serving_model()
    if state is not None:
        failed = {"decision": {"result": "NotPromoted", "reason": "training Failed: BackoffLimitExceeded"}}
        body["status"]["versions"].append(record("4", state, **failed))
        body["status"]["lastRolledBack"] = "4"
    with pytest.raises(RefusedError) as refused:
        changes.promote(model_of(body), version)
    assert refused.value.code == ExitCode.USAGE
    assert refused.value.message.startswith(message)


def test_unpin_removes_the_pin_with_a_null() -> None:
    change = changes.unpin(model_of(serving_model(pinnedVersion="1")))
    assert change.patch == {"spec": {"pinnedVersion": None}}
    assert change.changed == ['spec.pinnedVersion: "1" -> (unset)']
    assert changes.unpin(model_of(serving_model())).noop


def test_rollback_pins_the_version_that_served_before_the_current_one() -> None:
    model = model_of(serving_model())
    previous, reason = changes.previous_serving_version(model)
    assert previous.version == "1"
    assert reason == "version 1 served before version 2"
    change = changes.rollback(model)
    assert change.patch == {"spec": {"pinnedVersion": "1"}}
    assert change.guarded

    # After a rollback to 1 (promoted again now), the previous one is 2: rollback toggles, as `rollout undo`.
    body = serving_model(pinnedVersion="1")
    v1, v2 = body["status"]["versions"][:2]
    v1.update(state="Serving", promotedAt=stamp(-timedelta(minutes=5)))
    v2["state"] = "Retired"
    body["status"]["servingVersion"] = "1"
    assert changes.previous_serving_version(model_of(body))[0].version == "2"


def test_rollback_during_a_rollout_cancels_it_by_pinning_what_still_serves() -> None:
    body = serving_model()
    body["status"]["rollout"] = {"version": "3", "previousVersion": "2"}
    previous, reason = changes.previous_serving_version(model_of(body))
    assert previous.version == "2"
    assert reason == "cancels the rollout of version 3; version 2 still serves"


def test_rollback_refuses_when_nothing_served_before() -> None:
    body = serving_model()
    del body["status"]["versions"][0]  # v1 left the history (historyLimit)
    with pytest.raises(RefusedError, match="no version served churn before version 2 that is still in its history"):
        changes.rollback(model_of(body))
    body["status"] = {}
    with pytest.raises(RefusedError, match="nothing serves churn yet"):
        changes.rollback(model_of(body))


def test_retrain_sets_a_new_request_value_with_the_reason() -> None:
    body = serving_model(suspend=True)
    body["metadata"]["annotations"][RETRAIN_REQUEST] = "old"
    body["status"]["handledRetrainRequest"] = "old"
    change = changes.retrain(model_of(body), NOW, "new  data\nlanded")
    value = "2026-11-26T12:00:00.000000Z new data landed"
    assert change.patch == {"metadata": {"annotations": {RETRAIN_REQUEST: value}}}
    assert change.changed == [f'metadata.annotations[{RETRAIN_REQUEST}]: "old" -> "{value}"']
    assert "spec.suspend is true, but a manual retrain still runs" in change.message
    later = changes.retrain_request(NOW + timedelta(microseconds=1))
    assert later == "2026-11-26T12:00:00.000001Z" != changes.retrain_request(NOW)
    with pytest.raises(RefusedError):
        changes.retrain(model_of(body), NOW, "x" * 600)


def test_the_gitops_note_names_the_tool_when_the_object_tells() -> None:
    body = serving_model()
    assert "if Argo CD or Flux manages churn" in changes.gitops_note(model_of(body))
    body["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "ml:perennial.dev/ModelDeployment:ml/churn"
    assert "churn looks managed by Argo CD: make the same change in Git" in changes.gitops_note(model_of(body))
    body = serving_model()
    body["metadata"]["labels"] = {"kustomize.toolkit.fluxcd.io/name": "apps"}
    assert changes.gitops_tool(model_of(body)) == "Flux"


# ---------------------------------------------------------------- errors and exit codes
def test_api_errors_become_one_line_with_an_exit_code() -> None:
    def fail(status: int, reason: str, message: str, name: str | None = "churn") -> PluginError:
        return api_failure(ApiError(status, reason, message), "get", MODEL_DEPLOYMENTS, "ml", name)

    missing = fail(404, "NotFound", 'modeldeployments.perennial.dev "churn" not found')
    assert (missing.code, missing.message) == (
        ExitCode.NOT_FOUND,
        'modeldeployment "churn" not found in namespace "ml"',
    )
    no_crd = fail(404, "NotFound", "the server could not find the requested resource")
    assert no_crd.code == ExitCode.NOT_FOUND
    assert "does not serve modeldeployments.perennial.dev: are Perennial's CRDs installed?" in no_crd.message
    forbidden = api_failure(
        ApiError(
            403,
            "Forbidden",
            'driftpolicies.perennial.dev is forbidden: User "bob" cannot list resource "driftpolicies"'
            ' in API group "perennial.dev" in the namespace "ml"',
        ),
        "list",
        DRIFT_POLICIES,
        "ml",
        None,
    )
    assert forbidden.code == ExitCode.FORBIDDEN
    assert forbidden.message == (
        'forbidden: you may not list driftpolicies.perennial.dev in namespace "ml": User "bob" cannot list'
        ' resource "driftpolicies" in API group "perennial.dev" in the namespace "ml"'
        " (check with: kubectl auth can-i list driftpolicies.perennial.dev -n ml)"
    )
    assert fail(401, "Unauthorized", "Unauthorized").code == ExitCode.FORBIDDEN
    assert isinstance(fail(409, "Conflict", "the object has been modified"), ConflictError)
    assert fail(422, "Invalid", "spec.pinnedVersion: Invalid value").code == ExitCode.USAGE
    other = fail(500, "InternalError", "etcd timed out")
    assert (other.code, other.message) == (
        ExitCode.API_ERROR,
        'get modeldeployment "churn" failed: 500 InternalError: etcd timed out',
    )


def test_usage_errors_exit_1_and_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["promote", "churn"])  # VERSION missing
    assert exited.value.code == ExitCode.USAGE
    with pytest.raises(SystemExit) as exited:
        cli.main(["frobnicate", "churn"])
    assert exited.value.code == ExitCode.USAGE
    assert cli.main([]) == ExitCode.USAGE
    assert "exit codes:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    assert "2  the ModelDeployment (or Perennial's CRDs) not found" in capsys.readouterr().out


def test_connection_options_go_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["-n", "ml", "--context", "prod", "status", "churn", "-w"])
    after = parser.parse_args(["status", "churn", "-n", "ml", "--context", "prod", "-o", "yaml"])
    assert (before.namespace, before.context, before.watch) == ("ml", "prod", True)
    assert (after.namespace, after.context, after.output) == ("ml", "prod", "yaml")
    assert parser.parse_args(["history", "churn"]).namespace is None


def test_no_kubeconfig_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    err = io.StringIO()
    assert cli.main(["status", "churn"], out=io.StringIO(), err=err) == ExitCode.API_ERROR
    assert err.getvalue() == f"error: no kubeconfig at {tmp_path / 'missing'}: set KUBECONFIG or pass --kubeconfig\n"


def test_an_unreachable_api_server_is_a_clear_error(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", {"a": "ml"}, current="a")
    err = io.StringIO()
    code = cli.main(["--kubeconfig", str(config), "status", "churn"], out=io.StringIO(), err=err)
    assert code == ExitCode.API_ERROR
    assert err.getvalue().startswith("error: cannot reach the API server at https://127.0.0.1:1: ")
    assert "Traceback" not in err.getvalue()


# ---------------------------------------------------------------- the kubeconfig's namespace
def kubeconfig(path: Path, contexts: dict[str, str | None], current: str | None = None) -> Path:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [
            {"name": name, "context": {"cluster": "local", "user": "me", **({"namespace": ns} if ns else {})}}
            for name, ns in contexts.items()
        ],
    }
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_namespace_comes_from_the_context_and_files_merge_as_the_client_merges_them(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "first", {"prod": "ml", "dev": None}, current="prod")
    second = kubeconfig(tmp_path / "second", {"prod": "other", "staging": "stage"}, current="staging")
    assert context_namespace([str(first)], None) == "ml"
    assert context_namespace([str(first)], "dev") is None
    # The first definition of a context wins; the last current-context wins.
    assert context_namespace([str(first), str(second)], None) == "stage"
    assert context_namespace([str(first), str(second)], "prod") == "ml"
    with pytest.raises(PluginError, match='context "nope" is not in'):
        context_namespace([str(first)], "nope")
    no_current = kubeconfig(tmp_path / "none", {"prod": "ml"})
    with pytest.raises(PluginError, match="no current context"):
        context_namespace([str(no_current)], None)


def test_parsing_rejects_an_object_this_plugin_cannot_read() -> None:
    body = copy.deepcopy(serving_model())
    body["status"]["versions"][0]["state"] = "Quantum"
    with pytest.raises(PluginError) as failed:
        parse_model(body)
    assert failed.value.code == ExitCode.API_ERROR
    assert "does not match this plugin's API" in failed.value.message


def test_the_service_url_shows_under_the_serving_version() -> None:
    body = serving_model()
    body["status"]["url"] = "http://churn.ml.svc:8080"
    lines = view.render_status(view.status_view(model_of(body), [], NOW), NOW).splitlines()
    assert lines[3:5] == [
        "Serving:           version 2  s3://models/churn/2",
        "URL:               http://churn.ml.svc:8080",
    ]


# ---------------------------------------------------------------- credentials
async def test_a_kubeconfig_given_wins_over_the_pod_s_service_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a pod (a CI job, a toolbox), kubectl reads a kubeconfig when there is one; so does the plugin."""
    monkeypatch.setattr("perennial.adapters.login.in_cluster", lambda environ=None: True)
    monkeypatch.setattr("perennial.kubectl.session.in_cluster", lambda environ=None: True)
    config = kubeconfig(tmp_path / "config", {"prod": "ml"}, current="prod")
    connection = connect(str(config), None, None)
    assert (connection.source, connection.namespace) == (str(config), "ml")
    credentials = await connection.login.credentials()
    assert credentials.source == str(config)
    assert credentials.server == "https://127.0.0.1:1"


def test_without_a_kubeconfig_a_pod_uses_its_service_account_and_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("perennial.kubectl.session.in_cluster", lambda environ=None: True)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("POD_NAMESPACE", "ml-jobs")
    connection = connect(None, None, None)
    assert (connection.source, connection.namespace) == ("in-cluster", "ml-jobs")
    assert connect(None, None, "other").namespace == "other"


# ---------------------------------------------------------------- a guarded write
class FakeSession:
    """Answers reads with successive bodies; the first guarded patch meets a changed object."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.bodies = bodies
        self.reads = 0
        self.patches: list[dict[str, Any]] = []

    async def get_model(self, name: str) -> dict[str, Any]:
        body = self.bodies[min(self.reads, len(self.bodies) - 1)]
        self.reads += 1
        return body

    async def patch_model(self, name: str, patch: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.patches.append(patch)
        if len(self.patches) == 1:
            raise ConflictError("the object has been modified")
        return {}


async def test_a_rollback_is_computed_again_when_the_object_changed_before_the_write() -> None:
    before = serving_model()
    after = serving_model()
    after["metadata"]["resourceVersion"] = "1300"
    # Meanwhile version 3 was promoted: the version before the serving one is now 2.
    _, v2, v3 = after["status"]["versions"]
    v2["state"] = "Retired"
    v3.update(state="Serving", promotedAt=stamp(-timedelta(minutes=1)))
    after["status"]["servingVersion"] = "3"
    session = FakeSession([before, after])
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["rollback", "churn"])
    code = await cli._change(session, args, cli.Printer(out, err), changes.rollback)
    assert code == ExitCode.OK
    assert session.patches == [
        {"spec": {"pinnedVersion": "1"}, "metadata": {"resourceVersion": "1234"}},
        {"spec": {"pinnedVersion": "2"}, "metadata": {"resourceVersion": "1300"}},
    ]
    assert out.getvalue().splitlines()[:2] == [
        "modeldeployment.perennial.dev/churn patched",
        '  spec.pinnedVersion: (unset) -> "2"',
    ]
    assert err.getvalue().count("Note: this changed the live object only") == 1
