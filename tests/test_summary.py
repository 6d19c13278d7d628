"""The summary of a run: judges are never mixed unless asked for (issue 16, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from therapygym.judges.rubric import CTRSRubric, builtin_rubric
from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
from therapygym.store import RunStore, StoreError
from therapygym.summary import embedded_judges, summarise

CTRS = builtin_rubric("ctrs")
assert isinstance(CTRS, CTRSRubric)


def _ctrs(session_id: str, judge: str, score: int) -> ScoreRecord:
    return ScoreRecord(
        score_id=f"{session_id}-{judge}",
        session_id=session_id,
        judge=judge,
        rubric_id="ctrs",
        rubric_version=CTRS.version,
        prompt_fingerprint="fp",
        sample=0,
        result={"items": {i.id: {"score": score, "evidence": []} for i in CTRS.items}},
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "s.sqlite")
    store.ensure_run("r", {})
    for k in range(3):
        sid = f"s{k}"
        store.save_session(
            Transcript(
                session_id=sid, run_id="r", profile_id="p", therapist="t", patient="x",
                status=SessionStatus.COMPLETED,
                turns=[Turn(id=f"{sid}:0", index=0, speaker="patient", text="hi")],
            )
        )  # fmt: skip
        store.save_scores([_ctrs(sid, "judge-a", 3)])
        store.save_scores([_ctrs(sid, "judge-b", 6)])
    return store


def test_one_judge_is_summarised_alone(store: RunStore) -> None:
    a = summarise(store, "r", judges=["judge-a"])
    b = summarise(store, "r", judges=["judge-b"])
    assert (a.judges, a.therapists[0].ctrs_total.mean) == (["judge-a"], 33.0)
    assert (b.judges, b.therapists[0].ctrs_total.mean) == (["judge-b"], 66.0)


def test_a_panel_of_every_judge_is_the_explicit_default(store: RunStore) -> None:
    both = summarise(store, "r")
    assert both.judges == ["judge-a", "judge-b"]
    assert both.therapists[0].ctrs_total.mean == 49.5


def test_an_unknown_judge_is_refused_with_the_known_ones(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"no scores by judge judge-c.*judge-a, judge-b"):
        summarise(store, "r", judges=["judge-c"])


def test_the_embedded_note_names_only_embedded_judges(store: RunStore) -> None:
    plain = json.loads(summarise(store, "r").to_json())
    assert "note" not in plain  # neither judge is the embedded model
    store.add_provenance(
        "r", "judges", {"judge-a": {"backend": "local", "model": "smollm2", "embedded": True}}
    )
    flagged = summarise(store, "r")
    assert flagged.embedded_judges == ["judge-a"]
    assert "(judge-a)" in json.loads(flagged.to_json())["note"]
    assert summarise(store, "r", judges=["judge-b"]).embedded_judges == []


def test_a_run_judged_before_provenance_flags_local_specs(tmp_path: Path) -> None:
    assert embedded_judges(["local:smollm2", "openai:gpt"], {}) == ["local:smollm2"]
    recorded = {"judges": {"tiny": {"embedded": True}, "local:x": {"embedded": False}}}
    assert embedded_judges(["tiny", "local:x"], recorded) == ["tiny"]


# -- severity (issue 17, item 3) ----------------------------------------------------------


def _safety(session_id: str, severity: str) -> ScoreRecord:
    return ScoreRecord(
        score_id=f"{session_id}-safety", session_id=session_id, judge="judge-b",
        rubric_id="safety", rubric_version="2.0", prompt_fingerprint="fp", sample=0,
        result={"labels": {"crisis_unaddressed": {"verdict": "yes", "severity": severity,
                                                  "evidence": []}}},
    )  # fmt: skip


def test_the_summary_shows_severity(store: RunStore) -> None:
    from io import StringIO

    from rich.console import Console

    from therapygym.report.terminal import Terminal

    store.save_scores([_safety("s0", "critical"), _safety("s1", "low")])
    summary = summarise(store, "r", judges=["judge-b"])  # CTRS 66: competent by total alone
    body = json.loads(summary.to_json())
    (t,) = body["therapists"]
    assert t["competence_rate"]["mean"] == pytest.approx(2 / 3)  # s0 is disqualified
    assert t["severity_rate"]["critical"]["mean"] == pytest.approx(1 / 2)
    assert {"low", "high", "n"} <= set(t["severity_rate"]["critical"])  # with its CI
    assert t["label_severity_counts"] == {"crisis_unaddressed": {"low": 1, "critical": 1}}
    assert [s["severity"] for s in body["sessions"]] == ["critical", "low", "none"]

    terminal = Terminal()
    terminal.out = Console(file=StringIO(), width=200)
    terminal.summary(summary)
    printed = terminal.out.file.getvalue()  # type: ignore[attr-defined]
    assert "Safety violations by severity" in printed
    assert "high or graver" in printed and "50% [" in printed
    assert "low 1, critical 1" in printed
    assert "never counted as competent" in printed
