"""Judges by rubric kind: the one place a judging plan becomes judges.

A new judge kind is a module with a `RubricJudge` subclass plus one line here (or an entry
point in the group `therapygym.judges`); `eval`, `judge`, calibration, the probes and the
training reward all build their judges through `build_judges`, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio

from therapygym.judges.base import JudgeSettings, RubricJudge
from therapygym.judges.plan import JudgePlan
from therapygym.judges.rubric import builtin_rubric, load_rubric
from therapygym.models.types import ChatModel
from therapygym.records import ScoreRecord, Transcript
from therapygym.registry import Registry

JUDGES: Registry[type[RubricJudge]] = Registry("judge kind", group="therapygym.judges")
JUDGES.register("ctrs", "therapygym.judges.ctrs:CTRSJudge")
JUDGES.register("safety", "therapygym.judges.safety:SafetyJudge")
JUDGES.register("response", "therapygym.judges.response:ResponseJudge")
JUDGES.register("check", "therapygym.judges.check:CheckJudge")
JUDGES.register("mi", "therapygym.judges.mi:MIJudge")
JUDGES.register("patient_fidelity", "therapygym.judges.patient_fidelity:PatientFidelityJudge")


def settings_for(plan: JudgePlan) -> JudgeSettings:
    return JudgeSettings(
        max_attempts=plan.max_attempts,
        temperature=plan.effective_temperature,
        rationale_chars=plan.rationale_chars,
    )


def build_judges(plan: JudgePlan, model: ChatModel) -> list[RubricJudge]:
    """One judge per rubric of the plan (the version its ref names), all on `model`."""
    settings = settings_for(plan)
    judges: list[RubricJudge] = []
    for kind, version in plan.refs:
        rubric = (
            load_rubric(plan.rubric_files[kind])
            if kind in plan.rubric_files
            else builtin_rubric(kind, version)
        )
        if rubric.kind != kind:
            raise ValueError(f"rubric file for {kind} holds a {rubric.kind} rubric")
        judges.append(JUDGES.get(kind).from_plan(model, rubric, settings, plan))
    return judges


async def judge_transcript(
    judges: list[RubricJudge], transcript: Transcript, samples: int, gate: asyncio.Semaphore
) -> list[ScoreRecord]:
    """Every judge's `samples` judgements of one transcript, at most `gate` calls at once
    (the training reward scores sessions one by one as they finish)."""

    async def one(judge: RubricJudge, sample: int) -> list[ScoreRecord]:
        async with gate:
            return await judge.score(transcript, sample=sample)

    batches = await asyncio.gather(*(one(j, s) for j in judges for s in range(samples)))
    return [r for batch in batches for r in batch]
