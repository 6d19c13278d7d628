"""`report` (one HTML file of a run) and `view` (the local web app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import AggregationOpt, JudgeFilterOpt, StoreOpt
from therapygym.cli.output import term


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
    judge: JudgeFilterOpt = None,
    aggregation: AggregationOpt = "mean",
    store: StoreOpt = None,
) -> None:
    """Write one self-contained HTML report of a run: leaderboard, charts, transcripts."""
    from therapygym.config import check_aggregation, check_output, judge_labels
    from therapygym.report.html import write_report
    from therapygym.store import RunStore

    check_aggregation(aggregation)
    output = output or Path("results") / f"{run_id}.html"
    check_output(output, option="--output")
    path = write_report(
        RunStore(store, read_only=True),
        run_id,
        output,
        aggregation=aggregation,  # type: ignore[arg-type]
        judges=judge_labels(judge),
        scorecard=scorecard_file or [],
        calibration=calibration or [],
    )
    term.written("report", path)


def view(
    store: StoreOpt = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback exposes transcripts.")
    ] = "127.0.0.1",
    aggregation: AggregationOpt = "mean",
) -> None:
    """Browse runs, sessions and scores in a local, read-only web app (Ctrl-C stops it)."""
    from therapygym.config import check_aggregation
    from therapygym.report.viewer import serve

    check_aggregation(aggregation)

    def ready(url: str) -> None:
        term.out.print(f"therapygym viewer on [bold]{url}[/bold] (read-only; Ctrl-C to stop)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            term.err.print(
                f"[yellow]note:[/yellow] listening on {host}: others can read these transcripts"
            )

    serve(store, host=host, port=port, aggregation=aggregation, on_ready=ready)  # type: ignore[arg-type]
