"""`make demo PROFILE=real`'s objects and pods without a cluster: they are what the API
accepts, the drift test reads the servers' real histograms, and every pod of the demo
passes the restricted Pod Security profile. The scenario itself runs by hand on the `real`
profile (`make demo PROFILE=real`)."""

from __future__ import annotations

from typing import Any

from localcluster import demo, demo_real, workload

from perennial.api.driftpolicy import DriftPolicySpec
from perennial.api.modeldeployment import ModelDeploymentSpec

IMAGES = {"trainer": "localhost/t:1", "server": "localhost/s:1", "traffic": "localhost/g:1"}
ORIGIN = "2026-11-30T10:00:00Z"


def _objects() -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in demo_real.objects(IMAGES, ORIGIN)}


def test_the_model_trains_on_a_world_that_drifts_within_minutes_and_serves_from_the_claim() -> None:
    model = _objects()["ModelDeployment"]
    spec = ModelDeploymentSpec.model_validate(model["spec"])
    assert spec.training.image == IMAGES["trainer"]
    assert spec.serving.image == IMAGES["server"]
    assert spec.training.dataset is not None
    assert spec.training.dataset.uri == f"synthetic://churn?origin={ORIGIN}&horizon={demo_real.HORIZON}"
    assert spec.training.dataset.window == demo_real.TRAIN_WINDOW
    # The trainer writes to the claim; the servers read the same claim, read-only.
    assert [v.persistent_volume_claim.claim_name for v in spec.training.volumes if v.persistent_volume_claim] == [
        demo_real.CLAIM
    ]
    assert [m.read_only for m in spec.serving.volume_mounts] == [True]
    assert spec.serving.readiness_probe is not None
    assert spec.promotion.require_improvement is not None
    assert spec.promotion.require_improvement.metric == "auc"
    # No simulation contract: nothing tells a fake kubelet what to report.
    assert not spec.training.pod_annotations
    assert model["metadata"]["name"] == "churn"


def test_the_drift_test_is_a_psi_over_the_servers_feature_histogram_since_promotion() -> None:
    policy = _objects()["DriftPolicy"]
    spec = DriftPolicySpec.model_validate(policy["spec"])
    (metric,) = spec.metrics
    assert metric.distribution is not None
    assert metric.distribution.test == "psi"
    assert metric.distribution.current == (
        f'sum by (le) (increase(churn_input_feature_bucket{{namespace="{demo.NAMESPACE}", model="churn",'
        f' feature="{demo_real.FEATURE}"}}[{demo_real.WINDOW}]))'
    )
    assert metric.distribution.baseline.since_promotion == demo_real.WINDOW
    assert metric.max == demo_real.PSI_MAX
    assert spec.target_ref.name == "churn"


def test_every_pod_of_the_demo_is_restricted_and_has_no_token() -> None:
    traffic = demo_real.traffic_deployment(IMAGES["traffic"], "http://10.96.0.10:8080", shift="1.5")
    request = workload.restricted_pod("request", "localhost/busybox:1", command=["/bin/busybox", "true"])
    for pod in (traffic["spec"]["template"]["spec"], request["spec"]):
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = pod["containers"]
        assert container["imagePullPolicy"] == "Never"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["value"] for e in traffic["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRAFFIC_SHIFT"] == "1.5"
    assert env["TRAFFIC_URL"] == "http://10.96.0.10:8080"
    # Recreate: a new setting replaces the one traffic pod, never two side by side.
    assert traffic["spec"]["strategy"] == {"type": "Recreate"}
