"""Panel combination: what mutation testing found no test looking at (issue 16, item 15).

Each test here fails on a mutant of judges/panel.py that survived the earlier suite:
severity picked without the severity order, the SD of a single rater, raters counted
twice or errors counted as raters, and the response dimensions ignoring the aggregation.
"""

from __future__ import annotations

import pytest

from therapygym.judges.panel import (
    combine_check,
    combine_ctrs,
    combine_response,
    combine_safety,
    combine_scores,
    combine_verdicts,
    displaced_ctrs,
    raters,
)
from therapygym.records import ScoreRecord


def _record(rubric: str, result: dict | None, *, sample: int = 0, target: str = "", error=None):
    return ScoreRecord(
        score_id=f"{rubric}-{sample}-{target}",
        session_id="s",
        judge="j",
        rubric_id=rubric,
        rubric_version="1",
        prompt_fingerprint="f",
        sample=sample,
        target=target,
        result=result,
        error=error,
    )


def _yes(severity: str) -> dict[str, str]:
    return {"verdict": "yes", "severity": severity}


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        (["high", "medium"], "high"),  # alphabetically "medium" would win
        (["medium", "high"], "high"),
        (["low", "moderate"], "moderate"),  # by list position "low" and "moderate" flip
        (["moderate", "low"], "moderate"),
    ],
)
def test_the_most_severe_yes_wins_by_clinical_order(severities: list[str], expected: str) -> None:
    combined = combine_verdicts([_yes(s) for s in severities])
    assert (combined.verdict, combined.severity) == ("yes", expected)


def test_the_severity_of_no_raters_is_not_counted() -> None:
    combined = combine_verdicts([_yes("low"), _yes("low"), {"verdict": "no", "severity": "high"}])
    assert (combined.verdict, combined.severity, combined.raters) == ("yes", "low", 3)


def test_a_single_rater_has_no_spread() -> None:
    one = combine_scores([5.0], "mean")
    assert (one.value, one.raters, one.sd, one.range) == (5.0, 1, 0.0, 0.0)
    two = combine_scores([1.0, 5.0], "median")
    assert (two.value, two.sd, two.range) == (3.0, 2.0, 4.0)


def test_errors_and_empty_results_are_not_raters() -> None:
    good = _record("ctrs", {"items": {"agenda": {"score": 4}}})
    failed = _record("ctrs", {"items": {"agenda": {"score": 0}}}, sample=1, error="bad json")
    empty = _record("ctrs", None, sample=2)
    assert raters([good, failed, empty]) == [good]
    combined = combine_ctrs([good, failed, empty], "mean")["agenda"]
    assert (combined.value, combined.raters) == (4.0, 1)
    safety = _record("safety", {"labels": {"x": _yes("high")}}, error="re-ask failed")
    assert combine_safety([safety]) == {}


def test_check_counts_each_rater_once() -> None:
    records = [
        _record("check", {"answers": {"q": {"answer": "yes"}}}, sample=0),
        _record("check", {"answers": {"q": {"answer": "yes"}}}, sample=1),
        _record("check", {"answers": {"q": {"answer": "no"}}}, sample=2),
        _record("check", {"answers": {"q": {"answer": "no"}}}, sample=3, error="invalid"),
    ]
    combined = combine_check(records)["q"]
    assert (combined.verdict, combined.raters) == ("yes", 3)
    assert combined.agreement == pytest.approx(2 / 3)


def test_response_dimensions_follow_the_aggregation() -> None:
    """Per turn the raters combine by the chosen aggregation, then turns are averaged."""
    records = [
        _record("response", {"dimensions": {"empathy": v}}, sample=k, target=turn)
        for turn, values in (("t1", [1, 2, 6]), ("t3", [4, 4, 5]))
        for k, v in enumerate(values)
    ]
    mean = combine_response(records, "mean")["empathy"]
    median = combine_response(records, "median")["empathy"]
    majority = combine_response(records, "majority")["empathy"]
    assert mean.value == pytest.approx((3.0 + 13 / 3) / 2)
    assert median.value == pytest.approx((2.0 + 4.0) / 2)
    assert majority.value == pytest.approx((1.0 + 4.0) / 2)  # t1: no majority, lowest wins
    assert (mean.raters, mean.range) == (3, 5.0)


# ---------------------------------------------------------------- what mutation testing found
# (issue 16: each test below fails on a mutant of judges/panel.py that the tests above let
# pass; the mutants no test can kill are listed, with why, in docs/benchmarks.md)

_NO = {"verdict": "no", "severity": "none"}
_NA = {"verdict": "not_applicable", "severity": "none"}


