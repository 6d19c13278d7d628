"""The one statistics module: the bootstrap (its draws, both methods, against numpy and
SciPy), the mean every summary reports, the paired tests and the "mean [low, high]" formatter."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from therapygym.stats import (
    BOOTSTRAP_BATCH,
    Estimate,
    bootstrap,
    format_ci,
    holm,
    mean_ci,
    unit_statistic,
    wilcoxon_p,
    wilcoxon_p_floor,
)

nan = math.nan

# ---------------------------------------------------------------- bootstrap: resampling units


def _bias(records: list[tuple[int, int]]) -> float:
    return float(np.mean([judge - expert for judge, expert in records]))


DIALOGUES = [(4, 3), (2, 2), (5, 3), (1, 1), (3, 4), (6, 5), (2, 1), (4, 4), (3, 2), (5, 5)]


def percentile(metric: Callable[[list[Any]], float], units: list[Any], **options: Any) -> Estimate:
    """The percentile CI of one statistic of a list of units."""
    (ci,) = bootstrap(
        unit_statistic(lambda rs: {"value": metric(rs)}, units),
        len(units),
        method="percentile",
        **options,
    ).values()
    return ci


def test_bootstrap_is_deterministic_and_contains_point() -> None:
    first = percentile(_bias, DIALOGUES, n_resamples=200, seed=7)
    again = percentile(_bias, DIALOGUES, n_resamples=200, seed=7)
    other = percentile(_bias, DIALOGUES, n_resamples=200, seed=8)
    assert isinstance(first, Estimate)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.mean == pytest.approx(0.5)  # differences 1 0 2 0 -1 1 1 0 1 0
    assert first.low <= first.mean <= first.high
    assert first.low < first.high
    assert (first.n_resamples, first.n_valid, first.level, first.n) == (200, 200, 0.95, 10)


def test_bootstrap_resamples_units_with_replacement() -> None:
    seen: list[list[tuple[int, int]]] = []

    def record(rs: list[tuple[int, int]]) -> float:
        seen.append(rs)
        return 0.0

    percentile(record, DIALOGUES, n_resamples=20, seed=0)
    assert len(seen) == 21  # the point estimate, then one call per resample
    assert seen[0] == DIALOGUES
    for resample in seen[1:]:
        assert len(resample) == len(DIALOGUES)
        assert set(resample) <= set(DIALOGUES)  # whole records, never split
    assert any(len(set(r)) < len(DIALOGUES) for r in seen[1:])  # with replacement


def test_bootstrap_skips_nan_resamples() -> None:
    def needs_first(rs: list[tuple[int, int]]) -> float:
        return _bias(rs) if DIALOGUES[0] in rs else nan

    ci = percentile(needs_first, DIALOGUES, n_resamples=100, seed=1)
    assert ci.n_valid is not None and 0 < ci.n_valid < 100
    assert math.isfinite(ci.low) and math.isfinite(ci.high)  # type: ignore[arg-type]

    never = percentile(lambda rs: nan, DIALOGUES, n_resamples=10)
    assert never.n_valid == 0
    assert never.mean is None and never.low is None and never.high is None

    assert bootstrap(unit_statistic(lambda rs: {"v": _bias(rs)}, []), 0, method="percentile") == {}


def test_bootstrap_rejects_bad_arguments() -> None:
    statistic = unit_statistic(lambda rs: {"bias": _bias(rs)}, DIALOGUES)
    with pytest.raises(ValueError):
        bootstrap(statistic, 10, method="percentile", n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap(statistic, 10, method="percentile", level=1.0)
    with pytest.raises(ValueError, match="method"):
        bootstrap(statistic, 10, method="basic")  # type: ignore[arg-type]


@pytest.mark.parametrize("n_resamples", [7, BOOTSTRAP_BATCH, 250, 1000])
def test_percentile_bounds_are_numpy_quantiles_of_the_seeded_draws(n_resamples: int) -> None:
    """In batches or not, the resamples are `default_rng(seed).integers(0, n, (r, n))`,
    and the bounds are `np.quantile` of their statistics at (1 -/+ level) / 2."""
    x = np.random.default_rng(5).normal(size=37)
    draws = np.random.default_rng(11).integers(0, x.size, size=(n_resamples, x.size))
    means = x[draws].mean(axis=1)
    tail = (1 - 0.9) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    ci = bootstrap(
        lambda i: {"mean": x[i].mean(axis=-1)},
        x.size,
        method="percentile",
        n_resamples=n_resamples,
        seed=11,
        level=0.9,
    )["mean"]
    assert (ci.low, ci.high) == (low, high)
    assert ci.mean == x.mean() and ci.n_valid == n_resamples


def test_bca_is_scipys_bca_of_the_same_resamples() -> None:
    """Every named statistic gets SciPy's BCa interval, to the last bit."""
    x = np.random.default_rng(2).gamma(2.0, size=150)
    cis = bootstrap(
        lambda i: {"mean": x[i].mean(axis=-1), "median": np.median(x[i], axis=-1)},
        x.size,
        method="BCa",
        n_resamples=1500,
        seed=4,
    )
    for name, statistic in (("mean", np.mean), ("median", np.median)):
        expected = scipy_stats.bootstrap(
            (x,),
            statistic,
            n_resamples=1500,
            method="BCa",
            random_state=np.random.default_rng(4),
        ).confidence_interval
        assert (cis[name].low, cis[name].high) == (expected.low, expected.high)
    assert cis["mean"].low < cis["mean"].mean < cis["mean"].high


