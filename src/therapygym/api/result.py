"""`Evaluation`: what `evaluate()`, `judge()` and `load_run()` return.

It names a run in a store and holds its summary (the object `therapygym eval` prints),
what failed, and the usage. Everything else is read from the store when asked for, by
the same functions the CLI uses: `to_pandas()` builds its tables from the rows `runs
export` writes (`session_score_rows`, `score_rows`, `turn_rows`), and `report()` is
`therapygym report`'s `write_report`, so a number in a notebook is the number in an
export or a report of the same run and judges.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from therapygym.errors import TherapygymError
from therapygym.failure import Tally
from therapygym.judges.panel import Aggregation
from therapygym.records import Transcript
from therapygym.store import RunStore
from therapygym.summary import Summary, judged_by, summarise, summary_of

if TYPE_CHECKING:
    import pandas as pd

    from therapygym.models import UsageLedger
    from therapygym.runner import EvalResult

Table = Literal["sessions", "items", "labels", "scores", "turns"]
"""What `Evaluation.to_pandas` returns, one row per:

- `sessions`: session, with the panel's combined scores (`runs export --content sessions`);
- `items`: CTRS item of one judge's sample, with its rationale and evidence turns;
- `labels`: safety label of one judge's sample, with verdict, severity and rationale;
- `scores`: judged key of any rubric (`runs export --content scores` as CSV);
- `turns`: turn, with its session's columns (`runs export --format csv`).
"""
TABLES: tuple[str, ...] = get_args(Table)


class FailedWorkWarning(UserWarning):
    """Sessions or judgement units failed for good; the result counts them and a rerun
    with the same run id retries them."""


@dataclass(frozen=True)
class Evaluation:
    """A run in a store, as one evaluation scored it.

    `judges` are the judges whose scores the summary and the tables hold: the judges of
    the call that made it (a run judged before by others keeps their scores apart), or
    None for every judge that scored the run, as one panel. `failures` count what failed
    for good, sessions and judgement units apart; `errors` say why.
    """

    run_id: str
    store_path: Path
    summary: Summary | None
    judges: tuple[str, ...] | None = None
    aggregation: Aggregation = "mean"
    failures: tuple[Tally, ...] = ()
    errors: tuple[str, ...] = ()
    usage: UsageLedger | None = field(default=None, repr=False)

    @classmethod
    def of(cls, result: EvalResult) -> Evaluation:
        """What `runner.evaluate` did, as an Evaluation of its judges."""
        from therapygym.failure import tallies

        parts = [p for p in (result.run, result.judging) if p is not None]
        return cls(
            run_id=result.run_id,
            store_path=result.store,
            summary=result.summary,
            judges=tuple(result.summary.judges) if result.summary is not None else None,
            aggregation=result.config.aggregation,
            failures=tuple(tallies(result.run, result.judging)),
            errors=tuple(e for p in parts for e in p.errors),
            usage=result.usage,
        )

    @property
    def failed(self) -> int:
        """Sessions plus judgement units that failed for good (0 when all went well)."""
        return sum(t.failed for t in self.failures)

    def failure_note(self) -> str | None:
        """One line saying what failed and how to retry it, or None."""
        failed = [str(t) for t in self.failures if t.failed]
        if not failed:
            return None
        return (
            f"run {self.run_id}: {'; '.join(failed)} (see .errors); evaluate again with "
            f"run_id={self.run_id!r} and the same store to retry them"
        )

    # -- reading the run ---------------------------------------------------------------

    def _store(self) -> RunStore:
        return RunStore(self.store_path, read_only=True)

    def to_pandas(self, table: Table = "sessions") -> pd.DataFrame:
        """One of the run's tables as a DataFrame (see `Table` for what a row is): the
        rows `runs export` writes for the same run and judges, so the numbers agree."""
        import pandas as pd

        from therapygym.report.exports import (
            SCORE_COLUMNS,
            SESSION_COLUMNS,
            score_rows,
            session_score_rows,
            turn_rows,
        )

        if table not in TABLES:
            raise TherapygymError(f"to_pandas('{table}'): expected one of {', '.join(TABLES)}")
        store = self._store()
        try:
            if table == "turns":
                return pd.DataFrame(turn_rows(store.sessions(self.run_id)))
            heads = store.session_heads(self.run_id)
            records = judged_by(self.run_id, store.scores(self.run_id), self.judges)
        finally:
            store.close()
        if table == "sessions":
            scored = summary_of(self.run_id, heads, records, self.aggregation).sessions
            rows = session_score_rows(heads, scored)
            return pd.DataFrame(rows, columns=None if rows else list(SESSION_COLUMNS))
        rubric = {"items": "ctrs", "labels": "safety"}.get(table)
        rows = [r for r in score_rows(records, heads) if rubric is None or r["rubric_id"] == rubric]
        return pd.DataFrame(rows, columns=[name for name, _ in SCORE_COLUMNS])

    def transcripts(self) -> list[Transcript]:
        """Every session of the run with its turns (failed ones too, with their error)."""
        store = self._store()
        try:
            return list(store.sessions(self.run_id))
        finally:
            store.close()

    def report(
        self, path: Path | str, *, calibration: Sequence[Path] = (), scorecard: Sequence[Path] = ()
    ) -> Path:
        """Write the run's HTML report (what `therapygym report` writes) to `path`, with
        the scores of this evaluation's judges; returns the path written."""
        from therapygym.config import check_output
        from therapygym.report.html import write_report

        path = Path(path)
        check_output(path, option="report")
        store = self._store()
        try:
            return write_report(
                store,
                self.run_id,
                path,
                aggregation=self.aggregation,
                judges=self.judges,
                calibration=calibration,
                scorecard=scorecard,
            )
        finally:
            store.close()

    def print_summary(self) -> None:
        """Print the summary tables `therapygym eval` prints."""
        from therapygym.report.terminal import EMBEDDED_SUMMARY_NOTE, Terminal

        summary = self._judged()
        term = Terminal()
        term.summary(summary)
        if summary.embedded_judges:
            term.out.print(EMBEDDED_SUMMARY_NOTE)

    def _judged(self) -> Summary:
        if self.summary is None:
            raise TherapygymError(
                f"run {self.run_id} was not judged in this evaluation: give judges=[...] "
                "to evaluate(), or call judge() on its transcripts"
            )
        return self.summary

    # -- display -----------------------------------------------------------------------

    def __repr__(self) -> str:
        judged = "not judged" if self.summary is None else f"judges={list(self.summary.judges)}"
        sessions = "" if self.summary is None else f", sessions={len(self.summary.sessions)}"
        return (
            f"Evaluation(run_id={self.run_id!r}{sessions}, {judged}, failed={self.failed}, "
            f"store={str(self.store_path)!r})"
        )

    def _repr_html_(self) -> str:
        """Per therapist, the headline numbers with their 95% CIs (Jupyter shows this)."""
        from therapygym.stats import format_ci

        head = f"<p><b>{html.escape(self.run_id)}</b> in {html.escape(str(self.store_path))}"
        if self.summary is None:
            return head + ": sessions only, not judged.</p>"
        judges = ", ".join(self.summary.judges) or "no judge scored a session"
        notes = [f"Judged by {html.escape(judges)}; 95% bootstrap CIs over sessions."]
        if note := self.failure_note():
            notes.append(f"<b>Failed:</b> {html.escape(note)}")
        if self.summary.embedded_judges:
            notes.append("Scores from the embedded 135M judge carry no clinical meaning.")
        columns = ("therapist", "n", "CTRS total /66", "normalised", "violation rate")
        rows = [
            (
                t.therapist,
                str(t.sessions),
                format_ci(t.ctrs_total),
                format_ci(t.ctrs_normalised, "{:.2f}"),
                format_ci(t.violation_rate, "{:.0%}"),
            )
            for t in self.summary.therapists
        ]
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        header = "".join(f"<th>{c}</th>" for c in columns)
        return (
            f"{head}</p><table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"
            + "".join(f"<p>{n}</p>" for n in notes)
        )


