"""DriftPolicy domain logic: Prometheus results, histogram statistics, breaches and cooldown.

Pure functions only. Prometheus results are built as the ``data`` object of /api/v1/query;
histograms are cumulative ``(le, count)`` pairs as :func:`buckets` returns them. The
statistics are checked against hand-computed values on small examples and against
independent references (NumPy formulas, ``scipy.stats.ks_2samp``,
``scipy.spatial.distance.jensenshannon``) on seeded random histograms. Clocks are fixed.

Smoothing, as the module documents it: PSI and JS turn counts into probabilities, raise
every probability below ``EPSILON`` to ``EPSILON`` and renormalise so they sum to 1 again;
KS and Hellinger use the raw probabilities. The references below do the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]
from scipy.stats import ks_2samp  # type: ignore[import-untyped]

from perennial.domain.drift import (
    EPSILON,
    STATISTICS,
    TESTS,
    Bounds,
    DriftDataError,
    MetricState,
    NoDataError,
    NonFiniteValueError,
    align,
    baseline_time,
    bin_counts,
    buckets,
    distribution_statistic,
    drifting,
    hellinger,
    js,
    ks,
    may_trigger,
    next_metric_state,
    psi,
    single_value,
)

# ---------------------------------------------------------------- helpers
INF = math.inf
TS = 1700000000.0
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=30)

Histogram = list[tuple[float, float]]
Floats = npt.NDArray[np.float64]


def sample(value: str, **labels: str) -> dict[str, Any]:
    """One instant-vector element as Prometheus returns it."""
    return {"metric": dict(labels), "value": [TS, value]}


def vector(*series: dict[str, Any]) -> dict[str, Any]:
    return {"resultType": "vector", "result": list(series)}


def bucket(le: str, count: str) -> dict[str, Any]:
    return sample(count, le=le)


def le_text(bound: float) -> str:
    """An ``le`` label value as Prometheus formats it."""
    return "+Inf" if bound == INF else f"{bound:g}"


def cumulative(boundaries: Sequence[float], counts: Sequence[float]) -> Histogram:
    """Cumulative histogram from per-bin counts (the inverse of bin_counts)."""
    return list(zip(boundaries, np.cumsum(counts, dtype=float).tolist(), strict=True))


def smoothed(counts: Sequence[float]) -> Floats:
    """Probabilities with the module's smoothing: floor at EPSILON, then renormalise."""
    p = np.asarray(counts, dtype=float)
    floored: Floats = np.maximum(p / p.sum(), EPSILON)
    result: Floats = floored / floored.sum()
    return result


def raw(counts: Sequence[float]) -> Floats:
    p = np.asarray(counts, dtype=float)
    result: Floats = p / p.sum()
    return result


def psi_reference(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = smoothed(current), smoothed(baseline)
    return float(np.sum((p - q) * np.log(p / q)))


def js_reference(current: Sequence[float], baseline: Sequence[float]) -> float:
    distance = float(jensenshannon(smoothed(current), smoothed(baseline), base=2))
    return distance**2


def hellinger_reference(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = raw(current), raw(baseline)
    return math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q)))))


def hellinger_norm_reference(current: Sequence[float], baseline: Sequence[float]) -> float:
    p, q = raw(current), raw(baseline)
    return float(np.linalg.norm(np.sqrt(p) - np.sqrt(q)) / math.sqrt(2))


def ks_reference(current: Sequence[float], baseline: Sequence[float]) -> float:
    """max |CDF_p - CDF_q| over the bin upper edges."""
    return float(np.max(np.abs(np.cumsum(raw(current)) - np.cumsum(raw(baseline)))))


def ecdf_ks_at(boundaries: Sequence[float], current: Floats, baseline: Floats) -> float:
    """max |ECDF_current - ECDF_baseline| evaluated only at the given boundaries."""
    edges = np.asarray(boundaries, dtype=float)
    f = np.searchsorted(np.sort(current), edges, side="right") / current.size
    g = np.searchsorted(np.sort(baseline), edges, side="right") / baseline.size
    return float(np.max(np.abs(f - g)))


def le_histogram(values: Floats, boundaries: Sequence[float]) -> Histogram:
    """Cumulative counts as a Prometheus histogram keeps them: observations <= le."""
    ordered = np.sort(values)
    return [(le, float(np.searchsorted(ordered, le, side="right"))) for le in boundaries]


def random_counts(rng: np.random.Generator, bins: int, empty: float) -> list[float]:
    """Per-bin counts with roughly ``empty`` of the bins zero, never all zero."""
    counts = rng.integers(1, 200, size=bins).astype(float)
    counts[rng.random(bins) < empty] = 0.0
    if counts.sum() == 0:
        counts[rng.integers(bins)] = 1.0
    return [float(c) for c in counts]


# (seed, bins, fraction of empty bins): few and many bins, dense and sparse.
SHAPES = [
    (1, 2, 0.0),
    (2, 3, 0.3),
    (3, 5, 0.0),
    (4, 8, 0.5),
    (5, 12, 0.2),
    (6, 20, 0.7),
    (7, 40, 0.1),
    (8, 64, 0.9),
]
SHAPE_IDS = [f"seed{seed}-{bins}bins-{int(empty * 100)}%empty" for seed, bins, empty in SHAPES]


def random_pair(seed: int, bins: int, empty: float) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    return random_counts(rng, bins, empty), random_counts(rng, bins, empty)


def bounds(
    min: float | None = None,
    max: float | None = None,
    for_: timedelta = timedelta(0),
) -> Bounds:
    return Bounds(min=min, max=max, for_=for_)


