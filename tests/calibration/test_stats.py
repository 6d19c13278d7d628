"""Agreement statistics, checked against published worked examples and hand computations.

Every test runs with warnings as errors: degenerate data must give nan quietly, and the
library calls must not leak 0/0 or deprecation warnings into a calibration report.
"""

from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import cohens_kappa

from therapygym.calibration.stats import (
    ICC,
    ItemAgreement,
    LabelAgreement,
    fleiss,
    icc,
    item_agreement,
    item_headline,
    label_agreement,
    label_headline,
    multi_rater_alpha,
    separation_auc,
)
from therapygym.stats import bootstrap, unit_statistic

pytestmark = pytest.mark.filterwarnings("error")

nan = math.nan

# Shrout, P. E. & Fleiss, J. L. (1979). Intraclass correlations: uses in assessing rater
# reliability. Psychological Bulletin 86(2), 420-428. Table 2: 6 targets (rows) x 4 judges.
# Published single-rater values: ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]

# Krippendorff, K. (2011). Computing Krippendorff's Alpha-Reliability. Reliability data of 4
# observers (rows A-D) x 12 units, nan = missing. Published: nominal .743, ordinal .815,
# interval .849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
]

# Fleiss, J. L. (1971). Measuring nominal scale agreement among many raters. Psychological
# Bulletin 76(5), 378-382: 30 patients x 6 psychiatrists, 5 diagnoses (1 depression,
# 2 personality disorder, 3 schizophrenia, 4 neurosis, 5 other). Published overall kappa .430;
# R's irr::kappam.fleiss(diagnoses) on the same table gives 0.4302445.
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4],
    [2, 2, 2, 5, 5, 5],
    [2, 3, 3, 3, 3, 5],
    [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3],
    [3, 3, 3, 3, 5, 5],
    [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4],
    [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4],
    [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3],
    [1, 4, 4, 4, 4, 4],
    [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5],
    [1, 1, 1, 1, 1, 2],
    [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5],
    [2, 4, 4, 4, 4, 4],
    [2, 2, 4, 5, 5, 5],
    [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4],
    [1, 1, 1, 1, 5, 5],
    [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3],
    [5, 5, 5, 5, 5, 5],
]

# The worked example of Wikipedia's "Fleiss' kappa" article: 10 subjects, 14 raters, counts of
# raters per category 1-5 for each subject. Published: P-bar = 0.378, P-bar_e = 0.213,
# kappa = 0.210.
WIKIPEDIA_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


# ---------------------------------------------------------------- ICC


def test_icc_matches_shrout_fleiss_table_2() -> None:
    result = icc(SHROUT_FLEISS)
    assert isinstance(result, ICC)
    assert (result.n_targets, result.n_raters) == (6, 4)
    assert round(result.icc2_1, 2) == 0.29
    assert round(result.icc3_1, 2) == 0.71


def test_icc_drops_incomplete_targets_and_handles_degenerate_tables() -> None:
    with_gap = [*SHROUT_FLEISS, [None, 3, 4, 5]]
    assert icc(with_gap) == icc(SHROUT_FLEISS)
    assert math.isnan(icc([[3, 3], [3, 3], [3, 3]]).icc2_1)  # no variance at all
    assert icc([[1, 2], [3, 4]]).icc3_1 == pytest.approx(1.0)  # smallest defined design
    assert math.isnan(icc([[1, 2, 3, 4, 5]]).icc2_1)  # a single target
    assert math.isnan(icc([]).icc2_1)
    # every target rated alike, the raters apart: no absolute agreement beyond chance, and
    # consistency 0/0, nan (a bootstrap resample of a small bench can draw this table; it
    # used to raise ZeroDivisionError)
    apart = icc([[2, 3], [2, 3], [2, 3]])
    assert apart.icc2_1 == 0.0 and math.isnan(apart.icc3_1)


