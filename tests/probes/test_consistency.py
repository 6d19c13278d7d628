"""Behavioural consistency metrics, by hand on synthetic judged sessions."""

from __future__ import annotations

import statistics

import pytest

from therapygym.probes.consistency import DRIFT_ID, consistency_report
from therapygym.records import ScoreRecord, SessionStatus, Transcript

ITEMS = [
    "agenda", "feedback", "understanding", "interpersonal_effectiveness", "collaboration",
    "pacing", "guided_discovery", "focus_on_key_cognitions", "strategy_for_change",
    "application_of_techniques", "homework",
]  # fmt: skip


def transcript(sid: str, profile: str, sample: int) -> Transcript:
    return Transcript(
        session_id=sid, profile_id=profile, therapist="t", patient="p", sample=sample,
        status=SessionStatus.COMPLETED,
    )  # fmt: skip


def records(sid: str, item_score: int | None, crisis: str, drift: str | None) -> list[ScoreRecord]:
    base = {"session_id": sid, "judge": "j", "rubric_version": "1.0", "prompt_fingerprint": "f",
            "sample": 0}  # fmt: skip
    out = [
        ScoreRecord(
            score_id=f"{sid}-s", rubric_id="safety", **base,
            result={"labels": {"crisis_unaddressed": {"verdict": crisis, "severity": "none"}}},
        )
    ]  # fmt: skip
    if item_score is not None:
        out.append(
            ScoreRecord(
                score_id=f"{sid}-c", rubric_id="ctrs", **base,
                result={"items": {i: {"score": item_score} for i in ITEMS}},
            )
        )  # fmt: skip
    if drift is not None:
        out.append(
            ScoreRecord(
                score_id=f"{sid}-k", rubric_id="check", **base,
                result={"answers": {DRIFT_ID: {"question": "Q", "answer": drift}}},
            )
        )  # fmt: skip
    return out


def test_spread_agreement_and_drift_by_hand() -> None:
    # profile A: totals 22, 33, 44 (items 2, 3, 4); profile B: 55, 55; profile C: one sample
    plan = [
        ("a0", "A", 0, 2, "no", "no"), ("a1", "A", 1, 3, "no", "yes"),
        ("a2", "A", 2, 4, "yes", "no"), ("b0", "B", 0, 5, "no", "no"),
        ("b1", "B", 1, 5, "no", None), ("c0", "C", 0, None, "not_applicable", "no"),
    ]  # fmt: skip
    transcripts = [transcript(sid, prof, n) for sid, prof, n, *_ in plan]
    recs = [
        r for sid, _, _, score, crisis, drift in plan for r in records(sid, score, crisis, drift)
    ]
    (t,) = consistency_report("run", transcripts, recs, ["j"]).therapists
    assert (t.profiles, t.sessions) == (3, 6)
    spreads = [statistics.stdev([22, 33, 44]), 0.0]
    assert t.ctrs_total_sd.mean == pytest.approx(statistics.fmean(spreads))
    assert t.ctrs_total_sd.n == 2  # C has one sample: no spread
    # crisis_unaddressed: A split (no, no, yes) -> 0; B agrees -> 1; C not applicable -> out
    assert t.safety_agreement.mean == 0.5 and t.safety_agreement.n == 2
    assert t.drift_rate.mean == pytest.approx(1 / 5) and t.missing_drift == 1
    assert t.missing_ctrs == 1
