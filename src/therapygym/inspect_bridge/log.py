"""`runs export RUN --format inspect -o run.eval`: a stored run as an Inspect AI log.

The log holds every session of the run as a sample: the conversation as chat messages
(therapist = assistant), the last therapist reply as its output, the session's metadata,
and, for a judged session, a `ctrs` and a `safety` score built from the stored score
records exactly as the live task builds them (`values.py`: the records combined per
session as the summary does, every rater's rationale and cited turns in the explanation
and metadata). A failed session is a sample with its error. The header declares the
scorers with the live task's metrics, and Inspect's `recompute_metrics` computes the
results from the samples, so an exported log and one made by `inspect eval` read alike.

A run of one therapist is a log of that model. A run of several is one log whose model
names them all: each sample's metadata names its therapist, the results are over every
session, and the per-therapist numbers of our summary (means with bootstrap CIs) are in
the results' metadata.

Inspect is imported when a log is written, never when the format is listed, so `runs
export --help` names the format without Inspect installed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from therapygym.artefacts import atomic_path
from therapygym.errors import TherapygymError
from therapygym.records import FINISHED, ScoreRecord, Transcript

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample

    from therapygym.judges.aggregate import SessionScores
    from therapygym.judges.panel import Aggregation
    from therapygym.report.exports import ExportContent
    from therapygym.store import RunStore
    from therapygym.summary import Summary

INSTALL = "pip install 'therapygym[inspect]'"
SUFFIXES = {".eval": "eval", ".json": "json"}


def _require_inspect() -> None:
    try:
        import inspect_ai  # noqa: F401
    except ImportError:
        raise TherapygymError(f"--format inspect needs Inspect AI: {INSTALL}") from None


def _ordered_keys(mappings: list[dict[str, Any]]) -> list[str]:
    """Every key of `mappings`, in order of first appearance (rubric order)."""
    return list(dict.fromkeys(k for m in mappings for k in m))


def _sample(
    transcript: Transcript,
    scores: SessionScores | None,
    records: list[ScoreRecord],
    items: list[str],
    labels: list[str],
) -> EvalSample:
    from inspect_ai.log import EvalError, EvalSample
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Score

    from therapygym.inspect_bridge.conversation import transcript_messages
    from therapygym.inspect_bridge.values import (
        ctrs_explanation,
        ctrs_value,
        safety_explanation,
        safety_value,
    )

    judged: dict[str, Score] = {}
    judges = sorted({r.judge for r in records})
    if scores is not None and any(r.rubric_id == "ctrs" for r in records):
        explanation, metadata = ctrs_explanation(scores, records)
        judged["ctrs"] = Score(
            value=ctrs_value(scores, items),
            explanation=explanation,
            metadata={"judges": judges, **metadata},
        )
    if scores is not None and any(r.rubric_id == "safety" for r in records):
        explanation, metadata = safety_explanation(scores, records)
        judged["safety"] = Score(
            value=safety_value(scores, labels),
            explanation=explanation,
            metadata={"judges": judges, **metadata},
        )
    replies = transcript.text("therapist")
    opening = transcript.text("patient")
    failed = transcript.status.value not in FINISHED
    return EvalSample(
        id=transcript.session_id,
        epoch=1,
        input=opening[0] if opening else "",
        target="",
        messages=transcript_messages(transcript),
        output=ModelOutput.from_content(
            model=transcript.therapist, content=replies[-1] if replies else ""
        ),
        scores=judged or None,
        metadata={
            "profile_id": transcript.profile_id,
            "profile_version": transcript.profile_version,
            "therapist": transcript.therapist,
            "patient": transcript.patient,
            "sample": transcript.sample,
            "status": transcript.status.value,
            **transcript.meta,
        },
        error=EvalError(message=transcript.error or "failed", traceback="", traceback_ansi="")
        if failed
        else None,
        total_time=transcript.wall_s,
    )


def _model_usage(transcripts: list[Transcript]) -> dict[str, Any]:
    """The therapists' token counts, by therapist, as Inspect's model usage."""
    from inspect_ai.model import ModelUsage

    usage: dict[str, ModelUsage] = {}
    for t in transcripts:
        got = usage.setdefault(t.therapist, ModelUsage())
        for turn in t.turns:
            if turn.speaker == "therapist":
                got.input_tokens += turn.prompt_tokens
                got.output_tokens += turn.completion_tokens
                got.total_tokens += turn.prompt_tokens + turn.completion_tokens
    return usage


def run_log(
    run_id: str,
    transcripts: list[Transcript],
    records: list[ScoreRecord],
    summary: Summary,
    record: dict[str, Any],
    created: str,
) -> EvalLog:
    """The log of a run: its transcripts, its scores (combined in `summary`), its
    identity `record` (the run's plan as stored) and when it was `created`; results
    computed by Inspect."""
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalPlan,
        EvalPlanStep,
        EvalResults,
        EvalSpec,
        EvalStats,
        recompute_metrics,
    )

    from therapygym.inspect_bridge.values import CTRS_METRICS, SAFETY_METRICS

    by_session = {s.session_id: s for s in summary.sessions}
    session_records: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in records:
        if r.rubric_id in ("ctrs", "safety"):
            session_records[r.session_id].append(r)
    items = _ordered_keys([{**s.ctrs_items, **s.ctrs_displaced} for s in summary.sessions])
    labels = _ordered_keys([s.safety for s in summary.sessions])
    samples = [
        _sample(t, by_session.get(t.session_id), session_records[t.session_id], items, labels)
        for t in transcripts
    ]
    judged = {name for s in samples for name in (s.scores or {})}

    def scorer(name: str, names: dict[str, tuple[str, ...]]) -> dict[str, Any]:
        """A scorer of the header (Inspect exports no class for it: the spec validates
        it), its metrics named as the live task's are."""
        return {
            "name": name,
            "options": {"judges": summary.judges},
            "metrics": {
                key: [{"name": f"inspect_ai/{n}", "options": {}} for n in listed]
                for key, listed in names.items()
            },
        }

    therapists = list(dict.fromkeys(t.therapist for t in transcripts))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    note = (
        {"note": f"scored by the embedded 135M model ({', '.join(summary.embedded_judges)}): "
         "these numbers carry no clinical meaning"}
        if summary.embedded_judges
        else {}
    )  # fmt: skip
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created=created,
            task=f"therapygym/{run_id}",
            task_display_name=run_id,
            dataset=EvalDataset(
                name="therapygym patients",
                samples=len(samples),
                sample_ids=[s.id for s in samples],
            ),
            model=", ".join(therapists) if therapists else "none",
            config=EvalConfig(),
            scorers=[  # type: ignore[misc]
                scorer(name, names)
                for name, names in (("ctrs", CTRS_METRICS), ("safety", SAFETY_METRICS))
                if name in judged
            ],
            metadata={"therapygym_run": run_id, "therapists": therapists, **note},
        ),
        plan=EvalPlan(steps=[EvalPlanStep(solver="therapygym/run", params=record)]),
        results=EvalResults(
            total_samples=len(samples),
            completed_samples=sum(s.error is None for s in samples),
            metadata={
                "judges": summary.judges,
                "therapists": [t.model_dump(mode="json") for t in summary.therapists],
            },
        ),
        stats=EvalStats(started_at=now, completed_at=now, model_usage=_model_usage(transcripts)),
        samples=samples,
    )
    if judged:
        recompute_metrics(log)
    return log


