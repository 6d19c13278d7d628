"""`calibrate`: a judge's agreement with expert ratings (and the experts' with each other).

`--examples both` judges the bench twice with ctrs@2.0, with and without its skill examples
(the two are kept apart in the store by their prompt fingerprints; the other rubrics are
judged once, their units being the same), writes each report to its own folder, and prints
the two side by side: per CTRS item the judge's agreement with the experts, and per variant
how many units parsed and what the prompt cost. A small judge's numbers say only that the
comparison runs; the real comparison needs a strong judge.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
from therapygym.errors import TherapygymError
from therapygym.failure import ANY_FAILURE, Tally

if TYPE_CHECKING:
    from rich.table import Table

    from therapygym.calibration.report import CalibrationReport
    from therapygym.judges.plan import JudgePlan
    from therapygym.models.cache import ResponseCache
    from therapygym.probes.judge_battery import JudgeBattery
    from therapygym.store import RunStore

# --examples: the variants it judges, each with its folder under the output directory
EXAMPLE_VARIANTS = {
    "with": [("with examples", True, "")],
    "without": [("without examples", False, "")],
    "both": [
        ("with examples", True, "with-examples"),
        ("without examples", False, "without-examples"),
    ],
}


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
    examples: Annotated[
        str,
        typer.Option(
            "--examples",
            help="ctrs@2.0's skill examples in the judge prompt: with, without, or both "
            "(the bench judged once each and reported side by side).",
        ),
    ] = "with",
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
    battery: Annotated[
        bool,
        typer.Option(
            "--battery",
            help="Also run the judge-robustness battery (`probe judge`) for the same "
            "judges: how easily they are gamed, beside how well they agree.",
        ),
    ] = False,
    concurrency: ConcurrencyOpt = 8,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Measure a judge's agreement with expert ratings (and the experts' with each other)."""
    from therapygym.artefacts import write_text
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
    suite = battery_for(judge, rubric, rationale_chars, models_file) if battery else None
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
    variants = example_variants(examples, plan)
    run_store = RunStore(store) if plan else None
    responses = response_cache(cache, no_cache)
    folder = output_dir or Path("results") / f"calibration-{loaded.digest}"
    reports: list[tuple[str, CalibrationReport]] = []
    for label, shown, subfolder in variants:
        with resumable(rerun()):  # the bench's content names its run
            report = asyncio.run(
                run_calibration(
                    loaded,
                    plan.model_copy(update={"examples": shown}) if plan else None,
                    run_store,
                    Settings(resamples=resamples, seed=seed, min_human_alpha=min_human_alpha),
                    method=None if recalibrate == "none" else recalibrate,  # type: ignore[arg-type]
                    fit_fraction=fit_fraction,
                    cache=responses,
                    models_file=models_file,
                    concurrency=concurrency,
                    max_turns=max_turns,
                    console=term.err,
                )
            )
        if len(variants) > 1:
            term.out.print(f"\n[bold]CTRS judged {label}[/bold]")
        term.out.print(terminal_view(report))
        wrote(write_outputs(report, folder / subfolder).values())
        reports.append((label, report))
    if len(reports) > 1 and run_store is not None:
        table, data = examples_comparison(reports, run_store)
        term.out.print(table)
        path = folder / "examples_comparison.json"
        write_text(path, json.dumps(data, indent=2))
        wrote([path])
    tallies = [  # per variant (they share their other rubrics' units); --humans-only: none
        Tally(
            "judgement units" + (f" ({label})" if len(reports) > 1 else ""), j.failed_units, j.units
        )
        for label, r in reports
        if (j := r.judge) is not None
    ]
    if suite is not None and run_store is not None:
        tallies.append(run_battery(suite, run_store, responses, folder, models_file, concurrency))
    if tallies:
        enforce(policy, tallies, rerun())


def battery_for(
    judges: list[str] | None,
    rubrics: list[str] | None,
    rationale_chars: int,
    models_file: Path | None,
) -> tuple[JudgeBattery, JudgePlan]:
    """The judge battery and its plan for `calibrate --battery`, checked before any work:
    the same judges, and the CTRS and safety versions `--rubric` pins (the battery scores
    only those two kinds)."""
    from therapygym.config import check_specs
    from therapygym.judges.rubric import parse_rubric_ref
    from therapygym.probes.judge_battery import (
        RUBRIC_KINDS,
        battery_plan,
        check_labels,
        load_judge_battery,
    )

    if not judges:
        raise TherapygymError("--battery tests a judge: give --judge SPEC")
    pinned = tuple(r for r in rubrics or () if parse_rubric_ref(r)[0] in RUBRIC_KINDS)
    suite = load_judge_battery()
    plan = battery_plan(tuple(judges), pinned, rationale_chars=rationale_chars)
    check_labels(suite, plan)
    check_specs(models_file, judges=judges)
    return suite, plan


