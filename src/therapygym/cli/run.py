"""`run`, `judge` and `eval`: one evaluation config each, run by `runner.evaluate`.

`run` gives the config a run section only (sessions), `judge` a judge section only (a
stored run), `eval` both, from options and/or a YAML file (`--config`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

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
    RubricOpt,
    RunIdOpt,
    SafetyModeOpt,
    SamplesOpt,
    StoreOpt,
    SummaryOutputOpt,
    TemperatureOpt,
    TherapistOpt,
    failure_policy,
    overrides,
)
from therapygym.cli.output import enforce, rerun, resumable, term
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
) -> None:
    """Run sessions, judge them and print the summary, in one resumable command.

    --therapist and --judge are required unless the --config file names them.
    """
    _evaluate(ctx, "run", "judge", file=config, print_config=print_config)


def _evaluate(
    ctx: typer.Context, *sections: str, file: Path | None = None, print_config: bool = False
) -> None:
    """The one body of `run`, `judge` and `eval`: the config of `file` and the options
    given (with `sections` of it), run with every check first; print what it did, and exit
    non-zero on Ctrl-C or on failed work past --fail-on-error, saying how to resume."""
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
        result = asyncio.run(evaluate(config, console=term.err))
    term.evaluation(result)
    enforce(policy, tallies(result.run, result.judging), how)
