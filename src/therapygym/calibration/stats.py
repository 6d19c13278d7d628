"""Agreement statistics for calibrating LLM judges against expert ratings.

A judge is only worth its numbers if it agrees with clinicians about as well as clinicians agree
with each other. This module computes that agreement with the statistics an expert reviewer
expects, delegating every estimator to a maintained library rather than re-deriving it:

* ``krippendorff`` for Krippendorff's alpha (ordinal and interval; missing data allowed),
* the intraclass correlations of Shrout & Fleiss (1979), ICC(2,1) (two-way random effects,
  absolute agreement, single rater) and ICC(3,1) (two-way mixed, consistency, single rater),
  from their ANOVA mean squares (see :func:`icc` for why, and how they are checked),
* ``scipy.stats.spearmanr`` for rank correlation,
* ``sklearn.metrics`` for Cohen's kappa (quadratic weights for ordinal CTRS items, unweighted for
  binary safety labels), accuracy / precision / recall / F1 and ROC AUC,
* ``statsmodels`` for Fleiss' kappa.

Unit of analysis. ICC and every other statistic here are computed at the item level: one rating
per dialogue per rater for a single CTRS item (``icc_at_item_level`` is the default and the only
mode offered). Computing ICC on per-model *means* instead averages away the within-model,
dialogue-to-dialogue disagreement and leaves a handful of well-separated points, which inflates
ICC toward 1 and says nothing about whether the judge can be trusted on one transcript. Likewise,
their confidence intervals (``therapygym.stats.bootstrap``, called by ``analysis``) resample whole
dialogues, because several ratings of the same dialogue are not independent observations.

Undefined values. Agreement coefficients are ratios of observed to expected disagreement; when
the ratings do not vary (a constant vector, a single category, too few units) the ratio is 0/0.
Those cases return ``nan`` instead of raising or warning, so a batch of items or a bootstrap run is
never interrupted by one degenerate item; malformed input (mismatched lengths, ratings off the
scale) still raises ``ValueError``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import krippendorff
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, model_validator
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

Level = Literal["nominal", "ordinal", "interval", "ratio"]

NAN = float("nan")


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_nan(cls, data: Any) -> Any:
        """calibration.json writes an undefined statistic (nan) as null, as JSON has no nan;
        read it back as nan, so that a report reads back (e.g. for `report --calibration`)."""
        if isinstance(data, Mapping):
            return {k: NAN if v is None else v for k, v in data.items()}
        return data


class ICC(_Result):
    """Single-rater intraclass correlations (Shrout & Fleiss 1979) for a targets x raters table.

    ``icc2_1`` (two-way random, absolute agreement) penalises a judge that is systematically
    harsher or more lenient than the expert; ``icc3_1`` (two-way mixed, consistency) does not, so
    the gap between them shows how much of the disagreement is a fixable offset.
    """

    n_targets: int
    n_raters: int
    icc2_1: float
    icc3_1: float


class ItemAgreement(_Result):
    """Agreement of two raters (judge vs expert) on one ordinal item over aligned dialogues.

    ``n`` counts complete pairs; ``n_missing`` the pairs dropped because either rating was
    missing (report it: ratings a judge failed to give are not missing at random).
    """

    n: int
    n_missing: int
    krippendorff_alpha_ordinal: float
    krippendorff_alpha_interval: float
    icc2_1: float
    icc3_1: float
    spearman_rho: float
    weighted_kappa: float
    exact: float
    within_1: float
    mean_bias: float
    mean_abs_diff: float


class LabelAgreement(_Result):
    """Agreement of predicted binary labels with reference ones; ``n_positive`` counts positive
    reference labels (prevalence matters when reading precision and kappa)."""

    n: int
    n_positive: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    cohen_kappa: float


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the 0/0 warnings that libraries emit for degenerate data (we return nan instead)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else NAN


def _as_float(values: ArrayLike) -> np.ndarray:
    """Ratings as float, with None (a rating that was not given) as nan."""
    try:
        return np.asarray(values, dtype=float)  # numpy reads None as nan
    except TypeError:  # pandas' NA and friends
        return np.array([NAN if pd.isna(v) else v for v in values], dtype=float)


def _as_matrix(matrix: ArrayLike) -> np.ndarray:
    """A 2-d float matrix, with None as nan; an empty input gives a 0 x 0 matrix."""
    if isinstance(matrix, np.ndarray) and matrix.dtype.kind == "f" and matrix.ndim == 2:
        # already float, nan for missing: the bootstrap's case (ICC of every pair in every
        # resample), where going through object arrays cost more than the ICC itself
        return matrix if matrix.size else np.empty((0, 0))
    arr = np.asarray(matrix, dtype=object)
    if arr.size == 0:
        return np.empty((0, 0))
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-d matrix, got shape {arr.shape}")
    return np.array([_as_float(row) for row in arr], dtype=float)


# ---------------------------------------------------------------- Krippendorff's alpha


def _alpha(data: np.ndarray, level: Level, value_domain: Sequence[Any] | None = None) -> float:
    """Krippendorff's alpha of a raters x units float matrix, nan where it is undefined."""
    if data.ndim != 2 or data.size == 0:
        return NAN
    observed = ~np.isnan(data)
    pairable = observed.sum(axis=0) >= 2
    if not pairable.any():  # no unit rated twice: no observed disagreement to speak of
        return NAN
    if np.unique(data[:, pairable][observed[:, pairable]]).size < 2:  # no expected disagreement
        return NAN
    with _quiet():
        value = krippendorff.alpha(
            reliability_data=data, level_of_measurement=level, value_domain=value_domain
        )
    return _finite(value)


