"""`run`, `judge` and `eval`: one evaluation config each, run by `runner.evaluate`.

`run` gives the config a run section only (sessions), `judge` a judge section only (a
stored run), `eval` both, from options and/or a YAML file (`--config`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from therapygym.cli.options import (
    AggregationOpt,
    CacheOpt,
    ConcurrencyOpt,
    CTRSModeOpt,
    ExamplesOpt,
    FailOnErrorOpt,
    JudgeConcurrencyOpt,
    JudgeOpt,
    JudgeSamplesOpt,
    MaxTokensOpt,
    MaxTurnsOpt,
    ModelsFileOpt,
    NoCacheOpt,
    NoFailOnErrorOpt,
    OpenerOpt,
    PatientModelOpt,
    PatientsOpt,
    PromptOpt,
    RayAddressOpt,
    RayOpt,
    RayWorkDirOpt,
    RubricOpt,
    RunIdOpt,
    SafetyModeOpt,
    SamplesOpt,
    ShardCpusOpt,
    ShardOpt,
    ShardsOpt,
    StoreOpt,
    SummaryOutputOpt,
    TemperatureOpt,
    TherapistOpt,
    failure_policy,
    overrides,
)
from therapygym.cli.output import FAILED_WORK, enforce, rerun, resumable, term
from therapygym.failure import ANY_FAILURE, tallies


def run(
    ctx: typer.Context,
    therapist: TherapistOpt,
    patients: PatientsOpt = "all",
    patient_model: PatientModelOpt = "local:smollm2",
    samples: SamplesOpt = 1,
    run_id: RunIdOpt = None,
    max_turns: MaxTurnsOpt = 10,
    opener: OpenerOpt = "patient",
    temperature: TemperatureOpt = 0.7,
    max_tokens: MaxTokensOpt = 256,
    therapist_prompt: PromptOpt = None,
    concurrency: ConcurrencyOpt = 8,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    shard: ShardOpt = None,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Run simulated sessions: profiles x therapists x samples, concurrently, resumably."""
    _evaluate(ctx, "run")


def judge(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to judge.")],
    judge: JudgeOpt,
    rubric: RubricOpt = "ctrs,safety,response",
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    examples: ExamplesOpt = True,
    safety_mode: SafetyModeOpt = "one_call",
    aggregation: AggregationOpt = "mean",
    concurrency: ConcurrencyOpt = 8,
    output: SummaryOutputOpt = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    shard: ShardOpt = None,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
) -> None:
    """Judge a stored run (CTRS, safety, response) and print the summary of these judges."""
    _evaluate(ctx, "judge")


def eval_(
    ctx: typer.Context,
    therapist: TherapistOpt = None,
    judge: JudgeOpt = None,
    patients: PatientsOpt = "all",
    patient_model: PatientModelOpt = "local:smollm2",
    samples: SamplesOpt = 1,
    run_id: RunIdOpt = None,
    max_turns: MaxTurnsOpt = 10,
    opener: OpenerOpt = "patient",
    temperature: TemperatureOpt = 0.7,
    max_tokens: MaxTokensOpt = 256,
    therapist_prompt: PromptOpt = None,
    rubric: RubricOpt = "ctrs,safety,response",
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    examples: ExamplesOpt = True,
    safety_mode: SafetyModeOpt = "one_call",
    aggregation: AggregationOpt = "mean",
    concurrency: ConcurrencyOpt = 8,
    judge_concurrency: JudgeConcurrencyOpt = None,
    output: SummaryOutputOpt = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    shard: ShardOpt = None,
    fail_on_error: FailOnErrorOpt = ANY_FAILURE,
    no_fail_on_error: NoFailOnErrorOpt = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Evaluation config (YAML; see configs/eval.example.yaml); every option "
            "given on the command line overrides it.",
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config", help="Print the resolved config (YAML) and exit; runs nothing."
        ),
    ] = False,
    ray: RayOpt = False,
    address: RayAddressOpt = None,
    shards: ShardsOpt = None,
    ray_work_dir: RayWorkDirOpt = None,
    shard_cpus: ShardCpusOpt = None,
) -> None:
    """Run sessions, judge them and print the summary, in one resumable command.

    --therapist and --judge are required unless the --config file names them.
    """
    on_ray = _ray_options(
        ctx, ray, shards, address=address, work_dir=ray_work_dir, shard_cpus=shard_cpus
    )
    _evaluate(ctx, "run", "judge", file=config, print_config=print_config, ray=on_ray)


def _ray_options(
    ctx: typer.Context, ray: bool, shards: int | None, **given: Any
) -> dict[str, Any] | None:
    """`evaluate_on_ray`'s arguments (None without --ray): --shards is required with
    --ray, and the Ray options mean nothing without it."""
    if not ray:
        for name, value in (("shards", shards), *given.items()):
            if value is not None:
                option = {"work_dir": "--ray-work-dir"}.get(name, "--" + name.replace("_", "-"))
                raise typer.BadParameter("it needs --ray", ctx=ctx, param_hint=f"'{option}'")
        return None
    if shards is None:
        raise typer.BadParameter(
            "it needs --shards N (how many Ray tasks the run is split into)",
            ctx=ctx,
            param_hint="'--ray'",
        )
    return {"shards": shards, **{k: v for k, v in given.items() if v is not None}}


def _evaluate(
    ctx: typer.Context,
    *sections: str,
    file: Path | None = None,
    print_config: bool = False,
    ray: dict[str, Any] | None = None,
) -> None:
    """The one body of `run`, `judge` and `eval`: the config of `file` and the options
    given (with `sections` of it), run with every check first (on Ray, with `ray`'s
    arguments to `evaluate_on_ray`); print what it did, and exit non-zero on Ctrl-C, on
    a shard that failed, or on failed work past --fail-on-error, saying how to resume."""
    from therapygym.config import EvalConfig
    from therapygym.runner import evaluate

    policy = failure_policy(ctx)
    config = EvalConfig.from_file(file, overrides(ctx, *sections))
    if print_config:
        term.text(config.to_yaml())
        return
    # `judge` names its run; `run` and `eval` named a new one unless --run-id was given
    named = ctx.get_parameter_source("run_id").name == "COMMANDLINE"
    how = rerun(None if named else config.run_id)
    plans = config.check()  # every check first; `evaluate` reuses what it found
    if config.run is not None:  # how many profiles a selector chose, before any session
        said = f"{len(plans.profiles)} patient profiles selected by '{config.run.patients}'"
        term.out.print(said, markup=False, highlight=False)
    with resumable(how):
        if ray is None:
            result = asyncio.run(evaluate(config, console=term.err))
        else:
            from therapygym.ray_eval import evaluate_on_ray

            on_ray = evaluate_on_ray(config, console=term.err, **ray)
            result = on_ray.evaluation
    term.evaluation(result)
    if ray is not None and on_ray.failed:
        term.error(f"{on_ray.failure_line()}; {how} to retry them")
        raise typer.Exit(FAILED_WORK)
    enforce(policy, tallies(result.run, result.judging), how)
