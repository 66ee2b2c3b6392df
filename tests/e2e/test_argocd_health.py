"""The Argo CD health checks against objects the operator writes today.

The testdata in argocd/ was captured from this cluster by the same scenarios
(``make argocd-testdata``); here they run again into a temporary copy of argocd/ and
the Go harness checks every expectation of health_test.yaml against the fresh objects,
so a change in what the operator writes cannot silently leave the health checks behind.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.argocd_capture import capture
from tests.support.argocd_harness import copy_for_testing, run_harness
from tests.support.cluster import ClusterInfo


def test_health_checks_hold_on_freshly_captured_objects(perennial_crds: ClusterInfo, tmp_path: Path) -> None:
    argocd = copy_for_testing(tmp_path / "argocd")
    saved = capture(perennial_crds, argocd / "resource_customizations" / "perennial.dev", tmp_path / "operator.log")
    assert len(saved) >= 20
    result = run_harness(argocd)
    assert result.returncode == 0, result.stdout + result.stderr
