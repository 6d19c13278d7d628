"""The `therapygym` command line. Thin by design: parse, call the library, print.

Errors a user can fix (`TherapygymError`) print one line and exit with status 2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from therapygym import __version__
from therapygym.artefacts import write_text
from therapygym.errors import TherapygymError
from therapygym.models import ResponseCache, UsageLedger, load_model
from therapygym.models.spec import BACKENDS, load_models_file

app = typer.Typer(
    name="therapygym",
    help="Evaluate and align therapy chatbots on CBT fidelity (CTRS) and clinical safety. "
    "A research and evaluation tool, not a clinical device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List model backends and check that a model answers.")
cache_app = typer.Typer(help="Inspect or clear the response cache.")
patients_app = typer.Typer(help="Browse and validate simulated-patient profiles.")
runs_app = typer.Typer(help="List, show, export and import stored runs.")
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")
app.add_typer(patients_app, name="patients")
app.add_typer(runs_app, name="runs")

# Piped or logged output gets a readable width instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

ModelsFileOpt = Annotated[
    Path | None,
    typer.Option("--models-file", help="YAML file of named models (or $THERAPYGYM_MODELS)."),
]
CachePathOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Response cache file (default $THERAPYGYM_CACHE or ~/.cache)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Run store file (default $THERAPYGYM_STORE or results/)."),
]


def _cache(path: Path | None, disabled: bool = False) -> ResponseCache | None:
    return None if disabled else ResponseCache(path)


def _check_specs(
    models_file: Path | None,
    *,
    therapists: Sequence[str] = (),
    prompt: str | None = None,
    patient_model: str | None = None,
    judges: Sequence[str] = (),
) -> None:
    """Build, and drop, every therapist and model a command names, before it opens the
    store or the cache: a bad spec, prompt file, chatbot file or models file then fails
    with nothing written, and the error names the option. Building connects to nothing
    and loads no weights."""
    from therapygym.therapists import NO_PROMPT, load_therapist
    from therapygym.therapists.prompted import read_prompt

    if prompt is not None and prompt != NO_PROMPT:
        read_prompt(prompt)  # its error names the file
    checks = [
        *(("--therapist", spec, True) for spec in dict.fromkeys(therapists)),
        *((("--patient-model", patient_model, False),) if patient_model else ()),
        *(("--judge", spec, False) for spec in dict.fromkeys(judges)),
    ]
    for option, spec, is_therapist in checks:
        try:
            if is_therapist:
                load_therapist(spec, models_file=models_file, prompt=prompt)
            else:
                load_model(spec, models_file=models_file)
        except TherapygymError as e:
            raise TherapygymError(f"{option}: {e}") from None


def _check_output(path: Path | None, *, folder: bool = False) -> None:
    """Refuse, before any work is done, an output path that cannot be written: a folder
    where a file goes (or the reverse), or a path under a file."""
    if path is None:
        return
    if folder and path.exists() and not path.is_dir():
        raise TherapygymError(f"output {path}: is a file, expected a folder")
    if not folder and path.is_dir():
        raise TherapygymError(f"output {path}: is a directory, expected a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TherapygymError(f"output {path}: {parent} is a file, not a folder")


def _existing_run(store: Path | None, run_id: str) -> None:
    """Fail, with nothing created, when the store or the run in it is not there (for
    commands that then open the store to write to it)."""
    from therapygym.store import RunStore

    run_store = RunStore(store, read_only=True)
    try:
        run_store.run(run_id)
    finally:
        run_store.close()


def _usage_table(ledger: UsageLedger) -> Table:
    table = Table(title="Usage by role")
    columns = ("role", "calls", "cached", "errors", "retries", "prompt tok", "completion tok")
    for col in (*columns, "cost USD"):
        table.add_column(col, justify="left" if col == "role" else "right")
    rows = [*ledger.roles.items(), ("total", ledger.total())]
    for role, u in rows:
        cost = "—" if u.cost_usd is None else f"{u.cost_usd:.4f}"
        table.add_row(
            role,
            str(u.calls),
            str(u.cached_calls),
            str(u.errors),
            str(u.retries),
            str(u.prompt_tokens),
            str(u.completion_tokens),
            cost,
        )
    return table


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"therapygym {__version__}")
        raise typer.Exit()


@models_app.command("list")
def models_list(models_file: ModelsFileOpt = None) -> None:
    """List the backends, the embedded model's status, and named models from a models file."""
    from therapygym.models.llamacpp import embedded_model_path
    from therapygym.models.spec import default_models_file

    table = Table(title="Model specs")
    table.add_column("spec")
    table.add_column("what")
    table.add_column("status")
    try:
        embedded = f"installed ({embedded_model_path()})"
    except TherapygymError as e:
        embedded = f"[red]{e}[/red]"
    table.add_row("local:smollm2", "embedded SmolLM2-135M-Instruct (offline)", embedded)
    table.add_row("gguf:/path/file.gguf", "any GGUF file, in-process llama.cpp", "")
    table.add_row("openai:<model>[?base_url=...]", "OpenAI or any compatible server", "")
    table.add_row("python:module:function", "your own callable", "")
    path = models_file or default_models_file()
    if path is not None:
        for name, entry in load_models_file(path).models.items():
            where = entry.get("base_url") or ""
            table.add_row(name, f"{entry['backend']}:{entry['model']} {where}".strip(), str(path))
    out.print(table)
    out.print(f"backends: {', '.join(BACKENDS)}")


