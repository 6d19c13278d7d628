"""`run`, `judge` and `eval`: one evaluation config each, run by `runner.evaluate`.

`run` gives the config a run section only (sessions), `judge` a judge section only (a
stored run), `eval` both, from options and/or a YAML file (`--config`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from therapygym.cli.options import (
    AggregationOpt,
    CacheOpt,
    ConcurrencyOpt,
    CTRSModeOpt,
    JudgeConcurrencyOpt,
    JudgeOpt,
    JudgeSamplesOpt,
    MaxTokensOpt,
    MaxTurnsOpt,
    ModelsFileOpt,
    NoCacheOpt,
    OpenerOpt,
    PatientModelOpt,
    PatientsOpt,
    PromptOpt,
    RubricOpt,
    RunIdOpt,
    SamplesOpt,
    StoreOpt,
    SummaryOutputOpt,
    TemperatureOpt,
    TherapistOpt,
    overrides,
)
from therapygym.cli.output import term

if TYPE_CHECKING:
    from therapygym.config import EvalConfig


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
) -> None:
    """Run simulated sessions: profiles x therapists x samples, concurrently, resumably."""
    from therapygym.config import EvalConfig

    _evaluate(EvalConfig.from_file(None, overrides(ctx, "run")))


def judge(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to judge.")],
    judge: JudgeOpt,
    rubric: RubricOpt = "ctrs,safety,response",
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    aggregation: AggregationOpt = "mean",
    concurrency: ConcurrencyOpt = 8,
    output: SummaryOutputOpt = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Judge a stored run (CTRS, safety, response) and print the per-therapist summary."""
    from therapygym.config import EvalConfig

    _evaluate(EvalConfig.from_file(None, overrides(ctx, "judge")))


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
    aggregation: AggregationOpt = "mean",
    concurrency: ConcurrencyOpt = 8,
    judge_concurrency: JudgeConcurrencyOpt = None,
    output: SummaryOutputOpt = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
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
    from therapygym.config import EvalConfig

    settings = EvalConfig.from_file(config, overrides(ctx, "run", "judge"))
    if print_config:
        term.text(settings.to_yaml())
        return
    _evaluate(settings)


def _evaluate(config: EvalConfig) -> None:
    """Run `config` (every check first) and print what it did."""
    from therapygym.runner import evaluate

    term.evaluation(asyncio.run(evaluate(config, console=term.err)))
