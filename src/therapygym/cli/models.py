"""`models list` and `models check`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from therapygym.cli.options import CacheOpt, ModelsFileOpt, NoCacheOpt
from therapygym.cli.output import term
from therapygym.errors import TherapygymError

app = typer.Typer(help="List model backends and check that a model answers.")


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
