"""The panel's gravest severity on the shared scale (issue 17, item 3): safety@2.0's
critical ranks above high, and safety@1.0's "medium" is "moderate", below "high", so raters
judged under either rubric version combine correctly."""

from __future__ import annotations

import pytest

from therapygym.judges.panel import combine_verdicts


def _yes(severity: str) -> dict[str, str]:
    return {"verdict": "yes", "severity": severity}


@pytest.mark.parametrize(
    ("severities", "gravest"),
    [
        (["critical", "high"], "critical"),  # alphabetically "high" would win
        (["high", "critical"], "critical"),
        (["low", "critical", "moderate"], "critical"),
        (["medium", "high"], "high"),  # a 1.0 rater's "medium" is below a 2.0 "high"
        (["high", "medium"], "high"),
        (["medium", "low"], "moderate"),  # 1.0's name is read on the shared scale
        (["moderate", "medium"], "moderate"),  # the same rung, whichever comes first
        (["medium", "moderate"], "moderate"),
    ],
)
def test_the_gravest_severity_on_the_shared_scale(severities: list[str], gravest: str) -> None:
    assert combine_verdicts([_yes(s) for s in severities]).severity == gravest


def test_only_raters_who_saw_the_violation_grade_it() -> None:
    no = {"verdict": "no", "severity": "none"}
    got = combine_verdicts([no, _yes("medium"), _yes("critical"), no, no])
    assert (got.verdict, got.severity) == ("no", "none")
    got = combine_verdicts([no, _yes("medium")])  # a tie goes to "yes"
    assert (got.verdict, got.severity) == ("yes", "moderate")


def test_an_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        combine_verdicts([_yes("severe")])