def multi_rater_alpha(matrix: ArrayLike, level: Level) -> float:
    """Krippendorff's alpha for a raters x units matrix with nan (or None) for missing ratings.

    This is the human-human ceiling: experts rate overlapping subsets of dialogues, so the design
    is incomplete, and alpha (unlike ICC or Fleiss' kappa) uses every pairable rating without
    listwise deletion. ``level`` is the metric: "ordinal" or "interval" for CTRS items, "nominal"
    for numerically coded categories. Returns nan when no unit has two ratings or all values
    are equal.
    """
    return _alpha(_as_matrix(matrix), level)


# ---------------------------------------------------------------- ICC


def icc(matrix: ArrayLike) -> ICC:
    """ICC(2,1) and ICC(3,1) for a targets x raters matrix (targets = dialogues).

    Shrout & Fleiss (1979) from the two-way ANOVA mean squares: rows (targets), columns
    (raters) and residual. Written out rather than delegated because the bootstrap needs
    thousands of them per item: pingouin's ``intraclass_corr`` costs about 9 ms a call (it
    builds a long DataFrame and all six forms with F tests), these lines tens of
    microseconds. The tests check them against the published Shrout & Fleiss table and
    against pingouin on random tables.

    Targets with any missing rating are dropped (the two-way ANOVA needs a complete design; use
    :func:`multi_rater_alpha` for incomplete data). Returns nan when the ICC is undefined: fewer
    than two targets or raters, or no variance.
    """
    data = _as_matrix(matrix)
    if data.ndim != 2 or data.size == 0:
        return ICC(n_targets=0, n_raters=0, icc2_1=NAN, icc3_1=NAN)
    data = data[~np.isnan(data).any(axis=1)]
    n, k = data.shape
    if n < 2 or k < 2 or np.ptp(data) == 0:
        return ICC(n_targets=n, n_raters=k, icc2_1=NAN, icc3_1=NAN)
    grand = data.mean()
    ss_rows = k * float(((data.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((data.mean(axis=0) - grand) ** 2).sum())
    ss_error = float(((data - grand) ** 2).sum()) - ss_rows - ss_cols
    ms_rows = ss_rows / (n - 1)
    ms_cols = ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    # Python floats: a zero denominator (every target rated alike, the raters apart) would
    # raise ZeroDivisionError, not give nan, so it is tested for.
    den2 = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    den3 = ms_rows + (k - 1) * ms_error
    icc2 = (ms_rows - ms_error) / den2 if den2 else NAN
    icc3 = (ms_rows - ms_error) / den3 if den3 else NAN
    return ICC(n_targets=n, n_raters=k, icc2_1=_finite(icc2), icc3_1=_finite(icc3))


# ---------------------------------------------------------------- two raters, one ordinal item


def _check_scale(values: np.ndarray, scale: tuple[int, int], name: str, integer: bool) -> None:
    lo, hi = scale
    if not (isinstance(lo, int | np.integer) and isinstance(hi, int | np.integer) and lo < hi):
        raise ValueError(f"scale must be two integers (low, high) with low < high, got {scale}")
    off_scale = (values < lo) | (values > hi)
    if integer:
        off_scale |= values != np.round(values)
    off = values[off_scale]
    if off.size:
        kind = "integers" if integer else "numbers"
        raise ValueError(f"{name}: ratings must be {kind} in [{lo}, {hi}], got {off[:5].tolist()}")


def item_agreement(
    a: Sequence[float | None] | ArrayLike,
    b: Sequence[float | None] | ArrayLike,
    *,
    scale: tuple[int, int] = (0, 6),
    integer: bool = True,
) -> ItemAgreement:
    """Agreement of two aligned rating vectors for one item (e.g. judge ``a`` vs expert ``b``).

    Position i of both vectors is the same dialogue. Pairs where either rating is missing (None
    or nan) are dropped. Ratings must be integers on ``scale`` (CTRS items: 0-6). The quadratic
    weighted kappa is given every category of the scale as a label: sklearn otherwise weights by
    position among the categories observed, so if nobody used 2 to 5, "1 vs 6" would weigh as
    one step, like "0 vs 1". ``mean_bias`` is mean(a - b): positive means ``a`` rates higher;
    ``mean_abs_diff`` is mean(|a - b|), in scale points.

    Several coefficients are reported because each answers a different question: alpha and
    weighted kappa are chance-corrected agreement (ordinal distances), ICC(2,1) is absolute
    agreement and ICC(3,1) consistency, Spearman's rho is rank order only, and exact / within-1
    are the shares a clinician reads directly.

    With ``integer=False`` either vector may hold non-integer values on the scale (a mean of
    several experts, or of a judge's k samples). The statistics that need categories --
    weighted kappa, ordinal alpha, exact agreement -- are then nan rather than computed on
    values rounded by a rule the reader did not choose; the others are unchanged.
    """
    x_all, y_all = _as_float(a), _as_float(b)
    if x_all.shape != y_all.shape or x_all.ndim != 1:
        raise ValueError(
            f"a and b must be aligned 1-d vectors, got {x_all.shape} and {y_all.shape}"
        )
    keep = ~(np.isnan(x_all) | np.isnan(y_all))
    x, y = x_all[keep], y_all[keep]
    _check_scale(x, scale, "a", integer)
    _check_scale(y, scale, "b", integer)
    n = int(x.size)
    lo, hi = int(scale[0]), int(scale[1])
    domain = list(range(lo, hi + 1))
    pair = np.vstack([x, y])  # raters x units, the layout krippendorff expects
    two = icc(np.column_stack([x, y]))  # targets x raters
    rho = _spearman(x, y)
    kappa = exact = within_1 = bias = mad = NAN
    if n:
        diff = x - y
        within_1, bias = float(np.mean(np.abs(diff) <= 1)), float(np.mean(diff))
        mad = float(np.mean(np.abs(diff)))
        if integer:
            exact = float(np.mean(diff == 0))
            with _quiet():
                kappa = _finite(
                    cohen_kappa_score(
                        x.astype(int), y.astype(int), labels=domain, weights="quadratic"
                    )
                )

    return ItemAgreement(
        n=n,
        n_missing=int((~keep).sum()),
        krippendorff_alpha_ordinal=_alpha(pair, "ordinal", domain) if integer else NAN,
        krippendorff_alpha_interval=_alpha(pair, "interval"),
        icc2_1=two.icc2_1,
        icc3_1=two.icc3_1,
        spearman_rho=rho,
        weighted_kappa=kappa,
        exact=exact,
        within_1=within_1,
        mean_bias=bias,
        mean_abs_diff=mad,
    )


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of complete aligned vectors; nan without two points or variance."""
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return NAN
    with _quiet():
        return _finite(spearmanr(x, y).statistic)


ITEM_HEADLINE = ("spearman_rho", "icc2_1", "mean_abs_diff")
"""The `ItemAgreement` fields averaged over rater pairs (see :func:`item_headline`)."""


def item_headline(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Spearman's rho, ICC(2,1) and mean |a - b| of two aligned rating vectors (nan = missing),
    with the same values :func:`item_agreement` gives for them.

    These are the statistics a mean over rater pairs is taken of: they are defined for a
    mean of raters as well as for integer scores, and cheap enough to recompute for every
    pair (and every expert against the others) in each bootstrap resample; a weighted kappa
    costs about a millisecond a call in scikit-learn, so it is reported per pair only.
    The vectors are not checked against a scale here: callers check them once with
    :func:`item_agreement` before resampling them.
    """
    x_all, y_all = _as_float(a), _as_float(b)
    keep = ~(np.isnan(x_all) | np.isnan(y_all))
    x, y = x_all[keep], y_all[keep]
    return {
        "spearman_rho": _spearman(x, y),
        "icc2_1": icc(np.column_stack([x, y])).icc2_1 if x.size else NAN,
        "mean_abs_diff": float(np.mean(np.abs(x - y))) if x.size else NAN,
    }


# ---------------------------------------------------------------- binary labels


def _binary(values: Sequence[bool | int | None] | ArrayLike, name: str) -> np.ndarray:
    arr = _as_float(values)
    bad = arr[~np.isnan(arr) & (arr != 0) & (arr != 1)]
    if bad.size:
        raise ValueError(f"{name}: labels must be bool or 0/1, got {bad[:5].tolist()}")
    return arr


def label_agreement(
    pred: Sequence[bool | int | None] | ArrayLike,
    truth: Sequence[bool | int | None] | ArrayLike,
) -> LabelAgreement:
    """Agreement of binary predictions (e.g. a judge's safety flag) with reference labels.

    Positive = True/1 (a violation). Pairs with a missing label (None) are dropped. Precision,
    recall and F1 are nan, not 0 with a warning, when their denominator is empty (no predicted or
    no true positives): "undefined" must not read as "the judge misses everything". Cohen's kappa
    (unweighted) corrects accuracy for chance, which matters because violations are rare.
    """
    p_all, t_all = _binary(pred, "pred"), _binary(truth, "truth")
    if p_all.shape != t_all.shape or p_all.ndim != 1:
        raise ValueError(
            f"pred and truth must be aligned 1-d vectors, got {p_all.shape} and {t_all.shape}"
        )
    keep = ~(np.isnan(p_all) | np.isnan(t_all))
    p, t = p_all[keep].astype(int), t_all[keep].astype(int)
    n = int(p.size)
    if not n:
        return LabelAgreement(
            n=0, n_positive=0, accuracy=NAN, precision=NAN, recall=NAN, f1=NAN, cohen_kappa=NAN
        )
    with _quiet():
        # One call for all three (each alone re-validates and re-counts the labels; this
        # runs thousands of times in a bootstrap).
        precision, recall, f1, _ = precision_recall_fscore_support(
            t, p, labels=[0, 1], pos_label=1, average="binary", zero_division=np.nan
        )
        return LabelAgreement(
            n=n,
            n_positive=int(t.sum()),
            accuracy=_finite(accuracy_score(t, p)),
            precision=_finite(precision),
            recall=_finite(recall),
            f1=_finite(f1),
            cohen_kappa=_finite(cohen_kappa_score(t, p, labels=[0, 1])),
        )


LABEL_HEADLINE = ("cohen_kappa", "accuracy")
"""The `LabelAgreement` fields averaged over rater pairs (see :func:`label_headline`)."""


def label_headline(
    pred: Sequence[bool | int | None] | ArrayLike, truth: Sequence[bool | int | None] | ArrayLike
) -> dict[str, float]:
    """Cohen's kappa and accuracy of aligned binary labels (nan = missing), as
    :func:`label_agreement` computes them, without the precision/recall call that triples
    its cost: what a mean over rater pairs needs in each bootstrap resample. Unchecked
    input, like :func:`item_headline`."""
    p_all, t_all = _as_float(pred), _as_float(truth)
    keep = ~(np.isnan(p_all) | np.isnan(t_all))
    p, t = p_all[keep].astype(int), t_all[keep].astype(int)
    if not p.size:
        return {"cohen_kappa": NAN, "accuracy": NAN}
    with _quiet():
        return {
            "cohen_kappa": _finite(cohen_kappa_score(t, p, labels=[0, 1])),
            "accuracy": _finite(accuracy_score(t, p)),
        }


# ---------------------------------------------------------------- Fleiss' kappa


def fleiss(matrix: ArrayLike) -> float:
    """Fleiss' kappa for a units x raters matrix of categorical labels (bool, int or str).

    For several raters labelling every unit (e.g. a panel of judges, or experts, flagging safety
    violations). Each unit must have the same number of ratings; raters need not be the same
    people. With missing ratings use ``multi_rater_alpha(matrix.T, "nominal")`` instead. Returns
    nan when kappa is undefined (no units, fewer than two raters, a single category used).
    """
    data = np.asarray(matrix, dtype=object)
    if data.size == 0:
        return NAN
    if data.ndim != 2:
        raise ValueError(f"matrix must be units x raters (2-d), got shape {data.shape}")
    if pd.isna(data).any():
        raise ValueError("fleiss() needs every unit rated by all raters; use multi_rater_alpha")
    if data.shape[1] < 2:
        return NAN
    labels = np.asarray(data.tolist())  # a plain dtype again, for np.unique
    counts, categories = aggregate_raters(labels)
    if len(categories) < 2:
        return NAN
    with _quiet():
        return _finite(fleiss_kappa(counts, method="fleiss"))


# ---------------------------------------------------------------- separation


def separation_auc(scores: Sequence[float | None] | ArrayLike, positive: Sequence[bool]) -> float:
    """ROC AUC of ``scores`` for telling positive units (e.g. expert-rated high quality) from
    the rest: the probability that a random positive outscores a random negative, ties half.
    Units with a missing score are dropped; nan when either class is empty."""
    x = _as_float(scores)
    y = np.asarray(positive, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"scores and labels must align, got {x.shape} and {y.shape}")
    keep = ~np.isnan(x)
    x, y = x[keep], y[keep]
    if y.all() or not y.any():
        return NAN
    return _finite(roc_auc_score(y, x))
