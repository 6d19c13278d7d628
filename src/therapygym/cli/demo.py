"""`demo`: the offline demo on the embedded model (therapygym.demo)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import CacheOpt, NoCacheOpt, StoreOpt
from therapygym.cli.output import term


def demo(
    store: StoreOpt = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Summary JSON file.")] = Path(
        "results/demo-summary.json"
    ),
    report_path: Annotated[
        Path, typer.Option("--report", help="The HTML report of the demo run.")
    ] = Path("results/demo-report.html"),
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """The offline demo: evaluate two therapists on two patients with the embedded model."""
    from therapygym.demo import demo_config
    from therapygym.report.html import write_report
    from therapygym.runner import evaluate
    from therapygym.store import RunStore

    term.out.print(
        "[bold]therapygym demo[/bold]: a research and evaluation tool, not a clinical device. "
        "Patient, therapist and judge are the embedded SmolLM2-135M: a stand-in for real "
        "models, so these scores carry no clinical meaning."
    )
    config = demo_config(store=store, cache=cache, no_cache=no_cache, output=output)
    result = asyncio.run(evaluate(config, console=term.err))
    term.evaluation(result)
    path = write_report(RunStore(result.store, read_only=True), result.run_id, report_path)
    term.written("report", f"{path} (open it in a browser; it works offline)")