def load_run(
    run_id: str,
    *,
    store: Path | str | None = None,
    judges: Sequence[str] | None = None,
    aggregation: Aggregation = "mean",
) -> Evaluation:
    """A stored run (made by the CLI or by `evaluate`) as an Evaluation: the scores of
    `judges` (specs or the labels a summary shows), else of every judge that scored it,
    as one panel (what `therapygym report RUN` shows). `failures` count the sessions the
    store holds as failed and the judgements stored with an error."""
    from therapygym.config import check_aggregation, judge_labels

    check_aggregation(aggregation)
    labels = judge_labels(judges)
    run_store = RunStore(store, read_only=True)
    try:
        summary = summarise(run_store, run_id, aggregation, judges=labels)
        heads = run_store.session_heads(run_id)
        records = judged_by(run_id, run_store.scores(run_id), labels)
    finally:
        run_store.close()
    failed = [h for h in heads if h.status.value == "failed"]
    # a judgement unit is one judge's sample of one rubric on one session, as the runner
    # counts them; it failed when any of its records holds an error
    units = {(r.session_id, r.judge, r.rubric_id, r.sample) for r in records}
    wrong = {(r.session_id, r.judge, r.rubric_id, r.sample) for r in records if r.error}
    return Evaluation(
        run_id=run_id,
        store_path=run_store.path,
        summary=summary,
        judges=tuple(labels) if labels is not None else None,
        aggregation=aggregation,
        failures=(
            Tally("sessions", len(failed), len(heads)),
            Tally("judgement units", len(wrong), len(units)),
        ),
        errors=tuple(
            [f"{h.session_id}: {h.error}" for h in failed]
            + [f"{r.session_id} {r.rubric_id} {r.judge}: {r.error}" for r in records if r.error]
        ),
    )
