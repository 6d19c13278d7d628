"""Combined scores of a run's sessions, one batch of sessions at a time.

The viewer's session pages and the streamed exports need each session's combined scores
(`aggregate.score_session`, what the summary aggregates) without reading the whole run.
Two things make a batch differ from the whole run, and this module puts them back:

- a summary reads the newest CTRS version among all of the run's records; a batch whose
  sessions lack it would read an older one. The run's version is found first
  (`run_ctrs_version`, one small query) and every batch reads that one.
- `judges` keeps one panel's records, and patient rubrics (`summary.PATIENT_RUBRICS`)
  are in no therapist's numbers, exactly as `summary.summary_of` filters them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from therapygym.judges.aggregate import SessionScores, ctrs_version, score_session
from therapygym.judges.panel import Aggregation
from therapygym.records import FINISHED, ScoreRecord, Transcript
from therapygym.store import RunStore, SessionHead
from therapygym.summary import PATIENT_RUBRICS


def run_ctrs_version(
    store: RunStore, run_id: str, judges: Collection[str] | None = None
) -> str | None:
    """The CTRS version a summary of the whole run reads (of `judges` only, when given)."""
    samples = store.rubric_versions(run_id, "ctrs")
    return ctrs_version(r for r in samples if judges is None or r.judge in judges)


def batch_records(
    records: Sequence[ScoreRecord], judges: Collection[str] | None
) -> list[ScoreRecord]:
    """The records a therapist summary reads: `judges`' (all for None), no patient rubric."""
    return [
        r
        for r in records
        if r.rubric_id not in PATIENT_RUBRICS and (judges is None or r.judge in judges)
    ]


def batch_session_scores(
    heads: Sequence[SessionHead | Transcript],
    records: Sequence[ScoreRecord],
    how: Aggregation,
    version: str | None,
) -> list[SessionScores]:
    """The scores of the finished sessions among `heads`, from their `records` (already
    `batch_records`), reading CTRS `version` (the run's): the numbers the whole run's
    summary gives these sessions (`aggregate.score_session`, as `summary.summarise`)."""
    by_session: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in records:
        by_session[r.session_id].append(r)
    return [
        score_session(h, by_session.get(h.session_id, []), how, version)
        for h in heads
        if h.status.value in FINISHED
    ]


def scores_of_batch(
    store: RunStore,
    heads: Sequence[SessionHead | Transcript],
    how: Aggregation,
    version: str | None,
    judges: Collection[str] | None = None,
    rubric_id: str | None = None,
) -> list[SessionScores]:
    """`batch_session_scores` of `heads`, their records read from the store (without raw
    judge output; of one rubric when given: the safety verdicts need no CTRS)."""
    ids = [h.session_id for h in heads if h.status.value in FINISHED]
    records = batch_records(store.scores_of(ids, rubric_id=rubric_id, raw=False), judges)
    return batch_session_scores(heads, records, how, version)
