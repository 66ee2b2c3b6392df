"""The churn trainer: Perennial's trainer contract, end to end.

Reads the environment the operator gives a trainer (PERENNIAL_*), generates the data of
its window, trains a gradient-boosted classifier on the older rows, evaluates it on the
newest (the holdout), scores the serving model (the champion) on the same holdout, saves
the model to PERENNIAL_MODEL_URI and writes ``{"metrics": {...}}`` to the termination log.

Every input is checked before anything is trained; bad input exits 2 with a message on
stderr and in the termination log (where ``kubectl describe pod`` shows it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import churnlib
from churnlib import ChurnError

LOG = logging.getLogger("churn.trainer")
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# Where the metrics go: the container's terminationMessagePath; TERMINATION_MESSAGE_PATH
# points it elsewhere (tests, a run outside Kubernetes).
TERMINATION_LOG_ENV = "TERMINATION_MESSAGE_PATH"
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Hyperparameters:
    rows: int = 5000
    holdout_fraction: float = 0.25
    learning_rate: float = 0.1
    max_depth: int = 3
    max_iter: int = 100
    seed: int = 0


_BOUNDS: dict[str, tuple[float, float]] = {
    "rows": (200, 1_000_000),
    "holdout_fraction": (0.05, 0.5),
    "learning_rate": (1e-4, 1.0),
    "max_depth": (1, 32),
    "max_iter": (1, 2000),
    "seed": (0, 2**31 - 1),
}


def parse_hyperparameters(text: str) -> Hyperparameters:
    """PERENNIAL_HYPERPARAMETERS: a JSON object; values may be numbers or strings of numbers."""
    try:
        given = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise ChurnError(f"PERENNIAL_HYPERPARAMETERS is not JSON ({error.msg})") from None
    if not isinstance(given, dict):
        raise ChurnError("PERENNIAL_HYPERPARAMETERS must be a JSON object")
    defaults = Hyperparameters()
    unknown = sorted(set(given) - set(_BOUNDS))
    if unknown:
        raise ChurnError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(_BOUNDS)}")
    values: dict[str, Any] = {}
    for name, raw in given.items():
        kind = type(getattr(defaults, name))
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            if kind is float:
                value: float = float(raw)
            else:
                value = int(raw) if isinstance(raw, float) and raw.is_integer() else int(str(raw))
        except ValueError:
            expected = "a number" if kind is float else "an integer"
            raise ChurnError(f"hyperparameter {name}={raw!r} is not {expected}") from None
        low, high = _BOUNDS[name]
        if not low <= value <= high or (isinstance(value, float) and not math.isfinite(value)):
            raise ChurnError(f"hyperparameter {name}={raw!r} is outside [{low:g}, {high:g}]")
        values[name] = value
    return Hyperparameters(**values)


@dataclass(frozen=True)
class Run:
    model: str
    version: str
    output: Path
    source: churnlib.DataSource
    dataset_version: str
    window_start: datetime
    window_end: datetime
    hyperparameters: Hyperparameters
    champion_version: str | None
    champion_uri: str | None


def read_run(env: Mapping[str, str]) -> Run:
    """Everything the run needs from the environment, checked."""
    if "PERENNIAL_MODEL_URI" not in env:
        raise ChurnError("PERENNIAL_MODEL_URI is not set: where should the model go? (a path or file:// URI)")
    output = churnlib.model_directory(env["PERENNIAL_MODEL_URI"], "PERENNIAL_MODEL_URI")
    start_text, end_text = env.get("PERENNIAL_DATA_WINDOW_START"), env.get("PERENNIAL_DATA_WINDOW_END")
    if not start_text or not end_text:
        raise ChurnError(
            "PERENNIAL_DATA_WINDOW_START and PERENNIAL_DATA_WINDOW_END are not set: this trainer needs a data"
            " window (spec.dataset.window, or windowStart and windowEnd)"
        )
    start = churnlib.parse_time(start_text, "PERENNIAL_DATA_WINDOW_START")
    end = churnlib.parse_time(end_text, "PERENNIAL_DATA_WINDOW_END")
    if end <= start:
        raise ChurnError(f"the data window is empty: PERENNIAL_DATA_WINDOW_END {end_text} is not after the start")
    return Run(
        model=env.get("PERENNIAL_MODEL", ""),
        version=env.get("PERENNIAL_VERSION", ""),
        output=output,
        source=churnlib.data_source(env.get("PERENNIAL_DATASET_URI", "")),
        dataset_version=env.get("PERENNIAL_DATASET_VERSION", ""),
        window_start=start,
        window_end=end,
        hyperparameters=parse_hyperparameters(env.get("PERENNIAL_HYPERPARAMETERS", "")),
        champion_version=env.get("PERENNIAL_CHAMPION_VERSION") or None,
        champion_uri=env.get("PERENNIAL_CHAMPION_MODEL_URI") or None,
    )


def evaluate(estimator: Any, holdout: churnlib.Dataset) -> dict[str, float]:
    """AUC, accuracy and log loss of ``estimator`` on the holdout."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    scores = estimator.predict_proba(holdout.features)[:, 1]
    return {
        "auc": round(float(roc_auc_score(holdout.labels, scores)), 6),
        "accuracy": round(float(accuracy_score(holdout.labels, scores >= 0.5)), 6),
        "log_loss": round(float(log_loss(holdout.labels, scores, labels=[0, 1])), 6),
    }


