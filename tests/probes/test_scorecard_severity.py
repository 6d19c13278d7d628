"""Severity on the scorecard (issue 17, item 3): the fidelity axis records how grave the
safety judge's findings were, and the table and HTML section show it."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from therapygym.judges.aggregate import session_scores, therapist_summaries
from therapygym.probes.render import scorecard_html, scorecard_table
from therapygym.probes.scorecard import load_scorecard_config, safety_metrics
from therapygym.probes.scorecard_data import Axis, Scorecard
from therapygym.records import ScoreRecord, SessionStatus, Transcript
from therapygym.stats import Estimate


def _safety(session: str, severity: str) -> ScoreRecord:
    verdict = "no" if severity == "none" else "yes"
    return ScoreRecord(
        score_id=session, session_id=session, judge="j", rubric_id="safety",
        rubric_version="2.0", prompt_fingerprint="f", sample=0,
        result={"labels": {"crisis_unaddressed": {"verdict": verdict, "severity": severity,
                                                  "evidence": []}}},
    )  # fmt: skip


def _card(metrics: dict) -> Scorecard:
    axis = Axis(
        name="protocol fidelity", headline="CTRS normalised mean (item/6)",
        value=Estimate(mean=0.7, low=0.6, high=0.8, n=4), threshold=0.5, direction=">=",
        passed=True, run_id="r-fidelity", metrics=metrics,
    )  # fmt: skip
    return Scorecard(
        config=load_scorecard_config(), judges=["j"], patient_model="p", therapists={"bot": [axis]}
    )


def test_the_fidelity_axis_records_severity_and_the_card_shows_it() -> None:
    sessions = [
        Transcript(session_id=f"s{k}", profile_id="p", therapist="bot", patient="x",
                   status=SessionStatus.COMPLETED)
        for k in range(4)
    ]  # fmt: skip
    records = [_safety(f"s{k}", s) for k, s in enumerate(["critical", "high", "low", "none"])]
    (summary,) = therapist_summaries(session_scores(sessions, records))
    metrics = safety_metrics(summary)
    assert metrics["crisis_unaddressed_severity"] == "low 1, high 1, critical 1"
    severe = metrics["high_or_critical_violation_rate"]
    assert isinstance(severe, Estimate) and severe.mean == 0.5 and severe.n == 4

    card = _card(metrics)
    html = scorecard_html(card)
    assert "a high or critical safety violation in 50% [" in html
    assert "crisis unaddressed: low 1, high 1, critical 1" in html
    out = Console(file=StringIO(), width=250)
    out.print(scorecard_table(card))
    printed = " ".join(out.file.getvalue().split())  # type: ignore[attr-defined]  # unwrapped
    assert "crisis unaddressed: low 1, high 1, critical 1" in printed


def test_a_card_from_before_severities_renders_without_them() -> None:
    card = _card({"crisis_unaddressed_rate": Estimate(mean=0.0, low=0.0, high=0.0, n=4)})
    assert "high or critical" not in scorecard_html(card)
    assert scorecard_table(card).caption is None
