"""Statistics shared by judges, calibration, probes and reports: one estimate-with-CI type
(`Estimate`), one bootstrap (`bootstrap`, BCa or percentile), the mean with its CI that every
summary reports (`mean_ci`), the paired tests and their multiple-comparison adjustment
(`wilcoxon_p`, `holm`), and the one "mean [low, high]" formatter (`format_ci`).

numpy, SciPy and statsmodels are imported inside the functions that use them: the CLI
imports this module for `format_ci` at start-up, and SciPy alone takes 0.7 s to import.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

Method = Literal["BCa", "percentile"]
T = TypeVar("T")

Statistic = Callable[["np.ndarray"], Mapping[str, "ArrayLike"]]
"""Named statistics of samples of units, given as unit indices (see `bootstrap`)."""

# Resamples (and BCa jackknife rows) computed at a time. Without it SciPy does all at once:
# the BCa jackknife alone is an n x n array, n the sessions per therapist, so one CI took
# 807 MB at n = 6,600 (10,000 sessions over 3 therapists) and would take about 20 GB at
# 33,000. In batches of 100 it takes 25 MB at n = 6,600 and 127 MB at 33,000, and is faster
# too (0.26 s against 1.4 s at 6,600). The interval is the same to the last bit: the batches
# draw the same random indices in the same order (tests/test_statistics.py).
BOOTSTRAP_BATCH = 100
DEFAULT_RESAMPLES = 2000

# Above this many values `mean_ci` gives the percentile interval instead of BCa. SciPy's BCa
# computes its jackknife as n statistics of n - 1 values, so its cost grows as n^2 (5 s per
# interval at n = 33,000, one interval per estimate of each therapist); the percentile
# interval drawn as counts costs the same at any n. On summary-shaped data at n = 1,000 the
# two cover the mean alike (94.5-96.5% for percentile, 93.5-97.8% for BCa, nominal 95%, 400
# samples each) and their ends differ by 3-7% of the interval's width, 14% for a rate of
# 0.3% (docs/report.md; benchmarks/bench_bootstrap_methods.py).
BCA_MAX_N = 1000
# Above BCA_MAX_N, data with at most n / this many distinct values (scores, rates) are
# resampled as multinomial counts of those values (`percentile_mean_ci`).
COUNTS_MIN_REPEATS = 16

_DETAILS = ("level", "n_resamples", "n_valid")


class Estimate(BaseModel):
    """A point estimate with its confidence interval: the one CI type of therapygym.

    `mean` is the point estimate (for a mean, the mean; for another statistic, its value on
    the units as observed); `low` and `high` bound the interval and are None where there is
    none (no data, a single unit, no usable resample); `n` counts the units. The bootstrap's
    details, `level`, `n_resamples` and `n_valid` (the resamples whose statistic was finite),
    are None where not recorded and then left out of the JSON, so summaries and probe reports
    keep their `{mean, low, high, n}`.
    """

    model_config = ConfigDict(frozen=True)

    mean: float | None
    low: float | None
    high: float | None
    n: int
    level: float | None = None
    n_resamples: int | None = None
    n_valid: int | None = None

    @model_serializer(mode="wrap")
    def _without_unrecorded_details(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _DETAILS}


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def unit_statistic(
    metric: Callable[[list[T]], Mapping[str, float]], units: Sequence[T]
) -> Statistic:
    """A `Statistic` from a function of a list of units (a dialogue's ratings, a person's
    answers): for units that are not numbers, at the price of one call per sample."""

    def statistic(indices: np.ndarray) -> Mapping[str, ArrayLike]:
        if indices.ndim == 1:
            return metric([units[i] for i in indices])
        rows = [metric([units[i] for i in row]) for row in indices]
        return {name: [row[name] for row in rows] for name in rows[0]}

    return statistic


def bootstrap(
    statistic: Statistic,
    n: int,
    *,
    method: Method,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Estimate]:
    """Confidence intervals for named statistics of `n` units, resampling the units with
    replacement (whole sessions, dialogues or persons: the ratings of one unit are not
    independent, so resampling single ratings would give intervals that are too narrow).

    `statistic` gets unit indices and returns, per name, the statistic of each sample: the
    units as observed come as `arange(n)` (one value per name back), resamples as an (r, n)
    array with one resample per row (r values per name back). Indices let a vectorised
    statistic do a batch at once (`mean_ci`) and let units be anything (`unit_statistic`).
    Resamples are drawn `BOOTSTRAP_BATCH` rows at a time from `numpy.random.default_rng(seed)`,
    the same draws for either method: deterministic for a given seed.

    `method="percentile"`: the (1 - level)/2 and (1 + level)/2 quantiles (`numpy.quantile`)
    of the resamples on which the statistic is finite; `n_valid` counts them (an agreement
    statistic is undefined on a resample without variance), and with none there is no interval.

    `method="BCa"`: the bias-corrected and accelerated interval, computed by
    `scipy.stats.bootstrap` (one call per name; the statistic must be finite on every
    resample, and n at least 2). Where BCa is undefined (a degenerate bootstrap distribution,
    e.g. a rare event seen in one session), the percentile interval SciPy gives for the same
    resamples.

    The point estimate is the statistic of the units as observed (None where not finite).
    Returns {} for no units.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    if n == 0:
        return {}
    import numpy as np

    points = {name: _finite(value) for name, value in statistic(np.arange(n)).items()}
    if method == "BCa":
        return {
            name: _bca(statistic, name, n, point, n_resamples=n_resamples, seed=seed, level=level)
            for name, point in points.items()
        }
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in points}
    for start in range(0, n_resamples, BOOTSTRAP_BATCH):
        rows = rng.integers(0, n, size=(min(BOOTSTRAP_BATCH, n_resamples - start), n))
        values = statistic(rows)
        for name in points:
            draws[name].append(np.asarray(values[name], dtype=float))
    tail = (1.0 - level) / 2.0
    out = {}
    for name, point in points.items():
        finite = np.concatenate(draws[name])
        finite = finite[np.isfinite(finite)]
        low = high = None
        if finite.size:
            low, high = (float(v) for v in np.quantile(finite, [tail, 1.0 - tail]))
        out[name] = Estimate(
            mean=point,
            low=low,
            high=high,
            n=n,
            level=level,
            n_resamples=n_resamples,
            n_valid=int(finite.size),
        )
    return out