def state(name: str, breached: bool, value: float | None = 1.0) -> MetricState:
    since = EARLIER if breached else None
    return MetricState(name, value, bounds(max=0.5), breached, since)


# ---------------------------------------------------------------- single_value
def test_single_value_reads_a_scalar() -> None:
    assert single_value({"resultType": "scalar", "result": [1700000000, "0.31"]}) == 0.31


def test_single_value_reads_a_one_sample_vector() -> None:
    assert single_value(vector(sample("0.87", model="churn"))) == 0.87


def test_single_value_empty_vector_is_no_data() -> None:
    with pytest.raises(NoDataError, match="NoData"):
        single_value(vector())


@pytest.mark.parametrize("count", [2, 3, 7])
def test_single_value_several_series_names_the_count_and_says_to_aggregate(count: int) -> None:
    result = vector(*(sample("0.1", pod=f"p{i}") for i in range(count)))

    with pytest.raises(DriftDataError) as raised:
        single_value(result)

    assert not isinstance(raised.value, NoDataError)
    assert f"{count} series" in str(raised.value)
    assert "aggregate" in str(raised.value)


def test_single_value_rejects_a_matrix() -> None:
    result = {"resultType": "matrix", "result": [{"metric": {}, "values": [[TS, "1"], [TS + 60, "2"]]}]}

    with pytest.raises(DriftDataError) as raised:
        single_value(result)

    assert not isinstance(raised.value, NoDataError)
    assert "range vector" in str(raised.value)


def test_single_value_rejects_a_string() -> None:
    with pytest.raises(DriftDataError) as raised:
        single_value({"resultType": "string", "result": [TS, "hello"]})

    assert not isinstance(raised.value, NoDataError)
    assert "string" in str(raised.value)


def test_single_value_hundreds_of_series_name_the_count() -> None:
    result = vector(*(sample("0.1", pod=f"p{i}") for i in range(500)))

    with pytest.raises(DriftDataError, match="500 series; aggregate") as raised:
        single_value(result)

    assert not isinstance(raised.value, NoDataError)


NON_FINITE = [("NaN", "NaN"), ("+Inf", "+Inf"), ("-Inf", "-Inf"), ("Inf", "+Inf"), ("1e999", "+Inf")]


@pytest.mark.parametrize("kind", ["scalar", "vector"])
@pytest.mark.parametrize(("raw", "shown"), NON_FINITE, ids=[raw for raw, _ in NON_FINITE])
def test_single_value_not_finite_is_an_error_naming_the_value(kind: str, raw: str, shown: str) -> None:
    # Prometheus writes NaN and the infinities as strings; none is a value to compare with a bound.
    result = {"resultType": "scalar", "result": [TS, raw]} if kind == "scalar" else vector(sample(raw))

    with pytest.raises(NonFiniteValueError) as raised:
        single_value(result)

    assert not isinstance(raised.value, NoDataError)
    assert f"is {shown}, not a finite number" in str(raised.value)


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_single_value_not_finite_json_numbers_are_errors_too(raw: float) -> None:
    # Python's JSON parser reads the bare tokens NaN and Infinity a hostile server may send.
    with pytest.raises(NonFiniteValueError):
        single_value(vector({"metric": {}, "value": [TS, raw]}))


@pytest.mark.parametrize(
    "result",
    [
        vector(sample("abc")),
        vector({"metric": {}}),
        vector({"metric": {}, "value": [TS]}),
        vector({"metric": {}, "value": [TS, None]}),
        vector({"metric": {}, "value": [TS, ["1"]]}),
        vector({"metric": {}, "value": [TS, True]}),
        vector("not a sample"),
        {"resultType": "vector", "result": {"0": 1}},
        {"resultType": "scalar", "result": [TS, {}]},
        {"resultType": "scalar", "result": "1"},
    ],
    ids=[
        "text",
        "no-value",
        "short-pair",
        "null",
        "list",
        "bool",
        "string-sample",
        "dict",
        "scalar-dict",
        "scalar-str",
    ],
)
def test_single_value_malformed_answers_are_errors_not_crashes(result: dict[str, Any]) -> None:
    with pytest.raises(DriftDataError) as raised:
        single_value(result)

    assert not isinstance(raised.value, (NoDataError, NonFiniteValueError))


# ---------------------------------------------------------------- buckets
def test_buckets_sorts_by_le_and_parses_inf() -> None:
    result = vector(bucket("+Inf", "10"), bucket("0.5", "4"), bucket("0.1", "1"), bucket("1", "7"))

    assert buckets(result) == [(0.1, 1.0), (0.5, 4.0), (1.0, 7.0), (INF, 10.0)]


def test_buckets_sorts_numerically_not_as_text() -> None:
    result = vector(bucket("10", "5"), bucket("2", "3"), bucket("+Inf", "6"))

    assert [le for le, _ in buckets(result)] == [2.0, 10.0, INF]


def test_buckets_only_inf_is_one_bucket() -> None:
    assert buckets(vector(bucket("+Inf", "3"))) == [(INF, 3.0)]


def test_buckets_without_inf_is_an_error() -> None:
    with pytest.raises(DriftDataError, match=r"\+Inf") as raised:
        buckets(vector(bucket("0.5", "4"), bucket("1", "7")))

    assert not isinstance(raised.value, NoDataError)


def test_buckets_series_without_le_says_sum_by_le() -> None:
    result = vector(bucket("0.5", "4"), sample("7", pod="a"), bucket("+Inf", "9"))

    with pytest.raises(DriftDataError, match=r"sum by \(le\)") as raised:
        buckets(result)

    assert not isinstance(raised.value, NoDataError)


