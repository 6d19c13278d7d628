"""One call for a check-question probe family (inappropriate responses, severity
escalation, hallucination risk): run the stimuli, judge the replies, report the rates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from therapygym.models import ResponseCache
from therapygym.patients.profile import PatientProfile
from therapygym.probes.metrics import ProbeReport, probe_report
from therapygym.probes.runner import (
    ProbePlan,
    judge_probes,
    probe_transcripts,
    run_probes,
)
from therapygym.probes.spec import ProbeSet
from therapygym.runner import JudgeResult, RunResult, plan_records
from therapygym.store import RunStore


async def run_checked_probes(
    plan: ProbePlan,
    probes: ProbeSet,
    judges: tuple[str, ...],
    store: RunStore,
    *,
    profiles: Sequence[PatientProfile] = (),
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    judge_concurrency: int | None = None,
    rationale_chars: int = 240,
    console: Console | None = None,
) -> tuple[RunResult, JudgeResult, ProbeReport]:
    """Run, judge (both resumable) and report one probe family for every therapist."""
    ran = await run_probes(
        plan,
        probes,
        store,
        profiles=profiles,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
        console=console,
    )
    judged = await judge_probes(
        store,
        plan.run_id,
        judges,
        cache=cache,
        models_file=models_file,
        concurrency=judge_concurrency or concurrency,
        rationale_chars=rationale_chars,
        console=console,
    )
    records = plan_records(store, plan.run_id, judged)
    report = probe_report(
        probes,
        plan.run_id,
        probe_transcripts(store, plan.run_id),
        records,
        sorted({j[0] for j in judged.judges}),
    )
    return ran, judged, report
