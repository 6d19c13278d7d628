"""Many sessions at once: profiles x therapists x samples, concurrent, resumable.

The runner owns nothing clinical: it builds participants, schedules `Session.run()`
under a concurrency limit, saves each finished session to the store as soon as it ends,
and shows progress (sessions, ETA, tokens, cost). Re-running a run id skips the sessions
the store already holds as finished; failed sessions are tried again.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient
from therapygym.session import Participant, Session, SessionConfig, Transcript, session_id_for
from therapygym.store import RunStore
from therapygym.therapists import load_therapist


class RunPlan(BaseModel):
    """What a run is: recorded with the run, and checked again on resume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    therapists: tuple[str, ...] = Field(min_length=1)
    therapist_prompt: str | None = None
    patient_model: str = "local:smollm2"
    profiles: tuple[str, ...] = Field(min_length=1, description="Profile id@version.")
    samples: int = Field(1, ge=1, le=1000)
    session: SessionConfig = SessionConfig()

    def record(self) -> dict[str, Any]:
        """The run's identity as stored (concurrency and cache are not part of it)."""
        return self.model_dump(mode="json", exclude={"run_id"})


@dataclass
class RunResult:
    run_id: str
    planned: int
    skipped: int
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    usage: UsageLedger = field(default_factory=UsageLedger)


@dataclass
class _Participants:
    """The models and therapists of one run, built once and shared by its sessions."""

    patient_model: AccountedModel
    therapists: dict[str, Participant]
    bases: list[BaseChatModel]

    async def aclose(self) -> None:
        for base in self.bases:
            await base.aclose()


def _participants(
    plan: RunPlan,
    ledger: UsageLedger,
    cache: ResponseCache | None,
    models_file: Path | str | None,
) -> _Participants:
    bases: list[BaseChatModel] = []
    patient_base = load_model(plan.patient_model, cache=cache, models_file=models_file)
    bases.append(patient_base)
    therapists: dict[str, Participant] = {}
    for spec in plan.therapists:
        therapist, base = load_therapist(
            spec,
            cache=cache,
            models_file=models_file,
            prompt=plan.therapist_prompt,
            ledger=ledger,
        )
        if base is not None:
            bases.append(base)
        therapists[spec] = therapist
    return _Participants(AccountedModel(patient_base, "patient", ledger), therapists, bases)


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("{task.fields[tokens]} tok"),
        TextColumn("{task.fields[cost]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
        transient=False,
    )


async def run_plan(
    plan: RunPlan,
    profiles: list[PatientProfile],
    store: RunStore,
    *,
    cache: ResponseCache | None,
    concurrency: int = 8,
    models_file: Path | str | None = None,
    console: Console | None = None,
) -> RunResult:
    """Run every (profile, therapist, sample) session of the plan that is not yet done."""
    by_id = {p.id: p for p in profiles}
    resumed = store.ensure_run(plan.run_id, plan.record())
    done = store.finished_session_ids(plan.run_id) if resumed else set()
    jobs = [
        (by_id[ref.split("@")[0]], spec, sample)
        for ref, spec, sample in itertools.product(
            plan.profiles, plan.therapists, range(plan.samples)
        )
    ]
    todo = [
        job for job in jobs if session_id_for(plan.run_id, job[0].id, job[1], job[2]) not in done
    ]
    result = RunResult(run_id=plan.run_id, planned=len(jobs), skipped=len(jobs) - len(todo))
    if not todo:
        return result
    people = _participants(plan, result.usage, cache, models_file)
    gate = asyncio.Semaphore(concurrency)

    async def one(profile: PatientProfile, spec: str, sample: int) -> Transcript:
        async with gate:
            session = Session(
                session_id=session_id_for(plan.run_id, profile.id, spec, sample),
                patient=LLMPatient(profile, people.patient_model),
                therapist=people.therapists[spec],
                profile_id=profile.id,
                profile_version=profile.version,
                config=plan.session,
                run_id=plan.run_id,
                sample=sample,
            )
            session.transcript.meta["cues_tracked"] = True  # the safety judge relies on it
            transcript = await session.run()
            store.save_session(transcript)
            return transcript

    try:
        with _progress(console) as progress:
            task = progress.add_task(plan.run_id, total=len(todo), failed=0, tokens=0, cost="")
            for finished in asyncio.as_completed([one(*job) for job in todo]):
                transcript = await finished
                if transcript.status == "failed":
                    result.failed += 1
                    result.errors.append(f"{transcript.session_id}: {transcript.error}")
                else:
                    result.completed += 1
                total = result.usage.total()
                progress.update(
                    task,
                    advance=1,
                    failed=result.failed,
                    tokens=total.total_tokens,
                    cost="" if total.cost_usd is None else f"${total.cost_usd:.4f}",
                )
    finally:
        await people.aclose()
    return result