@pytest.mark.parametrize(
    ("first", "second", "other"), [("0.5", "0.5", "+Inf"), ("1", "1.0", "+Inf"), ("+Inf", "+Inf", "0.5")]
)
def test_buckets_duplicate_le_is_an_error(first: str, second: str, other: str) -> None:
    # Unaggregated series (one per pod) repeat each le; "1" and "1.0" are the same bound.
    result = vector(sample("2", le=first, pod="a"), sample("3", le=second, pod="b"), bucket(other, "1"))

    with pytest.raises(DriftDataError, match=r"sum by \(le\)") as raised:
        buckets(result)

    assert not isinstance(raised.value, NoDataError)


@pytest.mark.parametrize(("raw", "shown"), NON_FINITE, ids=[raw for raw, _ in NON_FINITE])
@pytest.mark.parametrize("le", ["0.5", "+Inf"])
@pytest.mark.parametrize("window", ["current", "baseline"])
def test_buckets_not_finite_count_is_an_error_naming_window_and_bucket(
    window: str, le: str, raw: str, shown: str
) -> None:
    # Read as zero (or as a huge count), such a bucket would invent a shift: never a value.
    counts = {"0.5": "4", "1": "7", "+Inf": "10", le: raw}
    result = vector(*(bucket(bound, count) for bound, count in counts.items()))

    with pytest.raises(NonFiniteValueError) as raised:
        buckets(result, window)

    assert f"the {window} bucket le={le} is {shown}, not a finite number" in str(raised.value)


@pytest.mark.parametrize("le", ["abc", "NaN", ""])
def test_buckets_le_that_is_not_a_boundary_is_an_error(le: str) -> None:
    with pytest.raises(DriftDataError, match="not a bucket boundary") as raised:
        buckets(vector(bucket(le, "1"), bucket("+Inf", "2")))

    assert not isinstance(raised.value, (NoDataError, NonFiniteValueError))


def test_buckets_minus_inf_boundary_is_a_boundary() -> None:
    # le="-Inf" is an odd but valid boundary (nothing is below it); its count is finite.
    assert buckets(vector(bucket("-Inf", "0"), bucket("1", "3"), bucket("+Inf", "5"))) == [
        (-INF, 0.0),
        (1.0, 3.0),
        (INF, 5.0),
    ]


@pytest.mark.parametrize(
    "result",
    [vector("x"), vector({"metric": "le"}), vector({"metric": {"le": "1"}}), {"resultType": "vector", "result": 7}],
    ids=["string-series", "string-labels", "no-value", "result-not-a-list"],
)
def test_buckets_malformed_answers_are_errors_not_crashes(result: dict[str, Any]) -> None:
    with pytest.raises(DriftDataError):
        buckets(result)


def test_buckets_empty_vector_is_no_data() -> None:
    with pytest.raises(NoDataError):
        buckets(vector())


@pytest.mark.parametrize(
    "result",
    [
        {"resultType": "scalar", "result": [TS, "1"]},
        {"resultType": "matrix", "result": []},
        {"resultType": "string", "result": [TS, "x"]},
    ],
    ids=["scalar", "matrix", "string"],
)
def test_buckets_non_vector_is_an_error(result: dict[str, Any]) -> None:
    with pytest.raises(DriftDataError, match="instant vector") as raised:
        buckets(result)

    assert not isinstance(raised.value, NoDataError)


# ---------------------------------------------------------------- bin_counts
def test_bin_counts_are_differences_of_cumulative_counts() -> None:
    # 3, 10-3=7, 10-10=0, 15-10=5
    assert bin_counts([(0.1, 3.0), (0.5, 10.0), (1.0, 10.0), (INF, 15.0)]) == [3.0, 7.0, 0.0, 5.0]


def test_bin_counts_of_only_inf_is_the_total() -> None:
    assert bin_counts([(INF, 42.0)]) == [42.0]


def test_bin_counts_clips_a_decrease_to_zero() -> None:
    # A counter artefact: 5 -> 3 is a decrease and counts 0. The next bin is measured from
    # the highest cumulative count seen (5), not from the dip (3): 6-5=1. So the bins sum
    # to the +Inf total (6), which is what minSamples is checked against.
    counts = bin_counts([(1.0, 5.0), (2.0, 3.0), (INF, 6.0)])

    assert counts == [5.0, 0.0, 1.0]
    assert sum(counts) == 6.0


def test_bin_counts_never_negative_for_a_lower_total() -> None:
    assert bin_counts([(1.0, 5.0), (INF, 4.0)]) == [5.0, 0.0]


# ---------------------------------------------------------------- align
def test_align_identical_boundaries_keeps_every_bin() -> None:
    current = [(0.1, 2.0), (0.5, 6.0), (INF, 10.0)]
    baseline = [(0.1, 1.0), (0.5, 1.0), (INF, 4.0)]

    assert align(current, baseline) == ([0.1, 0.5, INF], [2.0, 4.0, 4.0], [1.0, 0.0, 3.0])


