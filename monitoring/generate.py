"""Generate monitoring/prometheusrule.yaml, and the chart's copies, from monitoring/.

``python -m monitoring.generate`` (``make monitoring``) writes it; ``--check`` exits 1 when
it is stale. The PrometheusRule's ``spec`` is the rules file itself, indented, so comments
and layout carry over and the two can never say different things. Helm reads only files
inside a chart, so alerts.yaml and dashboard.json are also copied to
charts/perennial/files/ (the chart's PrometheusRule and dashboard ConfigMap use them).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yaml"
PROMETHEUS_RULE = HERE / "prometheusrule.yaml"
DASHBOARD = HERE / "dashboard.json"
CHART_FILES = HERE.parent / "charts" / "perennial" / "files"
RUNBOOKS = HERE.parent / "docs" / "runbooks"
# Where every alert's runbook_url points: docs/runbooks/<alert>.md in the project's repository.
# The chart's prometheusRule.runbookBaseUrl replaces it (a fork, a mirror, an internal wiki).
RUNBOOK_BASE_URL = "https://github.com/perennial-dev/perennial/blob/main/docs/runbooks/"

HEADER = """\
# GENERATED from monitoring/alerts.yaml by `python -m monitoring.generate` (make monitoring).
# Do not edit: change alerts.yaml and regenerate (a test fails while this file is stale).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: perennial
  labels:
    app.kubernetes.io/name: perennial
    app.kubernetes.io/component: alerts
spec:
"""


def render(alerts_text: str) -> str:
    """The PrometheusRule manifest whose spec is the given rules file."""
    return HEADER + textwrap.indent(alerts_text, "  ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if prometheusrule.yaml is stale; write nothing")
    args = parser.parse_args(argv)
    outputs = {
        PROMETHEUS_RULE: render(ALERTS.read_text()),
        CHART_FILES / "alerts.yaml": ALERTS.read_text(),
        CHART_FILES / "dashboard.json": DASHBOARD.read_text(),
    }
    if args.check:
        stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path} is stale: run `python -m monitoring.generate`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
