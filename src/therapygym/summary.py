"""A run's summary: every stored score of its finished sessions, combined per session and
per therapist with bootstrap CIs. What `eval` and `judge` print, and what the report, the
viewer and the exports read (they never reach the runner or the models).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    # the judges among `judges` that are the embedded 135M model: their scores carry no
    # clinical meaning, and every place that shows them says so
    embedded_judges: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        body: dict[str, Any] = {"run_id": self.run_id, "judges": self.judges}
        if self.embedded_judges:
            body["note"] = (
                f"Scores from the embedded 135M model ({', '.join(self.embedded_judges)}) "
                "carry no clinical meaning."
            )
        body["therapists"] = [t.model_dump(mode="json") for t in self.therapists]
        body["sessions"] = [s.model_dump(mode="json") for s in self.sessions]
        return json.dumps(body, indent=2)


def embedded_judges(judges: Iterable[str], provenance: Mapping[str, Any]) -> list[str]:
    """Which of `judges` are the embedded model, as the run recorded when they scored it
    (a models-file name is resolved then, with the file that judging used). A judge the
    run has no record of (runs judged before 0.2) counts as embedded when its spec names
    the local backend, the one spelling such runs could use."""
    recorded = provenance.get("judges", {})
    return sorted(
        j for j in judges if (recorded[j]["embedded"] if j in recorded else j.startswith("local:"))
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
    records = judged_by(run_id, store.scores(run_id), judges)
    provenance = store.run(run_id).provenance
    return summary_of(run_id, store.session_heads(run_id), records, how, provenance)


def judged_by(
    run_id: str, records: list[ScoreRecord], judges: Collection[str] | None
) -> list[ScoreRecord]:
    """The records of `judges` (judge specs), or all of them for None; a judge that did not
    score the run is an error naming the judges that did, never an empty result."""
    if judges is None:
        return records
    scored = {r.judge for r in records}
    if unknown := sorted(set(judges) - scored):
        known = ", ".join(sorted(scored)) or "none"
        raise StoreError(
            f"run '{run_id}' has no scores by judge {', '.join(unknown)} (judges: {known})"
        )
    return [r for r in records if r.judge in judges]


PATIENT_RUBRICS = frozenset({"patient_fidelity"})
"""Rubrics that judge the simulated patient, not the therapist (`patients audit`): their
judges are not the run's therapist judges and their scores are in no therapist's numbers."""


def summary_of(
    run_id: str,
    sessions: Iterable[SessionHead | Transcript],
    records: list[ScoreRecord],
    how: Aggregation = "mean",
    provenance: Mapping[str, Any] | None = None,
) -> Summary:
    """`summarise` for a run's sessions (transcripts, or heads without turns) and scores
    already read from the store (failed sessions are left out of the numbers), with the
    run's provenance, which says which judges were the embedded model."""
    finished = [s for s in sessions if s.status.value in FINISHED]
    records = [r for r in records if r.rubric_id not in PATIENT_RUBRICS]
    scored = session_scores(finished, records, how)
    judges = sorted({r.judge for r in records})
    return Summary(
        run_id=run_id,
        judges=judges,
        sessions=scored,
        therapists=therapist_summaries(scored),
        embedded_judges=embedded_judges(judges, provenance or {}),
    )