def test_align_coarsens_mismatched_boundaries_to_the_common_ones() -> None:
    # current le: 1, 2, 3, 5, +Inf    cumulative: 4, 9, 15, 18, 20
    # baseline le:   2,    5, 8, +Inf cumulative:   10,  30, 35, 40
    # common: 2, 5, +Inf
    # current bins:  <=2: 9, (2,5]: 18-9=9, (5,inf): 20-18=2
    # baseline bins: <=2: 10, (2,5]: 30-10=20, (5,inf): 40-30=10 (8 folds into the last bin)
    current = [(1.0, 4.0), (2.0, 9.0), (3.0, 15.0), (5.0, 18.0), (INF, 20.0)]
    baseline = [(2.0, 10.0), (5.0, 30.0), (8.0, 35.0), (INF, 40.0)]

    assert align(current, baseline) == ([2.0, 5.0, INF], [9.0, 9.0, 2.0], [10.0, 20.0, 10.0])


def test_align_is_order_preserving_for_each_side() -> None:
    current = [(1.0, 4.0), (2.0, 9.0), (INF, 20.0)]
    baseline = [(2.0, 10.0), (INF, 40.0)]

    _, p, q = align(current, baseline)
    _, q_swapped, p_swapped = align(baseline, current)

    assert (p, q) == (p_swapped, q_swapped)


@pytest.mark.parametrize(
    ("current", "baseline"),
    [
        ([(1.0, 4.0), (INF, 9.0)], [(2.0, 5.0), (INF, 9.0)]),
        ([(INF, 9.0)], [(2.0, 5.0), (INF, 9.0)]),
        ([(INF, 9.0)], [(INF, 9.0)]),
    ],
    ids=["disjoint-finite", "current-only-inf", "both-only-inf"],
)
def test_align_with_only_inf_in_common_is_an_error(current: Histogram, baseline: Histogram) -> None:
    with pytest.raises(DriftDataError, match=r"\+Inf") as raised:
        align(current, baseline)

    assert not isinstance(raised.value, NoDataError)


def test_align_handles_empty_buckets() -> None:
    # current: nothing <= 1, everything in (1, 2]; baseline: nothing at all beyond 1.
    current = [(1.0, 0.0), (2.0, 8.0), (INF, 8.0)]
    baseline = [(1.0, 5.0), (2.0, 5.0), (INF, 5.0)]

    assert align(current, baseline) == ([1.0, 2.0, INF], [0.0, 8.0, 0.0], [5.0, 0.0, 0.0])


def test_align_all_zero_histogram_gives_zero_bins() -> None:
    zeros = [(1.0, 0.0), (INF, 0.0)]

    assert align(zeros, zeros) == ([1.0, INF], [0.0, 0.0], [0.0, 0.0])


# ---------------------------------------------------------------- psi
def test_psi_hand_computed() -> None:
    # p = 30/100, 70/100 = .3, .7; q = .5, .5 (no bin below EPSILON: smoothing is a no-op)
    # (.3-.5) ln(.3/.5) + (.7-.5) ln(.7/.5)
    # = -.2 * -0.5108256238 + .2 * 0.3364722366 = 0.1021651248 + 0.0672944473 = 0.1694595721
    assert psi([30, 70], [50, 50]) == pytest.approx(0.1694595721, rel=1e-9)


