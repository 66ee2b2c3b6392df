"""`make demo`'s scenarios without a cluster: how each is chosen, the canary scenario's model
and the story its numbers tell, and one demo at a time.

The scenarios themselves run against the local cluster by hand (`make demo`,
`make demo SCENARIO=canary`); their objects are dry-run against the API server in
tests/integration/test_demo_objects.py.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from localcluster import __main__ as cli
from localcluster import demo

from perennial.api.modeldeployment import ModelDeploymentSpec
from perennial.domain import canary

REPO = Path(__file__).resolve().parents[2]


def _demo_command(*make_args: str) -> str:
    """The command `make demo` runs (make -n prints it, runs nothing)."""
    printed = subprocess.run(
        ["make", "-n", "-C", str(REPO), "demo", *make_args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    (line,) = [line for line in printed.splitlines() if "-m localcluster demo" in line]
    return line.split("-m localcluster ", 1)[1]


def test_make_demo_plays_the_loop_and_scenario_canary_the_canary() -> None:
    # The default stays the full (kwok) profile; PROFILE=real plays the loop with real pods.
    assert _demo_command() == "demo --scenario loop --profile full"
    assert _demo_command("SCENARIO=canary") == "demo --scenario canary --profile full"
    assert _demo_command("PROFILE=real") == "demo --scenario loop --profile real"


def test_the_demo_command_takes_a_scenario_and_a_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[tuple[str, str]] = []

    def play(scenario: str = "loop", profile: str = "full") -> int:
        chosen.append((scenario, profile))
        return 0

    monkeypatch.setattr(demo, "main", play)
    assert cli.main(["demo"]) == 0
    assert cli.main(["demo", "--scenario", "canary"]) == 0
    assert cli.main(["demo", "--profile", "real"]) == 0
    assert chosen == [("loop", "full"), ("canary", "full"), ("loop", "real")]
    for wrong in (["--scenario", "nonesuch"], ["--profile", "api"]):
        with pytest.raises(SystemExit):
            cli.main(["demo", *wrong])


def test_the_real_profile_plays_the_loop_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main("canary", "real") == 1
    assert "the `real` profile plays the loop scenario only" in capsys.readouterr().err


def _canary_model() -> dict[str, Any]:
    (model,) = [d for d in yaml.safe_load_all(demo.CANARY_OBJECTS) if d]
    assert model["kind"] == "ModelDeployment"
    assert model["metadata"]["name"] == "churn"
    return dict(model)


def _expanded(version: str, stable: str) -> dict[str, str]:
    spec = ModelDeploymentSpec.model_validate(_canary_model()["spec"])
    assert spec.rollout.analysis is not None
    return {
        metric.name: canary.expand(
            metric.query or "", model="churn", namespace=demo.NAMESPACE, version=version, stable_version=stable
        )
        for metric in spec.rollout.analysis.metrics
    }


def test_the_canary_scenarios_model_is_a_canary_of_two_steps_on_the_demo_replicas() -> None:
    spec = ModelDeploymentSpec.model_validate(_canary_model()["spec"])
    assert spec.rollout.strategy == "Canary"
    assert spec.serving.replicas == demo.REPLICAS == 4
    steps = spec.rollout.steps or []
    assert [canary.canary_replicas(spec.serving.replicas, step.weight) for step in steps] == [1, 2]
    assert spec.rollout.analysis is not None
    assert spec.rollout.analysis.interval == "5s"
    # The podAnnotations of the simulation contract: every version passes its gates offline.
    assert spec.training.pod_annotations["sim.perennial.dev/duration"] == "3s"


def test_the_canary_scenarios_analysis_reads_the_demo_exporter_per_version() -> None:
    queries = _expanded("3", "2")
    assert set(queries) == {"error_ratio", "worse_than_stable"}
    selector = f'churn_online_error_ratio{{job="{demo.JOB}",model="churn",version="3"}}'
    assert queries["error_ratio"] == f"max({selector})"
    stable = f'churn_online_error_ratio{{job="{demo.JOB}",model="churn",version="2"}}'
    assert queries["worse_than_stable"] == f"max({selector}) - max({stable})"


def test_the_canary_scenarios_numbers_pass_v2_and_fail_v3() -> None:
    ratios, error_max, worse_max = demo.ERROR_RATIOS, demo.ERROR_RATIO_MAX, demo.WORSE_THAN_STABLE_MAX
    assert ratios["2"] <= error_max
    assert ratios["2"] - ratios["1"] <= worse_max
    assert ratios["3"] > error_max
    assert ratios["3"] - ratios["2"] > worse_max
    metrics = _canary_model()["spec"]["rollout"]["analysis"]["metrics"]
    bounds = {m["name"]: (m["max"], m["for"]) for m in metrics}
    assert bounds == {"error_ratio": (error_max, "10s"), "worse_than_stable": (worse_max, "10s")}


def test_the_demo_exporter_serves_the_error_ratio_per_version() -> None:
    exporter = demo.DemoExporter()
    try:
        exporter.error_ratio.labels(model="churn", version="2").set(0.009)
        with urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        exporter.stop()
    assert 'churn_online_error_ratio{model="churn",version="2"} 0.009' in text
    assert "demo_churn_feature_psi 0.04" in text


def test_one_demo_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PERENNIAL_CLUSTER_DIR", str(tmp_path))
    monkeypatch.setattr(demo, "run_canary", lambda: pytest.fail("a second demo started"))
    with demo._flock(tmp_path / "demo.lock") as held:
        assert held
        assert demo.main("canary") == 1
    assert "another demo is running" in capsys.readouterr().err
