"""`patients list|show|validate|generate`: the simulated-patient profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import (
    ConcurrencyOpt,
    FailOnErrorOpt,
    ModelsFileOpt,
    NoFailOnErrorOpt,
    TemperatureOpt,
    failure_policy,
)
from therapygym.cli.output import enforce, rerun, resumable, term
from therapygym.failure import ANY_FAILURE

app = typer.Typer(help="Browse and validate simulated-patient profiles.")


@app.command("list")
def patients_list(
    selector: Annotated[
        str,
        typer.Option(
            "--patients",
            help="Selector, as for `run`: ',' = or, '+' = and (dep-*+risk, condition:grief).",
        ),
    ] = "all",
) -> None:
    """The profiles in the library (or matching a selector)."""
    from therapygym.patients.select import select_profiles

    term.profiles(select_profiles(selector))


@app.command("show")
def patients_show(
    profile_id: Annotated[str, typer.Argument(help="Profile id or YAML path.")],
) -> None:
    """One profile in full, as YAML."""
    from therapygym.patients.select import select_profiles

    (profile,) = select_profiles(profile_id)[:1]
    term.profile(profile)


@app.command("validate")
def patients_validate(
    paths: Annotated[list[Path], typer.Argument(help="Profile YAML files or folders.")],
) -> None:
    """Check profile files; every problem names the file, the field and what was expected."""
    from therapygym.patients.library import check_profile_files

    checked = check_profile_files(paths)
    for path, problem in checked:
        term.checked_file(path, problem)
    if any(problem for _, problem in checked):
        raise typer.Exit(2)


@app.command("generate")
def patients_generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Model spec that writes the profiles.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for the profiles (heldout/ inside); the same one resumes."
        ),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Samples in the plan.")] = 100,
    seeds: Annotated[
        str,
        typer.Option(
            "--seeds",
            help="Seed profiles, a selector as for `run` (each sample's example is one of "
            "its condition, in turn).",
        ),
    ] = "all",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the plan and the split.")] = 0,
    heldout: Annotated[
        float,
        typer.Option("--heldout", min=0.0, max=0.99, help="Fraction held out, by condition."),
    ] = 0.15,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Re-asks of an invalid reply, with its errors.")
    ] = 1,
    threshold: Annotated[
        float,
        typer.Option(
            "--dedup-threshold",
            min=0.01,
            max=1.0,
            help="Word 3-gram Jaccard at or above which a profile is a near-duplicate.",
        ),
    ] = 0.2,
    temperature: TemperatureOpt = 0.9,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=256, help="Output budget per profile.")
    ] = 1500,
    concurrency: ConcurrencyOpt = 8,
    models_file: ModelsFileOpt = None,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Grow a library of profiles with a model: axes sampled evenly, every profile
    validated (re-asked, else dropped), near-duplicates removed, a held-out split;
    resumable (rerun the same command)."""
    import asyncio

    from therapygym.failure import Tally
    from therapygym.models.spec import is_embedded
    from therapygym.patients.generate import GenerationPlan, generate
    from therapygym.patients.select import select_profiles

    policy = failure_policy(ctx)
    library = select_profiles(seeds)
    plan = GenerationPlan(
        n=n,
        model=model,
        seeds=tuple(f"{p.id}@{p.version}" for p in library),
        seed=seed,
        heldout=heldout,
        retries=retries,
        temperature=temperature,
        max_tokens=max_tokens,
        threshold=threshold,
    )
    if is_embedded(model, models_file):
        term.generation_warning(model)
    how = rerun()
    with resumable(how):
        result = asyncio.run(
            generate(
                plan,
                library,
                out,
                models_file=models_file,
                concurrency=concurrency,
                console=term.err,
            )
        )
    term.generation(result)
    enforce(policy, [Tally("samples", result.dropped + result.failed, result.planned)], how)


from therapygym.cli.patient_audit import patients_audit  # noqa: E402

app.command("audit")(patients_audit)