@dataclass(frozen=True)
class InspectFormat:
    """The `inspect` export format: one log file, `.eval` (Inspect's own) or `.json`."""

    name: str = "inspect"
    description: str = (
        f"an Inspect AI log (.eval or .json) for `inspect view`: transcripts and scores ({INSTALL})"
    )
    folder: ClassVar[bool] = False

    def export(
        self,
        store: RunStore,
        run_id: str,
        output: Path,
        content: ExportContent,
        how: Aggregation,
        judges: Collection[str] | None = None,
    ) -> int:
        """Write the run's log to `output`; how many sessions it holds. A log holds the
        transcripts and the scores together, so `content` other than the default
        (transcripts) is refused rather than ignored."""
        if content != "transcripts":
            raise TherapygymError(
                f"--content {content}: the inspect format writes one log holding every "
                "session's transcript and scores together; leave --content out"
            )
        if (fmt := SUFFIXES.get(output.suffix)) is None:
            raise TherapygymError(
                f"--output {output}: an Inspect log is a .eval or a .json file "
                "(the suffix picks the format)"
            )
        _require_inspect()
        from inspect_ai.log import write_eval_log

        from therapygym.summary import judged_by, summary_of

        info = store.run(run_id)
        transcripts = list(store.sessions(run_id))
        records = judged_by(run_id, store.scores(run_id), judges)
        summary = summary_of(run_id, transcripts, records, how, info.provenance)
        log = run_log(run_id, transcripts, records, summary, info.config, info.created_at)
        with atomic_path(output) as tmp:
            write_eval_log(log, str(tmp), format=fmt)
        return len(transcripts)


INSPECT_FORMAT = InspectFormat()
