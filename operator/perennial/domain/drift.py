"""Drift: Prometheus results to numbers, distribution tests, and the breach/episode/cooldown rules.

Pure functions with an injected clock. The statistics work on binned data — cumulative
histogram buckets (``le``) as Prometheus histograms export them — and compare the
*current* window (p) with the *baseline* (q):

- PSI (population stability index): sum over bins of (p - q) * ln(p / q).
  Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
- KS: the Kolmogorov-Smirnov statistic, max |CDF_p - CDF_q| over the bucket boundaries.
- JS: Jensen-Shannon divergence with base-2 logarithms, in [0, 1].
- Hellinger: Hellinger distance sqrt(1 - sum sqrt(p * q)), in [0, 1].

Empty bins would make PSI (and the logarithms) infinite, so probabilities are smoothed
with ``EPSILON`` before PSI and JS; KS and Hellinger need no smoothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

EPSILON = 1e-4
TESTS = ("psi", "ks", "js", "hellinger")


class DriftDataError(ValueError):
    """The data cannot give a value: the message says why, for status and Events."""


class NoDataError(DriftDataError):
    """Too little or no data: never a breach."""


class NonFiniteValueError(DriftDataError):
    """Prometheus answered NaN, +Inf or -Inf where a number is needed: an error, never a breach."""


# ---------------------------------------------------------------- Prometheus results
def _number(raw: Any, what: str) -> float:
    """A sample value as Prometheus encodes it (a string: "0.31", "+Inf", "NaN"), finite or an error."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise DriftDataError(f"{what} is {_clip(raw)}, not a number")
    try:
        value = float(raw)
    except ValueError:
        raise DriftDataError(f"{what} is {_clip(raw)}, not a number") from None
    if not math.isfinite(value):
        raise NonFiniteValueError(f"{what} is {non_finite_text(value)}, not a finite number")
    return value


