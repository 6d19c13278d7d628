"""Run `r1` of report_store.py grown past one batch of the viewer's pages and the
exports' batches, with what makes a batch differ from the whole run: a session without
turns and without a profile version late in the run (pandas turns such gaps into floats
and empty cells only when it sees them), and sessions judged under a newer CTRS version
than the rest (a summary reads the run's newest version, whichever batch holds it)."""

from __future__ import annotations

from pathlib import Path

from report_store import PROFILES, THERAPISTS, build_store, scores_for, transcript

from therapygym.records import SessionStatus, Transcript


def _newer_ctrs(units: list[list]) -> list[list]:
    """The same judgements, the CTRS unit under ctrs@1.1 (a later rubric version)."""
    return [
        [r.model_copy(update={"rubric_version": "1.1"}) for r in unit]
        if unit[0].rubric_id == "ctrs"
        else unit
        for unit in units
    ]


def build_many(path: Path, samples: int = 13) -> int:
    """Run `r1` with `samples` samples per (profile, therapist), one session without
    turns, and the last samples judged under ctrs@1.1; returns its number of sessions."""
    store = build_store(path)
    added = 0
    for profile in PROFILES:
        for therapist in THERAPISTS:
            for sample in range(3, samples):  # 0-1 are report_store's, 2 its failed one
                t = transcript(profile, therapist, sample)
                store.save_session(t)
                # scores as report_store gives sample 0 or 1 (it scores by the sample)
                units = scores_for(t.model_copy(update={"sample": sample % 2}))
                if sample >= samples - 2:
                    units = _newer_ctrs(units)
                for unit in units:
                    store.save_scores(unit)
                added += 1
    empty = Transcript(
        session_id="zz-no-turns", run_id="r1", profile_id="zz-late-profile",
        profile_version=None, therapist=THERAPISTS[0], patient="scripted", sample=0,
        status=SessionStatus.COMPLETED,
    )  # fmt: skip
    store.save_session(empty)
    store.close()
    return 9 + added + 1  # report_store's 9 sessions, these, the one without turns