def test_psi_hand_computed_with_an_empty_bin() -> None:
    # p = 0, 1 -> floored to 1e-4, 1 -> renormalised by 1.0001: 9.9990001e-05, 0.99990001
    # q = .5, .5
    # (9.9990001e-05 - .5) ln(9.9990001e-05 / .5) = -0.49990001 * -8.51729319 = 4.25779495
    # (0.99990001 - .5) ln(0.99990001 / .5)       =  0.49990001 *  0.69304719 = 0.34645429
    # sum = 4.60424924 (finite thanks to the smoothing)
    assert psi([0, 100], [50, 50]) == pytest.approx(4.60424924, rel=1e-8)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_psi_matches_the_smoothed_formula(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)

    assert psi(current, baseline) == pytest.approx(psi_reference(current, baseline), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_psi_is_symmetric(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)

    assert psi(current, baseline) == pytest.approx(psi(baseline, current), rel=1e-12)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_psi_of_identical_distributions_is_zero(seed: int, bins: int, empty: float) -> None:
    counts, _ = random_pair(seed, bins, empty)
    scaled = [3 * c for c in counts]  # same distribution, three times the observations

    assert psi(counts, counts) == 0.0
    assert psi(counts, scaled) == pytest.approx(0.0, abs=1e-12)


def test_psi_is_not_negative_and_grows_with_the_shift() -> None:
    baseline = [25, 25, 25, 25]
    shifts = [[25, 25, 25, 25], [20, 25, 25, 30], [10, 20, 30, 40], [0, 10, 30, 60]]

    values = [psi(current, baseline) for current in shifts]

    assert values[0] == 0.0
    assert values == sorted(values)
    assert all(v > 0 for v in values[1:])


# ---------------------------------------------------------------- ks
def test_ks_hand_computed() -> None:
    # CDF_p: .1, .3, 1.0; CDF_q: .3, .6, 1.0; |diff|: .2, .3, 0 -> .3
    assert ks([10, 20, 70], [30, 30, 40]) == pytest.approx(0.3, abs=1e-12)


def test_ks_uses_raw_probabilities_not_smoothed() -> None:
    # p = 1, 0; q = 0, 1: CDFs 1 vs 0 at the first edge, exactly 1 without smoothing.
    assert ks([5, 0], [0, 7]) == 1.0


@pytest.mark.parametrize(
    ("current", "baseline"),
    [([5, 0, 0], [0, 0, 7]), ([0, 3, 0, 0], [0, 0, 0, 2]), ([1, 0], [0, 1])],
)
def test_ks_of_disjoint_distributions_is_one(current: list[float], baseline: list[float]) -> None:
    assert ks(current, baseline) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_ks_of_identical_distributions_is_zero(seed: int, bins: int, empty: float) -> None:
    counts, _ = random_pair(seed, bins, empty)

    assert ks(counts, counts) == 0.0
    assert ks(counts, [2 * c for c in counts]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_ks_matches_the_cdf_formula(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)

    assert ks(current, baseline) == pytest.approx(ks_reference(current, baseline), abs=1e-12)
    assert 0.0 <= ks(current, baseline) <= 1.0


# (seed, values 0..k-1, current binomial p, baseline binomial p, current n, baseline n)
KS_SAMPLES = [
    (11, 5, 0.5, 0.5, 150, 220),
    (12, 10, 0.3, 0.5, 200, 300),
    (13, 20, 0.6, 0.4, 500, 120),
    (14, 40, 0.1, 0.9, 80, 90),
    (15, 8, 0.5, 0.55, 1000, 1000),
]


def integer_samples(
    seed: int, k: int, p_current: float, p_baseline: float, n_current: int, n_baseline: int
) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(seed)
    current = rng.binomial(k - 1, p_current, size=n_current).astype(float)
    baseline = rng.binomial(k - 1, p_baseline, size=n_baseline).astype(float)
    return current, baseline


@pytest.mark.parametrize(("seed", "k", "p_current", "p_baseline", "n_current", "n_baseline"), KS_SAMPLES)
def test_ks_on_exact_bins_equals_scipy_ks_2samp(
    seed: int, k: int, p_current: float, p_baseline: float, n_current: int, n_baseline: int
) -> None:
    # Integer samples with a bucket boundary at every integer: each observation sits
    # exactly on a bin's upper edge (le is inclusive), so the binned CDFs equal the
    # samples' ECDFs at every jump and binning loses no information.
    current, baseline = integer_samples(seed, k, p_current, p_baseline, n_current, n_baseline)
    boundaries = [*map(float, range(k)), INF]

    binned = distribution_statistic("ks", le_histogram(current, boundaries), le_histogram(baseline, boundaries), 1)

    expected = float(ks_2samp(current, baseline, method="asymp").statistic)
    assert binned == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("seed", "k", "p_current", "p_baseline", "n_current", "n_baseline"), KS_SAMPLES)
def test_ks_on_coarse_bins_is_the_ecdf_difference_at_the_boundaries(
    seed: int, k: int, p_current: float, p_baseline: float, n_current: int, n_baseline: int
) -> None:
    # With boundaries every third integer the binned statistic sees the ECDFs only there:
    # it equals max |ECDF diff| over those boundaries and cannot exceed ks_2samp's.
    current, baseline = integer_samples(seed, k, p_current, p_baseline, n_current, n_baseline)
    boundaries = [*map(float, range(0, k, 3)), INF]

    binned = distribution_statistic("ks", le_histogram(current, boundaries), le_histogram(baseline, boundaries), 1)

    assert binned == pytest.approx(ecdf_ks_at(boundaries, current, baseline), abs=1e-12)
    assert binned <= float(ks_2samp(current, baseline, method="asymp").statistic) + 1e-12


def test_ks_through_the_prometheus_result() -> None:
    # The whole path: unsorted series from Prometheus -> buckets -> align -> ks.
    current, baseline = integer_samples(21, 6, 0.3, 0.6, 300, 400)
    boundaries = [*map(float, range(6)), INF]

    def as_result(values: Floats) -> dict[str, Any]:
        histogram = le_histogram(values, boundaries)
        return vector(*(bucket(le_text(le), f"{count:g}") for le, count in reversed(histogram)))

    value = distribution_statistic("ks", buckets(as_result(current)), buckets(as_result(baseline)), 100)

    assert value == pytest.approx(float(ks_2samp(current, baseline, method="asymp").statistic), abs=1e-12)


# ---------------------------------------------------------------- js
def test_js_hand_computed() -> None:
    # p = .5, .5; q = .25, .75 (smoothing is a no-op); m = .375, .625
    # KL(p||m) = .5 log2(.5/.375) + .5 log2(.5/.625) = .5*0.4150375 + .5*-0.3219281 = 0.0465547
    # KL(q||m) = .25 log2(.25/.375) + .75 log2(.75/.625) = .25*-0.5849625 + .75*0.2630344 = 0.0510352
    # JS = (0.0465547 + 0.0510352) / 2 = 0.0487949
    assert js([50, 50], [25, 75]) == pytest.approx(0.0487949407, rel=1e-8)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_js_matches_scipy_jensenshannon_squared(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)

    assert js(current, baseline) == pytest.approx(js_reference(current, baseline), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_js_is_within_zero_and_one(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)

    assert 0.0 <= js(current, baseline) <= 1.0


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_js_of_identical_distributions_is_zero(seed: int, bins: int, empty: float) -> None:
    counts, _ = random_pair(seed, bins, empty)

    assert js(counts, counts) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("current", "baseline"),
    [([5, 0], [0, 7]), ([5, 0, 0, 0], [0, 0, 0, 7]), ([0, 3, 3, 0, 0, 0], [0, 0, 0, 1, 1, 1])],
)
def test_js_of_disjoint_distributions_is_just_below_one(current: list[float], baseline: list[float]) -> None:
    # Without smoothing JS would be exactly 1; the EPSILON floor leaves a little overlap.
    value = js(current, baseline)

    assert 0.99 < value < 1.0
    assert value == pytest.approx(js_reference(current, baseline), rel=1e-9)


# ---------------------------------------------------------------- hellinger
@pytest.mark.parametrize(
    ("current", "baseline", "expected"),
    [
        # sqrt(.36*.64) + sqrt(.64*.36) = .48 + .48 = .96; sqrt(1 - .96) = .2
        ([36, 64], [64, 36], 0.2),
        # p = 1, 0; q = .25, .75: overlap sqrt(.25) = .5; sqrt(.5) = 0.70710678 (no smoothing)
        ([4, 0], [1, 3], math.sqrt(0.5)),
        # p = .5, .5; q = .25, .75: sqrt(.125) + sqrt(.375) = 0.35355339 + 0.61237244 = 0.96592583
        # sqrt(1 - 0.96592583) = sqrt(0.03407417) = 0.18459191
        ([50, 50], [25, 75], 0.18459191),
    ],
)
def test_hellinger_hand_computed(current: list[float], baseline: list[float], expected: float) -> None:
    assert hellinger(current, baseline) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_hellinger_matches_both_reference_forms(seed: int, bins: int, empty: float) -> None:
    current, baseline = random_pair(seed, bins, empty)
    value = hellinger(current, baseline)

    assert value == pytest.approx(hellinger_reference(current, baseline), rel=1e-9, abs=1e-12)
    # sqrt(1 - sum sqrt(pq)) == ||sqrt p - sqrt q|| / sqrt 2; the first form loses a few
    # digits when the distributions are close (1 - overlap cancels), hence abs=1e-7.
    assert value == pytest.approx(hellinger_norm_reference(current, baseline), rel=1e-6, abs=1e-7)
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize(("seed", "bins", "empty"), SHAPES, ids=SHAPE_IDS)
def test_hellinger_of_identical_distributions_is_zero(seed: int, bins: int, empty: float) -> None:
    counts, _ = random_pair(seed, bins, empty)

    # Rounding in sum sqrt(p*p) can leave 1 - overlap ~ 1e-16, whose sqrt is ~1e-8.
    assert hellinger(counts, counts) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    ("current", "baseline"),
    [([5, 0], [0, 7]), ([5, 0, 0, 0], [0, 0, 0, 7]), ([0, 3, 3, 0, 0, 0], [0, 0, 0, 1, 1, 1])],
)
def test_hellinger_of_disjoint_distributions_is_one(current: list[float], baseline: list[float]) -> None:
    assert hellinger(current, baseline) == 1.0


