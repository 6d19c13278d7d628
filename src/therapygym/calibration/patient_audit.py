"""`therapygym patients audit RUN --judge SPEC`: how faithfully the patient model of a
stored run played each profile, per patient model, with confidence intervals.

The simulated patient is an instrument, as a judge is: calibration holds a judge to
experts, this holds the patient simulator to the profile it was given (`patients/audit.py`
for the rules code decides, `judges/patient_fidelity.py` for the judge,
`judges/fidelity_summary.py` for the rates). It lives here, above the runner, because it
judges: the run's sessions are judged in place by `runner.judge_run` under a
`FidelityPlan` (resumable unit by unit, each record with its rubric version, judge and
prompt fingerprint, failed units retried by a rerun), and the rates are computed from the
records of this plan's judges only. The HTML report reads the same records from the store
and shows them through the same function.

Every check comes before a model is built or a unit judged: the store and the run exist,
the judge specs build, and every session the LLM patient played has its profile (the
library's, or a file given with `profiles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from therapygym.artefacts import write_text
from therapygym.config import check_output, check_specs, validated
from therapygym.errors import TherapygymError
from therapygym.judges.fidelity_summary import KIND, FidelityReport, fidelity_report
from therapygym.judges.patient_fidelity import FidelityPlan
from therapygym.models import ResponseCache
from therapygym.models.spec import is_embedded
from therapygym.patients.audit import PATIENT_LABEL_PREFIX, ProfileBook
from therapygym.patients.library import ProfileError
from therapygym.records import FINISHED
from therapygym.runner import JudgeResult, judge_run, plan_records
from therapygym.store import RunStore, StoreError, default_store_path

AUDIT_FILE = "patient_audit.json"


@dataclass
class AuditOutcome:
    """What an audit did: its report, the judging behind it, and the file written."""

    report: FidelityReport
    judging: JudgeResult
    path: Path


def audit_output(run_id: str, store: Path | None, output: Path | None) -> Path:
    """Where the audit's JSON goes: `output`, else `<run>.patient_audit.json` beside the
    store (the run's home on disk)."""
    if output is not None:
        return output
    return (store or default_store_path()).parent / f"{run_id}.{AUDIT_FILE}"


def audit_plan(
    judges: Sequence[str], profiles: Sequence[Path] = (), *, rationale_chars: int = 240
) -> FidelityPlan:
    """The judging plan of an audit: the current patient_fidelity rubric on every judge."""
    if not judges:
        raise TherapygymError("--judge: give the model spec that audits the patient")
    return validated(
        lambda: FidelityPlan(
            judges=tuple(judges),
            rubrics=(KIND,),
            profiles=tuple(str(p) for p in profiles),
            rationale_chars=rationale_chars,
        ),
        "audit",
    )


def check_profiles(store: RunStore, run_id: str, book: ProfileBook) -> None:
    """Every finished session the LLM patient played must have its profile at hand,
    refused here (one line naming the first profile missing) rather than unit by unit."""
    finished = [h for h in store.session_heads(run_id) if h.status.value in FINISHED]
    if not any(h.patient.startswith(PATIENT_LABEL_PREFIX) for h in finished):
        raise TherapygymError(
            f"run '{run_id}' has no finished session played by the LLM patient to audit"
        )
    for head in finished:
        played = head.patient.startswith(PATIENT_LABEL_PREFIX)
        if played and book.get(head.profile_id, head.profile_version) is None:
            raise TherapygymError(
                f"run '{run_id}', session {head.session_id}: "
                + book.missing(head.profile_id, head.profile_version)
            )


async def audit_patients(
    run_id: str,
    judges: Sequence[str],
    *,
    store: Path | None = None,
    profiles: Sequence[Path] = (),
    output: Path | None = None,
    rationale_chars: int = 240,
    cache: ResponseCache | None = None,
    models_file: Path | None = None,
    concurrency: int = 8,
    console: Console | None = None,
) -> AuditOutcome:
    """Audit run `run_id` with `judges`: judge its sessions (resuming), compute the rates
    and write them as JSON (see `audit_output`)."""
    plan = audit_plan(judges, profiles, rationale_chars=rationale_chars)
    check_specs(models_file, judges=plan.judges)
    check_output(output, option="--output")
    path = store or default_store_path()
    if not path.is_file():
        where = "--store" if store is not None else "the default store"
        raise StoreError(f"{where} {path}: no run store there (give --store)")
    try:
        book = ProfileBook.from_paths(profiles)
    except ProfileError as err:
        raise TherapygymError(f"--patients: {err}") from None
    run_store = RunStore(path)
    try:
        run_store.run(run_id)
        check_profiles(run_store, run_id, book)
        judged = await judge_run(
            run_store,
            run_id,
            plan,
            cache=cache,
            models_file=models_file,
            concurrency=concurrency,
            console=console,
        )
        heads = [h for h in run_store.session_heads(run_id) if h.status.value in FINISHED]
        records = plan_records(run_store, run_id, judged) + run_store.scores(run_id, "safety")
        report = fidelity_report(
            run_id,
            heads,
            records,
            embedded=any(is_embedded(spec, models_file) for spec in plan.judges),
        )
    finally:
        run_store.close()
    target = write_text(audit_output(run_id, store, output), report.model_dump_json(indent=2))
    return AuditOutcome(report=report, judging=judged, path=target)