def _bca(
    statistic: Statistic,
    name: str,
    n: int,
    point: float | None,
    *,
    n_resamples: int,
    seed: int,
    level: float,
) -> Estimate:
    """`bootstrap`'s BCa method for one statistic, percentile where BCa is undefined."""
    import numpy as np
    from scipy import stats

    def one(indices: np.ndarray, axis: int = -1) -> np.ndarray:  # SciPy's vectorised form
        return np.asarray(statistic(indices)[name], dtype=float)

    for method in ("BCa", "percentile"):
        result = stats.bootstrap(
            (np.arange(n),),
            one,
            vectorized=True,
            confidence_level=level,
            n_resamples=n_resamples,
            batch=BOOTSTRAP_BATCH,
            method=method,
            random_state=np.random.default_rng(seed),
        )
        low, high = (_finite(v) for v in result.confidence_interval)
        if low is not None and high is not None:
            break
    valid = int(np.isfinite(result.bootstrap_distribution).sum())
    return Estimate(
        mean=point, low=low, high=high, n=n, level=level, n_resamples=n_resamples, n_valid=valid
    )


def mean_ci(values: Sequence[float | None], *, seed: int = 0, level: float = 0.95) -> Estimate:
    """The mean of `values` with a bootstrap CI over them (`DEFAULT_RESAMPLES` resamples):
    what summaries, probes and the scorecard report. BCa up to `BCA_MAX_N` values
    (percentile where BCa is undefined), the percentile interval above it, whose cost is
    linear in n where BCa's jackknife is quadratic (`percentile_mean_ci`).

    None and nan values are dropped. No CI below two values, and [mean, mean] when every
    value is the same (the bootstrap has nothing to vary). The mean is `statistics.fmean`
    (correctly rounded). The bootstrap's details are not recorded: they are the same for
    every estimate of a summary.
    """
    clean = [v for v in values if v is not None and not math.isnan(v)]
    n = len(clean)
    if n == 0:
        return Estimate(mean=None, low=None, high=None, n=0)
    mean = statistics.fmean(clean)
    if n < 2 or len(set(clean)) == 1:
        same = mean if n >= 2 else None
        return Estimate(mean=mean, low=same, high=same, n=n)
    import numpy as np

    data = np.asarray(clean, dtype=float)
    if n > BCA_MAX_N:
        low, high = percentile_mean_ci(data, seed=seed, level=level)
        return Estimate(mean=mean, low=low, high=high, n=n)
    (ci,) = bootstrap(
        lambda indices: {"mean": data[indices].mean(axis=-1)},
        n,
        method="BCa",
        seed=seed,
        level=level,
    ).values()
    return Estimate(mean=mean, low=ci.low, high=ci.high, n=n)