# ---------------------------------------------------------------- distribution_statistic
SMALL_CURRENT = [(1.0, 100.0), (2.0, 250.0), (INF, 300.0)]
SMALL_BASELINE = [(1.0, 50.0), (2.0, 150.0), (INF, 400.0)]


def test_tests_are_the_api_enum() -> None:
    assert TESTS == ("psi", "ks", "js", "hellinger")
    assert set(STATISTICS) == set(TESTS)


@pytest.mark.parametrize(
    ("test", "statistic"), [("psi", psi), ("ks", ks), ("js", js), ("hellinger", hellinger)], ids=TESTS
)
def test_distribution_statistic_dispatches_by_test_name(test: str, statistic: Any) -> None:
    # bins: current 100, 150, 50; baseline 50, 100, 250
    expected = statistic([100.0, 150.0, 50.0], [50.0, 100.0, 250.0])

    assert distribution_statistic(test, SMALL_CURRENT, SMALL_BASELINE, 100) == expected


def test_distribution_statistic_hand_computed_ks() -> None:
    # CDF current: 100/300, 250/300, 1 = .3333, .8333, 1; baseline: 50/400, 150/400, 1 = .125, .375, 1
    # |diff|: .2083, .4583, 0 -> 0.458333
    assert distribution_statistic("ks", SMALL_CURRENT, SMALL_BASELINE, 1) == pytest.approx(0.4583333333)


@pytest.mark.parametrize("test", TESTS)
def test_distribution_statistic_aligns_mismatched_boundaries(test: str) -> None:
    # common boundaries 2, +Inf: current bins 250, 50; baseline bins 150 (cumulative at 2), 250
    current = [(1.0, 100.0), (2.0, 250.0), (INF, 300.0)]
    baseline = [(2.0, 150.0), (4.0, 300.0), (INF, 400.0)]

    value = distribution_statistic(test, current, baseline, 1)

    assert value == pytest.approx(STATISTICS[test]([250.0, 50.0], [150.0, 250.0]), rel=1e-12)


def test_distribution_statistic_with_only_inf_in_common_is_an_error() -> None:
    with pytest.raises(DriftDataError, match=r"\+Inf") as raised:
        distribution_statistic("psi", [(1.0, 300.0), (INF, 300.0)], [(2.0, 300.0), (INF, 300.0)], 1)

    assert not isinstance(raised.value, NoDataError)


@pytest.mark.parametrize(
    ("current_total", "baseline_total", "message"),
    [
        (199.0, 500.0, "current window has 199 observations"),
        (500.0, 199.0, "baseline window has 199 observations"),
        (199.5, 199.0, "current window has 199.5 observations"),  # increase() yields fractions
        (0.0, 0.0, "current window has 0 observations"),
    ],
)
def test_distribution_statistic_below_min_samples_is_no_data_naming_the_window(
    current_total: float, baseline_total: float, message: str
) -> None:
    current = [(1.0, current_total / 2), (INF, current_total)]
    baseline = [(1.0, baseline_total / 2), (INF, baseline_total)]

    with pytest.raises(NoDataError, match=rf"{message}, fewer than minSamples 200"):
        distribution_statistic("psi", current, baseline, 200)


