"""The README's metrics table lists exactly the metrics the operator exports."""

import re
from pathlib import Path

from perennial.adapters import metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_perennial_metric_is_in_the_readme_and_nothing_else() -> None:
    section = README.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(perennial_[a-z_]+)`", section, flags=re.MULTILINE))
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("perennial_")
    }
    assert documented == exported
