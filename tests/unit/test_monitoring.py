"""monitoring/: the alert rules, their PrometheusRule and the Grafana dashboard.

promtool checks and unit-tests the rules; every PromQL expression in the rules, the
dashboard and the runbooks is parsed by promtool and may name only metrics the operator exports (read from
its registry, not from a list kept by hand) plus Prometheus's own ``up``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring import generate

from perennial.adapters.metrics import REGISTRY
from tests.support import promtool

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
ALERTS_TEST = MONITORING / "alerts_test.yaml"
DASHBOARD = MONITORING / "dashboard.json"

# Series Prometheus makes itself for every target; the operator cannot export them.
PROMETHEUS_SERIES = {"up"}
# What Grafana substitutes before the query reaches Prometheus.
GRAFANA_MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
GRAFANA_VARIABLES = {"job": "perennial", "namespace": ".*"}


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _grafana_to_promql(expr: str) -> str:
    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    for name, value in GRAFANA_VARIABLES.items():
        expr = re.sub(rf"\$(?:{name}\b|\{{{name}\}})", value, expr)
    assert "$__" not in expr, f"a Grafana macro this test does not know: {expr}"
    return expr


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every query in the dashboard: panels, annotations, variables."""
    dashboard = _dashboard()
    found: list[tuple[str, str]] = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            found.append((f"panel {panel['title']!r} {target['refId']}", _grafana_to_promql(target["expr"])))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", _grafana_to_promql(annotation["expr"])))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: only label_values(selector, label) is supported: {query}"
        found.append((f"variable ${variable['name']}", _grafana_to_promql(match.group(1))))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    return [(f"alert {rule['alert']}", str(rule["expr"])) for rule in _alert_rules()]


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, is_call = match.group(1), match.group(2)
        if not is_call and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def exported_metric_names() -> set[str]:
    """Every sample name the operator's registry can expose; histogram/counter suffixes included."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


# ---------------------------------------------------------------- the rules
def test_promtool_check_rules_accepts_the_alerts() -> None:
    result = promtool.run("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = promtool.run("test", "rules", ALERTS_TEST.name, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_not_firing_unit_test() -> None:
    cases = [case for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in _alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no test where it must not fire"


def test_every_alert_says_how_bad_what_and_what_to_do() -> None:
    for rule in _alert_rules():
        assert rule["alert"].startswith("Perennial"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        for annotation in ("summary", "description", "runbook"):
            assert str(rule["annotations"].get(annotation, "")).strip(), f"{rule['alert']}: no {annotation}"


# ---------------------------------------------------------------- runbooks
RUNBOOK_SECTIONS = ("## What it means", "## How to check", "## How to fix")
# What a runbook's PromQL holds in place of the alert's labels.
RUNBOOK_PLACEHOLDERS = {"$NS": "ml", "$MODEL": "churn"}


def test_every_alert_links_its_runbook_page() -> None:
    """runbook_url is the base plus <alert>.md, and docs/runbooks/ has that page with its three sections."""
    alerts = [rule["alert"] for rule in _alert_rules()]
    for alert in alerts:
        rule = next(rule for rule in _alert_rules() if rule["alert"] == alert)
        assert rule["annotations"].get("runbook_url") == f"{generate.RUNBOOK_BASE_URL}{alert}.md", alert
        page = generate.RUNBOOKS / f"{alert}.md"
        assert page.is_file(), f"{alert}: no runbook page {page}"
        text = page.read_text()
        assert text.startswith(f"# {alert}\n"), f"{page.name}: the title is the alert's name"
        for section in RUNBOOK_SECTIONS:
            assert f"\n{section}\n" in text, f"{page.name}: no {section!r}"
        assert "```promql" in text, f"{page.name}: how to check in Prometheus"
        assert "kubectl " in text, f"{page.name}: how to check in the cluster"
    pages = {path.stem for path in generate.RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(alerts), "a runbook page for an alert that does not exist, or the reverse"
    index = (generate.RUNBOOKS / "README.md").read_text()
    for alert in alerts:
        assert f"[{alert}]({alert}.md)" in index, f"the runbooks' index does not list {alert}"


def runbook_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every line of the runbooks' ```promql blocks (trailing # comments removed)."""
    found = []
    for page in sorted(generate.RUNBOOKS.glob("*.md")):
        for block in re.findall(r"```promql\n(.*?)```", page.read_text(), flags=re.DOTALL):
            for line in block.splitlines():
                expr = re.sub(r"\s+#.*$", "", line).strip()
                if expr and not expr.startswith("#"):
                    for placeholder, value in RUNBOOK_PLACEHOLDERS.items():
                        expr = expr.replace(placeholder, value)
                    found.append((f"runbook {page.name}", expr))
    return found


