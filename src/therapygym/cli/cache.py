"""`cache stats` and `cache clear`: the response cache."""

from __future__ import annotations

from typing import Annotated

import typer

from therapygym.cli.options import CacheOpt
from therapygym.cli.output import term

app = typer.Typer(help="Inspect or clear the response cache.")


@app.command("stats")
def cache_stats(cache: CacheOpt = None) -> None:
    """Entries, size and entries per model in the response cache."""
    from therapygym.models import ResponseCache

    term.cache_stats(ResponseCache(cache).stats())


@app.command("clear")
def cache_clear(
    cache: CacheOpt = None,
    model: Annotated[str | None, typer.Option(help="Only this model identity (see stats).")] = None,
) -> None:
    """Delete cached responses (all, or one model's)."""
    from therapygym.models import ResponseCache

    deleted = ResponseCache(cache).clear(model)
    term.out.print(f"deleted {deleted} cached responses")
