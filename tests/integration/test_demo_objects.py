"""`make demo`'s objects pass the real API server's validation (schema, CEL rules), for every
scenario: a server-side dry run, which stores nothing."""

from __future__ import annotations

import pytest
from localcluster import demo

from tests.support.cluster import ClusterInfo

OBJECTS = {"loop": demo.DEMO_OBJECTS, "canary": demo.CANARY_OBJECTS}


def test_every_scenario_has_its_objects() -> None:
    assert set(OBJECTS) == set(demo.SCENARIOS)


@pytest.mark.parametrize("scenario", sorted(OBJECTS))
def test_the_demo_objects_pass_server_side_validation(
    perennial_crds: ClusterInfo, namespace: str, scenario: str
) -> None:
    result = perennial_crds.kubectl_run(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=OBJECTS[scenario], check=False
    )
    assert result.returncode == 0, result.stderr
    assert "modeldeployment.perennial.dev/churn created (server dry run)" in result.stdout
    assert not result.stderr.strip(), result.stderr  # no warnings (unknown or duplicate fields)