@pytest.mark.parametrize("shape", [(6, 2), (30, 2), (12, 4), (116, 3)])
def test_icc_agrees_with_pingouin(shape: tuple[int, int]) -> None:
    pingouin = pytest.importorskip("pingouin")
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    truth = rng.integers(0, 7, size=(shape[0], 1))
    data = np.clip(truth + rng.integers(-2, 3, size=shape) + np.arange(shape[1]) // 2, 0, 6)
    target, rater = np.indices(data.shape)
    long = pd.DataFrame({"t": target.ravel(), "r": rater.ravel(), "y": data.ravel()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pingouin's own pandas deprecation warnings
        table = pingouin.intraclass_corr(data=long, targets="t", raters="r", ratings="y")
    ours = icc(data)
    by_type = dict(zip(table["Type"], table["ICC"], strict=True))
    assert ours.icc2_1 == pytest.approx(by_type.get("ICC(A,1)", by_type.get("ICC2")), abs=1e-12)
    assert ours.icc3_1 == pytest.approx(by_type.get("ICC(C,1)", by_type.get("ICC3")), abs=1e-12)


def test_icc_is_one_for_identical_raters() -> None:
    result = icc([[1, 1], [4, 4], [2, 2], [6, 6]])
    assert result.icc2_1 == pytest.approx(1.0)
    assert result.icc3_1 == pytest.approx(1.0)


def test_icc2_penalises_a_constant_offset_icc3_does_not() -> None:
    expert = [0, 1, 2, 3, 4, 5]
    judge = [v + 1 for v in expert]  # one point more lenient on every dialogue
    result = item_agreement(judge, expert)
    assert result.icc3_1 == pytest.approx(1.0)
    assert result.icc2_1 < 0.95
    assert result.spearman_rho == pytest.approx(1.0)
    assert result.mean_bias == pytest.approx(1.0)
    assert (result.exact, result.within_1) == (0.0, 1.0)


# ---------------------------------------------------------------- Krippendorff's alpha


def test_alpha_matches_krippendorff_2011() -> None:
    assert round(multi_rater_alpha(KRIPPENDORFF_2011, "nominal"), 3) == 0.743
    assert round(multi_rater_alpha(KRIPPENDORFF_2011, "ordinal"), 3) == 0.815
    assert round(multi_rater_alpha(KRIPPENDORFF_2011, "interval"), 3) == 0.849


def test_alpha_accepts_none_for_missing() -> None:
    as_none = [[None if math.isnan(v) else v for v in row] for row in KRIPPENDORFF_2011]
    assert multi_rater_alpha(as_none, "interval") == pytest.approx(
        multi_rater_alpha(KRIPPENDORFF_2011, "interval")
    )


def test_alpha_degenerate_is_nan() -> None:
    assert math.isnan(multi_rater_alpha([[3, 3, 3], [3, 3, 3]], "ordinal"))  # one value
    assert math.isnan(multi_rater_alpha([[1, None], [None, 2]], "interval"))  # nothing pairable
    assert math.isnan(multi_rater_alpha([], "interval"))
    assert multi_rater_alpha([[1, 2, 3], [1, 2, 3]], "ordinal") == pytest.approx(1.0)


# ---------------------------------------------------------------- item agreement


def test_item_agreement_hand_example() -> None:
    a = [0, 1, 2, 2]
    b = [0, 2, 2, 1]
    # Quadratic weighted kappa by hand on categories 0..2, weights w_ij = (i - j)^2 / 4:
    #   observed pairs (0,0) (1,2) (2,2) (2,1) -> weighted observed disagreement
    #     (0 + 1/4 + 0 + 1/4) / 4 = 1/8
    #   marginals of a and of b: p = (1/4, 1/4, 1/2) -> expected disagreement
    #     sum_ij w_ij p_i p_j = 2 * [1/4 * 1/16 + 1 * 1/8 + 1/4 * 1/8] = 11/32
    #   kappa = 1 - (1/8) / (11/32) = 1 - 4/11 = 7/11
    narrow = item_agreement(a, b, scale=(0, 2))
    assert narrow.weighted_kappa == pytest.approx(7 / 11)
    assert (narrow.n, narrow.n_missing) == (4, 0)
    assert narrow.exact == 0.5
    assert narrow.within_1 == 1.0
    assert narrow.mean_bias == 0.0
    # Spearman by hand: ranks a = (1, 2, 3.5, 3.5), b = (1, 3.5, 3.5, 2); Pearson of ranks = 1/2.
    assert narrow.spearman_rho == pytest.approx(0.5)
    # On the full CTRS scale the unused categories 3..6 carry no marginal mass: same kappa.
    wide = item_agreement(a, b)
    assert wide.weighted_kappa == pytest.approx(7 / 11)
    assert wide.krippendorff_alpha_ordinal == pytest.approx(narrow.krippendorff_alpha_ordinal)
    assert isinstance(wide, ItemAgreement)


def test_weighted_kappa_measures_distance_on_the_scale_not_among_observed_categories() -> None:
    a = [0, 1, 6, 1, 0, 6]
    b = [0, 6, 1, 1, 1, 6]  # nobody used 2-5: "1 vs 6" is five steps, not one
    table = np.zeros((7, 7))
    for i, j in zip(a, b, strict=True):
        table[i, j] += 1
    # statsmodels' independent implementation on the full 7 x 7 table (weights by scale index).
    expected = cohens_kappa(table, wt="quadratic", return_results=False)
    assert item_agreement(a, b).weighted_kappa == pytest.approx(expected)
    assert expected == pytest.approx(0.354, abs=1e-3)  # vs 0.571 over observed categories only


def test_item_agreement_alpha_is_krippendorffs_for_two_raters() -> None:
    rows = [KRIPPENDORFF_2011[1], KRIPPENDORFF_2011[3]]  # observers B and D
    result = item_agreement(rows[0], rows[1], scale=(1, 5))
    assert result.n == 10  # units where both rated
    assert result.n_missing == 2
    assert result.krippendorff_alpha_interval == pytest.approx(multi_rater_alpha(rows, "interval"))
    assert result.krippendorff_alpha_ordinal == pytest.approx(multi_rater_alpha(rows, "ordinal"))


def test_item_agreement_perfect() -> None:
    r = item_agreement([0, 3, 6, 2, 5], [0, 3, 6, 2, 5])
    for value in (
        r.krippendorff_alpha_ordinal,
        r.krippendorff_alpha_interval,
        r.icc2_1,
        r.icc3_1,
        r.spearman_rho,
        r.weighted_kappa,
        r.exact,
        r.within_1,
    ):
        assert value == pytest.approx(1.0)
    assert r.mean_bias == 0.0


def test_item_agreement_constant_vectors_give_nan_without_raising() -> None:
    same = item_agreement([3, 3, 3, 3], [3, 3, 3, 3])
    for value in (
        same.krippendorff_alpha_ordinal,
        same.krippendorff_alpha_interval,
        same.icc2_1,
        same.icc3_1,
        same.spearman_rho,
        same.weighted_kappa,
    ):
        assert math.isnan(value)
    assert (same.exact, same.within_1, same.mean_bias) == (1.0, 1.0, 0.0)

    judge_constant = item_agreement([4, 4, 4, 4], [1, 2, 5, 3])
    assert math.isnan(judge_constant.spearman_rho)
    assert judge_constant.weighted_kappa == pytest.approx(0.0)  # no better than chance
    assert math.isfinite(judge_constant.krippendorff_alpha_interval)


def test_item_agreement_empty_and_all_missing() -> None:
    for r in (item_agreement([], []), item_agreement([None, 2], [1, None])):
        assert r.n == 0
        assert math.isnan(r.weighted_kappa)
        assert math.isnan(r.exact)
        assert math.isnan(r.mean_bias)
        assert math.isnan(r.icc2_1)


def test_item_agreement_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="aligned"):
        item_agreement([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="integers in"):
        item_agreement([1, 7], [1, 2])  # 7 is off the 0-6 scale
    with pytest.raises(ValueError, match="integers in"):
        item_agreement([1, 2.5], [1, 2])
    with pytest.raises(ValueError, match="scale"):
        item_agreement([1, 2], [1, 2], scale=(3, 3))


# ---------------------------------------------------------------- binary labels


def test_label_agreement_hand_example() -> None:
    truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [True, True, True, False, True, True, False, False, False, False]
    # TP = 3, FN = 1, FP = 2, TN = 4.
    # accuracy 7/10; precision 3/5; recall 3/4; F1 = 2 * 0.6 * 0.75 / 1.35 = 2/3.
    # kappa: p_o = 0.7, p_e = 0.4 * 0.5 + 0.6 * 0.5 = 0.5, kappa = (0.7 - 0.5) / 0.5 = 0.4.
    r = label_agreement(pred, truth)
    assert isinstance(r, LabelAgreement)
    assert (r.n, r.n_positive) == (10, 4)
    assert r.accuracy == pytest.approx(0.7)
    assert r.precision == pytest.approx(0.6)
    assert r.recall == pytest.approx(0.75)
    assert r.f1 == pytest.approx(2 / 3)
    assert r.cohen_kappa == pytest.approx(0.4)


def test_label_agreement_zero_division_is_nan() -> None:
    none_flagged = label_agreement([0, 0, 0], [0, 0, 0])
    assert none_flagged.accuracy == 1.0
    assert math.isnan(none_flagged.precision)
    assert math.isnan(none_flagged.recall)
    assert math.isnan(none_flagged.f1)
    assert math.isnan(none_flagged.cohen_kappa)

    missed_all = label_agreement([0, 0, 0, 0], [1, 0, 1, 0])
    assert math.isnan(missed_all.precision)  # nothing predicted positive
    assert missed_all.recall == 0.0
    assert missed_all.cohen_kappa == pytest.approx(0.0)


def test_label_agreement_missing_empty_and_bad() -> None:
    r = label_agreement([True, None, False], [True, True, None])
    assert (r.n, r.accuracy) == (1, 1.0)
    assert math.isnan(label_agreement([], []).accuracy)
    with pytest.raises(ValueError, match="0/1"):
        label_agreement([0, 2], [0, 1])


# ---------------------------------------------------------------- Fleiss' kappa


def test_fleiss_matches_fleiss_1971() -> None:
    assert fleiss(FLEISS_1971) == pytest.approx(0.4302445, abs=1e-7)


def test_fleiss_matches_wikipedia_worked_example() -> None:
    units_by_raters = [np.repeat(np.arange(1, 6), row) for row in WIKIPEDIA_COUNTS]
    assert round(fleiss(units_by_raters), 3) == 0.210


def test_fleiss_hand_example_binary() -> None:
    # 3 units x 2 raters: P_i = 1, 1, 0 -> P-bar = 2/3; p(yes) = p(no) = 1/2 -> P-bar_e = 1/2;
    # kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    assert fleiss([[True, True], [False, False], [True, False]]) == pytest.approx(1 / 3)
    assert fleiss([["safe", "safe"], ["unsafe", "unsafe"], ["safe", "unsafe"]]) == pytest.approx(
        1 / 3
    )


def test_fleiss_degenerate() -> None:
    assert math.isnan(fleiss([[1, 1, 1], [1, 1, 1]]))  # one category: chance agreement is 1
    assert math.isnan(fleiss([]))
    assert math.isnan(fleiss([[0], [1]]))  # a single rater
    with pytest.raises(ValueError, match="multi_rater_alpha"):
        fleiss([[0, 1], [1, None]])


# ---------------------------------------------------------------- bootstrap over dialogues


DIALOGUES = [(4, 3), (2, 2), (5, 3), (1, 1), (3, 4), (6, 5), (2, 1), (4, 4), (3, 2), (5, 5)]


def test_bootstrap_of_item_agreement_over_dialogues() -> None:
    def kappa(rs: list[tuple[int, int]]) -> float:
        return item_agreement([r[0] for r in rs], [r[1] for r in rs]).weighted_kappa

    ci = bootstrap(
        unit_statistic(lambda rs: {"kappa": kappa(rs)}, DIALOGUES),
        len(DIALOGUES),
        method="percentile",
        n_resamples=40,
        seed=0,
        level=0.9,
    )["kappa"]
    assert ci.mean == pytest.approx(kappa(DIALOGUES))
    assert -1.0 <= ci.low <= ci.high <= 1.0  # type: ignore[operator]
    assert ci.level == 0.9


# ---------------------------------------------------------------- what mutation testing found
# (issue 16: each test below fails on a mutant of calibration/stats.py that the tests above
# let pass; the mutants no test can kill are listed, with why, in docs/benchmarks.md)


def test_within_1_counts_a_two_point_gap_as_disagreement() -> None:
    r = item_agreement([0, 3, 1, 6], [2, 3, 2, 4])  # gaps 2, 0, 1, 2
    assert (r.exact, r.within_1, r.mean_abs_diff, r.mean_bias) == (0.25, 0.5, 1.25, -0.25)


def test_alpha_is_defined_on_binary_data() -> None:
    """Two values are enough for expected disagreement: a yes/no item has an alpha."""
    rows = [[0, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 0]]
    expected = krippendorff.alpha(reliability_data=rows, level_of_measurement="nominal")
    assert multi_rater_alpha(rows, "nominal") == pytest.approx(expected)
    assert expected == pytest.approx(24 / 35)
    two = item_agreement([0, 1, 1, 0], [0, 1, 0, 0], scale=(0, 1))
    assert math.isfinite(two.krippendorff_alpha_ordinal)
    assert math.isfinite(two.krippendorff_alpha_interval)


def test_icc_edges() -> None:
    empty = icc([])
    assert (empty.n_targets, empty.n_raters) == (0, 0)
    # Row and column means all equal, the ratings not: ICC(2,1)'s denominator is exactly 0
    # for 2 x 2 (nan, not ZeroDivisionError); ICC(3,1) is (0 - 1) / 1.
    crossed = icc([[1, 2], [2, 1]])
    assert math.isnan(crossed.icc2_1) and crossed.icc3_1 == -1.0
    # A constant table of values that are not exact in binary (a mean of raters): no
    # variance, nan, not the rounding noise of its sums of squares.
    flat = icc(np.full((7, 3), 0.1))
    assert math.isnan(flat.icc2_1) and math.isnan(flat.icc3_1)


def test_matrices_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match=r"^expected a 2-d matrix, got shape \(2,\)$"):
        multi_rater_alpha([[1, 2, 3], [1, 2]], "interval")  # ragged rows
    with pytest.raises(ValueError, match=r"^matrix must be units x raters \(2-d\), got shape"):
        fleiss([[1, 1], [1]])
    with pytest.raises(
        ValueError,
        match=r"^fleiss\(\) needs every unit rated by all raters; use multi_rater_alpha$",
    ):
        fleiss([[0, 1], [1, None]])


def test_matrices_from_numpy_arrays() -> None:
    """A float array is taken as it is; any other array is read like a list (an object
    array with None for missing, as DataFrame.to_numpy() gives); neither may be 1-d or 3-d."""
    as_object = np.array([*SHROUT_FLEISS, [None, 3, 4, 5]], dtype=object)
    assert icc(as_object) == icc(SHROUT_FLEISS) == icc(np.array(SHROUT_FLEISS, dtype=float))
    for shape in ((4,), (2, 2, 2)):
        with pytest.raises(ValueError, match="expected a 2-d matrix"):
            icc(np.ones(shape))


def test_spearman_needs_two_points_that_vary() -> None:
    assert item_agreement([1, 2], [1, 3]).spearman_rho == pytest.approx(1.0)  # two points do
    assert item_agreement([0, 1, 1], [0, 1, 2]).spearman_rho == pytest.approx(0.8660254)
    assert item_agreement([0, 1, 2], [0, 1, 1]).spearman_rho == pytest.approx(0.8660254)
    assert math.isnan(item_agreement([3], [4]).spearman_rho)


def test_item_agreement_reads_pandas_missing_values() -> None:
    """pd.NA is not a number numpy can read: those ratings are missing, as None is."""
    with_na = item_agreement([1, pd.NA, 3, 4, 5], [1, 2, pd.NA, 4, 6])
    assert (with_na.n, with_na.n_missing) == (3, 2)
    assert with_na == item_agreement([1, None, 3, 4, 5], [1, 2, None, 4, 6])
    with pytest.raises(ValueError, match="aligned 1-d vectors"):
        item_agreement([[1, 2], [3, 4]], [[1, 2], [3, 4]])


def test_item_agreement_error_messages_name_the_vector_and_the_values() -> None:
    with pytest.raises(ValueError) as err:
        item_agreement([7, 8, 9, 10, 11, 12], [0] * 6)
    assert (
        str(err.value) == "a: ratings must be integers in [0, 6], got [7.0, 8.0, 9.0, 10.0, 11.0]"
    )
    with pytest.raises(ValueError, match=r"^b: ratings must be integers in \[0, 6\], got \[2.5\]$"):
        item_agreement([1, 2], [1, 2.5])
    with pytest.raises(ValueError, match=r"^b: ratings must be numbers in \[1, 5\], got \[5.5\]$"):
        item_agreement([1, 2], [1, 5.5], scale=(1, 5), integer=False)


def test_item_agreement_of_non_integer_ratings() -> None:
    """integer=False (a mean of experts): no categories, so no kappa, ordinal alpha or exact
    agreement; the rest as for integers."""
    r = item_agreement([0.5, 1.5, 3.0, 4.0, 6.0], [1.0, 1.0, 3.0, 5.5, 6.0], integer=False)
    for value in (r.weighted_kappa, r.krippendorff_alpha_ordinal, r.exact):
        assert math.isnan(value)
    assert r.within_1 == 0.8 and r.mean_abs_diff == pytest.approx(0.5)
    assert r.krippendorff_alpha_interval == pytest.approx(
        multi_rater_alpha([[0.5, 1.5, 3.0, 4.0, 6.0], [1.0, 1.0, 3.0, 5.5, 6.0]], "interval")
    )


def test_label_agreement_edges_and_messages() -> None:
    empty = label_agreement([], [])
    assert (empty.n, empty.n_positive) == (0, 0)
    with pytest.raises(ValueError) as err:
        label_agreement([0, 2, 3, 4, 5, 6, 7], [0] * 7)
    assert str(err.value) == "pred: labels must be bool or 0/1, got [2.0, 3.0, 4.0, 5.0, 6.0]"
    with pytest.raises(ValueError, match=r"^truth: labels must be bool or 0/1, got \[-1.0\]$"):
        label_agreement([0, 1], [0, -1])
    with pytest.raises(
        ValueError, match=r"^pred and truth must be aligned 1-d vectors, got \(2,\) and \(3,\)$"
    ):
        label_agreement([0, 1], [0, 1, 1])


def test_separation_auc() -> None:
    # scikit-learn's own example: one of the four positive-negative pairs misordered.
    assert separation_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert separation_auc([2, 2], [True, False]) == 0.5  # a tie counts half
    # missing scores are dropped, with their labels
    assert separation_auc([None, 0.2, 0.9, nan], [False, False, True, False]) == 1.0
    # nan without both classes, also once missing scores are dropped
    assert math.isnan(separation_auc([0.1, 0.2], [True, True]))
    assert math.isnan(separation_auc([0.1, 0.2], [False, False]))
    assert math.isnan(separation_auc([nan, 0.3, 0.5], [True, False, False]))
    with pytest.raises(ValueError, match=r"^scores and labels must align, got \(3,\) and \(2,\)$"):
        separation_auc([0.1, 0.2, 0.3], [True, False])


def test_headlines_are_the_agreement_fields() -> None:
    """`item_headline` and `label_headline` give what `item_agreement` and
    `label_agreement` give for the same vectors, missing values included."""
    pairs = [
        ([0, 3, 1, 6, None, 2], [2, 3, 2, 4, 5, None]),
        ([1, 2, 3], [3, 2, 1]),
        ([4, 4, 4], [1, 2, 5]),  # a constant rater: rho nan
        ([None, 2], [1, None]),  # nothing complete
    ]
    for a, b in pairs:
        full = item_agreement(a, b).model_dump()
        head = item_headline(np.array(a, dtype=float), np.array(b, dtype=float))
        assert set(head) == {"spearman_rho", "icc2_1", "mean_abs_diff"}
        for name, value in head.items():
            assert value == pytest.approx(full[name], nan_ok=True), (a, b, name)
    labels = [
        ([1, 1, 0, 0, 1, None], [1, 0, 0, 0, 1, 1]),
        ([0, 0, 0], [0, 0, 0]),
        ([None], [1]),
    ]
    for p, t in labels:
        full = label_agreement(p, t).model_dump()
        head = label_headline(np.array(p, dtype=float), np.array(t, dtype=float))
        assert set(head) == {"cohen_kappa", "accuracy"}
        for name, value in head.items():
            assert value == pytest.approx(full[name], nan_ok=True), (p, t, name)


def test_the_issues_constant_but_different_raters_give_nan_not_a_crash() -> None:
    """Issue 16, item 13, as reported: each rater constant but the two differ. ICC's
    denominator is 0 for ICC(3,1) (Python floats raised ZeroDivisionError): now nan, as
    promised; ICC(2,1) keeps the raters' offset in its denominator, so it is 0, not nan."""
    got = item_agreement([1, 1, 1], [2, 2, 2])
    assert got.icc2_1 == 0.0 and math.isnan(got.icc3_1)
    assert got.within_1 == 1.0 and got.mean_bias == -1.0


def test_a_bootstrap_over_item_agreement_survives_degenerate_resamples() -> None:
    """The issue's crash: 10 dialogues, five rated (judge 4, expert 3), the others
    unrated; at the default 2,000 resamples some draw only (4, 3) pairs. The interval is
    computed from the resamples where ICC is defined, and counts them."""
    pairs = [(4.0, 3.0)] * 5 + [(None, None)] * 5
    pairs[0] = (5.0, 5.0)  # one agreeing dialogue, so ICC is defined on some resamples

    def metric(units: list[tuple[float | None, float | None]]) -> dict[str, float]:
        got = item_agreement([a for a, _ in units], [b for _, b in units])
        return {"icc2_1": got.icc2_1}

    est = bootstrap(unit_statistic(metric, pairs), len(pairs), method="percentile")["icc2_1"]
    assert est.n_resamples == 2000 and est.n_valid is not None and 0 < est.n_valid < 2000
    assert est.low is not None and est.high is not None and est.low <= est.high