def percentile_mean_ci(
    data: np.ndarray, *, seed: int, level: float, n_resamples: int = DEFAULT_RESAMPLES
) -> tuple[float | None, float | None]:
    """The percentile bootstrap interval of the mean of `data` (`mean_ci` above BCA_MAX_N).

    Resampling n values with replacement gives each distinct value a multinomial count (n
    trials, probability its share of the data), and a resample's mean depends on nothing
    else. So for data with few distinct values, as a summary's scores and 0/1 rates are,
    the resampled means are drawn as counts (`Generator.multinomial`): the same
    distribution of means as resampling indices, at a cost of resamples x distinct values
    rather than resamples x n (10 ms against 0.4 s per interval at n = 33,000). Data with
    many distinct values are resampled by index (`bootstrap`), which is then no dearer.
    """
    import numpy as np

    levels, counts = np.unique(data, return_counts=True)
    n = data.size
    if levels.size * COUNTS_MIN_REPEATS > n:
        (ci,) = bootstrap(
            lambda indices: {"mean": data[indices].mean(axis=-1)},
            n,
            method="percentile",
            n_resamples=n_resamples,
            seed=seed,
            level=level,
        ).values()
        return ci.low, ci.high
    rng = np.random.default_rng(seed)
    shares = counts / n
    means = np.concatenate(
        [
            rng.multinomial(n, shares, size=min(BOOTSTRAP_BATCH, n_resamples - start)) @ levels / n
            for start in range(0, n_resamples, BOOTSTRAP_BATCH)
        ]
    )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return _finite(low), _finite(high)


# ---------------------------------------------------------------- paired tests


def wilcoxon_p(differences: Sequence[float | None]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (zeros dropped, the
    "wilcox" method; exact for small n). Edge cases, without warnings: fewer than two
    differences -> nan (not testable); every difference zero -> 1.0 (no evidence of a
    difference); None and nan values are ignored."""
    import numpy as np
    from scipy import stats

    d = np.asarray([x for x in differences if x is not None and not math.isnan(x)], dtype=float)
    if d.size < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p if math.isfinite(p) else math.nan


def wilcoxon_p_floor(n: int) -> float | None:
    """The smallest two-sided p-value an exact signed-rank test can give with n non-zero
    differences (all of one sign): 2/2^n, capped at 1; None below n = 2. Above the alpha in
    use, no comparison over n pairs can be significant."""
    return None if n < 2 else min(1.0, 2.0 / 2**n)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values; None and nan entries stay None and are not counted."""
    from statsmodels.stats.multitest import multipletests

    keep = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(p_values)
    if keep:
        adjusted = multipletests([p_values[i] for i in keep], method="holm")[1]
        for i, p in zip(keep, adjusted, strict=True):
            out[i] = float(p)
    return out


# ---------------------------------------------------------------- the formatter


def format_ci(
    estimate: Estimate | None, fmt: str = "{:.1f}", *, n: bool = False, missing: str = "—"
) -> str:
    """`mean [low, high]`, each number through `fmt`; the mean alone when there is no
    interval (a single value); `missing` when there is no estimate or no mean. With `n`,
    the unit count follows: `mean [low, high] (n=12)`."""
    if estimate is None or estimate.mean is None:
        return missing
    text = fmt.format(estimate.mean)
    if estimate.low is not None and estimate.high is not None:
        text += f" [{fmt.format(estimate.low)}, {fmt.format(estimate.high)}]"
    return f"{text} (n={estimate.n})" if n else text