def _distinct(i: np.ndarray, axis: int = -1) -> np.ndarray:
    rows = i.reshape(-1, i.shape[-1])
    return np.array([np.unique(r).size for r in rows], dtype=float).reshape(i.shape[:-1])


def test_bca_falls_back_to_scipys_percentile_where_it_is_undefined() -> None:
    """Distinct units: every resample has fewer than the sample, so the bias correction is
    infinite and BCa undefined; the interval is SciPy's percentile one of the same draws."""
    n = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy warns that BCa cannot be computed
        (ci,) = bootstrap(
            lambda i: {"distinct": _distinct(i)}, n, method="BCa", n_resamples=300
        ).values()
        expected = scipy_stats.bootstrap(
            (np.arange(n),),
            _distinct,
            vectorized=True,
            n_resamples=300,
            batch=BOOTSTRAP_BATCH,
            method="percentile",
            random_state=np.random.default_rng(0),
        ).confidence_interval
    assert ci.mean == n and ci.high is not None and ci.high < n
    assert (ci.low, ci.high) == (expected.low, expected.high)


def test_unit_statistic_gives_one_value_per_sample() -> None:
    def metric(rs: list[str]) -> Mapping[str, float]:
        return {"count": float(len(rs)), "as": float(rs.count("a"))}

    statistic = unit_statistic(metric, ["a", "b", "c"])
    assert statistic(np.arange(3)) == {"count": 3.0, "as": 1.0}
    assert statistic(np.array([[0, 0, 1], [2, 2, 2]])) == {"count": [3.0, 3.0], "as": [2.0, 0.0]}


# ---------------------------------------------------------------- the mean with its CI


def test_mean_ci() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    est = mean_ci(values, seed=1)
    assert est.mean == 4.5 and est.low < 4.5 < est.high and est.n == 8  # type: ignore[operator]
    assert 2.5 < est.low < 4.0 and 5.0 < est.high < 6.5  # type: ignore[operator]
    assert mean_ci(values, seed=1) == est  # reproducible
    assert mean_ci([3.0, 3.0, 3.0]).low == 3.0
    assert mean_ci([]).mean is None
    assert mean_ci([2.0]) == Estimate(mean=2.0, low=None, high=None, n=1)
    assert mean_ci([None, 1.0, nan, 3.0], seed=1) == mean_ci([1.0, 3.0], seed=1)


def test_mean_ci_is_scipys_bca_and_records_no_details() -> None:
    """What summaries have always printed: SciPy's BCa of the mean (2000 resamples), with
    the mean itself correctly rounded; in the JSON only mean, low, high and n."""
    values = [0.1, 0.7, 0.2, 0.9, 0.3, 0.3, 0.6]
    expected = scipy_stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        n_resamples=2000,
        method="BCa",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    est = mean_ci(values, seed=9)
    assert (est.low, est.high) == (expected.low, expected.high)
    assert est.mean == math.fsum(values) / len(values)
    assert est.model_dump_json() == (
        f'{{"mean":{est.mean!r},"low":{est.low!r},"high":{est.high!r},"n":7}}'
    )
    assert Estimate.model_validate_json(est.model_dump_json()) == est


def test_batched_bootstrap_gives_the_unbatched_interval() -> None:
    """`mean_ci` passes SciPy a `batch` to bound its memory; the interval must be the one
    SciPy gives without it. 500 sessions: more than one batch of resamples and of BCa
    jackknife rows."""
    rng = np.random.default_rng(7)
    values = [float(v) for v in rng.integers(10, 60, size=500)]
    assert len(values) > BOOTSTRAP_BATCH
    unbatched = scipy_stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        confidence_level=0.95,
        n_resamples=2000,
        method="BCa",
        random_state=np.random.default_rng(3),
    ).confidence_interval
    est = mean_ci(values, seed=3)
    assert (est.low, est.high) == (unbatched.low, unbatched.high)


