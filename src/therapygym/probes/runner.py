"""Running probes: each stimulus put to each therapist, through the same session loop and
store as simulated sessions, then answered by the check-question judge.

A stimulus is a scripted exchange: its context turns are recorded as already said, the
patient sends the probe message and then each scripted follow-up, one after each of the
therapist's replies, and the session ends after the therapist's last reply. With
`inject_after=k` the messages are instead slipped into a simulated session after the
patient's k-th turn, so the therapist meets them mid-conversation, where a safety lapse is
likelier than in a cold open. Sessions are stored as they finish and judged unit by unit,
so a killed probe run resumes like any other.

A probe run records its stimuli as `family@version#fingerprint` (`ProbeSet.ref`), and so
does each of its transcripts. Resuming a run, or reporting one, with other stimuli is
refused in one line that names both: rates from two wordings of a probe are never pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from therapygym.judges.check import QUESTIONS_KEY
from therapygym.judges.plan import JudgePlan
from therapygym.models import AccountedModel, ResponseCache, UsageLedger, load_model
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient, ScriptedPatient, simulated_meta
from therapygym.probes.spec import ProbeSet, Stimulus, kept_version_hint
from therapygym.records import SessionConfig, Transcript, Turn, session_id_for
from therapygym.runner import (
    JudgeResult,
    RunResult,
    SessionJob,
    Therapists,
    judge_run,
    load_therapists,
    run_jobs,
)
from therapygym.session import Utterance
from therapygym.store import RunStore, StoreError


class ProbePlan(BaseModel):
    """What a probe run is; recorded with the run and checked again on resume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    therapists: tuple[str, ...] = Field(min_length=1)
    therapist_prompt: str | None = None
    samples: int = Field(1, ge=1, le=100)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=8, le=8192)
    inject_after: int | None = Field(
        None, ge=1, le=20, description="Slip the message into a simulated session after k turns."
    )
    patient_model: str | None = Field(None, description="The simulator, with inject_after.")
    profiles: tuple[str, ...] = Field(
        default=(), description="Profile id@version, with inject_after."
    )


class InjectedPatient:
    """A simulated patient who, after `after` turns of their own, says the probe messages
    (the message, then each follow-up after the therapist's reply); the therapist's reply
    to the last is the last turn. A simulated patient who wants to leave earlier raises the
    messages instead of leaving, so every session delivers them."""

    def __init__(self, simulated: LLMPatient, messages: Sequence[str], after: int) -> None:
        if not messages:
            raise ValueError("an injected probe needs at least one message")
        self.simulated = simulated
        self.messages = list(messages)
        self.after = after
        self.label = f"{simulated.label}+probe"

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        said = [t.text for t in turns if t.speaker == "patient"]
        if self.messages[0] in said:  # the probe has begun: go on with it, then leave
            delivered = len(said) - said.index(self.messages[0])
            if delivered >= len(self.messages):
                return Utterance(text="", end_session=True)  # answered: the session is over
            return Utterance(text=self.messages[delivered])
        if len(said) >= self.after:
            return Utterance(text=self.messages[0])
        simulated = await self.simulated.respond(turns, seed=seed, config=config)
        return Utterance(text=self.messages[0]) if simulated.end_session else simulated


def probe_meta(probes: ProbeSet, stimulus: Stimulus) -> dict[str, Any]:
    """What a probe transcript carries: where it came from and the questions on its reply."""
    return {
        "probe_family": probes.family,
        "probe_set": probes.ref,
        "stimulus": stimulus.id,
        "condition": stimulus.condition,
        "severity": stimulus.severity.value if stimulus.severity else None,
        "exercise": stimulus.exercise,
        "follow_ups": len(stimulus.follow_up),
        QUESTIONS_KEY: {c.id: c.question for c in stimulus.checks},
    }


_Key = tuple[Stimulus, PatientProfile | None, str, int]  # stimulus, host, therapist, sample


def _unit(stimulus: Stimulus, profile: PatientProfile | None) -> str:
    return stimulus.id if profile is None else f"{stimulus.id}@{profile.id}"


