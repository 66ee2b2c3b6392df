"""What the churn trainer, model server and traffic generator share: the features, the
generated data, and where a model lives.

Standard library only (the traffic image has nothing else); the trainer and the server
bring scikit-learn, which unpickling a model imports.

**The data.** There is no data lake here: each row is generated, deterministically, for a
moment in time. The world drifts: a row's *drift level* is ``tanh((t - origin) / horizon)``
(0 at ``origin``, about 0.76 one horizon later, never beyond 1), and the level moves the
feature distributions (newer customers are younger, pay more, call support more, take
monthly contracts, use more data) and, mildly, the relation between features and churn.
So a training run on a newer data window really sees different data, and a model trained
on old data scores worse on new data. ``origin`` and ``horizon`` come from the dataset URI
(``synthetic://churn?origin=2026-11-30T10:00:00Z&horizon=10m``); a demo sets a short horizon
so minutes of wall-clock time are enough drift.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
BUNDLE_FORMAT = 1


class ChurnError(Exception):
    """Bad input (an environment variable, a URI, a request): the message says what and how to fix it."""


# ---------------------------------------------------------------- the features
@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    low: float
    high: float
    # A typical standard deviation: the unit of the traffic generator's --shift (0: not shifted).
    spread: float
    # Upper bounds of the server's histogram of this feature (Prometheus adds +Inf).
    buckets: tuple[float, ...]
    integer: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature(
        "tenure_months",
        "months as a customer",
        0,
        72,
        18,
        (1, 3, 6, 9, 12, 18, 24, 30, 36, 48, 60, 72),
    ),
    Feature(
        "monthly_charges",
        "monthly bill",
        15,
        150,
        20,
        (20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 135, 150),
    ),
    Feature("support_calls", "calls to support in the last 90 days", 0, 20, 1.5, (0, 1, 2, 3, 4, 5, 6, 8, 10), True),
    Feature("contract_months", "contract length: 1, 12 or 24", 1, 24, 0, (1, 12, 24), True),
    Feature(
        "data_usage_gb",
        "data used last month (GB)",
        0,
        200,
        6,
        (1, 2, 4, 6, 8, 10, 12, 16, 24, 32, 64, 128),
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)


# ---------------------------------------------------------------- time and durations
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``30d`` (one number, one unit), greater than zero."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ChurnError(f"{what}={text!r} is not a positive duration like 90s, 10m, 2h or 30d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_time(text: str, what: str) -> datetime:
    """An RFC 3339 time with a zone (``2026-11-30T10:00:00Z``), as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ChurnError(f"{what}={text!r} is not an RFC 3339 time like 2026-11-30T10:00:00Z") from None
    if moment.tzinfo is None:
        raise ChurnError(f"{what}={text!r} has no time zone: write it like 2026-11-30T10:00:00Z")
    return moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the data source
DATASET_SCHEME = "synthetic"
DEFAULT_DATASET_URI = "synthetic://churn"
DEFAULT_ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_HORIZON = timedelta(days=365)


@dataclass(frozen=True)
class DataSource:
    """The generated world: where its drift starts (``origin``) and how fast it goes (``horizon``)."""

    origin: datetime = DEFAULT_ORIGIN
    horizon: timedelta = DEFAULT_HORIZON
    uri: str = DEFAULT_DATASET_URI

    def level(self, moment: datetime) -> float:
        """The drift level at ``moment``: 0 at the origin, tanh of the horizons since."""
        return math.tanh((moment - self.origin) / self.horizon)


def data_source(uri: str) -> DataSource:
    """The source a dataset URI names: empty (the default world) or ``synthetic://churn[?origin=..&horizon=..]``."""
    text = uri.strip()
    if not text:
        return DataSource()
    parts = urlsplit(text)
    if parts.scheme != DATASET_SCHEME or parts.netloc != "churn" or parts.path not in ("", "/"):
        raise ChurnError(
            f"dataset URI {text!r}: this example generates its data; use {DEFAULT_DATASET_URI}"
            "[?origin=<RFC 3339 time>&horizon=<duration>] or leave it empty"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"origin", "horizon"})
    if unknown:
        raise ChurnError(f"dataset URI {text!r}: unknown parameter(s) {', '.join(unknown)}; known: origin, horizon")
    origin = parse_time(options["origin"], "origin") if "origin" in options else DEFAULT_ORIGIN
    horizon = parse_duration(options["horizon"], "horizon") if "horizon" in options else DEFAULT_HORIZON
    return DataSource(origin, horizon, text)


# ---------------------------------------------------------------- generated rows
def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means here.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _clip(value: float, feature: Feature) -> float:
    value = min(feature.high, max(feature.low, value))
    return float(round(value)) if feature.integer else round(value, 2)


def customer(rng: random.Random, level: float) -> dict[str, float]:
    """One customer's features at drift ``level``."""
    tenure, charges, calls, contract, usage = FEATURES
    draw = rng.random()
    months = 1 if draw < 0.45 + 0.2 * level else 12 if draw < 0.75 + 0.1 * level else 24
    return {
        tenure.name: _clip(rng.expovariate(1 / (30 - 12 * level)), tenure),
        charges.name: _clip(rng.gauss(65 + 20 * level, 18), charges),
        calls.name: _clip(_poisson(rng, 1.5 + 1.5 * level), calls),
        contract.name: float(months),
        usage.name: _clip(rng.lognormvariate(math.log(8) + 0.5 * level, 0.6), usage),
    }