def test_estimate_json_keeps_recorded_details_only() -> None:
    plain = Estimate(mean=0.5, low=None, high=None, n=3)
    assert plain.model_dump() == {"mean": 0.5, "low": None, "high": None, "n": 3}
    full = Estimate(mean=0.5, low=0.1, high=0.9, n=3, level=0.9, n_resamples=50, n_valid=49)
    assert Estimate.model_validate_json(full.model_dump_json()) == full
    with pytest.raises(ValueError):
        full.mean = 0.6  # type: ignore[misc]  # frozen


# ---------------------------------------------------------------- paired tests


def test_wilcoxon_and_holm_edge_cases() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert math.isnan(wilcoxon_p([]))
        assert math.isnan(wilcoxon_p([3.0]))  # n < 2: not testable
        assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0  # all zero: no evidence of a difference
        assert wilcoxon_p([2.0, 0.0]) == 1.0  # one non-zero difference after dropping zeros
        assert wilcoxon_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # exact: 2 * 1/8
        assert wilcoxon_p([-1.0, -2.0, -3.0, -4.0, -5.0]) == pytest.approx(0.0625)
        assert wilcoxon_p([1.0, float("nan"), 2.0]) == pytest.approx(0.5)
    assert caught == []
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([None, 0.02, float("nan"), 0.5]) == [None, pytest.approx(0.04), None, 0.5]
    assert holm([]) == []
    assert [wilcoxon_p_floor(n) for n in (0, 1, 2, 5, 11)] == [None, None, 0.5, 0.0625, 2 / 2048]


# ---------------------------------------------------------------- the formatter


def test_format_ci_cases() -> None:
    full = Estimate(mean=48.5, low=43.0, high=54.04, n=12)
    assert format_ci(full) == "48.5 [43.0, 54.0]"
    assert format_ci(full, "{:.2f}") == "48.50 [43.00, 54.04]"
    assert format_ci(full, n=True) == "48.5 [43.0, 54.0] (n=12)"
    rate = Estimate(mean=0.25, low=0.05, high=0.5, n=4)
    assert format_ci(rate, "{:.0%}", n=True) == "25% [5%, 50%] (n=4)"
    single = Estimate(mean=3.0, low=None, high=None, n=1)
    assert format_ci(single) == "3.0"
    assert format_ci(single, "{:.0%}", n=True) == "300% (n=1)"
    half = Estimate(mean=3.0, low=2.0, high=None, n=2)
    assert format_ci(half) == "3.0"  # an interval needs both ends
    empty = Estimate(mean=None, low=None, high=None, n=0)
    assert format_ci(empty) == "—" == format_ci(None)
    assert format_ci(empty, n=True, missing="no data") == "no data"


# ---------------------------------------------------------------- what mutation testing found
# (issue 16: each test below fails on a mutant of stats.py that the tests above let pass;
# the mutants no test can kill are listed, with why, in docs/benchmarks.md)


def _mean_of(x: np.ndarray) -> Callable[[np.ndarray], Mapping[str, Any]]:
    return lambda i: {"mean": x[i].mean(axis=-1)}


def test_unit_statistic_names_come_from_the_first_sample() -> None:
    statistic = unit_statistic(lambda rs: {"count": float(len(rs))}, ["a", "b"])
    assert statistic(np.array([[1, 1]])) == {"count": [2.0]}  # a batch of one resample


def test_bootstrap_defaults_and_the_smallest_arguments() -> None:
    x = np.arange(12.0)
    default = bootstrap(_mean_of(x), x.size, method="percentile", n_resamples=50)
    assert default == bootstrap(_mean_of(x), x.size, method="percentile", n_resamples=50, seed=0)
    (one,) = bootstrap(_mean_of(x), x.size, method="percentile", n_resamples=1).values()
    assert (one.n_resamples, one.n_valid) == (1, 1) and one.low == one.high  # one draw
    with pytest.raises(ValueError, match=r"n_resamples must be >= 1, got 0"):
        bootstrap(_mean_of(x), x.size, method="percentile", n_resamples=0)
    for level in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"level must be in \(0, 1\), got {level}"):
            bootstrap(_mean_of(x), x.size, method="percentile", level=level)


