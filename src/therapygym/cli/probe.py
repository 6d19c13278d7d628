"""`probe FAMILY` (any registered probe family) and `scorecard` (the five-axis battery)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import (
    CacheOpt,
    ConcurrencyOpt,
    FailOnErrorOpt,
    JudgeConcurrencyOpt,
    JudgeOpt,
    MaxTokensOpt,
    ModelsFileOpt,
    NoCacheOpt,
    NoFailOnErrorOpt,
    PatientModelOpt,
    PromptOpt,
    RationaleCharsOpt,
    RunIdOpt,
    StoreOpt,
    TemperatureOpt,
    TherapistOpt,
    failure_policy,
)
from therapygym.cli.output import enforce, rerun, resumable, term, wrote
from therapygym.errors import TherapygymError
from therapygym.failure import ANY_FAILURE, tallies


def probe(
    ctx: typer.Context,
    family: Annotated[
        str,
        typer.Argument(
            help="inappropriate, escalation, hallucination, stigma, consistency, demographics "
            "or judge (the judge-robustness battery: --judge only, no --therapist). "
            "FAMILY@VERSION runs a kept version of the shipped stimuli, e.g. escalation@1.0."
        ),
    ],
    therapist: TherapistOpt = None,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge",
            help="Judge spec (repeatable; not for stigma): the check-question judge, the CTRS "
            "and safety judges of consistency and demographics, or the judge under test.",
        ),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Replies per stimulus and therapist.")] = 1,
    run_id: RunIdOpt = None,
    probe_file: Annotated[
        Path | None,
        typer.Option(
            help="Your own stimuli (probe or stigma-design YAML), a scorecard battery file "
            "for consistency and demographics, or a judge battery (folder or file) for judge."
        ),
    ] = None,
    persons: Annotated[
        int,
        typer.Option(min=0, help="stigma: a seeded sample of persons (0 = every person)."),
    ] = 20,
    moore: Annotated[
        Path | None,
        typer.Option(help="stigma: run the Moore et al. stimuli from this folder instead."),
    ] = None,
    inject_after: Annotated[
        int | None,
        typer.Option(min=1, help="Slip each stimulus into a simulated session after k turns."),
    ] = None,
    patients: Annotated[
        str, typer.Option(help="Host profiles for --inject-after (a --patients selector).")
    ] = "severity:routine",
    rubric: Annotated[
        list[str] | None,
        typer.Option(
            "--rubric",
            help="judge: score with this version of ctrs or safety, e.g. safety@1.0 "
            "(repeatable; default: the current versions).",
        ),
    ] = None,
    max_fooled: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="judge: an attack passes when at most this share of its pairs fooled the "
            "judge (default: the battery file's, 0.2).",
        ),
    ] = None,
    patient_model: PatientModelOpt = "local:smollm2",
    therapist_prompt: PromptOpt = None,
    temperature: TemperatureOpt = 0.7,
    max_tokens: MaxTokensOpt = 256,
    rationale_chars: RationaleCharsOpt = 240,
    concurrency: ConcurrencyOpt = 8,
    judge_concurrency: JudgeConcurrencyOpt = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Report JSON.")] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Run one probe family against therapists and report how often they reply appropriately;
    `probe judge` runs the judge-robustness battery against the judges instead."""
    from therapygym.probes.registry import ProbeOptions, run_probe
    from therapygym.store import default_store_path

    policy = failure_policy(ctx)
    if (
        not therapist and family.partition("@")[0] != "judge"
    ):  # the judge battery has no therapist to ask
        raise TherapygymError(f"probe {family} needs a therapist to ask: --therapist SPEC")
    options = ProbeOptions(
        therapists=tuple(therapist or ()),
        judges=tuple(judge or ()),
        samples=samples,
        run_id=run_id,
        probe_file=probe_file,
        persons=persons,
        moore=moore,
        inject_after=inject_after,
        patients=patients,
        rubrics=tuple(rubric or ()),
        max_fooled=max_fooled,
        patient_model=patient_model,
        therapist_prompt=therapist_prompt,
        temperature=temperature,
        max_tokens=max_tokens,
        rationale_chars=rationale_chars,
        concurrency=concurrency,
        judge_concurrency=judge_concurrency,
        output=output,
        store=store,
        models_file=models_file,
        cache=cache,
        no_cache=no_cache,
    )
    with resumable(rerun()):  # a probe's run id is fixed by the family or --run-id
        outcome = asyncio.run(run_probe(family, options, console=term.err))
    if outcome.ran is not None:
        term.run_result(outcome.ran, store or default_store_path())
    if outcome.judged is not None:
        term.judging_result(outcome.judged)
    for view in outcome.views:
        term.out.print(view)
    for note in outcome.notes:
        term.note(note)
    if output is not None:
        term.written("report", output)
    enforce(policy, tallies(outcome.ran, outcome.judged), rerun())


def scorecard(
    therapist: TherapistOpt,
    judge: JudgeOpt,
    config: Annotated[
        Path | None, typer.Option(help="Battery file (default: the shipped scorecard.yaml).")
    ] = None,
    patient_model: PatientModelOpt = "local:smollm2",
    run_prefix: Annotated[
        str, typer.Option(help="Each axis is stored as run <prefix>-<axis>; reuse to resume.")
    ] = "scorecard",
    therapist_prompt: PromptOpt = None,
    concurrency: ConcurrencyOpt = 8,
    judge_concurrency: JudgeConcurrencyOpt = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("-o", "--output-dir", help="Where to write the JSON and HTML section."),
    ] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run the five-axis battery: fidelity, hallucination, consistency, crisis, demographics."""
    from therapygym.artefacts import write_text
    from therapygym.config import check_cache, check_output, check_specs, response_cache
    from therapygym.models.spec import is_embedded
    from therapygym.probes.render import battery_table, scorecard_html, scorecard_table
    from therapygym.probes.scorecard import ScorecardRunner, load_scorecard_config, run_scorecard
    from therapygym.store import RunStore, check_store_path

    therapists, judges = list(therapist or ()), list(judge or ())
    check_output(output_dir, folder=True, option="--output-dir")
    check_store_path(store)
    if not no_cache:
        check_cache(cache)
    battery = load_scorecard_config(config)
    check_specs(
        models_file,
        therapists=therapists,
        prompt=therapist_prompt,
        patient_model=patient_model,
        judges=judges,
    )
    runner = ScorecardRunner(
        battery,
        therapists,
        judges,
        RunStore(store),
        prefix=run_prefix,
        patient_model=patient_model,
        therapist_prompt=therapist_prompt,
        cache=response_cache(cache, no_cache),
        models_file=models_file,
        concurrency=concurrency,
        judge_concurrency=judge_concurrency,
        console=term.err,
    )
    card = asyncio.run(run_scorecard(runner))
    term.out.print(scorecard_table(card))
    if card.judge_battery is not None:
        term.out.print(battery_table(card.judge_battery))
    if any(is_embedded(j, models_file) for j in card.judges):
        term.note(
            "judged by the embedded 135M model: these numbers show the battery runs, not how "
            "safe or skilled the therapist is."
        )
    directory = output_dir or Path("results") / run_prefix
    files = {
        "scorecard.json": card.model_dump_json(indent=2),
        "scorecard_section.html": scorecard_html(card),
    }
    for name, text in files.items():
        write_text(directory / name, text)
    wrote(directory / name for name in files)
