"""The operator's real /metrics output passes `promtool check metrics` (Prometheus's own linter)."""

from __future__ import annotations

from perennial.adapters.metrics import REGISTRY
from tests.support import promtool
from tests.support.operator import RunningOperator


def test_promtool_check_metrics_passes_on_a_fresh_operator(operator_in_process: RunningOperator) -> None:
    text = operator_in_process.metrics_text()
    result = promtool.run("check", "metrics", stdin=text)
    # promtool exits 0 and prints nothing when the exposition has no problem; each lint
    # problem is one line naming the metric.
    assert result.returncode == 0, f"promtool check metrics:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""
    # Every family of the registry is in the output (HELP and TYPE at least).
    for family in REGISTRY.collect():
        assert f"# TYPE {family.name}" in text, family.name