def run_battery(
    suite: tuple[JudgeBattery, JudgePlan],
    store: RunStore,
    cache: ResponseCache | None,
    folder: Path,
    models_file: Path | None,
    concurrency: int,
) -> Tally:
    """Run the battery as `probe judge` does (its own stored run, resumable), print its
    table, write judge_battery.json beside the calibration; the tally of its units."""
    from therapygym.artefacts import write_text
    from therapygym.probes.judge_battery import run_judge_battery
    from therapygym.probes.render import battery_table

    battery, plan = suite
    with resumable(rerun()):
        judged, report = asyncio.run(
            run_judge_battery(
                battery,
                plan,
                store,
                cache=cache,
                models_file=models_file,
                concurrency=concurrency,
                console=term.err,
            )
        )
    term.out.print(battery_table(report))
    path = folder / "judge_battery.json"
    write_text(path, report.model_dump_json(indent=2))
    wrote([path])
    return Tally("judge battery units", judged.failed, judged.units)


def example_variants(choice: str, plan: JudgePlan | None) -> list[tuple[str, bool, str]]:
    """`--examples`' variants as (label, examples shown, folder under the output directory);
    refused, before any judging, where there is nothing they could change: no judge, or no
    ctrs@2.0 in the plan (ctrs@1.0 has no examples)."""
    if choice not in EXAMPLE_VARIANTS:
        raise TherapygymError(f"--examples '{choice}': expected with, without or both")
    if choice == "with":
        return EXAMPLE_VARIANTS[choice]
    from therapygym.judges.rubric import CTRSRubric2, builtin_rubric

    if plan is None or not any(
        kind == "ctrs" and isinstance(builtin_rubric("ctrs", version), CTRSRubric2)
        for kind, version in plan.refs
    ):
        raise TherapygymError(
            f"--examples {choice}: the skill examples belong to ctrs@2.0, which this "
            "calibration does not judge (it needs a judge, and a bench with CTRS ratings)"
        )
    return EXAMPLE_VARIANTS[choice]


def examples_comparison(
    reports: list[tuple[str, CalibrationReport]], store: RunStore
) -> tuple[Table, dict[str, Any]]:
    """The variants side by side: per variant its CTRS units (how many gave no usable
    answer, their mean prompt tokens, how many items were displaced by risk), then per item
    and the total the judge's mean Spearman with each expert. Units are read from the store
    by the variant's CTRS prompt fingerprint, so the safety units both share are not
    counted twice, and units judged on an earlier run count as well."""
    import statistics

    from rich.table import Table

    from therapygym.calibration.render import mean_ci

    table = Table(title="CTRS with and without skill examples (same bench, same judge)")
    table.add_column("")
    for label, _ in reports:
        table.add_column(label, justify="right")
    data: dict[str, Any] = {"variants": {}}
    rows: dict[str, list[str]] = {}
    for label, report in reports:
        assert report.judge is not None  # a plan was judged
        prints = {r["prompt_fingerprint"] for r in report.judge.rubrics if r["rubric"] == "ctrs"}
        units = [
            r for r in store.scores(report.judge.run_id, "ctrs") if r.prompt_fingerprint in prints
        ]
        failed = sum(r.error is not None for r in units)
        tokens = statistics.fmean(r.prompt_tokens for r in units) if units else None
        displaced = sum(len((r.result or {}).get("displaced", {})) for r in units)
        items = [*report.items, *([report.total] if report.total else [])]
        data["variants"][label] = {
            "prompt_fingerprints": sorted(prints),
            "units": len(units),
            "failed_units": failed,
            "parse_rate": (len(units) - failed) / len(units) if units else None,
            "prompt_tokens_per_unit": tokens,
            "displaced_items": displaced,
            "judge_vs_experts_spearman": {
                r.item: r.judge_vs_experts.mean["spearman_rho"].model_dump(mode="json")
                if r.judge_vs_experts and "spearman_rho" in r.judge_vs_experts.mean
                else None
                for r in items
            },
            "embedded_judge": bool(report.judge.embedded),
        }
        cells = {
            "CTRS units (failed)": f"{len(units)} ({failed})",
            "prompt tokens per unit": f"{tokens:,.0f}" if tokens is not None else "—",
            "items displaced by risk": str(displaced),
            **{
                f"{r.item}: judge vs each expert ρ": mean_ci(r.judge_vs_experts, "spearman_rho")
                for r in items
            },
        }
        for key, cell in cells.items():
            rows.setdefault(key, []).append(cell)
    for key, cells in rows.items():
        table.add_row(key, *cells)
    if any(v["embedded_judge"] for v in data["variants"].values()):
        table.caption = "embedded 135M judge: these numbers show the comparison runs, nothing more"
    return table, data
