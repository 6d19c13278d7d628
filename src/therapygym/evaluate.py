"""`eval` in one call: run the sessions, judge them, summarise per therapist.

Both halves are resumable (the runner skips finished sessions, judging skips complete
units), so an interrupted evaluation is finished by running the same command again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from therapygym.judges.aggregate import (
    SessionScores,
    TherapistSummary,
    session_scores,
    therapist_summaries,
)
from therapygym.judges.judging import JudgePlan, JudgeResult, judge_run
from therapygym.judges.panel import Aggregation
from therapygym.models import ResponseCache
from therapygym.patients.profile import PatientProfile
from therapygym.records import FINISHED, ScoreRecord, Transcript
from therapygym.runner import RunPlan, RunResult, run_plan
from therapygym.store import RunStore, SessionHead


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


def summarise(store: RunStore, run_id: str, how: Aggregation = "mean") -> Summary:
    """Aggregate every stored score of a run (all judges and samples form the panel).
    Reads the sessions without their turns: a summary needs only who and how it ended."""
    return summary_of(run_id, store.session_heads(run_id), store.scores(run_id), how)


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


@dataclass
class EvalResult:
    run: RunResult
    judging: JudgeResult
    summary: Summary


async def evaluate(
    plan: RunPlan,
    profiles: list[PatientProfile],
    judge_plan: JudgePlan,
    store: RunStore,
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    judge_concurrency: int | None = None,
    aggregation: Aggregation = "mean",
    console: Console | None = None,
) -> EvalResult:
    """Run, judge, summarise. `judge_concurrency` defaults to `concurrency`; set it to 1
    for an in-process model on a small CPU, where long judge prompts in parallel slots
    are slower than one after another."""
    run = await run_plan(
        plan,
        profiles,
        store,
        cache=cache,
        concurrency=concurrency,
        models_file=models_file,
        console=console,
    )
    judging = await judge_run(
        store,
        plan.run_id,
        judge_plan,
        cache=cache,
        models_file=models_file,
        concurrency=judge_concurrency or concurrency,
        console=console,
    )
    return EvalResult(run=run, judging=judging, summary=summarise(store, plan.run_id, aggregation))
