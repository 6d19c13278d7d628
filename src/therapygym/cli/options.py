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
from therapygym.failure import FailurePolicy


def _flags_show_no_placeholder() -> None:
    """typer 0.29's rich help prints a `<bool>` placeholder after every flag (`--no-cache
    <bool>`, `--help <bool>`), as if it took a value; its plain help prints none. Every
    command's help goes through this module, so the rich help is made to print none too."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_placeholder()

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
        help="Profiles: all, ids/globs, condition:X, severity:X, style:X, risk, or a path; "
        "',' = or, '+' = and: condition:depression+severity:imminent_risk is both."
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
    str | None,
    typer.Option(
        help="System-prompt file for LLM therapists, 'none', or 'no-turn-info' (our prompt "
        "without the turn notes)."
    ),
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Sessions (or judgements) in flight; a server model spec without concurrency= "
        "lets as many requests through.",
    ),
]
JudgeConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Judgements in flight, while sessions run: eval judges each session as soon as "
        "it is stored (default: --concurrency).",
    ),
]
JudgeOpt = Annotated[
    list[str] | None, typer.Option("--judge", help="Judge model spec (repeatable: a panel).")
]
JudgeFilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--judge",
        help="Only this judge's scores (repeatable: those judges as one panel); default: "
        "every judge that scored the run, as one panel.",
    ),
]
RubricOpt = Annotated[
    str,
    typer.Option(
        "--rubric",
        help="Comma-separated: ctrs, safety, response, check; pin a version by ref "
        "(safety@1.0), else the current one.",
    ),
]
JudgeSamplesOpt = Annotated[int, typer.Option(min=1, help="Samples per judge (k).")]
CTRSModeOpt = Annotated[str, typer.Option(help="CTRS judging: one_call or per_item.")]
SafetyModeOpt = Annotated[
    str, typer.Option(help="safety@2.0 judging: one_call or per_group (for 8k-context judges).")
]
ExamplesOpt = Annotated[
    bool,
    typer.Option(
        "--examples/--no-examples",
        help="ctrs@2.0: show the judge the rubric's skill examples (--no-examples ablates "
        "them; scores with and without are kept apart by their prompt fingerprint).",
    ),
]
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
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="K/N",
        help="Only shard K of N (K from 0, as SLURM_ARRAY_TASK_ID): the sessions whose id "
        "hashes to K, and their judging. Give each shard its own --store and --cache, then "
        "`runs merge` them (docs/scale.md).",
    ),
]
RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run the evaluation as --shards Ray tasks (the ray extra of therapygym), each "
        "on its node's local disk, then merge their stores into --store (docs/scale.md).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --ray: the Ray cluster (auto: the one this machine belongs to); "
        "default: start Ray on this machine.",
    ),
]
ShardsOpt = Annotated[
    int | None, typer.Option("--shards", min=1, help="With --ray: how many shards (Ray tasks).")
]
RayWorkDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--ray-work-dir",
        help="With --ray: each node's folder for its shards' stores, on LOCAL disk (default "
        "$THERAPYGYM_RAY_WORK_DIR or the node's temp folder).",
    ),
]
ShardCpusOpt = Annotated[
    float | None,
    typer.Option(
        "--shard-cpus",
        min=0.01,
        max=1.0,
        help="With --ray: CPUs Ray reserves for each shard task (default 1; a shard is one "
        "process that mostly waits on the model servers: 0.5 runs two per core).",
    ),
]
RationaleCharsOpt = Annotated[
    int, typer.Option(min=20, max=2000, help="Cap on each judge rationale.")
]


def _failure_policy(text: str | FailurePolicy) -> FailurePolicy:
    """`--fail-on-error`'s value, refused while the options are parsed (one line, exit
    2, before any work) when it is none of the four forms. click passes the default
    through here too, already a policy."""
    if isinstance(text, FailurePolicy):
        return text
    try:
        return FailurePolicy.parse(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


FailOnErrorOpt = Annotated[
    FailurePolicy,
    typer.Option(
        "--fail-on-error",
        parser=_failure_policy,
        metavar="any|never|N|F",
        help="How much work that failed for good fails the command (exit status 3): any "
        "failed session or judgement unit, never, N (N or more of them) or F (a fraction "
        "between 0 and 1 of them, or more); sessions and units count apart. A rerun "
        "retries them.",
    ),
]
NoFailOnErrorOpt = Annotated[
    bool, typer.Option("--no-fail-on-error", help="The same as --fail-on-error never.")
]


def failure_policy(ctx: typer.Context) -> FailurePolicy:
    """The policy `--fail-on-error` and `--no-fail-on-error` give together; both at once
    are refused, since one of them would be ignored."""
    policy: FailurePolicy = ctx.params["fail_on_error"]
    if not ctx.params["no_fail_on_error"]:
        return policy
    if ctx.get_parameter_source("fail_on_error").name == "COMMANDLINE":
        raise typer.BadParameter(
            "give it or --fail-on-error, not both", ctx=ctx, param_hint="'--no-fail-on-error'"
        )
    return FailurePolicy(limit=False)


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
