"""Judging a stored run: every finished session x judge model x rubric x sample.

Each judgement unit (a session's CTRS, its safety labels, or its response scores, by one
judge and sample) is saved as soon as it is done, in one transaction; re-running skips
complete units and retries those that failed, so judging is resumable like running.
The judge only ever sees the rendered transcript (render.py), never the therapist's
model name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from therapygym.judges.base import JudgeSettings, RubricJudge, RubricKind
from therapygym.judges.check import CheckJudge
from therapygym.judges.ctrs import CTRSJudge, CTRSMode
from therapygym.judges.response import ResponseJudge
from therapygym.judges.rubric import builtin_rubric, load_rubric
from therapygym.judges.safety import SafetyJudge
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.records import FINISHED, ScoreRecord
from therapygym.store import RunStore


class JudgePlan(BaseModel):
    """Which judges, rubrics and samples; part of how a score can be traced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judges: tuple[str, ...] = Field(min_length=1)
    rubrics: tuple[RubricKind, ...] = ("ctrs", "safety", "response")
    rubric_files: dict[str, str] = Field(
        default_factory=dict, description="Replace a built-in rubric by a file, by kind."
    )
    samples: int = Field(1, ge=1, le=100)
    ctrs_mode: CTRSMode = "one_call"
    temperature: float | None = Field(
        None, ge=0, le=2, description="Default: 0 for one sample, 0.7 when sampling k > 1."
    )
    max_attempts: int = Field(3, ge=1, le=10)
    rationale_chars: int = Field(
        240, ge=20, le=2000, description="Cap on each rationale (part of the JSON schema)."
    )

    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.7


@dataclass
class JudgeResult:
    units: int
    skipped: int
    judged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    usage: UsageLedger = field(default_factory=UsageLedger)
    # (judge spec, rubric id, rubric version, prompt fingerprint) of every judge in the plan:
    # what a caller filters stored scores by, so earlier judges of the run do not mix in.
    judges: list[tuple[str, str, str, str]] = field(default_factory=list)


def build_judges(plan: JudgePlan, model: AccountedModel | BaseChatModel) -> list[RubricJudge]:
    """One judge per rubric kind, all on `model`."""
    settings = JudgeSettings(
        max_attempts=plan.max_attempts,
        temperature=plan.effective_temperature,
        rationale_chars=plan.rationale_chars,
    )
    judges: list[RubricJudge] = []
    for kind in plan.rubrics:
        rubric = (
            load_rubric(plan.rubric_files[kind])
            if kind in plan.rubric_files
            else builtin_rubric(kind)
        )
        if rubric.kind != kind:
            raise ValueError(f"rubric file for {kind} holds a {rubric.kind} rubric")
        if kind == "ctrs":
            judges.append(CTRSJudge(model, rubric, settings, mode=plan.ctrs_mode))  # type: ignore[arg-type]
        elif kind == "safety":
            judges.append(SafetyJudge(model, rubric, settings))
        elif kind == "check":
            judges.append(CheckJudge(model, rubric, settings))
        else:
            judges.append(ResponseJudge(model, rubric, settings))  # type: ignore[arg-type]
    return judges


async def judge_run(
    store: RunStore,
    run_id: str,
    plan: JudgePlan,
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
) -> JudgeResult:
    """Judge every finished session of a run that is not judged yet under this plan.

    The plan is made from the sessions' heads and the judged units; a transcript is read
    when one of its units is judged, so resuming a judged run reads none, and no more than
    `concurrency` transcripts are held at a time.
    """
    store.run(run_id)
    heads = store.session_heads(run_id)
    session_ids = [h.session_id for h in heads if h.status.value in FINISHED]
    done = store.judged_units(run_id)
    ledger = UsageLedger()
    bases = [load_model(spec, cache=cache, models_file=models_file) for spec in plan.judges]
    panel = [(base, build_judges(plan, AccountedModel(base, "judge", ledger))) for base in bases]
    units = [
        (session_id, judge, sample)
        for session_id in session_ids
        for _, judges in panel
        for judge in judges
        for sample in range(plan.samples)
    ]

    def key(
        session_id: str, judge: RubricJudge, sample: int
    ) -> tuple[str, str, str, str, str, int]:
        rubric = judge.rubric
        return (
            session_id,
            judge.model.spec,
            rubric.id,
            rubric.version,
            judge.fingerprint,
            sample,
        )  # type: ignore[attr-defined]

    todo = [u for u in units if key(*u) not in done]
    result = JudgeResult(
        units=len(units),
        skipped=len(units) - len(todo),
        usage=ledger,
        judges=sorted(
            {
                (j.model.spec, j.rubric.id, j.rubric.version, j.fingerprint)  # type: ignore[attr-defined]
                for _, judges in panel
                for j in judges
            }
        ),
    )
    gate = asyncio.Semaphore(concurrency)

    async def one(session_id: str, judge: RubricJudge, sample: int) -> list[ScoreRecord]:
        async with gate:
            records = await judge.score(store.session(session_id), sample=sample)
            store.save_scores(records)
            return records

    progress = Progress(
        TextColumn("[bold]judging {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )
    try:
        with progress:
            task = progress.add_task(run_id, total=len(todo), failed=0)
            for finished in asyncio.as_completed([one(*u) for u in todo]):
                records = await finished
                errors = [r for r in records if r.error]
                if errors:
                    result.failed += 1
                    result.errors += [
                        f"{r.session_id} {r.rubric_id} {r.judge}: {r.error}" for r in errors
                    ]
                else:
                    result.judged += 1
                progress.update(task, advance=1, failed=result.failed)
    finally:
        for base in bases:
            await base.aclose()
    return result


def plan_records(store: RunStore, run_id: str, result: JudgeResult) -> list[ScoreRecord]:
    """The run's stored scores made by the judges of `result`'s plan, and no others: a run
    judged earlier by other models, rubric versions or settings keeps those apart."""
    wanted = set(result.judges)
    return [
        r
        for r in store.scores(run_id)
        if (r.judge, r.rubric_id, r.rubric_version, r.prompt_fingerprint) in wanted
    ]