def test_distribution_statistic_at_exactly_min_samples_computes() -> None:
    histogram = [(1.0, 80.0), (INF, 200.0)]

    assert distribution_statistic("psi", histogram, histogram, 200) == 0.0


@pytest.mark.parametrize("test", TESTS)
def test_distribution_statistic_of_identical_histograms_is_zero(test: str) -> None:
    assert distribution_statistic(test, SMALL_CURRENT, SMALL_CURRENT, 1) == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------- Bounds
@pytest.mark.parametrize(
    ("limits", "value", "inside"),
    [
        ((None, 0.2), 0.1, True),
        ((None, 0.2), 0.2, True),  # inclusive
        ((None, 0.2), 0.2000001, False),
        ((0.85, None), 0.9, True),
        ((0.85, None), 0.85, True),  # inclusive
        ((0.85, None), 0.8499999, False),
        ((0.1, 0.3), 0.1, True),
        ((0.1, 0.3), 0.3, True),
        ((0.1, 0.3), 0.2, True),
        ((0.1, 0.3), 0.05, False),
        ((0.1, 0.3), 0.35, False),
        ((0.1, 0.3), -INF, False),
        ((0.1, 0.3), INF, False),
    ],
)
def test_bounds_contains(limits: tuple[float | None, float | None], value: float, inside: bool) -> None:
    low, high = limits

    assert bounds(min=low, max=high).contains(value) is inside


@pytest.mark.parametrize(
    ("limits", "value", "message"),
    [
        ((None, 0.2), 0.31, "0.31 > max 0.2"),
        ((0.85, None), 0.8, "0.8 < min 0.85"),
        ((0.1, 0.3), 0.05, "0.05 < min 0.1"),
        ((0.1, 0.3), 0.35, "0.35 > max 0.3"),
        ((None, 0.2), 0.123456, "0.1235 within bounds"),
        ((0.1, 0.3), 0.3, "0.3 within bounds"),
        ((None, 0.25), 0.3123456, "0.3123 > max 0.25"),
    ],
)
def test_bounds_describe(limits: tuple[float | None, float | None], value: float, message: str) -> None:
    low, high = limits

    assert bounds(min=low, max=high).describe(value) == message


@pytest.mark.parametrize(
    ("limits", "value"),
    [((None, 0.2), 0.20001), ((0.85, None), 0.84999), ((None, 1.5), 1.50004)],
    ids=["above-max", "below-min", "above-max-1.5"],
)
def test_bounds_describe_shows_the_value_outside_the_bound(
    limits: tuple[float | None, float | None], value: float
) -> None:
    # The text becomes the trigger detail and Event message; it must not contradict itself.
    low, high = limits

    shown, relation, _, bound = bounds(min=low, max=high).describe(value).split()

    assert relation in ("<", ">")
    assert float(shown) > float(bound) if relation == ">" else float(shown) < float(bound)


def test_metric_state_detail_names_metric_value_and_bound() -> None:
    result = next_metric_state("feature_psi", bounds(max=0.2), 0.31, None, None, NOW)

    assert result.detail == "feature_psi=0.31 > max 0.2"


def test_metric_state_detail_without_value_is_the_name() -> None:
    result = next_metric_state("feature_psi", bounds(max=0.2), None, "NoData", None, NOW)

    assert result.detail == "feature_psi"


# ---------------------------------------------------------------- next_metric_state
TEN_MINUTES = bounds(max=0.2, for_=timedelta(minutes=10))


@pytest.mark.parametrize("previous_since", [None, EARLIER])
def test_in_bounds_is_not_breached_and_clears_since(previous_since: datetime | None) -> None:
    result = next_metric_state("m", TEN_MINUTES, 0.1, None, previous_since, NOW)

    assert result == MetricState("m", 0.1, TEN_MINUTES, False, None, None)


def test_first_out_of_bounds_sets_since_to_now_and_waits_for_for() -> None:
    result = next_metric_state("m", TEN_MINUTES, 0.31, None, None, NOW)

    assert result.value == 0.31
    assert result.breached_since == NOW
    assert result.breached is False


def test_out_of_bounds_with_for_zero_breaches_at_once() -> None:
    result = next_metric_state("m", bounds(max=0.2), 0.31, None, None, NOW)

    assert result.breached is True
    assert result.breached_since == NOW


@pytest.mark.parametrize(
    ("elapsed", "breached"),
    [
        (timedelta(minutes=9, seconds=59), False),
        (timedelta(minutes=10), True),  # exactly `for`
        (timedelta(hours=3), True),
    ],
)
def test_staying_out_of_bounds_breaches_once_for_has_passed(elapsed: timedelta, breached: bool) -> None:
    since = NOW - elapsed

    result = next_metric_state("m", TEN_MINUTES, 0.31, None, since, NOW)

    assert result.breached is breached
    assert result.breached_since == since  # the original since is kept


def test_breach_across_evaluations_with_a_ticking_clock() -> None:
    since: datetime | None = None
    history = []
    for minute in range(0, 12):
        now = NOW + timedelta(minutes=minute)
        current = next_metric_state("m", TEN_MINUTES, 0.31, None, since, now)
        since = current.breached_since
        history.append(current.breached)

    assert since == NOW
    assert history == [False] * 10 + [True, True]


