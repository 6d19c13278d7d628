"""Many sessions at once: profiles x therapists x samples, concurrent, resumable.

The runner owns nothing clinical: it builds participants, schedules `Session.run()`
under a concurrency limit, saves each finished session to the store as soon as it ends,
and shows progress (sessions, ETA, tokens, cost). Re-running a run id skips the sessions
the store already holds as finished; failed sessions are tried again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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

from therapygym.judges.check import QUESTIONS_KEY
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient
from therapygym.records import SessionConfig, Speaker, Transcript, session_id_for
from therapygym.session import Participant, Session, Utterance
from therapygym.store import RunStore
from therapygym.therapists import load_therapist

K = TypeVar("K")  # what names one session of a run (profile x therapist x sample, ...)


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
    check_questions: dict[str, str] = Field(
        default_factory=dict,
        description="Questions for the check-question judge about every session of the run.",
    )

    def record(self) -> dict[str, Any]:
        """The run's identity as stored (concurrency and cache are not part of it; empty
        check questions are left out, so runs stored before they existed still resume)."""
        skip = {"run_id"} | (set() if self.check_questions else {"check_questions"})
        return self.model_dump(mode="json", exclude=skip)


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
class Therapists:
    """The therapists of one run, built once and shared by its sessions, with the models
    behind them (and any other model the run built) to close at the end."""

    by_spec: dict[str, Participant]
    bases: list[BaseChatModel]

    async def aclose(self) -> None:
        for base in self.bases:
            await base.aclose()


def load_therapists(
    specs: tuple[str, ...],
    ledger: UsageLedger,
    cache: ResponseCache | None,
    models_file: Path | str | None,
    prompt: str | None = None,
) -> Therapists:
    bases: list[BaseChatModel] = []
    therapists: dict[str, Participant] = {}
    for spec in specs:
        therapist, owned = load_therapist(
            spec, cache=cache, models_file=models_file, prompt=prompt, ledger=ledger
        )
        bases.extend(owned)
        therapists[spec] = therapist
    return Therapists(therapists, bases)


@dataclass(frozen=True)
class SessionJob:
    """One session to run: who the patient is, which therapist, and any turns that are
    already said when it starts (a probe's scripted context)."""

    session_id: str
    profile_id: str
    therapist: str
    sample: int
    patient: Participant
    config: SessionConfig
    profile_version: int | None = None
    context: tuple[tuple[Speaker, str], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # default: derived from the session id


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
    jobs = itertools.product(plan.profiles, plan.therapists, range(plan.samples))
    keys = [(by_id[ref.split("@")[0]], spec, sample) for ref, spec, sample in jobs]

    def sid(key: tuple[PatientProfile, str, int]) -> str:
        profile, spec, sample = key
        return session_id_for(plan.run_id, profile.id, spec, sample)

    def build(
        todo: list[tuple[PatientProfile, str, int]], ledger: UsageLedger
    ) -> tuple[list[SessionJob], Therapists]:
        patient_base = load_model(plan.patient_model, cache=cache, models_file=models_file)
        patient_model = AccountedModel(patient_base, "patient", ledger)
        people = load_therapists(plan.therapists, ledger, cache, models_file, plan.therapist_prompt)
        people.bases.append(patient_base)
        return [
            SessionJob(
                session_id=sid((profile, spec, sample)),
                profile_id=profile.id,
                profile_version=profile.version,
                therapist=spec,
                sample=sample,
                patient=LLMPatient(profile, patient_model),
                config=plan.session,
                meta={
                    "cues_tracked": True,  # the safety judge relies on it
                    **({QUESTIONS_KEY: dict(plan.check_questions)} if plan.check_questions else {}),
                },
            )
            for profile, spec, sample in todo
        ], people

    return await run_jobs(
        plan.run_id,
        plan.record(),
        keys,
        session_id=sid,
        build=build,
        store=store,
        concurrency=concurrency,
        console=console,
    )


async def run_jobs(
    run_id: str,
    record: dict[str, Any],
    keys: Sequence[K],
    *,
    session_id: Callable[[K], str],
    build: Callable[[list[K], UsageLedger], tuple[list[SessionJob], Therapists]],
    store: RunStore,
    concurrency: int = 8,
    console: Console | None = None,
) -> RunResult:
    """Run a run's sessions that are not finished yet, under a concurrency limit, saving
    each as it ends.

    `record` is the run's identity (a resume with a different one is refused); `keys` are
    its sessions, named by `session_id`; `build` turns the keys still to do into jobs and
    the therapists they need. It is called only when there is work, so a finished run
    loads no model, and before the run is recorded, so a spec that fails to load leaves
    nothing in the store.
    """
    done = store.finished_session_ids(run_id)  # empty for a run not stored yet
    pending = [k for k in keys if session_id(k) not in done]
    ledger = UsageLedger()
    result = RunResult(
        run_id=run_id, planned=len(keys), skipped=len(keys) - len(pending), usage=ledger
    )
    # Models are built before the run is recorded, so a bad spec leaves no run behind
    # (a retry with the spec fixed would otherwise be refused as a changed config).
    todo, people = build(pending, ledger) if pending else ([], None)
    try:
        store.ensure_run(run_id, record)
    except BaseException:
        if people is not None:
            await people.aclose()
        raise
    if people is None:
        return result
    gate = asyncio.Semaphore(concurrency)

    async def one(job: SessionJob) -> Transcript:
        async with gate:
            session = Session(
                session_id=job.session_id,
                patient=job.patient,
                therapist=people.by_spec[job.therapist],
                profile_id=job.profile_id,
                profile_version=job.profile_version,
                config=job.config,
                run_id=run_id,
                sample=job.sample,
                seed=job.seed,
            )
            session.transcript.meta.update(job.meta)
            for speaker, text in job.context:
                session.add(speaker, Utterance(text=text))
            transcript = await session.run()
            store.save_session(transcript)
            return transcript

    try:
        with _progress(console) as progress:
            task = progress.add_task(run_id, total=len(todo), failed=0, tokens=0, cost="")
            for finished in asyncio.as_completed([one(job) for job in todo]):
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
