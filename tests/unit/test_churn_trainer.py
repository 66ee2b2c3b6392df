"""The churn example's trainer (examples/churn/trainer) as a plain process: the trainer contract.

It reads the PERENNIAL_* environment, trains on data generated for its window (newer
windows really differ), scores the champion on its own holdout, saves the model to the
output URI and writes ``{"metrics": {...}}`` to the termination log; bad input exits
non-zero with a message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from perennial.domain.training import parse_termination_message
from tests.support.churn import TrainerRun, train, training_env

JANUARY = ("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z")
NOVEMBER = ("2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z")


@dataclass(frozen=True)
class Trained:
    run: TrainerRun
    output: Path

    @property
    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = json.loads((self.output / "metadata.json").read_text())
        return metadata


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """v1 on a January week; v2 on a November week with v1 serving (the champion)."""
    tmp = tmp_path_factory.mktemp("churn-trainer")
    v1, v2 = tmp / "models" / "churn" / "1", tmp / "models" / "churn" / "2"
    first = train(tmp, training_env(v1, JANUARY, version="1"), name="v1")
    champion = {"PERENNIAL_CHAMPION_VERSION": "1", "PERENNIAL_CHAMPION_MODEL_URI": v1.as_uri()}
    second = train(tmp, {**training_env(v2, NOVEMBER, version="2"), **champion}, name="v2")
    return {"v1": Trained(first, v1), "v2": Trained(second, v2)}


def test_a_newer_window_gives_different_data_and_a_different_model(trained: dict[str, Trained]) -> None:
    v1, v2 = trained["v1"], trained["v2"]
    assert (v1.output / "model.pkl").is_file()
    assert (v2.output / "model.pkl").is_file()
    old, new = v1.metadata["dataset"], v2.metadata["dataset"]
    assert (old["windowStart"], old["windowEnd"]) == JANUARY
    assert (new["windowStart"], new["windowEnd"]) == NOVEMBER
    # The world drifted between the windows: newer customers pay more, are newer, call more.
    assert new["summary"]["mean_monthly_charges"] > old["summary"]["mean_monthly_charges"] + 8
    assert new["summary"]["mean_tenure_months"] < old["summary"]["mean_tenure_months"] - 3
    assert new["summary"]["mean_support_calls"] > old["summary"]["mean_support_calls"] + 0.5
    assert new["summary"]["churn_rate"] != old["summary"]["churn_rate"]
    assert v1.run.metrics["auc"] != v2.run.metrics["auc"]
    assert v1.run.metrics["log_loss"] != v2.run.metrics["log_loss"]
    assert v2.metadata["model"] == "churn"
    assert v2.metadata["version"] == "2"


def test_the_champion_is_scored_on_this_runs_holdout(trained: dict[str, Trained]) -> None:
    metrics = trained["v2"].run.metrics
    assert {"champion_auc", "champion_accuracy", "champion_log_loss"} <= metrics.keys()
    assert "champion_auc" not in trained["v1"].run.metrics  # no champion, no champion_* metric
    # v1 learned January's world: on November's holdout it is worse than v2, trained on November.
    assert 0.5 < metrics["champion_auc"] < metrics["auc"]
    assert metrics["champion_log_loss"] > metrics["log_loss"]
    assert trained["v2"].metadata["champion"] == {"version": "1", "modelUri": trained["v1"].output.as_uri()}


def test_training_is_deterministic_and_the_champion_shares_the_holdout(
    trained: dict[str, Trained], tmp_path: Path
) -> None:
    """v1 again, with v1 as its champion: the same data gives the same model, which scores exactly its own metrics."""
    v1 = trained["v1"]
    champion = {"PERENNIAL_CHAMPION_VERSION": "1", "PERENNIAL_CHAMPION_MODEL_URI": str(v1.output)}
    again = train(tmp_path, {**training_env(tmp_path / "again", JANUARY), **champion}).metrics
    for name in ("auc", "accuracy", "log_loss"):
        assert again[name] == v1.run.metrics[name]
        assert again[f"champion_{name}"] == again[name]


def test_the_termination_message_is_what_the_operator_reads(trained: dict[str, Trained]) -> None:
    run = trained["v2"].run
    assert run.termination_message is not None
    parsed = parse_termination_message(run.termination_message)
    assert parsed.error_reason is None, parsed.error_message
    assert parsed.metrics == run.metrics
    assert {"auc", "accuracy", "log_loss", "latency_p99_ms", "rows_train", "rows_holdout"} <= parsed.metrics.keys()
    assert parsed.metrics["rows_train"] + parsed.metrics["rows_holdout"] == 1200


def test_an_unreadable_champion_is_not_scored(tmp_path: Path) -> None:
    champion = {"PERENNIAL_CHAMPION_VERSION": "0", "PERENNIAL_CHAMPION_MODEL_URI": str(tmp_path / "gone")}
    run = train(tmp_path, {**training_env(tmp_path / "model", JANUARY), **champion})
    assert not any(name.startswith("champion_") for name in run.metrics)
    assert "champion 0 not scored" in run.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"PERENNIAL_MODEL_URI": "s3://models/churn/1"},
            "PERENNIAL_MODEL_URI='s3://models/churn/1': scheme s3:// is not supported",
        ),
        ({"PERENNIAL_MODEL_URI": "models/churn/1"}, "the path must be absolute"),
        ({"PERENNIAL_MODEL_URI": None}, "PERENNIAL_MODEL_URI is not set"),
        ({"PERENNIAL_DATA_WINDOW_END": None}, "PERENNIAL_DATA_WINDOW_START and PERENNIAL_DATA_WINDOW_END are not set"),
        ({"PERENNIAL_DATA_WINDOW_END": JANUARY[0]}, "the data window is empty"),
        ({"PERENNIAL_DATA_WINDOW_START": "yesterday"}, "PERENNIAL_DATA_WINDOW_START='yesterday' is not an RFC 3339"),
        ({"PERENNIAL_DATASET_URI": "s3://data/churn/"}, "this example generates its data"),
        ({"PERENNIAL_DATASET_URI": "synthetic://churn?horizon=soon"}, "horizon='soon' is not a positive duration"),
        ({"PERENNIAL_HYPERPARAMETERS": "{"}, "PERENNIAL_HYPERPARAMETERS is not JSON"),
        ({"PERENNIAL_HYPERPARAMETERS": '{"depth": 3}'}, "unknown hyperparameter(s) depth"),
        ({"PERENNIAL_HYPERPARAMETERS": '{"max_depth": "deep"}'}, "hyperparameter max_depth='deep' is not an integer"),
        ({"PERENNIAL_HYPERPARAMETERS": '{"rows": 10}'}, "hyperparameter rows=10 is outside [200, 1e+06]"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_bad_input_exits_non_zero_with_a_clear_message(
    tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    valid = training_env(tmp_path / "model", JANUARY)
    env = {k: v for k, v in {**valid, **change}.items() if v is not None}
    run = train(tmp_path, env)
    assert run.returncode == 2
    assert message in run.stderr
    # Where `kubectl describe pod` shows it: the container's termination message.
    assert run.termination_message is not None
    assert run.termination_message.startswith("bad input: ")
    assert message in run.termination_message
    assert not (tmp_path / "model").exists()
