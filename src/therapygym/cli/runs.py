"""`runs list|show|export|import`: the runs in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import AggregationOpt, JudgeFilterOpt, StoreOpt
from therapygym.cli.output import term

app = typer.Typer(help="List, show, export and import stored runs.")

# What `runs import` reads (report.exports.read_transcripts_jsonl: records.Transcript per
# line). tests/test_cli_runs.py imports the example and holds the field lists to the schema.
IMPORT_EXAMPLE = (
    '{"session_id": "s1", "profile_id": "client-1", "therapist": "my-bot", '
    '"patient": "human", "status": "completed", "turns": ['
    '{"index": 0, "speaker": "patient", "text": "I keep lying awake."}, '
    '{"index": 1, "speaker": "therapist", "text": "What goes through your mind then?"}]}'
)
IMPORT_HELP = f"""Import transcripts produced elsewhere (JSONL), so they can be judged like any run.

One session per line, a JSON object, as `runs export` writes them. The whole file is
checked, line by line, before anything is stored; unknown fields are refused.

Required: session_id (unique in the file), profile_id, therapist, patient, status
(completed, ended_by_patient or failed; failed sessions are stored, not judged).

turns: the conversation, a list of objects with index (the turn's place, from 0),
speaker (patient or therapist) and text.

Optional: profile_version, sample, seed, config, error, started_at, wall_s, meta; per
turn: id (default SESSION_ID:INDEX), latency_s, prompt_tokens, completion_tokens, cached,
model, cues, meta. format and run_id are accepted and ignored (--run-id decides).

A minimal line:

{IMPORT_EXAMPLE}

Then judge it: therapygym judge RUN_ID --judge SPEC"""


@app.command("list")
def runs_list(store: StoreOpt = None) -> None:
    """Every run in the store with its session counts."""
    from therapygym.store import RunStore

    term.runs(RunStore(store, read_only=True).runs())


@app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument()],
    session: Annotated[str | None, typer.Option(help="Print this session's transcript.")] = None,
    store: StoreOpt = None,
) -> None:
    """A run's config, provenance and sessions, or one session's transcript.

    The provenance: package version, source revision, Python, the fingerprint of every
    rubric that judged the run, and the resolved evaluation config.
    """
    from therapygym.store import RunStore

    run_store = RunStore(store, read_only=True)
    info = run_store.run(run_id)
    if session is not None:
        term.transcript(run_store.session(session))
    else:
        term.run_info(info, run_store.sessions(run_id))


@app.command("export")
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
    judge: JudgeFilterOpt = None,
    aggregation: AggregationOpt = "mean",
    store: StoreOpt = None,
) -> None:
    """Write a run's transcripts, scores or per-session scores as JSONL, CSV, Parquet, or
    a Hugging Face `datasets` folder (docs/report.md)."""
    from therapygym.config import check_aggregation, check_output, judge_labels
    from therapygym.report.exports import (
        EXPORT_FORMATS,
        check_export_options,
        counted,
        export_run,
    )
    from therapygym.store import RunStore

    check_aggregation(aggregation)
    check_export_options(fmt, content)
    check_output(output, folder=EXPORT_FORMATS.get(fmt).folder, option="--output")
    run_store = RunStore(store, read_only=True)
    n = export_run(run_store, run_id, output, fmt, content, aggregation, judge_labels(judge))  # type: ignore[arg-type]
    term.out.print(f"wrote {n} {counted(fmt, content)} to {output}", highlight=False)


@app.command("import", help=IMPORT_HELP)
def runs_import(
    path: Annotated[Path, typer.Argument(help="JSONL file of transcripts.")],
    run_id: Annotated[str, typer.Option(help="Run to import into (created if new).")],
    store: StoreOpt = None,
) -> None:
    """Import transcripts produced elsewhere (JSONL), so they can be judged like any run."""
    from therapygym.report.exports import import_transcripts

    imported, renamed = import_transcripts(path, run_id, store)
    term.imported(imported, renamed, run_id)
