"""The `therapygym` command line. Thin by design: parse, call the library, print.

Errors a user can fix (`TherapygymError`) print one line and exit with status 2.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from therapygym import __version__
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
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")

out = Console()
err = Console(stderr=True)

ModelsFileOpt = Annotated[
    Path | None,
    typer.Option("--models-file", help="YAML file of named models (or $THERAPYGYM_MODELS)."),
]
CachePathOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Response cache file (default $THERAPYGYM_CACHE or ~/.cache)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]


def _cache(path: Path | None, disabled: bool = False) -> ResponseCache | None:
    return None if disabled else ResponseCache(path)


def _usage_table(ledger: UsageLedger) -> Table:
    table = Table(title="Usage by role")
    for col in ("role", "calls", "cached", "errors", "prompt tok", "completion tok", "cost USD"):
        table.add_column(col, justify="left" if col == "role" else "right")
    rows = [*ledger.roles.items(), ("total", ledger.total())]
    for role, u in rows:
        cost = "—" if u.cost_usd is None else f"{u.cost_usd:.4f}"
        table.add_row(
            role,
            str(u.calls),
            str(u.cached_calls),
            str(u.errors),
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
    model: Annotated[str, typer.Option(help="Therapist model spec.")] = "local:smollm2",
    cache_path: CachePathOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """A short real chat with the embedded model, offline (the main job until judges land)."""
    from therapygym.demo import run_demo

    out.print(
        "[bold]therapygym demo[/bold]: research and evaluation tool, not a clinical "
        "device. The embedded 135M model is a stand-in; its replies carry no clinical "
        "meaning."
    )
    result = asyncio.run(run_demo(model, cache=_cache(cache_path, no_cache)))
    for turn in result.turns:
        out.print(f"\n[cyan]client[/cyan]: {turn.client}", markup=True, highlight=False)
        tag = "cached" if turn.cached else f"{turn.latency_s:.1f} s"
        out.print(f"[magenta]therapist[/magenta] ({tag}): ", end="")
        out.print(turn.therapist, markup=False, highlight=False)
    out.print()
    out.print(_usage_table(result.usage))


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit 2."""
    try:
        app()
    except TherapygymError as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
