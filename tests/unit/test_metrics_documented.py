"""The metrics table of docs/operations.md lists exactly the metrics the operator exports."""

import re

from perennial.adapters import metrics
from tests.support.docs import OPERATIONS, section


def test_every_perennial_metric_is_in_the_docs_and_nothing_else() -> None:
    table = section(OPERATIONS, "Metrics")
    documented = set(re.findall(r"^\| `(perennial_[a-z_]+)`", table, flags=re.MULTILINE))
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("perennial_")
    }
    assert sorted(exported - documented) == [], "exported but not in docs/operations.md, ## Metrics"
    assert sorted(documented - exported) == [], "in docs/operations.md, ## Metrics, but not exported"