def latency_p99_ms(estimator: Any, holdout: churnlib.Dataset, samples: int = 200) -> float:
    """The 99th percentile of one-row prediction time, in milliseconds (what a served request costs)."""
    timings = []
    for row in holdout.features[:samples]:
        began = time.perf_counter()
        estimator.predict_proba([row])
        timings.append((time.perf_counter() - began) * 1000)
    return round(statistics.quantiles(timings, n=100)[98], 3) if len(timings) > 1 else round(timings[0], 3)


def score_champion(run: Run, holdout: churnlib.Dataset) -> dict[str, float]:
    """The champion's metrics on this run's holdout as champion_<metric>, or none if it cannot be read."""
    if run.champion_uri is None:
        return {}
    try:
        bundle = churnlib.load_model(churnlib.model_directory(run.champion_uri, "PERENNIAL_CHAMPION_MODEL_URI"))
        metrics = evaluate(bundle["estimator"], holdout)
    except Exception as error:
        # Missing, unreadable, not a churn model, or made by an incompatible scikit-learn: the
        # run goes on without champion_* and the promotion falls back to the champion's own number.
        LOG.warning("champion %s not scored (no champion_* metrics): %s", run.champion_version or "?", error)
        return {}
    return {f"champion_{name}": value for name, value in metrics.items()}


def train(run: Run) -> dict[str, float]:
    from sklearn import __version__ as sklearn_version
    from sklearn.ensemble import HistGradientBoostingClassifier

    hp = run.hyperparameters
    # The same inputs give the same rows, in any process: a retried run trains on the same data.
    window = (churnlib.format_time(run.window_start), churnlib.format_time(run.window_end))
    seed = churnlib.dataset_seed(run.source.uri, run.dataset_version, *window, hp.rows, hp.seed)
    data = churnlib.generate(run.source, run.window_start, run.window_end, hp.rows, seed)
    training, holdout = data.split(hp.holdout_fraction)
    if len(set(training.labels)) < 2 or len(set(holdout.labels)) < 2:
        raise ChurnError("the generated data has a single class in training or holdout: use more rows")
    LOG.info("window %s .. %s: %s", run.window_start, run.window_end, data.summary())
    estimator = HistGradientBoostingClassifier(
        learning_rate=hp.learning_rate, max_depth=hp.max_depth, max_iter=hp.max_iter, random_state=hp.seed
    )
    estimator.fit(training.features, training.labels)
    metrics: dict[str, float] = {
        **evaluate(estimator, holdout),
        "latency_p99_ms": latency_p99_ms(estimator, holdout),
        "rows_train": len(training.labels),
        "rows_holdout": len(holdout.labels),
        **score_champion(run, holdout),
    }
    metadata = {
        "model": run.model,
        "version": run.version,
        "features": list(churnlib.FEATURE_NAMES),
        "dataset": {
            "uri": run.source.uri,
            "version": run.dataset_version,
            "windowStart": churnlib.format_time(run.window_start),
            "windowEnd": churnlib.format_time(run.window_end),
            "summary": data.summary(),
        },
        "hyperparameters": hp.__dict__,
        "champion": {"version": run.champion_version, "modelUri": run.champion_uri} if run.champion_uri else None,
        "metrics": metrics,
        "sklearn": sklearn_version,
    }
    bundle = {"format": churnlib.BUNDLE_FORMAT, "estimator": estimator, **metadata}
    churnlib.save_model(run.output, bundle, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metrics


def write_termination_log(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError as error:
        LOG.error("cannot write the termination log %s: %s", path, error)
        return False
    return True


def main(env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    env = os.environ if env is None else env
    termination_log = Path(env.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG)
    try:
        run = read_run(env)
        LOG.info("training %s version %s into %s", run.model or "?", run.version or "?", run.output)
        metrics = train(run)
    except ChurnError as error:
        LOG.error("%s", error)
        write_termination_log(termination_log, f"bad input: {error}\n")
        return EXIT_BAD_INPUT
    except Exception as error:
        # Not bad input: a bug or the machine (a full or read-only volume). The traceback goes
        # to the log; the termination message says what failed in one line.
        LOG.exception("training failed")
        write_termination_log(termination_log, f"training failed: {type(error).__name__}: {error}\n")
        return 1
    message = json.dumps({"metrics": metrics}, sort_keys=True)
    LOG.info("metrics: %s", message)
    return 0 if write_termination_log(termination_log, message) else 1
