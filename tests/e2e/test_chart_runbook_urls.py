"""The chart's PrometheusRule points every alert's runbook_url where prometheusRule.runbookBaseUrl says."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from monitoring import generate

from tests.support import delivery

RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


def rendered_rules(*set_values: str) -> list[dict[str, Any]]:
    out = delivery.render(set_values=["prometheusRule.enabled=true", *set_values], api_versions=[RULE_API])
    rule = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


@pytest.mark.parametrize("base", ["https://wiki.example/ml/runbooks", "https://wiki.example/ml/runbooks/"])
def test_runbook_base_url_replaces_the_projects(base: str) -> None:
    rules = rendered_rules(f"prometheusRule.runbookBaseUrl={base}")
    assert rules
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example/ml/runbooks/{rule['alert']}.md"


def test_by_default_runbook_urls_point_at_the_projects_pages() -> None:
    for rule in rendered_rules():
        assert rule["annotations"]["runbook_url"] == f"{generate.RUNBOOK_BASE_URL}{rule['alert']}.md"


def test_a_runbook_base_that_is_not_a_url_is_refused() -> None:
    result = delivery.helm(
        "template",
        "x",
        str(delivery.CHART_DIR),
        "--kube-version",
        delivery.KUBE_VERSION,
        "--set",
        "prometheusRule.runbookBaseUrl=docs/runbooks",
        check=False,
    )
    assert result.returncode != 0
    assert "runbookBaseUrl" in result.stderr
