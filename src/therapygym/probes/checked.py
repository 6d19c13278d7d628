"""The check-question probe families (inappropriate responses, severity escalation,
hallucination risk): run the stimuli, judge the replies, report the rates; one call for a
Python caller (`run_checked_probes`) and the families as `therapygym probe` runs them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from therapygym.config import check_specs, validated
from therapygym.errors import TherapygymError
from therapygym.models import ResponseCache
from therapygym.models.spec import is_embedded
from therapygym.patients.profile import PatientProfile
from therapygym.patients.select import select_profiles
from therapygym.probes.metrics import ProbeReport, probe_report
from therapygym.probes.registry import ProbeOptions, ProbeOutcome
from therapygym.probes.render import probe_table
from therapygym.probes.runner import (
    ProbePlan,
    judge_probes,
    probe_transcripts,
    run_probes,
)
from therapygym.probes.spec import Family, ProbeSet, builtin_probe_set, load_probe_set
from therapygym.runner import JudgeResult, RunResult, plan_records
from therapygym.store import RunStore

EMBEDDED_JUDGE_NOTE = (
    "the embedded 135M judge's answers carry no clinical meaning; it is a stand-in for "
    "plumbing and demos."
)


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


@dataclass(frozen=True)
class CheckedProbe:
    """One check-question family's probe, checked and ready to run."""

    plan: ProbePlan
    probes: ProbeSet
    judges: tuple[str, ...]
    hosts: tuple[PatientProfile, ...]
    options: ProbeOptions

    async def run(
        self, store: RunStore, *, cache: ResponseCache | None, console: Console | None
    ) -> ProbeOutcome:
        ran, judged, report = await run_checked_probes(
            self.plan,
            self.probes,
            self.judges,
            store,
            profiles=self.hosts,
            cache=cache,
            models_file=self.options.models_file,
            concurrency=self.options.concurrency,
            judge_concurrency=self.options.judge_concurrency,
            rationale_chars=self.options.rationale_chars,
            console=console,
        )
        models_file = self.options.models_file
        embedded = any(is_embedded(judge, models_file) for judge in report.judges)
        return ProbeOutcome(
            ran=ran,
            judged=judged,
            views=[probe_table(report)],
            report_json=report.model_dump_json(indent=2),
            notes=[EMBEDDED_JUDGE_NOTE] if embedded else [],
        )


@dataclass(frozen=True)
class CheckedFamily:
    """A family of stimuli with check questions, answered by the check-question judge."""

    name: Family
    description: str
    versioned = True  # `escalation@1.0`: a kept version of the shipped stimuli

    def prepare(self, options: ProbeOptions) -> CheckedProbe:
        family = self.name
        if not options.judges:
            raise TherapygymError(f"the {family} probes need a check-question judge: --judge SPEC")
        path = options.probe_file
        probes = load_probe_set(path) if path else builtin_probe_set(family, options.version)
        if probes.family != family:
            raise TherapygymError(f"{path}: holds {probes.family} probes, not {family}")
        inject = options.inject_after
        hosts = select_profiles(options.patients) if inject else []
        plan = validated(
            lambda: ProbePlan(
                run_id=options.run_id or f"probe-{family}",
                therapists=options.therapists,
                therapist_prompt=options.therapist_prompt,
                samples=options.samples,
                temperature=options.temperature,
                max_tokens=options.max_tokens,
                inject_after=inject,
                patient_model=options.patient_model if inject else None,
                profiles=tuple(f"{p.id}@{p.version}" for p in hosts),
            ),
            "probe",
        )
        check_specs(
            options.models_file,
            therapists=options.therapists,
            prompt=options.therapist_prompt,
            patient_model=options.patient_model if inject else None,
            judges=options.judges,
        )
        return CheckedProbe(plan, probes, options.judges, tuple(hosts), options)


INAPPROPRIATE = CheckedFamily(
    "inappropriate", "requests a literal, helpful-sounding answer would make harmful"
)
ESCALATION = CheckedFamily("escalation", "one CBT exercise at four levels of risk")
HALLUCINATION = CheckedFamily(
    "hallucination", "questions that invite stepping out of role or making things up"
)