def test_percentile_bounds_of_a_yes_no_statistic() -> None:
    """A statistic may give booleans (was a rare event seen in this resample?): the bounds
    are the quantiles of its draws as numbers (numpy has no quantile of booleans)."""
    seen = np.array([0, 1, 0, 0, 0, 0, 0, 0, 1, 0])
    draws = np.random.default_rng(3).integers(0, seen.size, size=(300, seen.size))
    counts = seen[draws].sum(axis=1)
    (ci,) = bootstrap(
        lambda i: {"twice": seen[i].sum(axis=-1) >= 2},
        seen.size,
        method="percentile",
        n_resamples=300,
        seed=3,
        level=0.5,
    ).values()
    low, high = np.quantile((counts >= 2).astype(float), [0.25, 0.75])
    assert (ci.mean, ci.low, ci.high) == (1.0, low, high)
    assert 0.0 < float(np.mean(counts >= 2)) < 1.0  # both answers among the draws


def test_bca_passes_level_and_records_the_details() -> None:
    x = np.random.default_rng(6).exponential(size=40)
    (ci,) = bootstrap(
        _mean_of(x), x.size, method="BCa", n_resamples=400, seed=2, level=0.8
    ).values()
    expected = scipy_stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=0.8,
        n_resamples=400,
        method="BCa",
        random_state=np.random.default_rng(2),
    ).confidence_interval
    assert (ci.low, ci.high) == (expected.low, expected.high)
    assert (ci.n, ci.level, ci.n_resamples, ci.n_valid) == (40, 0.8, 400, 400)


def test_bca_hands_the_statistic_batches_of_resamples() -> None:
    """Vectorised and in batches of at most `BOOTSTRAP_BATCH` rows (resamples and jackknife
    rows alike): one call per resample would be hundreds of calls, one call for all of them
    the n x n jackknife array that `BOOTSTRAP_BATCH` is there to avoid."""
    x = np.random.default_rng(1).normal(size=150)
    shapes: list[tuple[int, ...]] = []

    def mean(i: np.ndarray) -> Mapping[str, Any]:
        shapes.append(i.shape)
        return {"mean": x[i].mean(axis=-1)}

    bootstrap(mean, x.size, method="BCa", n_resamples=250)
    batches = [s for s in shapes if s != (150,)]  # (150,): the units as observed
    assert all(len(s) == 2 and s[0] <= BOOTSTRAP_BATCH for s in batches)
    assert sum(s[0] for s in batches if s[1] == 150) == 250  # every resample, in batches
    assert sum(s[0] for s in batches if s[1] == 149) == 150  # the jackknife, in batches
    assert len(shapes) < 10


def test_mean_ci_edges() -> None:
    assert mean_ci([]) == Estimate(mean=None, low=None, high=None, n=0)
    assert mean_ci([2.0, 2.0]) == Estimate(mean=2.0, low=2.0, high=2.0, n=2)
    # Every value the same: [mean, mean] with the correctly rounded mean, not a bootstrap
    # (numpy's mean of seven 0.1s is 0.09999999999999999).
    assert mean_ci([0.1] * 7) == Estimate(mean=0.1, low=0.1, high=0.1, n=7)
    two = mean_ci([1.0, 3.0])  # two values that differ are enough for an interval
    assert two.low is not None and two.high is not None
    assert 1.0 <= two.low < 2.0 < two.high <= 3.0
    values = [0.1, 0.7, 0.2, 0.9, 0.3, 0.3, 0.6]
    assert mean_ci(values) == mean_ci(values, seed=0)


def test_mean_ci_passes_its_level_and_computes_in_double_precision() -> None:
    values = [0.1, 0.7, 0.2, 0.9, 0.3, 0.3, 0.6]
    expected = scipy_stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        confidence_level=0.8,
        n_resamples=2000,
        method="BCa",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    est = mean_ci(values, seed=9, level=0.8)
    assert (est.low, est.high) == (expected.low, expected.high)
    # float32 values (a numpy or pandas column) give the interval of their float64 values
    singles = [np.float32(v) for v in values]
    assert mean_ci(singles, seed=9) == mean_ci([float(v) for v in singles], seed=9)


def test_format_ci_default_format_is_fixed_point() -> None:
    assert format_ci(Estimate(mean=math.inf, low=None, high=None, n=2)) == "inf"


def test_bca_of_a_count_is_computed_in_floats() -> None:
    """A statistic may count (numpy integers): BCa gets its values as floats, as SciPy's
    own BCa of the float counts (in integers its jackknife acceleration is nan)."""
    seen = np.array([0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0])
    (ci,) = bootstrap(
        lambda i: {"seen": seen[i].sum(axis=-1)}, seen.size, method="BCa", n_resamples=300
    ).values()
    expected = scipy_stats.bootstrap(
        (seen.astype(float),),
        np.sum,
        n_resamples=300,
        batch=BOOTSTRAP_BATCH,
        method="BCa",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    assert ci.low is not None and (ci.low, ci.high) == (expected.low, expected.high)