def non_finite_text(value: float) -> str:
    """NaN, +Inf or -Inf, as Prometheus writes them."""
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _clip(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _sample_value(series: Any, what: str) -> float:
    """The value of one instant-vector element ``{"metric": {...}, "value": [t, "v"]}``."""
    pair = series.get("value") if isinstance(series, Mapping) else None
    if not isinstance(pair, list) or len(pair) != 2:
        raise DriftDataError(f"malformed sample {_clip(series)}")
    return _number(pair[1], what)


def single_value(result: Mapping[str, Any]) -> float:
    """The one finite number of an instant query result (``data`` of /api/v1/query).

    No series is NoData; several series, a range vector or a string are errors that say
    what to change; NaN, +Inf and -Inf are NonFiniteValueError (never a value to compare).
    """
    kind = result.get("resultType")
    payload = result.get("result")
    if kind == "scalar":
        if not isinstance(payload, list) or len(payload) != 2:
            raise DriftDataError(f"malformed scalar result {_clip(payload)}")
        return _number(payload[1], "the query's value")
    if kind == "vector":
        if not isinstance(payload, list):
            raise DriftDataError(f"malformed vector result {_clip(payload)}")
        if not payload:
            raise NoDataError("NoData: the query returned no series")
        if len(payload) > 1:
            raise DriftDataError(
                f"the query returned {len(payload)} series; aggregate it to one (e.g. max(...), avg(...))"
            )
        return _sample_value(payload[0], "the query's value")
    if kind == "matrix":
        raise DriftDataError("the query returned a range vector; use an instant expression (e.g. avg_over_time)")
    raise DriftDataError(f"the query returned a {_clip(kind)}; it must yield a number")


def _le(text: str) -> float:
    try:
        bound = math.inf if text in ("+Inf", "Inf", "inf") else float(text)
    except ValueError:
        raise DriftDataError(f"a distribution series has le={_clip(text)}, not a bucket boundary") from None
    if math.isnan(bound):
        raise DriftDataError("a distribution series has le=NaN, not a bucket boundary")
    return bound


def buckets(result: Mapping[str, Any], window: str = "distribution") -> list[tuple[float, float]]:
    """Cumulative (le, count) pairs from a vector with one series per ``le``, sorted by ``le``.

    ``window`` (current, baseline) names the histogram in errors. A count that is NaN or
    infinite is a NonFiniteValueError: a histogram with such a bucket has no meaning, and
    reading it as zero could invent a shift.
    """
    series_list = result.get("result")
    if result.get("resultType") != "vector" or not isinstance(series_list, list):
        raise DriftDataError("a distribution query must return an instant vector with one series per le")
    pairs: dict[float, float] = {}
    for series in series_list:
        labels = series.get("metric") if isinstance(series, Mapping) else None
        le = labels.get("le") if isinstance(labels, Mapping) else None
        if le is None:
            raise DriftDataError("a distribution series has no le label; aggregate with sum by (le) (...)")
        bound = _le(str(le))
        if bound in pairs:
            raise DriftDataError(f"several series for le={le}; aggregate with sum by (le) (...)")
        pairs[bound] = _sample_value(series, f"the {window} bucket le={le}")
    if not pairs:
        raise NoDataError(f"NoData: the {window} query returned no buckets")
    if math.inf not in pairs:
        raise DriftDataError(f'the {window} buckets lack le="+Inf", which holds the total count')
    return sorted(pairs.items())


def bin_counts(cumulative: Sequence[tuple[float, float]]) -> list[float]:
    """Per-bin counts from cumulative ones; a decrease (a counter artefact) counts as zero."""
    counts, previous = [], 0.0
    for _, total in cumulative:
        counts.append(max(0.0, total - previous))
        previous = max(previous, total)
    return counts


def align(
    current: Sequence[tuple[float, float]], baseline: Sequence[tuple[float, float]]
) -> tuple[list[float], list[float], list[float]]:
    """Both histograms on their common boundaries (cumulative counts are exact there).

    Mismatched boundaries are coarsened to the ones both have; fewer than two common
    boundaries (only +Inf) leaves nothing to compare.
    """
    current_map, baseline_map = dict(current), dict(baseline)
    common = sorted(set(current_map) & set(baseline_map))
    if len(common) < 2:
        raise DriftDataError("current and baseline share no bucket boundary besides +Inf")
    return (
        common,
        bin_counts([(le, current_map[le]) for le in common]),
        bin_counts([(le, baseline_map[le]) for le in common]),
    )


def _probabilities(counts: Sequence[float], smooth: bool) -> list[float]:
    total = sum(counts)
    probabilities = [c / total for c in counts]
    if not smooth:
        return probabilities
    smoothed = [max(p, EPSILON) for p in probabilities]
    norm = sum(smoothed)
    return [p / norm for p in smoothed]


def psi(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = _probabilities(current, True), _probabilities(baseline, True)
    return sum((pi - qi) * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def ks(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = _probabilities(current, False), _probabilities(baseline, False)
    distance, cdf_p, cdf_q = 0.0, 0.0, 0.0
    for pi, qi in zip(p, q, strict=True):
        cdf_p += pi
        cdf_q += qi
        distance = max(distance, abs(cdf_p - cdf_q))
    return distance


def js(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = _probabilities(current, True), _probabilities(baseline, True)
    m = [(pi + qi) / 2 for pi, qi in zip(p, q, strict=True)]

    def kl(a: Sequence[float], b: Sequence[float]) -> float:
        return sum(ai * math.log2(ai / bi) for ai, bi in zip(a, b, strict=True) if ai > 0)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def hellinger(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = _probabilities(current, False), _probabilities(baseline, False)
    overlap = sum(math.sqrt(pi * qi) for pi, qi in zip(p, q, strict=True))
    return math.sqrt(max(0.0, 1.0 - overlap))


STATISTICS = {"psi": psi, "ks": ks, "js": js, "hellinger": hellinger}


def distribution_statistic(
    test: str,
    current: Sequence[tuple[float, float]],
    baseline: Sequence[tuple[float, float]],
    min_samples: int,
) -> float:
    """The named test between two cumulative histograms, or NoData below ``min_samples``."""
    for name, histogram in (("current", current), ("baseline", baseline)):
        total = histogram[-1][1]
        if total < min_samples:
            raise NoDataError(f"NoData: {name} window has {total:g} observations, fewer than minSamples {min_samples}")
    _, p, q = align(current, baseline)
    return STATISTICS[test](p, q)


# ---------------------------------------------------------------- breaches, episodes, cooldown
@dataclass(frozen=True)
class Bounds:
    min: float | None
    max: float | None
    for_: timedelta

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self, value: float) -> str:
        if self.min is not None and value < self.min:
            return f"{_shown(value, self.min)} < min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{_shown(value, self.max)} > max {self.max:g}"
        return f"{value:.4g} within bounds"


def _shown(value: float, bound: float) -> str:
    """Four significant digits, unless that would print the value as the bound it crossed."""
    short = f"{value:.4g}"
    return short if float(short) != bound else repr(value)


@dataclass(frozen=True)
class MetricState:
    """One metric after one evaluation (status.metrics[])."""

    name: str
    value: float | None
    bounds: Bounds
    breached: bool
    breached_since: datetime | None
    error: str | None = None

    @property
    def detail(self) -> str:
        return f"{self.name}={self.bounds.describe(self.value)}" if self.value is not None else self.name


def next_metric_state(
    name: str,
    bounds: Bounds,
    value: float | None,
    error: str | None,
    previous_since: datetime | None,
    now: datetime,
) -> MetricState:
    """Out of bounds continuously for ``for`` -> breached. No data or an error resets the clock.

    A value that is not a finite number is an error too, whatever handed it over: NaN
    compares false with every bound and +Inf exceeds every max, so either would breach.
    """
    if value is not None and not math.isfinite(value):
        error = error or f"the value is {non_finite_text(value)}, not a finite number"
        value = None
    if value is None:
        return MetricState(name, None, bounds, False, None, error)
    if bounds.contains(value):
        return MetricState(name, value, bounds, False, None)
    since = previous_since or now
    return MetricState(name, value, bounds, now - since >= bounds.for_, since)


def drifting(states: Sequence[MetricState], when: str) -> bool:
    breached = [s.breached for s in states]
    if not breached:
        return False
    return all(breached) if when == "AllMetrics" else any(breached)


def may_trigger(last_trigger: datetime | None, cooldown: timedelta, now: datetime) -> bool:
    """At most one trigger per cooldown, within an episode and across episodes."""
    return last_trigger is None or now - last_trigger >= cooldown


def baseline_time(promoted_at: datetime | None, window: timedelta, now: datetime) -> datetime:
    """When to evaluate a ``sincePromotion`` baseline: the end of the window after promotion."""
    if promoted_at is None:
        raise NoDataError("NoData: the target serves no promoted version yet, so there is no baseline")
    end = promoted_at + window
    if end > now:
        raise NoDataError(f"NoData: the baseline window after promotion ends at {end.isoformat()}")
    return end
