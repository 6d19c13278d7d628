"""A run's summary: every stored score of its finished sessions, combined per session and
per therapist with bootstrap CIs. What `eval` and `judge` print, and what the report, the
viewer and the exports read (they never reach the runner or the models).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from therapygym.judges.aggregate import (
    SessionScores,
    TherapistSummary,
    session_scores,
    therapist_summaries,
)
from therapygym.judges.panel import Aggregation
from therapygym.records import FINISHED, ScoreRecord, Transcript
from therapygym.store import RunStore, SessionHead, StoreError


@dataclass
class Summary:
    run_id: str
    judges: list[str]
    sessions: list[SessionScores]
    therapists: list[TherapistSummary]

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_id": self.run_id,
                "judges": self.judges,
                "note": "Scores from the embedded 135M model carry no clinical meaning.",
                "therapists": [t.model_dump(mode="json") for t in self.therapists],
                "sessions": [s.model_dump(mode="json") for s in self.sessions],
            },
            indent=2,
        )


def summarise(
    store: RunStore,
    run_id: str,
    how: Aggregation = "mean",
    *,
    judges: Collection[str] | None = None,
) -> Summary:
    """Aggregate the stored scores of a run: those of `judges` (judge specs) when given,
    else of every judge that scored it (then all judges and samples form one panel).
    Reads the sessions without their turns: a summary needs only who and how it ended."""
    records = store.scores(run_id)
    if judges is not None:
        unknown = sorted(set(judges) - {r.judge for r in records})
        if unknown:
            known = ", ".join(sorted({r.judge for r in records})) or "none"
            raise StoreError(
                f"run '{run_id}' has no scores by judge {', '.join(unknown)} (judges: {known})"
            )
        records = [r for r in records if r.judge in judges]
    return summary_of(run_id, store.session_heads(run_id), records, how)


def summary_of(
    run_id: str,
    sessions: Iterable[SessionHead | Transcript],
    records: list[ScoreRecord],
    how: Aggregation = "mean",
) -> Summary:
    """`summarise` for a run's sessions (transcripts, or heads without turns) and scores
    already read from the store (failed sessions are left out of the numbers)."""
    finished = [s for s in sessions if s.status.value in FINISHED]
    scored = session_scores(finished, records, how)
    return Summary(
        run_id=run_id,
        judges=sorted({r.judge for r in records}),
        sessions=scored,
        therapists=therapist_summaries(scored),
    )