def churn_probability(row: Mapping[str, float], level: float) -> float:
    """The true probability that this customer churns; the relation drifts mildly with ``level``."""
    z = (
        -0.8
        - 1.4 * level
        + 0.035 * (1 + 0.5 * level) * (row["monthly_charges"] - 65)
        - 0.045 * (row["tenure_months"] - 24)
        + (0.35 + 0.3 * level) * (row["support_calls"] - 1.5)
        - 1.1 * (1 - 0.3 * level) * (row["contract_months"] >= 12)
        + 0.02 * level * (row["data_usage_gb"] - 8)
    )
    return 1 / (1 + math.exp(-z))


def shifted(row: Mapping[str, float], shift: float) -> dict[str, float]:
    """The row with every feature moved by ``shift`` of its spread (contract_months stays), clipped to its range."""
    by_name = {feature.name: feature for feature in FEATURES}
    return {name: _clip(value + shift * by_name[name].spread, by_name[name]) for name, value in row.items()}


@dataclass
class Dataset:
    """Rows sorted by time: features (in FEATURE_NAMES order), labels, timestamps (seconds since the epoch)."""

    features: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def split(self, holdout_fraction: float) -> tuple[Dataset, Dataset]:
        """The older rows for training, the newest ``holdout_fraction`` as the holdout."""
        cut = len(self.labels) - max(1, round(len(self.labels) * holdout_fraction))
        return (
            Dataset(self.features[:cut], self.labels[:cut], self.times[:cut]),
            Dataset(self.features[cut:], self.labels[cut:], self.times[cut:]),
        )

    def summary(self) -> dict[str, float]:
        """Feature means and the churn rate: lineage that shows what the data looked like."""
        count = len(self.labels)
        means = {
            f"mean_{name}": round(sum(row[i] for row in self.features) / count, 4)
            for i, name in enumerate(FEATURE_NAMES)
        }
        return {"rows": count, "churn_rate": round(sum(self.labels) / count, 4), **means}


def dataset_seed(*parts: object) -> int:
    """A seed from the run's inputs, the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def generate(source: DataSource, start: datetime, end: datetime, rows: int, seed: int) -> Dataset:
    """``rows`` customers observed at times spread uniformly over [start, end), labelled, sorted by time."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    moments = sorted(start.timestamp() + rng.random() * span for _ in range(rows))
    data = Dataset()
    for moment in moments:
        level = source.level(datetime.fromtimestamp(moment, UTC))
        row = customer(rng, level)
        data.features.append([row[name] for name in FEATURE_NAMES])
        data.labels.append(int(rng.random() < churn_probability(row, level)))
        data.times.append(moment)
    return data


def traffic_rows(
    source: DataSource, moment: datetime, count: int, shift: float, rng: random.Random
) -> Iterator[dict[str, float]]:
    """Customers as the world is at ``moment``, every feature moved by ``shift`` spreads."""
    level = source.level(moment)
    for _ in range(count):
        yield shifted(customer(rng, level), shift)


# ---------------------------------------------------------------- where models live
def model_directory(uri: str, what: str) -> Path:
    """The local directory a model URI names: an absolute path or ``file:///path``; any other scheme is refused."""
    text = uri.strip()
    if not text:
        raise ChurnError(f"{what} is empty: give a local path or a file:// URI")
    parts = urlsplit(text)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ChurnError(f"{what}={text!r}: a file:// URI names a local path, not host {parts.netloc!r}")
        path = Path(unquote(parts.path))
    elif parts.scheme == "":
        path = Path(text)
    else:
        raise ChurnError(
            f"{what}={text!r}: scheme {parts.scheme}:// is not supported; this example reads and writes models"
            " on a local path or a file:// URI (a mounted volume)"
        )
    if not path.is_absolute():
        raise ChurnError(f"{what}={text!r}: the path must be absolute")
    return path


def save_model(directory: Path, bundle: Mapping[str, Any], metadata_json: str) -> None:
    """``model.pkl`` (the bundle) and ``metadata.json`` into ``directory``, each replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in ((METADATA_FILE, metadata_json.encode()), (MODEL_FILE, pickle.dumps(dict(bundle)))):
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(content)
            os.chmod(temporary, 0o644)
            os.replace(temporary, directory / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def load_model(directory: Path) -> dict[str, Any]:
    """The bundle the trainer saved. Unpickling runs code: load only models you trust (your own volume).

    FileNotFoundError when it is not there (yet); ChurnError when it is not a churn model."""
    with (directory / MODEL_FILE).open("rb") as file:
        try:
            bundle = pickle.load(file)
        except Exception as error:
            raise ChurnError(f"{directory / MODEL_FILE} is not a readable model: {error}") from error
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ChurnError(f"{directory / MODEL_FILE} is not a churn model bundle (format {BUNDLE_FORMAT})")
    if tuple(bundle.get("features", ())) != FEATURE_NAMES:
        raise ChurnError(
            f"{directory / MODEL_FILE} was trained on features {bundle.get('features')}, not {list(FEATURE_NAMES)}"
        )
    return bundle


def feature_matrix(rows: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """Rows (objects with a finite number for every feature) in FEATURE_NAMES order, or ChurnError on a bad value."""
    matrix = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ChurnError(f"row {index} is not an object of features")
        values = []
        for name in FEATURE_NAMES:
            value = row.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                missing = "is missing" if value is None else f"is {value!r}, not a finite number"
                raise ChurnError(f"row {index}: {name} {missing}")
            values.append(float(value))
        matrix.append(values)
    return matrix
