"""`patients audit RUN --judge SPEC`: how faithfully the patient model of a stored run
played its profiles (`calibration.patient_audit`), as a table and a JSON file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import (
    CacheOpt,
    ConcurrencyOpt,
    FailOnErrorOpt,
    ModelsFileOpt,
    NoCacheOpt,
    NoFailOnErrorOpt,
    RationaleCharsOpt,
    StoreOpt,
    failure_policy,
)
from therapygym.cli.output import enforce, rerun, resumable, term, wrote
from therapygym.failure import ANY_FAILURE, tallies


def patients_audit(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The stored run whose patients to audit.")],
    judge: Annotated[
        list[str] | None,
        typer.Option("--judge", help="Judge model spec (repeatable: each judge's rates apart)."),
    ] = None,
    patients: Annotated[
        list[Path] | None,
        typer.Option(
            "--patients",
            help="Profile files or folders the run was made from, if not the library's "
            "(repeatable; e.g. the folder `patients generate` wrote).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="JSON file (default: <run>.patient_audit.json beside the store)."
        ),
    ] = None,
    rationale_chars: RationaleCharsOpt = 240,
    concurrency: ConcurrencyOpt = 8,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Audit a run's simulated patients: in role, cues released at their turn, style and
    resistance kept, risk not invented; rates with 95% CIs per patient model."""
    from therapygym.calibration.patient_audit import audit_patients
    from therapygym.config import check_cache, response_cache

    policy = failure_policy(ctx)
    if not no_cache:
        check_cache(cache)
    with resumable(rerun()):
        outcome = asyncio.run(
            audit_patients(
                run_id,
                judge or [],
                store=store,
                profiles=patients or [],
                output=output,
                rationale_chars=rationale_chars,
                cache=response_cache(cache, no_cache),
                models_file=models_file,
                concurrency=concurrency,
                console=term.err,
            )
        )
    term.judging_result(outcome.judging)
    term.patient_audit(outcome.report)
    wrote([outcome.path])
    enforce(policy, tallies(judged=outcome.judging), rerun())