ALL_EXPRESSIONS = alert_expressions() + dashboard_expressions() + runbook_expressions()


def test_the_chart_can_point_runbook_urls_elsewhere() -> None:
    """The chart swaps this base for prometheusRule.runbookBaseUrl: it must be the one the alerts use."""
    template = (generate.CHART_FILES.parent / "templates" / "prometheusrule.yaml").read_text()
    assert f'replace "{generate.RUNBOOK_BASE_URL}"' in template
    assert generate.RUNBOOK_BASE_URL.endswith("/docs/runbooks/")


def test_the_prometheusrule_is_generated_from_the_alerts() -> None:
    """Stale? `make monitoring` (python -m monitoring.generate) regenerates it."""
    assert generate.PROMETHEUS_RULE.read_text() == generate.render(ALERTS.read_text())
    manifest = yaml.safe_load(generate.PROMETHEUS_RULE.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert manifest["spec"] == yaml.safe_load(ALERTS.read_text())
    assert generate.main(["--check"]) == 0


# ---------------------------------------------------------------- the dashboard
def test_dashboard_is_a_grafana_dashboard_for_the_loop() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert panel.get("description"), f"{panel['title']}: say what the panel shows"
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dashboard["templating"]["list"])
    # What the loop needs on one screen (issue 9): the metrics behind each view.
    used = set().union(*(metric_names(expr) for _, expr in dashboard_expressions()))
    for metric in (
        "perennial_model_info",  # versions over time
        "perennial_training_runs_finished_total",  # training results
        "perennial_training_duration_seconds_bucket",  # training durations
        "perennial_drift_metric_value",  # drift values
        "perennial_drift_breaches_total",  # ... against their bounds
        "perennial_retrains_triggered_total",  # retrains by reason
        "perennial_retrains_suppressed_total",  # suppressions by reason
        "perennial_rollouts_total",  # rollouts and rollbacks
        "perennial_reconciles_total",  # reconcile errors
        "perennial_reconcile_duration_seconds_bucket",  # reconcile latency
    ):
        assert metric in used, f"no dashboard panel uses {metric}"


# ---------------------------------------------------------------- every expression
def test_every_promql_expression_is_valid(tmp_path: Path) -> None:
    """promtool parses each expression, as a recording rule, in one rules file."""
    rules = [{"record": f"perennial:check_{i}", "expr": expr} for i, (_, expr) in enumerate(ALL_EXPRESSIONS)]
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    result = promtool.run("check", "rules", str(path))
    where = "\n".join(f"perennial:check_{i}: {w}: {e}" for i, (w, e) in enumerate(ALL_EXPRESSIONS))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{where}"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRESSIONS, ids=[where for where, _ in ALL_EXPRESSIONS])
def test_expression_names_only_metrics_the_operator_exports(where: str, expr: str) -> None:
    assert "__name__" not in expr, f"{where}: select metrics by name, so this test can check them"
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr}"
    unknown = names - exported_metric_names() - PROMETHEUS_SERIES
    assert not unknown, f"{where}: {sorted(unknown)} not exported by the operator: {expr}"


def test_exported_names_include_counter_and_histogram_samples() -> None:
    exported = exported_metric_names()
    assert "perennial_reconciles_total" in exported
    assert {"perennial_training_duration_seconds_bucket", "perennial_training_duration_seconds_count"} <= exported
    assert "process_resident_memory_bytes" in exported
    assert "perennial_model_info" in exported  # a gauge with no series until a model serves


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (kind) (rate(perennial_reconciles_total{result="error"}[10m])) > 0', {"perennial_reconciles_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))", {"a_bucket"}),
        ('absent(up{job="perennial"} == 1)', {"up"}),
        ("a unless on (job) b offset 5m", {"a", "b"}),
        ('label_replace(x, "dst", "$1", "src", "(.*)") * on (ns) group_left (v) y', {"x", "y"}),
        ("count(z) or vector(0)", {"z"}),
        ("sum without (instance) (rate(c_total[1h:5m])) / 1e3", {"c_total"}),
    ],
)
def test_metric_names_finds_exactly_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