def test_returning_in_bounds_resets_the_clock() -> None:
    out = next_metric_state("m", TEN_MINUTES, 0.31, None, NOW - timedelta(minutes=9), NOW)
    back = next_metric_state("m", TEN_MINUTES, 0.1, None, out.breached_since, NOW + timedelta(minutes=1))
    again = next_metric_state("m", TEN_MINUTES, 0.31, None, back.breached_since, NOW + timedelta(minutes=2))

    assert back.breached_since is None
    assert back.breached is False
    assert again.breached_since == NOW + timedelta(minutes=2)
    assert again.breached is False


@pytest.mark.parametrize("error", ["NoData: the query returned no series", "the query returned 3 series; aggregate"])
def test_no_data_or_error_resets_and_never_breaches(error: str) -> None:
    result = next_metric_state("m", TEN_MINUTES, None, error, NOW - timedelta(hours=1), NOW)

    assert result == MetricState("m", None, TEN_MINUTES, False, None, error)


@pytest.mark.parametrize(
    ("value", "shown"), [(math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")], ids=["nan", "inf", "-inf"]
)
@pytest.mark.parametrize("limits", [(None, 0.2), (0.85, None), (0.1, 0.3)], ids=["max", "min", "both"])
def test_a_value_that_is_not_finite_never_breaches_and_resets_the_clock(
    limits: tuple[float | None, float | None], value: float, shown: str
) -> None:
    # NaN compares false with every bound and the infinities leave every range: whatever
    # hands such a value over, it is an error, never a breach.
    low, high = limits
    limited = bounds(min=low, max=high)

    result = next_metric_state("m", limited, value, None, NOW - timedelta(hours=1), NOW)

    assert result == MetricState("m", None, limited, False, None, f"the value is {shown}, not a finite number")


def test_no_data_with_for_zero_never_breaches() -> None:
    result = next_metric_state("m", bounds(max=0.2), None, "NoData", None, NOW)

    assert result.breached is False
    assert result.breached_since is None


@pytest.mark.parametrize(
    ("limits", "value", "breached"),
    [
        ((None, 0.2), 0.31, True),
        ((None, 0.2), 0.2, False),
        ((None, 0.2), -5.0, False),
        ((0.85, None), 0.8, True),
        ((0.85, None), 0.85, False),
        ((0.85, None), 5.0, False),
        ((0.1, 0.3), 0.05, True),
        ((0.1, 0.3), 0.1, False),
        ((0.1, 0.3), 0.3, False),
        ((0.1, 0.3), 0.31, True),
    ],
)
def test_breach_with_min_only_max_only_and_both(
    limits: tuple[float | None, float | None], value: float, breached: bool
) -> None:
    low, high = limits

    result = next_metric_state("m", bounds(min=low, max=high), value, None, None, NOW)

    assert result.breached is breached
    assert result.breached_since == (NOW if breached else None)


# ---------------------------------------------------------------- drifting
@pytest.mark.parametrize(
    ("breaches", "any_metric", "all_metrics"),
    [
        ([], False, False),
        ([False], False, False),
        ([True], True, True),
        ([True, False], True, False),
        ([False, False], False, False),
        ([True, True, True], True, True),
    ],
)
def test_drifting_any_and_all_metrics(breaches: list[bool], any_metric: bool, all_metrics: bool) -> None:
    states = [state(f"m{i}", breached) for i, breached in enumerate(breaches)]

    assert drifting(states, "AnyMetric") is any_metric
    assert drifting(states, "AllMetrics") is all_metrics


def test_no_data_metric_counts_as_not_breached() -> None:
    no_data = next_metric_state("auc", bounds(min=0.85), None, "NoData", EARLIER, NOW)
    breached = next_metric_state("psi", bounds(max=0.2), 0.31, None, None, NOW)

    assert drifting([breached, no_data], "AnyMetric") is True
    assert drifting([breached, no_data], "AllMetrics") is False
    assert drifting([no_data], "AnyMetric") is False


# ---------------------------------------------------------------- may_trigger
SIX_HOURS = timedelta(hours=6)


@pytest.mark.parametrize(
    ("last_trigger", "allowed"),
    [
        (None, True),
        (NOW, False),
        (NOW - timedelta(hours=1), False),
        (NOW - SIX_HOURS + timedelta(seconds=1), False),
        (NOW - SIX_HOURS, True),  # exactly one cooldown ago
        (NOW - timedelta(days=2), True),
    ],
    ids=["never", "just-now", "within", "one-second-short", "exactly", "after"],
)
def test_may_trigger_respects_the_cooldown(last_trigger: datetime | None, allowed: bool) -> None:
    assert may_trigger(last_trigger, SIX_HOURS, NOW) is allowed


def test_may_trigger_with_zero_cooldown_always_allows() -> None:
    assert may_trigger(NOW, timedelta(0), NOW) is True


# ---------------------------------------------------------------- baseline_time
ONE_HOUR = timedelta(hours=1)


def test_baseline_time_without_promotion_is_no_data() -> None:
    with pytest.raises(NoDataError, match="no promoted version"):
        baseline_time(None, ONE_HOUR, NOW)


def test_baseline_time_before_the_window_completes_is_no_data() -> None:
    promoted = NOW - timedelta(minutes=59)

    with pytest.raises(NoDataError, match=r"ends at 2026-01-01T12:01:00\+00:00"):
        baseline_time(promoted, ONE_HOUR, NOW)


@pytest.mark.parametrize("age", [ONE_HOUR, timedelta(hours=5), timedelta(days=30)], ids=["exactly", "hours", "days"])
def test_baseline_time_is_the_end_of_the_window_after_promotion(age: timedelta) -> None:
    promoted = NOW - age

    assert baseline_time(promoted, ONE_HOUR, NOW) == promoted + ONE_HOUR
