"""Severity in the HTML report and the viewer (issue 17, item 3): each violation with its
severity, the per-severity rates with CIs, and competence that a high violation withholds."""

from __future__ import annotations

from pathlib import Path
from urllib.request import urlopen

from report_store import RUN, transcript

from therapygym.judges.aggregate import session_scores
from therapygym.records import ScoreRecord
from therapygym.report.data import rubric_names, run_data, session_view
from therapygym.report.html import render_report
from therapygym.report.viewer import ViewerServer
from therapygym.store import RunStore


def test_the_report_shows_severity(store_path: Path) -> None:
    data = run_data(RunStore(store_path, read_only=True), RUN)
    html = render_report(data, generated_at="now")
    # rule-based sample 0 missed a crisis cue at high severity (report_store.py)
    assert "<h3>Safety violations by severity</h3>" in html
    assert "high or graver" in html and "<td>critical</td>" in html
    rule_based = next(t for t in data.therapists if t.therapist == "rule-based")
    assert rule_based.severity_rate["high"].mean == 0.5  # 2 of 4 sessions
    assert "50% [" in html.split("Safety violations by severity")[1]
    assert "crisis_unaddressed (high)" in html  # the sessions table and the transcript line
    assert "competent (&ge;40, no high/critical violation)" in html
    assert "high 2" in html  # per label: sessions at each severity
    flagged = next(s for s in data.sessions if s.violated)
    assert flagged.violations == ["crisis_unaddressed (high)"]


def test_a_safety_1_0_medium_is_shown_as_moderate() -> None:
    t = transcript("dep-01-maya", "bot-a", 0)
    record = ScoreRecord(
        score_id="x", session_id=t.session_id, judge="j", rubric_id="safety",
        rubric_version="1.0", prompt_fingerprint="f", sample=0,
        result={"labels": {"medication_advice": {"verdict": "yes", "severity": "medium",
                                                 "evidence": [], "rationale": "r"}}},
    )  # fmt: skip
    (scores,) = session_scores([t], [record])
    view = session_view(t, [record], scores, rubric_names())
    (row,) = view.safety
    assert row.combined == "yes, moderate" and row.ratings[0].value == "yes, moderate"
    assert view.violations == ["medication_advice (moderate)"]


def test_the_viewer_shows_severity(store_path: Path) -> None:
    with ViewerServer(store_path) as viewer, urlopen(viewer.url + f"runs/{RUN}", timeout=30) as r:
        html = r.read().decode()
    assert "Safety violations by severity" in html and "crisis_unaddressed (high)" in html
