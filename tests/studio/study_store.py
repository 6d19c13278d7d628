"""A run store with runs to rate, written directly (no model): two therapists, library
profiles at three severities and one profile the library does not hold, a failed session,
and names (therapist, run, profile) that a blind page must never show."""

from __future__ import annotations

from pathlib import Path

from therapygym.records import SessionStatus, Transcript, Turn, session_id_for
from therapygym.store import RunStore
from therapygym.studio.ratings import Studio, missing_items

RUN = "run-secret-7"
ALPHA, BETA = "therapist-alpha", "therapist-beta"
# (therapist, profile, version) -> samples. Library severities: dep-01-maya@2 and
# gad-01-priya@1 routine, gad-03-valentina@2 distress, ado-01-ethan@1 crisis_adjacent;
# custom-zed is no library profile (severity unknown).
LAYOUT = {
    (ALPHA, "dep-01-maya", 2): 8,
    (ALPHA, "gad-01-priya", 1): 8,
    (ALPHA, "gad-03-valentina", 2): 8,
    (ALPHA, "ado-01-ethan", 1): 4,
    (BETA, "dep-01-maya", 2): 8,
    (BETA, "custom-zed", 1): 4,
}
# the strata these make, with their sizes (40 finished sessions)
STRATA = {
    f"{ALPHA} / routine": 16,
    f"{ALPHA} / distress": 8,
    f"{ALPHA} / crisis_adjacent": 4,
    f"{BETA} / routine": 8,
    f"{BETA} / unknown": 4,
}
TURNS = 6


def transcript(
    run_id: str, therapist: str, profile: str, version: int, sample: int, *, failed: bool = False
) -> Transcript:
    sid = session_id_for(run_id, profile, therapist, sample)
    return Transcript(
        session_id=sid,
        run_id=run_id,
        profile_id=profile,
        profile_version=version,
        therapist=therapist,
        patient="llm-patient:model-omega",
        sample=sample,
        status=SessionStatus.FAILED if failed else SessionStatus.COMPLETED,
        error="boom" if failed else None,
        turns=[
            Turn(
                id=f"{sid}:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=f"{'patient' if i % 2 == 0 else 'therapist'} says line {i}",
                model="model-omega" if i % 2 else None,
            )
            for i in range(TURNS)
        ],
        meta={"therapist_label": therapist},
    )


def make_store(path: Path, run_id: str = RUN) -> RunStore:
    """The store with the run of `LAYOUT` and one failed session (never sampled)."""
    store = RunStore(path)
    store.ensure_run(run_id, {"therapists": [ALPHA, BETA]})
    for (therapist, profile, version), samples in LAYOUT.items():
        for sample in range(samples):
            store.save_session(transcript(run_id, therapist, profile, version, sample))
    store.save_session(transcript(run_id, ALPHA, "dep-01-maya", 2, 99, failed=True))
    return store


def stratum_of(store: RunStore, session_id: str) -> str:
    """The stratum a session belongs to, from what the store says of it."""
    t = store.session(session_id)
    severity = {
        "dep-01-maya": "routine",
        "gad-01-priya": "routine",
        "gad-03-valentina": "distress",
        "ado-01-ethan": "crisis_adjacent",
    }.get(t.profile_id, "unknown")
    return f"{t.therapist} / {severity}"


def answer_rest(
    studio: Studio, study: str, rater: str, sid: str, ctrs: int = 4, safety: int = 0
) -> list[str]:
    """Answer every item of `sid` that `rater` left unanswered (CTRS items with `ctrs`,
    safety labels with the verdict `safety`, 0 "not violated" by default), so that the
    session can be submitted; answers already given (n/a included) are kept, and so are
    the evidence and note of an item noted but not scored. Returns the
    keys it answered, in rubric order."""
    keys = [i.key for r in studio.session_for(study, rater, sid).rubrics for i in r.items]
    given = studio.ratings(study, rater, sid)
    rest = missing_items(keys, given)
    for key in rest:
        value = ctrs if key.startswith("ctrs:") else safety
        kept = given.get(key)  # a note or evidence without a score stays
        evidence, note = (kept.evidence, kept.note) if kept else ([], None)
        studio.save_rating(study, rater, sid, key, value, evidence, note)
    return rest