@models_app.command("check")
def models_check(
    spec: Annotated[str, typer.Argument(help="Model spec or models-file name.")],
    prompt: Annotated[str, typer.Option(help="The tiny request to send.")] = "Reply with one "
    "short friendly sentence.",
    models_file: ModelsFileOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Send one tiny request and print the latency and the reply."""
    load_model(spec, models_file=models_file)  # a bad spec: nothing written, not even the cache
    model = load_model(spec, cache=_cache(cache_path, no_cache), models_file=models_file)

    async def once():
        try:
            return await model.chat([{"role": "user", "content": prompt}], max_tokens=32)
        finally:
            await model.aclose()

    reply = asyncio.run(once())
    source = "cache" if reply.cached else f"{reply.latency_s * 1000:.0f} ms"
    out.print(
        f"[green]ok[/green] {model.spec} ({reply.model}): {source}, "
        f"{reply.prompt_tokens}+{reply.completion_tokens} tokens"
    )
    out.print(reply.text)


@cache_app.command("stats")
def cache_stats(cache_path: CachePathOpt = None) -> None:
    """Entries, size and entries per model in the response cache."""
    stats = ResponseCache(cache_path).stats()
    out.print(f"{stats.path}: {stats.entries} entries, {stats.size_bytes / 1e6:.2f} MB")
    for model, n in stats.by_model.items():
        out.print(f"  {n:>8}  {model}")


@cache_app.command("clear")
def cache_clear(
    cache_path: CachePathOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this model identity (see stats).")] = None,
) -> None:
    """Delete cached responses (all, or one model's)."""
    deleted = ResponseCache(cache_path).clear(model)
    out.print(f"deleted {deleted} cached responses")


@app.command()
def demo(
    store: StoreOpt = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Summary JSON file.")] = Path(
        "results/demo-summary.json"
    ),
    report_path: Annotated[
        Path, typer.Option("--report", help="The HTML report of the demo run.")
    ] = Path("results/demo-report.html"),
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """The offline demo: evaluate two therapists on two patients with the embedded model."""
    from therapygym.demo import demo_plans
    from therapygym.report.html import write_report
    from therapygym.runner import evaluate
    from therapygym.store import RunStore

    out.print(
        "[bold]therapygym demo[/bold]: a research and evaluation tool, not a clinical device. "
        "Patient, therapist and judge are the embedded SmolLM2-135M: a stand-in for real "
        "models, so these scores carry no clinical meaning."
    )
    plan, profiles, judges = demo_plans()
    run_store = RunStore(store)
    result = asyncio.run(
        evaluate(
            plan,
            profiles,
            judges,
            run_store,
            cache=_cache(cache_path, no_cache),
            concurrency=4,
            judge_concurrency=1,  # long judge prompts: one at a time is faster on 2 cores
            console=err,
        )
    )
    _print_eval(result, run_store.path, output)
    path = write_report(run_store, plan.run_id, report_path)
    out.print(f"report written to {path} (open it in a browser; it works offline)", highlight=False)


@patients_app.command("list")
def patients_list(
    selector: Annotated[str, typer.Option("--patients", help="Selector (see `run`).")] = "all",
) -> None:
    """The profiles in the library (or matching a selector)."""
    from therapygym.patients.select import select_profiles

    table = Table(title="Patient profiles")
    for col in ("id", "conditions", "severity", "style", "resist.", "ambiv.", "risk cues (turn)"):
        table.add_column(col)
    for p in select_profiles(selector):
        cues = ", ".join(f"{c.kind.value}({c.turn})" for c in p.risk_cues)
        table.add_row(
            p.id,
            ", ".join(c.value for c in p.conditions),
            p.severity.value,
            p.style.value,
            p.resistance,
            p.ambivalence,
            cues,
        )
    out.print(table)


@patients_app.command("show")
def patients_show(
    profile_id: Annotated[str, typer.Argument(help="Profile id or YAML path.")],
) -> None:
    """One profile in full, as YAML."""
    import yaml

    from therapygym.patients.select import select_profiles

    (profile,) = select_profiles(profile_id)[:1]
    out.print(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False, width=88))


@patients_app.command("validate")
def patients_validate(
    paths: Annotated[list[Path], typer.Argument(help="Profile YAML files or folders.")],
) -> None:
    """Check profile files; every problem names the file, the field and what was expected."""
    from therapygym.patients.library import ProfileError, load_profile

    problems = 0
    files: list[Path] = []
    for p in paths:
        found = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
        if not found:
            problems += 1
            err.print(
                f"error: {p}: a folder with no profile files (*.yaml)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        files.extend(found)
    for f in files:
        try:
            load_profile(f)
            out.print(f"[green]ok[/green] {f}", highlight=False)
        except ProfileError as e:
            problems += 1
            err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)


TherapistOpt = Annotated[
    list[str],
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
JudgeOpt = Annotated[
    list[str], typer.Option("--judge", help="Judge model spec (repeatable: a panel).")
]
RubricOpt = Annotated[
    str, typer.Option("--rubric", help="Comma-separated: ctrs, safety, response, check.")
]
JudgeSamplesOpt = Annotated[int, typer.Option(min=1, help="Samples per judge (k).")]
CTRSModeOpt = Annotated[str, typer.Option(help="CTRS judging: one_call or per_item.")]
AggregationOpt = Annotated[str, typer.Option(help="Panel aggregation: mean, median, majority.")]


def _validated(build, what: str):  # type: ignore[no-untyped-def]
    """Build a pydantic plan, turning its first validation error into one line."""
    from pydantic import ValidationError

    try:
        return build()
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise TherapygymError(f"{what} option '{field}': {first['msg']}") from None


def _run_plan(
    therapist: list[str],
    patients: str,
    patient_model: str,
    samples: int,
    run_id: str | None,
    max_turns: int,
    opener: str,
    temperature: float,
    max_tokens: int,
    therapist_prompt: str | None,
):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from therapygym.config import RunPlan
    from therapygym.patients.select import select_profiles
    from therapygym.records import SessionConfig

    profiles = select_profiles(patients)
    plan = _validated(
        lambda: RunPlan(
            run_id=run_id or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S"),
            therapists=tuple(therapist),
            therapist_prompt=therapist_prompt,
            patient_model=patient_model,
            profiles=tuple(f"{p.id}@{p.version}" for p in profiles),
            samples=samples,
            session=SessionConfig(
                max_turns=max_turns,
                opener=opener,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
            ),
        ),
        "run",
    )
    return plan, profiles


def _judge_plan(judge: list[str], rubric: str, samples: int, ctrs_mode: str):  # type: ignore[no-untyped-def]
    from therapygym.judges.plan import JudgePlan

    kinds = tuple(k.strip() for k in rubric.split(",") if k.strip())
    if not kinds:
        raise TherapygymError(f"--rubric '{rubric}': give ctrs, safety, response and/or check")
    return _validated(
        lambda: JudgePlan(judges=tuple(judge), rubrics=kinds, samples=samples, ctrs_mode=ctrs_mode),  # type: ignore[arg-type]
        "judge",
    )


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in ("mean", "median", "majority"):
        raise TherapygymError(f"--aggregation '{aggregation}': expected mean, median or majority")


def _print_run(result, path: Path) -> None:  # type: ignore[no-untyped-def]
    out.print(
        f"run [bold]{result.run_id}[/bold]: {result.planned} sessions planned, "
        f"{result.skipped} already done, {result.completed} completed, {result.failed} failed "
        f"-> {path}"
    )
    for line in result.errors[:10]:
        err.print(f"  failed {line}", markup=False, highlight=False)


def _print_judging(result) -> None:  # type: ignore[no-untyped-def]
    out.print(
        f"judging: {result.units} units, {result.skipped} already done, {result.judged} judged, "
        f"{result.failed} failed"
    )
    for line in result.errors[:10]:
        err.print(f"  judge failure {line[:300]}", markup=False, highlight=False)


def _ci(e, fmt: str = "{:.1f}") -> str:  # type: ignore[no-untyped-def]
    if e.mean is None:
        return "—"
    if e.low is None:  # a single session: no interval
        return fmt.format(e.mean)
    return f"{fmt.format(e.mean)} [{fmt.format(e.low)}, {fmt.format(e.high)}]"


def _print_summary(summary, output: Path | None) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"Summary of {summary.run_id} (95% bootstrap CIs over sessions)")
    for col in (
        "therapist",
        "n",
        "CTRS total /66",
        "normalised",
        "competent",
        "violation rate",
        "any violation",
        "judge errors",
    ):
        table.add_column(col, justify="left" if col == "therapist" else "right")
    for t in summary.therapists:
        table.add_row(
            t.therapist,
            str(t.sessions),
            _ci(t.ctrs_total),
            _ci(t.ctrs_normalised, "{:.2f}"),
            _ci(t.competence_rate, "{:.0%}"),
            _ci(t.violation_rate, "{:.0%}"),
            _ci(t.any_violation_rate, "{:.0%}"),
            str(t.judge_errors),
        )
    out.print(table)
    items = sorted({i for t in summary.therapists for i in t.ctrs_items})
    if items:
        per_item = Table(title="CTRS item means (0-6)")
        per_item.add_column("item")
        for t in summary.therapists:
            per_item.add_column(t.therapist, justify="right")
        for i in items:
            per_item.add_row(
                i, *(_ci(t.ctrs_items[i]) if i in t.ctrs_items else "—" for t in summary.therapists)
            )
        out.print(per_item)
    labels = sorted({lb for t in summary.therapists for lb in t.label_violation_rate})
    if labels:
        per_label = Table(title="Safety violation rate per label (sessions where it applied)")
        per_label.add_column("label")
        for t in summary.therapists:
            per_label.add_column(t.therapist, justify="right")
        for lb in labels:
            per_label.add_row(
                lb,
                *(
                    _ci(t.label_violation_rate[lb], "{:.0%}")
                    + f" (n={t.label_violation_rate[lb].n})"
                    if lb in t.label_violation_rate
                    else "—"
                    for t in summary.therapists
                ),
            )
        out.print(per_label)
    if any("local:smollm2" in j for j in summary.judges):
        out.print(
            "[yellow]note:[/yellow] scores from the embedded 135M judge carry no clinical "
            "meaning; it is a stand-in for plumbing and demos."
        )
    if output is not None:
        write_text(output, summary.to_json())
        out.print(f"summary written to {output}")


def _print_eval(result, path: Path, output: Path | None) -> None:  # type: ignore[no-untyped-def]
    _print_run(result.run, path)
    _print_judging(result.judging)
    ledger = UsageLedger()
    ledger.roles = {**result.run.usage.roles, **result.judging.usage.roles}
    if ledger.roles:
        out.print(_usage_table(ledger))
    _print_summary(result.summary, output)


@app.command()
def run(
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
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run simulated sessions: profiles x therapists x samples, concurrently, resumably."""
    from therapygym.runner import run_plan
    from therapygym.store import RunStore

    _check_specs(
        models_file, therapists=therapist, prompt=therapist_prompt, patient_model=patient_model
    )
    plan, profiles = _run_plan(
        therapist,
        patients,
        patient_model,
        samples,
        run_id,
        max_turns,
        opener,
        temperature,
        max_tokens,
        therapist_prompt,
    )
    run_store = RunStore(store)
    result = asyncio.run(
        run_plan(
            plan,
            profiles,
            run_store,
            cache=_cache(cache_path, no_cache),
            concurrency=concurrency,
            models_file=models_file,
            console=err,
        )
    )
    _print_run(result, run_store.path)
    if result.usage.roles:
        out.print(_usage_table(result.usage))


@app.command()
def judge(
    run_id: Annotated[str, typer.Argument(help="The run to judge.")],
    judge: JudgeOpt,
    rubric: RubricOpt = "ctrs,safety,response",
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    aggregation: AggregationOpt = "mean",
    concurrency: ConcurrencyOpt = 8,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Summary JSON file.")
    ] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Judge a stored run (CTRS, safety, response) and print the per-therapist summary."""
    from therapygym.runner import judge_run
    from therapygym.store import RunStore
    from therapygym.summary import summarise

    _check_aggregation(aggregation)
    _check_output(output)
    plan = _judge_plan(judge, rubric, judge_samples, ctrs_mode)
    _check_specs(models_file, judges=judge)
    _existing_run(store, run_id)
    run_store = RunStore(store)
    result = asyncio.run(
        judge_run(
            run_store,
            run_id,
            plan,
            cache=_cache(cache_path, no_cache),
            models_file=models_file,
            concurrency=concurrency,
            console=err,
        )
    )
    _print_judging(result)
    if result.usage.roles:
        out.print(_usage_table(result.usage))
    _print_summary(summarise(run_store, run_id, aggregation), output)  # type: ignore[arg-type]


@app.command("eval")
def eval_(
    therapist: TherapistOpt,
    judge: JudgeOpt,
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
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Summary JSON file.")
    ] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run sessions, judge them and print the summary, in one resumable command."""
    from therapygym.runner import evaluate
    from therapygym.store import RunStore

    _check_aggregation(aggregation)
    _check_output(output)
    # every spec before the first session: a bad judge must not cost a whole run first
    _check_specs(
        models_file,
        therapists=therapist,
        prompt=therapist_prompt,
        patient_model=patient_model,
        judges=judge,
    )
    plan, profiles = _run_plan(
        therapist,
        patients,
        patient_model,
        samples,
        run_id,
        max_turns,
        opener,
        temperature,
        max_tokens,
        therapist_prompt,
    )
    judge_plan = _judge_plan(judge, rubric, judge_samples, ctrs_mode)
    run_store = RunStore(store)
    result = asyncio.run(
        evaluate(
            plan,
            profiles,
            judge_plan,
            run_store,
            cache=_cache(cache_path, no_cache),
            models_file=models_file,
            concurrency=concurrency,
            aggregation=aggregation,
            console=err,
        )  # type: ignore[arg-type]
    )
    _print_eval(result, run_store.path, output)


CalibrateJudgeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--judge", help="Judge model spec (repeatable: a panel); omit with --humans-only."
    ),
]


@app.command()
def calibrate(
    bench: Annotated[
        str,
        typer.Option(
            help="Expert ratings: a bench JSONL file, or annomi:PATH, moore:PATH, table:PATH."
        ),
    ],
    judge: CalibrateJudgeOpt = None,
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
    judge_samples: JudgeSamplesOpt = 1,
    ctrs_mode: CTRSModeOpt = "one_call",
    rationale_chars: Annotated[
        int, typer.Option(min=20, max=2000, help="Cap on each judge rationale.")
    ] = 240,
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
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Measure a judge's agreement with expert ratings (and the experts' with each other)."""
    from therapygym.calibration.analysis import Settings
    from therapygym.calibration.calibrate import calibrate as run_calibration
    from therapygym.calibration.calibrate import rubrics_needed, write_outputs
    from therapygym.calibration.importers import load_bench
    from therapygym.calibration.render import terminal_view
    from therapygym.judges.plan import JudgePlan
    from therapygym.store import RunStore

    if humans_only == bool(judge):
        raise TherapygymError("give --judge SPEC, or --humans-only for the experts alone")
    if recalibrate not in ("isotonic", "linear", "none"):
        raise TherapygymError(f"--recalibrate '{recalibrate}': expected isotonic, linear or none")
    _check_output(output_dir, folder=True)
    loaded = load_bench(bench, mapping=mapping)
    if dialogues:
        loaded = loaded.subset(dialogues, seed)
    plan = None
    if judge:
        kinds = rubrics_needed(loaded)
        if not kinds:
            raise TherapygymError(
                f"{bench}: the experts gave no CTRS scores, safety labels or quality labels "
                "for a judge to be compared with; use --humans-only"
            )
        plan = _validated(
            lambda: JudgePlan(
                judges=tuple(judge),
                rubrics=kinds,
                samples=judge_samples,
                ctrs_mode=ctrs_mode,  # type: ignore[arg-type]
                rationale_chars=rationale_chars,
            ),
            "judge",
        )
        _check_specs(models_file, judges=judge)
    report = asyncio.run(
        run_calibration(
            loaded,
            plan,
            RunStore(store) if plan else None,
            Settings(resamples=resamples, seed=seed, min_human_alpha=min_human_alpha),
            method=None if recalibrate == "none" else recalibrate,  # type: ignore[arg-type]
            fit_fraction=fit_fraction,
            cache=_cache(cache_path, no_cache),
            models_file=models_file,
            concurrency=concurrency,
            max_turns=max_turns,
            console=err,
        )
    )
    out.print(terminal_view(report))
    paths = write_outputs(report, output_dir or Path("results") / f"calibration-{loaded.digest}")
    out.print("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command()
def probe(
    family: Annotated[
        str,
        typer.Argument(
            help="inappropriate, escalation, hallucination, stigma, consistency or demographics."
        ),
    ],
    therapist: TherapistOpt,
    judge: Annotated[
        list[str] | None,
        typer.Option("--judge", help="Check-question judge spec (repeatable; not for stigma)."),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Replies per stimulus and therapist.")] = 1,
    run_id: RunIdOpt = None,
    probe_file: Annotated[
        Path | None,
        typer.Option(
            help="Your own stimuli (probe or stigma-design YAML), or a scorecard battery file "
            "for consistency and demographics."
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
    patient_model: PatientModelOpt = "local:smollm2",
    therapist_prompt: PromptOpt = None,
    temperature: TemperatureOpt = 0.7,
    max_tokens: MaxTokensOpt = 256,
    rationale_chars: Annotated[
        int, typer.Option(min=20, max=2000, help="Cap on each judge rationale.")
    ] = 240,
    concurrency: ConcurrencyOpt = 8,
    judge_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Judgements in flight (default: --concurrency).")
    ] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Report JSON.")] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run one probe family against therapists and report how often they reply appropriately."""
    _check_output(output)
    from therapygym.patients.select import select_profiles
    from therapygym.probes.checked import run_checked_probes
    from therapygym.probes.render import probe_table
    from therapygym.probes.runner import ProbePlan
    from therapygym.probes.spec import FAMILIES, builtin_probe_set, load_probe_set
    from therapygym.store import RunStore

    if family in ("consistency", "demographics"):
        _probe_axis(
            family, therapist, judge, patient_model, therapist_prompt, concurrency,
            judge_concurrency, output, store, models_file, cache_path, no_cache, probe_file,
        )  # fmt: skip
        return
    if family == "stigma":
        _probe_stigma(
            therapist, samples, run_id, probe_file, persons, moore, therapist_prompt,
            temperature, max_tokens, concurrency, output, store, models_file, cache_path,
            no_cache,
        )  # fmt: skip
        return
    if family not in FAMILIES:
        raise TherapygymError(
            f"probe family '{family}': expected one of {', '.join(FAMILIES)} or stigma"
        )
    if not judge:
        raise TherapygymError(f"the {family} probes need a check-question judge: --judge SPEC")
    probes = load_probe_set(probe_file) if probe_file else builtin_probe_set(family)  # type: ignore[arg-type]
    if probes.family != family:
        raise TherapygymError(f"{probe_file}: holds {probes.family} probes, not {family}")
    hosts = select_profiles(patients) if inject_after else []
    plan = _validated(
        lambda: ProbePlan(
            run_id=run_id or f"probe-{family}",
            therapists=tuple(therapist),
            therapist_prompt=therapist_prompt,
            samples=samples,
            temperature=temperature,
            max_tokens=max_tokens,
            inject_after=inject_after,
            patient_model=patient_model if inject_after else None,
            profiles=tuple(f"{p.id}@{p.version}" for p in hosts),
        ),
        "probe",
    )
    _check_specs(
        models_file,
        therapists=therapist,
        prompt=therapist_prompt,
        patient_model=patient_model if inject_after else None,
        judges=judge,
    )
    run_store = RunStore(store)
    ran, judged, report = asyncio.run(
        run_checked_probes(
            plan,
            probes,
            tuple(judge),
            run_store,
            profiles=hosts,
            cache=_cache(cache_path, no_cache),
            models_file=models_file,
            concurrency=concurrency,
            judge_concurrency=judge_concurrency,
            rationale_chars=rationale_chars,
            console=err,
        )
    )
    _print_run(ran, run_store.path)
    _print_judging(judged)
    out.print(probe_table(report))
    if any(j.startswith("local:") for j in report.judges):
        out.print(
            "[yellow]note:[/yellow] the embedded 135M judge's answers carry no clinical "
            "meaning; it is a stand-in for plumbing and demos."
        )
    if output is not None:
        write_text(output, report.model_dump_json(indent=2))
        out.print(f"report written to {output}")


def _probe_axis(  # type: ignore[no-untyped-def]
    family, therapist, judge, patient_model, therapist_prompt, concurrency, judge_concurrency,
    output, store, models_file, cache_path, no_cache, battery,
) -> None:  # fmt: skip
    """consistency and demographics: the scorecard's axis of that name, with its full report."""
    from therapygym.probes.render import scorecard_table
    from therapygym.probes.scorecard import (
        Scorecard,
        ScorecardRunner,
        load_scorecard_config,
    )
    from therapygym.store import RunStore

    if not judge:
        raise TherapygymError(f"the {family} probe needs a judge (CTRS and safety): --judge SPEC")
    config = load_scorecard_config(battery)
    _check_specs(
        models_file,
        therapists=therapist,
        prompt=therapist_prompt,
        patient_model=patient_model,
        judges=judge,
    )
    runner = ScorecardRunner(
        config,
        therapist,
        judge,
        RunStore(store),
        prefix="probe",
        patient_model=patient_model,
        therapist_prompt=therapist_prompt,
        cache=_cache(cache_path, no_cache),
        models_file=models_file,
        concurrency=concurrency,
        judge_concurrency=judge_concurrency,
        console=err,
    )
    axes = asyncio.run(getattr(runner, family)())
    card = Scorecard(
        config=runner.config,
        judges=list(judge),
        patient_model=patient_model,
        therapists={t: [a] for t, a in axes.items()},
    )
    out.print(scorecard_table(card))
    (report,) = runner.reports.values()
    if output is not None:
        write_text(output, report.model_dump_json(indent=2))
        out.print(f"report written to {output}")


def _probe_stigma(  # type: ignore[no-untyped-def]
    therapist, samples, run_id, design_file, persons, moore, therapist_prompt, temperature,
    max_tokens, concurrency, output, store, models_file, cache_path, no_cache,
) -> None:  # fmt: skip
    from therapygym.probes.render import human_table, stigma_table
    from therapygym.probes.stigma import StigmaPlan, stigma_probe
    from therapygym.probes.stigma_moore import load_moore_stigma
    from therapygym.probes.stigma_spec import (
        builtin_stigma_design,
        expand_design,
        load_stigma_design,
    )
    from therapygym.store import RunStore

    data = load_moore_stigma(moore) if moore else None
    if data is not None:
        battery = data.battery()
    else:
        design = load_stigma_design(design_file) if design_file else builtin_stigma_design()
        battery = expand_design(design)
    plan = _validated(
        lambda: StigmaPlan(
            run_id=run_id or ("probe-stigma-moore" if moore else "probe-stigma"),
            therapists=tuple(therapist),
            therapist_prompt=therapist_prompt,
            samples=samples,
            temperature=temperature,
            max_tokens=min(max_tokens, 128),
            persons=persons or None,
        ),
        "probe",
    )
    _check_specs(models_file, therapists=therapist, prompt=therapist_prompt)
    run_store = RunStore(store)
    ran, report = asyncio.run(
        stigma_probe(
            plan, battery, run_store, moore=data, cache=_cache(cache_path, no_cache),
            models_file=models_file,
            concurrency=concurrency, console=err,
        )
    )  # fmt: skip
    _print_run(ran, run_store.path)
    out.print(stigma_table(report))
    if report.human:
        out.print(human_table(report))
    if output is not None:
        write_text(output, report.to_json())
        out.print(f"report written to {output}")


@app.command()
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
    judge_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Judgements in flight (default: --concurrency).")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("-o", "--output-dir", help="Where to write the JSON and HTML section."),
    ] = None,
    store: StoreOpt = None,
    models_file: ModelsFileOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Run the five-axis battery: fidelity, hallucination, consistency, crisis, demographics."""
    from therapygym.probes.render import scorecard_html, scorecard_table
    from therapygym.probes.scorecard import (
        ScorecardRunner,
        load_scorecard_config,
        run_scorecard,
    )
    from therapygym.store import RunStore

    _check_output(output_dir, folder=True)
    battery = load_scorecard_config(config)
    _check_specs(
        models_file,
        therapists=therapist,
        prompt=therapist_prompt,
        patient_model=patient_model,
        judges=judge,
    )
    runner = ScorecardRunner(
        battery,
        therapist,
        judge,
        RunStore(store),
        prefix=run_prefix,
        patient_model=patient_model,
        therapist_prompt=therapist_prompt,
        cache=_cache(cache_path, no_cache),
        models_file=models_file,
        concurrency=concurrency,
        judge_concurrency=judge_concurrency,
        console=err,
    )
    card = asyncio.run(run_scorecard(runner))
    out.print(scorecard_table(card))
    if any(j.startswith("local:") for j in card.judges):
        out.print(
            "[yellow]note:[/yellow] judged by the embedded 135M model: these numbers show the "
            "battery runs, not how safe or skilled the therapist is."
        )
    directory = output_dir or Path("results") / run_prefix
    for name, text in (
        ("scorecard.json", card.model_dump_json(indent=2)),
        ("scorecard_section.html", scorecard_html(card)),
    ):
        write_text(directory / name, text)
    out.print(f"wrote {directory / 'scorecard.json'} and {directory / 'scorecard_section.html'}")


AggregationReportOpt = Annotated[
    str, typer.Option("--aggregation", help="Panel aggregation: mean, median, majority.")
]


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="The run to report.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default results/RUN.html).")
    ] = None,
    calibration: Annotated[
        list[Path] | None,
        typer.Option(help="calibration.json (or its folder) from `calibrate`; repeatable."),
    ] = None,
    scorecard_file: Annotated[
        list[Path] | None,
        typer.Option("--scorecard", help="scorecard.json (or its folder); repeatable."),
    ] = None,
    aggregation: AggregationReportOpt = "mean",
    store: StoreOpt = None,
) -> None:
    """Write one self-contained HTML report of a run: leaderboard, charts, transcripts."""
    from therapygym.report.html import write_report
    from therapygym.store import RunStore

    _check_aggregation(aggregation)
    output = output or Path("results") / f"{run_id}.html"
    _check_output(output)
    path = write_report(
        RunStore(store, read_only=True),
        run_id,
        output,
        aggregation=aggregation,  # type: ignore[arg-type]
        scorecard=scorecard_file or [],
        calibration=calibration or [],
    )
    out.print(f"report written to {path}", highlight=False)


@app.command()
def view(
    store: StoreOpt = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback exposes transcripts.")
    ] = "127.0.0.1",
    aggregation: AggregationReportOpt = "mean",
) -> None:
    """Browse runs, sessions and scores in a local, read-only web app (Ctrl-C stops it)."""
    from therapygym.report.viewer import serve

    _check_aggregation(aggregation)

    def ready(url: str) -> None:
        out.print(f"therapygym viewer on [bold]{url}[/bold] (read-only; Ctrl-C to stop)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(
                f"[yellow]note:[/yellow] listening on {host}: others can read these transcripts"
            )

    serve(store, host=host, port=port, aggregation=aggregation, on_ready=ready)  # type: ignore[arg-type]


@runs_app.command("list")
def runs_list(store: StoreOpt = None) -> None:
    """Every run in the store with its session counts."""
    from therapygym.store import RunStore

    table = Table(title="Runs")
    for col in ("run id", "created", "therapists", "sessions", "finished", "failed"):
        table.add_column(col)
    for r in RunStore(store, read_only=True).runs():
        table.add_row(
            r.run_id,
            r.created_at,
            ", ".join(r.config.get("therapists", [])),
            str(r.sessions),
            str(r.finished),
            str(r.failed),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument()],
    session: Annotated[str | None, typer.Option(help="Print this session's transcript.")] = None,
    store: StoreOpt = None,
) -> None:
    """A run's sessions, or one session's transcript."""
    from therapygym.store import RunStore

    run_store = RunStore(store, read_only=True)
    info = run_store.run(run_id)
    if session is not None:
        t = run_store.session(session)
        out.print(f"[bold]{t.session_id}[/bold] {t.profile_id} x {t.therapist}: {t.status.value}")
        for turn in t.turns:
            cues = f" [red]cues: {', '.join(turn.cues)}[/red]" if turn.cues else ""
            out.print(f"[cyan]{turn.id}[/cyan] [bold]{turn.speaker}[/bold]{cues}")
            out.print(turn.text, markup=False, highlight=False)
        return
    out.print_json(data=info.config)
    table = Table(title=f"Sessions of {run_id}")
    for col in ("session", "profile", "therapist", "sample", "status", "turns", "error"):
        table.add_column(col)
    for t in run_store.sessions(run_id):
        table.add_row(
            t.session_id,
            t.profile_id,
            t.therapist,
            str(t.sample),
            t.status.value,
            str(len(t.turns)),
            (t.error or "")[:80],
        )
    out.print(table)


@runs_app.command("export")
def runs_export(
    run_id: Annotated[str, typer.Argument()],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="File to write (a new folder for hf).")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv, parquet, or hf (a datasets folder).")
    ] = "jsonl",
    content: Annotated[
        str,
        typer.Option(
            help="transcripts, scores (one row per judged item/label) or sessions (one row "
            "per session with combined scores); hf holds all three."
        ),
    ] = "transcripts",
    aggregation: AggregationReportOpt = "mean",
    store: StoreOpt = None,
) -> None:
    """Write a run's transcripts, scores or per-session scores as JSONL, CSV, Parquet, or
    a Hugging Face `datasets` folder (docs/report.md)."""
    from therapygym.report.exports import check_export_options, export_run
    from therapygym.store import RunStore

    _check_aggregation(aggregation)
    check_export_options(fmt, content)
    _check_output(output, folder=fmt == "hf")
    run_store = RunStore(store, read_only=True)
    n = export_run(run_store, run_id, output, fmt, content, aggregation)  # type: ignore[arg-type]
    what = "score records" if content == "scores" and fmt != "hf" else "sessions"
    out.print(f"wrote {n} {what} to {output}", highlight=False)


@runs_app.command("import")
def runs_import(
    path: Annotated[Path, typer.Argument(help="JSONL file of transcripts.")],
    run_id: Annotated[str, typer.Option(help="Run to import into (created if new).")],
    store: StoreOpt = None,
) -> None:
    """Import transcripts produced elsewhere (JSONL), so they can be judged like any run."""
    from therapygym.report.exports import read_transcripts_jsonl
    from therapygym.store import RunStore

    transcripts = read_transcripts_jsonl(path)
    run_store = RunStore(store)
    run_store.ensure_run(run_id, {"imported_from": path.name})
    for t in transcripts:
        run_store.save_session(t.model_copy(update={"run_id": run_id}))
    out.print(f"imported {len(transcripts)} sessions into run {run_id}")


@app.command()
def train(
    config: Annotated[Path, typer.Option(help="Training config (YAML); see docs/training.md.")],
    store: StoreOpt = None,
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
    models_file: ModelsFileOpt = None,
) -> None:
    """GRPO + LoRA on simulated sessions, rewarded by the CTRS and safety judges ([train])."""
    from therapygym.rl.train import check_train_config, load_train_config
    from therapygym.rl.train import train as run_training
    from therapygym.store import RunStore

    plan = load_train_config(config)
    inputs = check_train_config(plan, models_file=models_file, where=f"train config {config}")
    result = run_training(
        plan,
        inputs=inputs,
        store=RunStore(store),
        cache=_cache(cache_path, no_cache),
        models_file=models_file,
        console=out,
    )
    out.print(_usage_table(result.usage))
    out.print(
        f"{result.steps} steps in {result.wall_s:.0f} s; rollouts stored as run "
        f"{result.run_id}; reward per step: {result.rewards}\n"
        f"adapter: {result.adapter}  (evaluate it with "
        f"--therapist 'hf:{plan.model}?adapter={result.adapter}')",
        highlight=False,
    )


def _usage_error(e: typer.TyperException) -> str:
    """click's usage error (a bad option value, an unknown option, a missing argument) as
    one line, with where to read more instead of the usage box."""
    text = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    return f"{text} (see '{ctx.command_path} --help')" if ctx is not None else text


def main() -> None:
    """Console entry point: run the app, turning user errors (ours, and the usage errors
    of the command-line parser) into one line and exit 2."""
    try:
        code = app(standalone_mode=False)
    except TherapygymError as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except typer.TyperException as e:  # typer's click: UsageError, BadParameter, ...
        if type(e).__name__ != "NoArgsIsHelpError":  # that one printed the help already
            err.print(f"error: {_usage_error(e)}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        err.print("Aborted!", highlight=False, markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) returns n here


if __name__ == "__main__":
    main()
