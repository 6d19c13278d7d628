"""`calibrate`: a judge's agreement with expert ratings (and the experts' with each other)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import (
    CacheOpt,
    ConcurrencyOpt,
    CTRSModeOpt,
    FailOnErrorOpt,
    JudgeSamplesOpt,
    ModelsFileOpt,
    NoCacheOpt,
    NoFailOnErrorOpt,
    RationaleCharsOpt,
    SafetyModeOpt,
    StoreOpt,
    failure_policy,
)
from therapygym.cli.output import enforce, rerun, resumable, term, wrote
from therapygym.failure import ANY_FAILURE, Tally


def calibrate(
    ctx: typer.Context,
    bench: Annotated[
        str,
        typer.Option(
            help="Expert ratings: a bench JSONL file, or annomi:PATH, moore:PATH, table:PATH."
        ),
    ],
    judge: Annotated[
        list[str] | None,
        typer.Option(
            "--judge", help="Judge model spec (repeatable: a panel); omit with --humans-only."
        ),
    ] = None,
    humans_only: Annotated[
        bool, typer.Option("--humans-only", help="Expert agreement only (the ceiling); no judge.")
    ] = False,
    mapping: Annotated[
        Path | None, typer.Option(help="Column mapping (YAML) for a table: bench.")
    ] = None,
    dialogues: Annotated[
        int | None,
        typer.Option(min=2, help="Judge a seeded sample of N dialogues (balanced by quality)."),
    ] = None,
    max_turns: Annotated[
        int | None, typer.Option(min=2, help="Show the judge only the first N turns.")
    ] = None,
    rubric: Annotated[
        list[str] | None,
        typer.Option(
            "--rubric",
            help="Judge a kind the bench needs with this version, e.g. safety@1.0 "
            "(repeatable; default: the current versions).",
        ),
    ] = None,
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    safety_mode: SafetyModeOpt = "one_call",
    rationale_chars: RationaleCharsOpt = 240,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for the sample, bootstrap and split.")] = 0,
    min_human_alpha: Annotated[
        float, typer.Option(help="Flag items whose expert-expert alpha falls below this.")
    ] = 0.4,
    recalibrate: Annotated[
        str, typer.Option(help="Judge-to-expert map: isotonic, linear or none.")
    ] = "isotonic",
    fit_fraction: Annotated[
        float, typer.Option(min=0.1, max=0.9, help="Share of dialogues to fit the map on.")
    ] = 0.5,
    output_dir: Annotated[
        Path | None,
        typer.Option("-o", "--output-dir", help="Where to write the JSON, weights and HTML."),
    ] = None,
    concurrency: ConcurrencyOpt = 8,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Measure a judge's agreement with expert ratings (and the experts' with each other)."""
    from therapygym.calibration.analysis import Settings
    from therapygym.calibration.calibrate import calibrate as run_calibration
    from therapygym.calibration.calibrate import nothing_to_judge, rubrics_needed, write_outputs
    from therapygym.calibration.importers import load_bench
    from therapygym.calibration.render import terminal_view
    from therapygym.config import (
        calibration_plan,
        check_cache,
        check_calibration,
        check_output,
        response_cache,
    )
    from therapygym.store import RunStore, check_store_path

    policy = failure_policy(ctx)
    check_calibration(judge, humans_only=humans_only, recalibrate=recalibrate)
    check_output(output_dir, folder=True, option="--output-dir")
    if judge:  # only a judge opens the store and the cache
        check_store_path(store)
        if not no_cache:
            check_cache(cache)
    loaded = load_bench(bench, mapping=mapping)
    if dialogues:
        loaded = loaded.subset(dialogues, seed)
    plan = calibration_plan(
        rubrics_needed(loaded),
        judge or (),
        nothing_to_judge=nothing_to_judge(loaded),
        samples=judge_samples,
        ctrs_mode=ctrs_mode,
        safety_mode=safety_mode,
        rationale_chars=rationale_chars,
        models_file=models_file,
        versions=rubric or (),
    )
    with resumable(rerun()):  # the bench's content names its run
        report = asyncio.run(
            run_calibration(
                loaded,
                plan,
                RunStore(store) if plan else None,
                Settings(resamples=resamples, seed=seed, min_human_alpha=min_human_alpha),
                method=None if recalibrate == "none" else recalibrate,  # type: ignore[arg-type]
                fit_fraction=fit_fraction,
                cache=response_cache(cache, no_cache),
                models_file=models_file,
                concurrency=concurrency,
                max_turns=max_turns,
                console=term.err,
            )
        )
    term.out.print(terminal_view(report))
    paths = write_outputs(report, output_dir or Path("results") / f"calibration-{loaded.digest}")
    wrote(paths.values())
    if report.judge is not None:  # --humans-only judges nothing
        judged = report.judge
        enforce(policy, [Tally("judgement units", judged.failed_units, judged.units)], rerun())