async def run_probes(
    plan: ProbePlan,
    probes: ProbeSet,
    store: RunStore,
    *,
    profiles: Sequence[PatientProfile] = (),
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
) -> RunResult:
    """Put every stimulus (x profile, when injecting) to every therapist, `samples` times."""
    if plan.inject_after and not (profiles and plan.patient_model):
        raise ValueError("inject_after needs profiles and a patient_model")
    hosts: list[PatientProfile | None] = list(profiles) if plan.inject_after else [None]
    keys = [
        (stimulus, host, spec, sample)
        for stimulus in probes.stimuli
        for host in hosts
        for spec in plan.therapists
        for sample in range(plan.samples)
    ]
    record = {**plan.model_dump(mode="json", exclude={"run_id"}), "probe_set": probes.ref}
    check_probe_set(store, plan.run_id, probes)

    def sid(key: _Key) -> str:
        stimulus, host, spec, sample = key
        return session_id_for(plan.run_id, _unit(stimulus, host), spec, sample)

    def build(todo: list[_Key], ledger: UsageLedger) -> tuple[list[SessionJob], Therapists]:
        people = load_therapists(plan.therapists, ledger, cache, models_file, plan.therapist_prompt)
        simulator = None
        if plan.inject_after:
            base = load_model(plan.patient_model, cache=cache, models_file=models_file)  # type: ignore[arg-type]
            people.bases.append(base)
            simulator = AccountedModel(base, "patient", ledger)
        jobs = []
        for stimulus, host, spec, sample in todo:
            meta = probe_meta(probes, stimulus)
            probe = [stimulus.message, *stimulus.follow_up]
            if host is None:
                said = [t.text for t in stimulus.context if t.speaker == "patient"]
                patient: Any = ScriptedPatient([*said, *probe], label="probe")
                context = tuple((t.speaker, t.text) for t in stimulus.context)
                turns = len(stimulus.context) + 2 * len(probe)
            else:
                played = LLMPatient.for_session(
                    host, simulator, sid((stimulus, host, spec, sample))
                )  # type: ignore[arg-type]
                patient = InjectedPatient(played, probe, plan.inject_after)  # type: ignore[arg-type]
                context = ()
                # k exchanges, then the probe's
                turns = 2 * (plan.inject_after + len(probe))  # type: ignore[operator]
                meta = {
                    **meta,
                    **simulated_meta(host, played.cue_turns),
                    "host_profile": host.id,
                    "injected_after": plan.inject_after,
                }
            jobs.append(
                SessionJob(
                    session_id=sid((stimulus, host, spec, sample)),
                    profile_id=_unit(stimulus, host),
                    profile_version=host.version if host else None,
                    therapist=spec,
                    sample=sample,
                    patient=patient,
                    config=SessionConfig(
                        max_turns=turns,
                        temperature=plan.temperature,
                        max_tokens=plan.max_tokens,
                    ),
                    context=context,
                    meta=meta,
                )
            )
        return jobs, people

    return await run_jobs(
        plan.run_id,
        record,
        keys,
        session_id=sid,
        build=build,
        store=store,
        concurrency=concurrency,
        console=console,
    )


async def judge_probes(
    store: RunStore,
    run_id: str,
    judges: tuple[str, ...],
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    rationale_chars: int = 240,
    console: Console | None = None,
) -> JudgeResult:
    """The check-question judge over a probe run (resumable like any judging)."""
    plan = JudgePlan(judges=judges, rubrics=("check",), rationale_chars=rationale_chars)
    return await judge_run(
        store,
        run_id,
        plan,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
        console=console,
    )


def probe_transcripts(store: RunStore, run_id: str) -> list[Transcript]:
    return [t for t in store.sessions(run_id) if t.meta.get("probe_family")]


def check_probe_set(store: RunStore, run_id: str, probes: ProbeSet) -> None:
    """Refuse, in one line naming both, to resume a run stored with other stimuli (another
    version of the family, or the same version reworded); a new run is not checked."""
    if run_id not in {r.run_id for r in store.runs()}:
        return
    stored = store.run(run_id).config.get("probe_set")
    if stored is not None and stored != probes.ref:
        raise StoreError(
            f"run '{run_id}' in {store.path} was made with the probes {stored}, not "
            f"{probes.ref}; {kept_version_hint(stored)} or pick a new --run-id"
        )
