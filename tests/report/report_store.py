"""A store with a judged run, written directly (no model): two therapists, two patients,
two samples, CTRS / safety / response / check scores with rationales and evidence, one
failed session, one failed judgement, and text that must never become markup."""

from __future__ import annotations

from pathlib import Path

from therapygym.judges.rubric import CTRSRubric, SafetyRubric, builtin_rubric
from therapygym.records import (
    ScoreRecord,
    SessionStatus,
    Transcript,
    Turn,
    score_id,
    session_id_for,
)
from therapygym.store import RunStore

RUN = "r1"
THERAPISTS = ("bot-a", "rule-based")
PROFILES = ("gad-01-priya", "dep-02-emeka")
SCRIPT = "<script>alert(1)</script>"
RATIONALE_HTML = '<b>bold</b><img src=x onerror="alert(2)">'
CTRS = builtin_rubric("ctrs")
SAFETY = builtin_rubric("safety")
assert isinstance(CTRS, CTRSRubric) and isinstance(SAFETY, SafetyRubric)
ITEMS = [i.id for i in CTRS.items]
LABELS = [lb.id for lb in SAFETY.labels]


def transcript(profile: str, therapist: str, sample: int, turns: int = 6) -> Transcript:
    sid = session_id_for(RUN, profile, therapist, sample)
    said = []
    for i in range(turns):
        speaker = "patient" if i % 2 == 0 else "therapist"
        text = f"{speaker} line {i} of {profile}"
        if therapist == "bot-a" and profile == PROFILES[0] and sample == 0 and i == 3:
            text = f"Try this: {SCRIPT} & breathe"
        said.append(
            Turn(
                id=f"{sid}:{i}",
                index=i,
                speaker=speaker,
                text=text,
                cues=["suicidal_ideation"] if speaker == "patient" and i == 2 else [],
            )
        )
    return Transcript(
        session_id=sid, run_id=RUN, profile_id=profile, profile_version=1, therapist=therapist,
        patient="scripted", sample=sample, status=SessionStatus.COMPLETED, turns=said,
        meta={"cues_tracked": True},
    )  # fmt: skip


def _record(t: Transcript, rubric: str, result: dict | None, *, target: str = "", error=None):
    return ScoreRecord(
        score_id=score_id(t.session_id, "judge-x", rubric, target),
        session_id=t.session_id,
        judge="judge-x",
        rubric_id=rubric,
        rubric_version="1.0",
        prompt_fingerprint="fp",
        sample=0,
        target=target,
        result=result,
        raw_outputs=["{}"],
        error=error,
    )


def scores_for(t: Transcript) -> list[list[ScoreRecord]]:
    """One list per judgement unit (what save_scores takes)."""
    base = 4 if t.therapist == "bot-a" else 2
    ids = [turn.id for turn in t.turns]
    ctrs = {
        item: {
            "score": min(6, base + (k % 3) - t.sample),
            "rationale": RATIONALE_HTML if k == 0 else f"Reason for {item}.",
            "evidence": [ids[3], ids[1]] if k == 0 else [ids[5]],
        }
        for k, item in enumerate(ITEMS)
    }
    violated = t.therapist == "rule-based" and t.sample == 0
    labels = {
        lb: {
            "verdict": "yes" if violated and lb == "crisis_unaddressed" else "no",
            "severity": "high" if violated and lb == "crisis_unaddressed" else "none",
            "evidence": [ids[3]] if lb == "crisis_unaddressed" else [],
            "rationale": "Missed the <em>cue</em>." if lb == "crisis_unaddressed" else "Fine.",
            "decided_by": "judge",
        }
        for lb in LABELS
    }
    units = [[_record(t, "ctrs", {"mode": "one_call", "items": ctrs})]]
    units.append([_record(t, "safety", {"labels": labels})])
    units.append(
        [
            _record(
                t,
                "response",
                {"rationale": "Warm.", "dimensions": {"empathy": base, "relevance": 3}},
                target=turn.id,
            )
            for turn in t.turns
            if turn.speaker == "therapist"
        ]
    )
    if t.sample == 1 and t.therapist == "bot-a":
        units.append([_record(t, "check", None, error="judge output invalid: <oops>")])
    return units


def build_store(path: Path) -> RunStore:
    store = RunStore(path)
    store.ensure_run(RUN, {"therapists": list(THERAPISTS), "patient_model": "scripted"})
    for profile in PROFILES:
        for therapist in THERAPISTS:
            for sample in (0, 1):
                t = transcript(profile, therapist, sample)
                store.save_session(t)
                for unit in scores_for(t):
                    store.save_scores(unit)
    failed = transcript(PROFILES[1], THERAPISTS[0], 2, turns=1).model_copy(
        update={"status": SessionStatus.FAILED, "error": "model unreachable <timeout>"}
    )
    store.save_session(failed)
    return store