def test_verdict_majorities_and_ties() -> None:
    no = combine_verdicts([_NO, _NO, _yes("high")])  # "no" wins; the minority's severity is not
    assert (no.verdict, no.severity, no.raters) == ("no", "none", 3)
    assert no.agreement == pytest.approx(2 / 3)
    tie = combine_verdicts([_NO, _yes("moderate")])  # a tie with "yes" goes to "yes"
    assert (tie.verdict, tie.severity, tie.agreement) == ("yes", "moderate", 0.5)
    # a tie without "yes": the first in alphabetical order, whichever came first
    for order in ([_NA, _NO], [_NO, _NA]):
        assert combine_verdicts(order).verdict == "no"
    assert combine_verdicts([_NA, _NA, _NO]).verdict == "not_applicable"


def test_safety_combines_each_label_across_raters() -> None:
    records = [
        _record("safety", {"labels": {"harm": _yes("low"), "stigma": _NO}}, sample=0),
        _record("safety", {"labels": {"harm": _yes("high"), "stigma": _NO}}, sample=1),
        _record("safety", {"labels": {"harm": _NO, "stigma": _yes("moderate")}}, sample=2),
    ]
    combined = combine_safety(records)
    assert set(combined) == {"harm", "stigma"}
    harm, stigma = combined["harm"], combined["stigma"]
    assert (harm.verdict, harm.severity, harm.raters) == ("yes", "high", 3)
    assert harm.agreement == pytest.approx(2 / 3)
    assert (stigma.verdict, stigma.severity, stigma.raters) == ("no", "none", 3)


def test_ctrs_items_follow_the_aggregation() -> None:
    records = [
        _record("ctrs", {"items": {"agenda": {"score": s}}}, sample=k)
        for k, s in enumerate([1, 2, 6])
    ]
    assert combine_ctrs(records, "mean")["agenda"].value == 3.0
    assert combine_ctrs(records, "median")["agenda"].value == 2.0
    assert combine_ctrs(records, "majority")["agenda"].value == 1.0


def test_check_tie_and_severity() -> None:
    records = [
        _record("check", {"answers": {"q": {"answer": a}}}, sample=k)
        for k, a in enumerate(["yes", "no"])
    ]
    tie = combine_check(records)["q"]
    assert (tie.verdict, tie.raters, tie.agreement, tie.severity) == ("tie", 2, 0.5, "none")
    one = combine_check(records[:1])["q"]
    assert (one.verdict, one.severity) == ("yes", "none")


def _ctrs2(scored: dict[str, int], displaced: tuple[str, ...], *, sample: int = 0) -> ScoreRecord:
    """A ctrs@2.0 rater: items it scored, and items it marked displaced by a risk pivot."""
    result = {
        "items": {item: {"score": v} for item, v in scored.items()},
        "displaced": {item: {"evidence": ["T1", "T2"]} for item in displaced},
    }
    return _record("ctrs", result, sample=sample)


def test_an_item_is_displaced_when_at_least_half_of_its_raters_mark_it() -> None:
    """Each item on its own: agenda marked by one of two raters (a tie: displaced, since a
    pivot to risk must not cost the therapist), feedback by both, homework by one of three
    (scored), pacing by nobody. Raters are those who rated that item, scored or marked."""
    records = [
        _ctrs2({"pacing": 4, "homework": 2}, ("agenda", "feedback"), sample=0),
        _ctrs2({"agenda": 3, "pacing": 5, "homework": 3}, ("feedback",), sample=1),
        _ctrs2({"pacing": 6}, ("homework",), sample=2),
    ]
    got = displaced_ctrs(records)
    assert set(got) == {"agenda", "feedback"}
    assert (got["agenda"].raters, got["agenda"].agreement) == (2, 0.5)
    assert (got["feedback"].raters, got["feedback"].agreement) == (2, 1.0)
    # homework: one of three marked it, under half, so the panel scores it
    assert "homework" not in got
    assert set(combine_ctrs(records, "mean")) == {"pacing", "homework"}


def test_two_of_three_markers_displace_and_errors_are_not_raters() -> None:
    records = [
        _ctrs2({}, ("agenda",), sample=0),
        _ctrs2({}, ("agenda",), sample=1),
        _ctrs2({"agenda": 6}, (), sample=2),
        _record("ctrs", None, sample=3, error="invalid JSON"),  # a failed call rates nothing
        _record("ctrs", {"items": {"agenda": {"score": 6}}}, sample=4, error="late"),
    ]
    got = displaced_ctrs(records)
    assert got["agenda"].raters == 3 and got["agenda"].agreement == pytest.approx(2 / 3)


def test_ctrs_1_0_records_have_no_displaced_items() -> None:
    """1.0 results hold only scored items: nothing is displaced, whatever the panel."""
    records = [_record("ctrs", {"items": {"agenda": {"score": 2}}}, sample=i) for i in range(3)]
    assert displaced_ctrs(records) == {}
