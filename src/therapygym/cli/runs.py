"""`runs list|show|export|import|merge`: the runs in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import AggregationOpt, JudgeFilterOpt, StoreOpt
from therapygym.cli.output import term

app = typer.Typer(help="List, show, export, import and merge stored runs.")

# What `runs import` reads (report.import_formats: records.Transcript per line, or chat
# rows). tests/test_cli_runs.py imports the example and holds the field lists to the schema.
IMPORT_EXAMPLE = (
    '{"session_id": "s1", "profile_id": "client-1", "therapist": "my-bot", '
    '"patient": "human", "status": "completed", "turns": ['
    '{"index": 0, "speaker": "patient", "text": "I keep lying awake."}, '
    '{"index": 1, "speaker": "therapist", "text": "What goes through your mind then?"}]}'
)
IMPORT_HELP = f"""Import conversations produced elsewhere, so they can be judged like any run.

Reads our transcript JSONL (below), chat-format JSONL ({{"messages": [{{"role": ...,
"content": ...}}, ...]}} per line, optional id and metadata), Parquet with a messages
column, or a local Hugging Face dataset folder; the format comes from the path, or
--format. In chat rows --therapist-role (assistant) and --patient-role (user) name the
speakers; leading system messages are kept as the session's system prompt; any other role
is refused. profile_id, therapist and patient may be given in the row or its metadata.
The whole source is checked before anything is stored, and stored in one transaction.

Our format: one session per line, a JSON object, as `runs export` writes them; unknown
fields are refused.

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
        str,
        typer.Option(
            "--format",
            help="jsonl, csv, parquet, hf (a datasets folder), preference (DPO/KTO pairs), "
            "inspect (an Inspect AI log; the [inspect] extra), or a format a plug-in "
            "registers; an unknown name lists them all.",
        ),
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
    level: Annotated[
        str | None,
        typer.Option(
            help="preference: session (default; sessions of one profile that open alike) "
            "or turn (therapist turns after an identical conversation).",
            rich_help_panel="Preference pairs",
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            help="preference: the least score difference of a pair, on the 0-1 scale "
            "(default 0.1); ties never pair.",
            rich_help_panel="Preference pairs",
        ),
    ] = None,
    score: Annotated[
        str | None,
        typer.Option(
            help="preference: ctrs (normalised mean; session default), ctrs:ITEM, response "
            "(turn default) or response:DIMENSION.",
            rich_help_panel="Preference pairs",
        ),
    ] = None,
    preference_style: Annotated[
        str | None,
        typer.Option(
            help="preference: dpo (prompt, chosen, rejected; default) or kto (prompt, "
            "completion, label).",
            rich_help_panel="Preference pairs",
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Write a run's transcripts, scores or per-session scores as JSONL, CSV, Parquet, or
    a Hugging Face `datasets` folder; or preference pairs for DPO/KTO training, where only
    a session the safety judge passed is ever chosen (docs/report.md)."""
    from therapygym.config import check_aggregation, check_output, judge_labels
    from therapygym.report.exports import (
        EXPORT_FORMATS,
        check_export_options,
        counted,
        export_run,
    )
    from therapygym.store import RunStore

    options = {
        "level": level, "margin": margin, "score": score, "preference_style": preference_style,
    }  # fmt: skip
    check_aggregation(aggregation)
    check_export_options(fmt, content, options)
    check_output(output, folder=EXPORT_FORMATS.get(fmt).folder, option="--output")
    run_store = RunStore(store, read_only=True)
    n = export_run(
        run_store,
        run_id,
        output,
        fmt,
        content,
        aggregation,
        judge_labels(judge),
        options,  # type: ignore[arg-type]
    )
    term.out.print(f"wrote {n} {counted(fmt, content)} to {output}", highlight=False)


@app.command("import", help=IMPORT_HELP)
def runs_import(
    path: Annotated[Path, typer.Argument(help="A JSONL or Parquet file, or a dataset folder.")],
    run_id: Annotated[str, typer.Option(help="Run to import into (created if new).")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="transcripts (ours), chat (chat-format JSONL), parquet or hf (a dataset "
            "folder); default: from the path.",
        ),
    ] = None,
    therapist_role: Annotated[
        str, typer.Option(help="The chat role of the therapist's messages.")
    ] = "assistant",
    patient_role: Annotated[
        str, typer.Option(help="The chat role of the patient's messages.")
    ] = "user",
    split: Annotated[
        str | None, typer.Option(help="hf: the split to read (default: train, or the only one).")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Import conversations produced elsewhere, so they can be judged like any run."""
    from therapygym.report.import_formats import RoleMap, import_transcripts

    roles = RoleMap(therapist=therapist_role, patient=patient_role)
    imported, renamed = import_transcripts(path, run_id, store, fmt=fmt, roles=roles, split=split)
    term.imported(imported, renamed, run_id)


@app.command("merge")
def runs_merge(
    inputs: Annotated[
        list[Path],
        typer.Argument(metavar="STORE", help="The stores to merge (each shard's, copied back)."),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="The merged store (created, or added to)."),
    ],
) -> None:
    """Merge the stores of a run's shards (`--shard K/N`) into one store, as one process
    would have made it (docs/scale.md).

    Runs of one id must have the same config in every store, the shard spec aside; the
    first field that differs is named and nothing is written. Each input is copied in one
    transaction, keeping what the output already holds (ids are content-addressed), so a
    merge can be repeated, or resumed after a kill, and merging again changes nothing.
    """
    from therapygym.merge import merge_stores
    from therapygym.shards import shard_name

    result = merge_stores(inputs, output)
    say = term.out.print
    for one in result.inputs:
        held = ", ".join(f"{run} ({shard_name(spec)})" for run, spec in one.runs.items())
        say(f"{one.path}: {held}: {_counted(one.counts)}", markup=False, highlight=False)
    say(
        f"merged {len(result.inputs)} stores into {output}: {_counted(result.counts)}; "
        f"integrity {result.integrity}",
        markup=False,
        highlight=False,
    )
    for run_id, missing in sorted(result.missing.items()):
        if missing:
            say(
                f"run {run_id}: shards {', '.join(missing)} are not merged yet",
                markup=False,
                highlight=False,
            )


def _counted(counts: dict[str, int]) -> str:
    """`runs 1 copied, 0 already there; sessions ...; scores ...` (and any replaced or
    differing)."""
    parts = []
    for kind in ("runs", "sessions", "scores"):
        text = f"{kind} {counts.get(f'{kind} copied', 0)} copied, "
        text += f"{counts.get(f'{kind} already there', 0)} already there"
        if counts.get(f"{kind} replaced"):
            text += f", {counts[f'{kind} replaced']} replaced (finished there, not here)"
        parts.append(text)
    if counts.get("sessions differing"):
        parts.append(
            f"{counts['sessions differing']} sessions finished here and there by different "
            f"attempts: kept here's, and not the {counts['scores of differing sessions']} "
            "scores of the other"
        )
    return "; ".join(parts)
