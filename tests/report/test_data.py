"""What the report shows is what `eval` summarises, with each rationale tied to its turns."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import PROFILES, RATIONALE_HTML, RUN, SCRIPT

from therapygym.report.data import run_data, single_session, turn_anchor
from therapygym.store import RunStore, StoreError
from therapygym.summary import summarise


def test_numbers_are_the_eval_summary(store_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    data = run_data(store, RUN)
    expected = summarise(store, RUN)
    assert [t.model_dump() for t in data.summary.therapists] == [
        t.model_dump() for t in expected.therapists
    ]
    # ranked: bot-a scores 4 +- on the CTRS, rule-based 2 +- and has violations
    assert [t.therapist for t in data.therapists] == ["bot-a", "rule-based"]
    best = data.therapists[0]
    assert best.ctrs_total.mean == pytest.approx(48.5) and best.ctrs_total.low is not None
    assert data.therapists[1].label_violation_rate["crisis_unaddressed"].mean == 0.5
    assert len(data.sessions) == 9  # the failed session is listed, not scored
    failed = [s for s in data.sessions if s.transcript.status.value == "failed"]
    assert len(failed) == 1 and failed[0].scores is None and failed[0].ctrs == []
    assert data.item_ids[0] == "agenda" and data.item_ids[-1] == "homework"
    assert data.label_ids[0] == "medication_advice"


def test_rationales_cite_turns_by_anchor(store_path: Path) -> None:
    data = run_data(RunStore(store_path, read_only=True), RUN)
    sv = next(s for s in data.sessions if any(SCRIPT in t.text for t in s.transcript.turns))
    assert (sv.transcript.profile_id, sv.transcript.therapist) == (PROFILES[0], "bot-a")
    sid = sv.transcript.session_id
    agenda = sv.ctrs[0]
    assert agenda.key == "agenda" and agenda.name == "1. Agenda"
    (rating,) = agenda.ratings
    assert rating.rationale == RATIONALE_HTML  # kept verbatim; the template escapes it
    assert [(e.label, e.anchor) for e in rating.evidence] == [
        ("T4", turn_anchor(sid, 3)),
        ("T2", turn_anchor(sid, 1)),
    ]
    cited = {tv.label for tv in sv.turns if tv.cited}
    assert cited == {"T2", "T4", "T6"}
    t4 = sv.turns[3]
    assert SCRIPT in t4.turn.text
    assert any(c.anchor == rating.anchor and "Agenda" in c.text for c in t4.citations)
    assert len({tv.anchor for s in data.sessions for tv in s.turns}) == sum(
        len(s.turns) for s in data.sessions
    )  # anchors are unique across the whole report
    assert [r["dimensions"] for r in t4.response] == [{"Empathy": 4, "Relevance": 3}]


def test_safety_rows_flag_violations_and_errors_are_listed(store_path: Path) -> None:
    data = run_data(RunStore(store_path, read_only=True), RUN)
    violated = [s for s in data.sessions if s.violated]
    assert len(violated) == 2
    assert all(s.transcript.therapist == "rule-based" for s in violated)
    row = next(r for r in violated[0].safety if r.key == "crisis_unaddressed")
    assert row.flagged and row.combined == "yes, high" and row.ratings[0].value == "yes, high"
    assert violated[0].turns[3].citations[-1].flagged
    errored = [s for s in data.sessions if s.errors]
    assert len(errored) == 2 and "judge output invalid: <oops>" in errored[0].errors[0]


def test_filters(store_path: Path) -> None:
    data = run_data(RunStore(store_path, read_only=True), RUN)

    def count(**f: str) -> int:
        return sum(s.matches(**f) for s in data.sessions)

    assert count() == 9
    assert count(therapist="bot-a") == 5 and count(patient="gad-01-priya") == 4
    assert count(label="any") == 2 and count(label="crisis_unaddressed") == 2
    assert count(label="medication_advice") == 0
    assert count(therapist="bot-a", label="any") == 0
    assert count(status="failed") == 1
    choices = data.choices()
    assert choices["therapist"] == ["bot-a", "rule-based"]
    assert choices["label"][0] == "medication_advice" and "crisis_unaddressed" in choices["label"]


def test_single_session_matches_the_run_view(store_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    data = run_data(store, RUN)
    for sv in data.sessions[:3]:
        alone, _ = single_session(store, sv.transcript.session_id)
        assert alone.ctrs == sv.ctrs and alone.safety == sv.safety and alone.turns == sv.turns
    with pytest.raises(StoreError, match="no session 'nope'"):
        single_session(store, "nope")
    with pytest.raises(StoreError, match="no run 'nope'"):
        run_data(store, "nope")
