"""The options `run`, `judge` and `eval` share (and other commands reuse), each declared
once, and `overrides()`, which turns the options a user gave into `EvalConfig` fields.

A default written beside one of these options in a command is what --help shows; the
default that applies is `EvalConfig`'s (tests/test_config.py holds the two equal), and an
option overrides a config file only when the user gave it on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from therapygym.errors import TherapygymError

TherapistOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--therapist",
        help="Therapist spec (repeatable): rule-based, a model spec, or theraagent:<model spec>.",
    ),
]
PatientsOpt = Annotated[
    str,
    typer.Option(
        help="Profiles: all, ids/globs, condition:X, severity:X, style:X, risk, or a path."
    ),
]
PatientModelOpt = Annotated[str, typer.Option(help="Model spec for the patient.")]
SamplesOpt = Annotated[int, typer.Option(min=1, help="Sessions per profile and therapist.")]
RunIdOpt = Annotated[str | None, typer.Option(help="Name of the run; reuse it to resume.")]
MaxTurnsOpt = Annotated[int, typer.Option(min=1, help="Turns per session, both sides.")]
OpenerOpt = Annotated[str, typer.Option(help="Who speaks first: patient or therapist.")]
TemperatureOpt = Annotated[float, typer.Option(min=0.0, max=2.0, help="Sampling temperature.")]
MaxTokensOpt = Annotated[int, typer.Option(min=8, help="Per utterance.")]
PromptOpt = Annotated[
    str | None, typer.Option(help="System-prompt file for LLM therapists, or 'none'.")
]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Sessions (or judgements) in flight.")]
JudgeConcurrencyOpt = Annotated[
    int | None, typer.Option(min=1, help="Judgements in flight (default: --concurrency).")
]
JudgeOpt = Annotated[
    list[str] | None, typer.Option("--judge", help="Judge model spec (repeatable: a panel).")
]
RubricOpt = Annotated[
    str, typer.Option("--rubric", help="Comma-separated: ctrs, safety, response, check.")
]
JudgeSamplesOpt = Annotated[int, typer.Option(min=1, help="Samples per judge (k).")]
CTRSModeOpt = Annotated[str, typer.Option(help="CTRS judging: one_call or per_item.")]
AggregationOpt = Annotated[
    str, typer.Option("--aggregation", help="Panel aggregation: mean, median, majority.")
]
SummaryOutputOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Summary JSON file.")]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Run store file (default $THERAPYGYM_STORE or results/)."),
]
ModelsFileOpt = Annotated[
    Path | None,
    typer.Option("--models-file", help="YAML file of named models (or $THERAPYGYM_MODELS)."),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Response cache file (default $THERAPYGYM_CACHE or ~/.cache)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]


def rubric_kinds(text: str) -> tuple[str, ...]:
    """`--rubric ctrs,safety` as the rubric kinds it lists."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds:
        raise TherapygymError(f"--rubric '{text}': give ctrs, safety, response and/or check")
    return kinds


def overrides(ctx: typer.Context, *sections: str) -> dict[str, Any]:
    """The options given on the command line, as nested `EvalConfig` fields (by the
    option each field names in `config.OPTIONS`). Each of `sections` ("run", "judge") is
    present even when no option of it was given, so that what it lacks is reported."""
    from therapygym.config import OPTIONS

    given: dict[str, Any] = {section: {} for section in sections}
    for field, option in OPTIONS.items():
        name = option.removeprefix("--").replace("-", "_")
        if name not in ctx.params or ctx.get_parameter_source(name).name != "COMMANDLINE":
            continue
        value = ctx.params[name]
        *path, leaf = field.split(".")
        node = given
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = rubric_kinds(value) if name == "rubric" else value
    return given
