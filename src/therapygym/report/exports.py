"""Runs out of the store (JSONL, CSV, Parquet, a Hugging Face dataset folder) and
transcripts into it (JSONL).

Three things can be exported from a run:

- `transcripts`: JSONL holds one `Transcript` per line, the same JSON the store
  round-trips, so a file exported here imports back unchanged, and conversations produced
  elsewhere can be judged once written in this shape. CSV and Parquet are flat: one row
  per turn, with the session's columns repeated, ready for pandas.
- `scores`: JSONL holds one `ScoreRecord` per line, exactly as stored (raw judge output,
  rubric version, prompt fingerprint). CSV and Parquet are flat: one row per judged CTRS
  item, safety label, response dimension or check question, with its rationale and
  evidence turn ids.
- `sessions`: one row per session with the panel's combined scores (the numbers the
  summary and the report aggregate): CTRS total, normalised mean, each item, each safety
  verdict, response dimension means.

`hf` writes a folder that `datasets.load_dataset(folder, config)` reads: Parquet files
under `data/` and a README.md dataset card whose YAML front matter declares the configs
`sessions` (default: each session with its turns, chat-format `messages` and combined
scores), `turns` and `scores`.

Formats are looked up by name in `EXPORT_FORMATS`. A new file format is one function that
writes flat rows to a path plus one registration (`FileFormat(name, description, writer)`);
a format that writes something else (a folder of the whole run) is a `FolderFormat`. A
third-party package registers either through the entry-point group `therapygym.exports`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ValidationError

from therapygym.artefacts import atomic_directory, atomic_path
from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.judges.aggregate import SessionScores
from therapygym.records import ScoreRecord, Transcript, as_messages
from therapygym.registry import Registry
from therapygym.store import SessionHead
from therapygym.yamlfile import read_jsonl_objects

if TYPE_CHECKING:
    import pyarrow as pa

    from therapygym.judges.panel import Aggregation
    from therapygym.store import RunStore

ExportContent = Literal["transcripts", "scores", "sessions"]
EXPORT_CONTENTS = ("transcripts", "scores", "sessions")
HF_CONFIGS = ("sessions", "turns", "scores")
SESSION_COLUMNS = (
    "session_id",
    "run_id",
    "profile_id",
    "profile_version",
    "therapist",
    "patient",
    "sample",
    "seed",
    "status",
    "error",
)


class TranscriptFileError(TherapygymError):
    """A transcript file that cannot be read or does not match the transcript schema."""


def turn_rows(transcripts: Iterable[Transcript]) -> list[dict[str, object]]:
    """One flat row per turn (sessions with no turns get one row with empty turn fields)."""
    rows: list[dict[str, object]] = []
    for t in transcripts:
        head = {c: getattr(t, c) for c in SESSION_COLUMNS}
        head["status"] = t.status.value
        if not t.turns:
            rows.append(
                {**head, "turn_id": None, "turn_index": None, "speaker": None, "text": None}
            )
        for turn in t.turns:
            rows.append(
                {
                    **head,
                    "turn_id": turn.id,
                    "turn_index": turn.index,
                    "speaker": turn.speaker,
                    "text": turn.text,
                    "latency_s": turn.latency_s,
                    "prompt_tokens": turn.prompt_tokens,
                    "completion_tokens": turn.completion_tokens,
                    "cached": turn.cached,
                    "model": turn.model,
                    "cues": ";".join(turn.cues),
                }
            )
    return rows


def _write_jsonl(lines: Iterable[str], path: Path) -> int:
    """Write each line as it comes (nothing is collected first); returns how many."""
    written = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
            written += 1
    return written


def _rows_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    _write_jsonl((json.dumps(row, ensure_ascii=False) for row in rows), path)


def _records_jsonl(records: Iterable[BaseModel], path: Path) -> int:
    return _write_jsonl((r.model_dump_json() for r in records), path)


def _rows_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Lists (evidence turn ids) become `;`-joined text: CSV has no list type."""
    import pandas as pd

    flat = [{k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows]
    with atomic_path(path) as tmp:
        pd.DataFrame(flat).to_csv(tmp, index=False)


def _rows_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)


def export_transcripts(transcripts: Iterable[Transcript], path: Path, fmt: str) -> int:
    """Write transcripts to `path` in the file format `fmt`; returns how many sessions.

    Writes to a temporary file and renames, so an interrupted export leaves no partial file.
    JSONL writes each transcript as it is read, so a run streamed from the store
    (`RunStore.sessions`) is exported in the memory of one page of it. CSV and Parquet
    still collect every turn row first (about 450 MB for Parquet at 10,000 sessions,
    docs/benchmarks.md): pandas infers each column's type from all its rows (an integer
    column with a gap becomes float, a column empty so far has no type), so writing them
    in chunks would need an explicit schema to give the same file.
    """
    file_format = _file_format(fmt)
    if file_format.write_records is not None:
        return file_format.write_records(transcripts, path)
    items = list(transcripts)
    file_format.write_rows(turn_rows(items), path)
    return len(items)


# -- scores ----------------------------------------------------------------------------

SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("session_id", "string"),
    ("run_id", "string"),
    ("profile_id", "string"),
    ("therapist", "string"),
    ("judge", "string"),
    ("rubric_id", "string"),
    ("rubric_version", "string"),
    ("prompt_fingerprint", "string"),
    ("sample", "int64"),
    ("target", "string"),
    ("key", "string"),
    ("score", "float64"),
    ("verdict", "string"),
    ("severity", "string"),
    ("rationale", "string"),
    ("evidence", "list<string>"),
    ("decided_by", "string"),
    ("error", "string"),
)


def score_rows(
    records: Iterable[ScoreRecord], transcripts: Iterable[SessionHead | Transcript] = ()
) -> list[dict[str, Any]]:
    """One flat row per judged key: a CTRS item (score), a safety label (verdict,
    severity), a response dimension of one therapist turn (score, `target` = turn id) or
    a check question (verdict = the answer); each with its rationale and evidence turn
    ids. A failed judgement is one row with its error and no key. Session columns
    (run, profile, therapist) come from `transcripts` (or session heads) when given."""
    sessions = {t.session_id: t for t in transcripts}
    rows: list[dict[str, Any]] = []
    for r in records:
        t = sessions.get(r.session_id)
        head: dict[str, Any] = {
            "session_id": r.session_id,
            "run_id": t.run_id if t else None,
            "profile_id": t.profile_id if t else None,
            "therapist": t.therapist if t else None,
            "judge": r.judge,
            "rubric_id": r.rubric_id,
            "rubric_version": r.rubric_version,
            "prompt_fingerprint": r.prompt_fingerprint,
            "sample": r.sample,
            "target": r.target,
        }
        empty = {
            "key": None, "score": None, "verdict": None, "severity": None, "rationale": None,
            "evidence": [], "decided_by": None, "error": r.error,
        }  # fmt: skip
        result = r.result or {}
        entries: list[dict[str, Any]] = []
        if "items" in result:
            for key, got in result["items"].items():
                entries.append({"key": key, "score": float(got["score"]), **_why(got)})
        elif "labels" in result:
            for key, got in result["labels"].items():
                entries.append(
                    {"key": key, "verdict": got["verdict"], "severity": got.get("severity"),
                     **_why(got)}
                )  # fmt: skip
        elif "dimensions" in result:
            for key, value in result["dimensions"].items():
                entries.append(
                    {"key": key, "score": float(value), "rationale": result.get("rationale")}
                )
        elif "answers" in result:
            for key, got in result["answers"].items():
                entries.append({"key": key, "verdict": got["answer"], **_why(got)})
        if not entries:
            rows.append({**head, **empty})
        for entry in entries:
            rows.append({**head, **empty, **entry})
    return rows


def _why(got: dict[str, Any]) -> dict[str, Any]:
    return {
        "rationale": got.get("rationale"),
        "evidence": list(got.get("evidence", [])),
        "decided_by": got.get("decided_by"),
    }


def export_scores(
    records: Iterable[ScoreRecord],
    path: Path,
    fmt: str,
    transcripts: Iterable[SessionHead | Transcript] = (),
) -> int:
    """Write score records: JSONL as stored (one record per line, raw output included),
    CSV/Parquet as `score_rows`. Returns how many records were written."""
    file_format = _file_format(fmt)
    items = list(records)
    if file_format.write_records is not None:
        file_format.write_records(items, path)
    else:
        file_format.write_rows(score_rows(items, transcripts), path)
    return len(items)


def session_score_rows(
    transcripts: Iterable[SessionHead | Transcript], scores: Iterable[SessionScores]
) -> list[dict[str, Any]]:
    """One row per session (transcripts, or heads without turns): its metadata and the
    panel's combined scores (`ctrs_<item>` 0-6, `safety_<label>` yes/no/not_applicable and
    `safety_<label>_severity`, `severity` the gravest of the session's violations,
    `response_<dimension>` 1-5). Sessions without scores (failed, or not judged yet) have
    empty score columns."""
    by_id = {s.session_id: s for s in scores}
    items = sorted({i for s in by_id.values() for i in s.ctrs_items})
    labels = sorted({lb for s in by_id.values() for lb in s.safety})
    dims = sorted({d for s in by_id.values() for d in s.response})
    rows = []
    for t in transcripts:
        s = by_id.get(t.session_id)
        row: dict[str, Any] = {c: getattr(t, c) for c in SESSION_COLUMNS}
        row["status"] = t.status.value
        row["n_turns"] = t.n_turns if isinstance(t, SessionHead) else len(t.turns)
        row["ctrs_total"] = s.ctrs_total if s else None
        row["ctrs_normalised"] = s.ctrs_normalised if s else None
        row["competent"] = s.competent if s else None
        row["violation_share"] = s.violation_share if s else None
        row["severity"] = s.severity if s and s.safety else None
        row["judge_errors"] = s.judge_errors if s else None
        for i in items:
            row[f"ctrs_{i}"] = s.ctrs_items[i].value if s and i in s.ctrs_items else None
        for lb in labels:
            got = s.safety.get(lb) if s else None
            row[f"safety_{lb}"] = got.verdict if got else None
            row[f"safety_{lb}_severity"] = got.severity if got else None
        for d in dims:
            row[f"response_{d}"] = s.response[d].value if s and d in s.response else None
        rows.append(row)
    return rows


# -- a Hugging Face dataset folder ------------------------------------------------------


def _arrow_type(name: str) -> pa.DataType:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "list<string>": pa.list_(pa.string()),
    }[name]


def _column_type(name: str) -> str:
    """The Arrow type of a `session_score_rows` column (fixed, so a column that is empty
    in this run still has its real type)."""
    if name in ("profile_version", "sample", "seed", "n_turns", "judge_errors"):
        return "int64"
    if name == "competent":
        return "bool"
    if name in ("ctrs_total", "ctrs_normalised", "violation_share") or name.startswith(
        ("ctrs_", "response_")
    ):
        return "float64"
    return "string"


def _session_table(transcripts: list[Transcript], scores: list[SessionScores]) -> pa.Table:
    import pyarrow as pa

    flat = session_score_rows(transcripts, scores)
    for row, t in zip(flat, transcripts, strict=True):
        row["messages"] = as_messages(t.turns, "therapist")
        row["turns"] = [
            {"id": x.id, "index": x.index, "speaker": x.speaker, "text": x.text, "cues": x.cues}
            for x in t.turns
        ]
    names = list(flat[0]) if flat else [*SESSION_COLUMNS, "messages", "turns"]
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    turn = pa.struct(
        [
            ("id", pa.string()),
            ("index", pa.int64()),
            ("speaker", pa.string()),
            ("text", pa.string()),
            ("cues", pa.list_(pa.string())),
        ]
    )
    special = {"messages": pa.list_(message), "turns": pa.list_(turn)}
    schema = pa.schema(
        [(n, special[n] if n in special else _arrow_type(_column_type(n))) for n in names]
    )
    return pa.Table.from_pylist(flat, schema=schema)


def _turn_table(transcripts: list[Transcript]) -> pa.Table:
    import pyarrow as pa

    rows = [r for r in turn_rows(transcripts) if r["turn_id"] is not None]
    types = {
        "profile_version": "int64", "sample": "int64", "seed": "int64", "turn_index": "int64",
        "latency_s": "float64", "prompt_tokens": "int64", "completion_tokens": "int64",
        "cached": "bool",
    }  # fmt: skip
    names = [
        *SESSION_COLUMNS, "turn_id", "turn_index", "speaker", "text", "latency_s",
        "prompt_tokens", "completion_tokens", "cached", "model", "cues",
    ]  # fmt: skip
    schema = pa.schema([(n, _arrow_type(types.get(n, "string"))) for n in names])
    return pa.Table.from_pylist(rows, schema=schema)


def _score_table(records: list[ScoreRecord], transcripts: list[Transcript]) -> pa.Table:
    import pyarrow as pa

    schema = pa.schema([(n, _arrow_type(kind)) for n, kind in SCORE_COLUMNS])
    return pa.Table.from_pylist(score_rows(records, transcripts), schema=schema)


def _dataset_card(run_id: str, judges: Sequence[str], counts: dict[str, int]) -> str:
    import yaml

    front = {
        "configs": [
            {
                "config_name": name,
                **({"default": True} if name == "sessions" else {}),
                "data_files": [{"split": "train", "path": f"data/{name}.parquet"}],
            }
            for name in HF_CONFIGS
        ],
        "tags": ["therapygym", "synthetic", "mental-health", "evaluation"],
    }
    judged_by = ", ".join(judges) or "no judge yet"
    return (
        "---\n"
        + yaml.safe_dump(front, sort_keys=False)
        + "---\n\n"
        + f"# therapygym run `{run_id}`\n\n"
        + "Simulated therapy sessions and their judge scores, exported by `therapygym runs "
        "export --format hf`. A research and evaluation artefact, not clinical data or "
        "advice. Transcripts may hold sensitive text: share them with care.\n\n"
        + f"Judges: {judged_by}.\n\n"
        + "| config | rows | one row per |\n|---|---|---|\n"
        + f"| `sessions` (default) | {counts['sessions']} | session: metadata, `messages` "
        "(chat format, therapist = assistant), `turns`, combined scores (`ctrs_total`, "
        "`ctrs_normalised`, `ctrs_<item>` 0-6, `safety_<label>`, `response_<dimension>`) |\n"
        + f"| `turns` | {counts['turns']} | turn, with its session's columns |\n"
        + f"| `scores` | {counts['scores']} | judged CTRS item, safety label, response "
        "dimension or check question, with rationale and evidence turn ids |\n\n"
        + "```python\nfrom datasets import load_dataset\n\n"
        + 'sessions = load_dataset("path/to/this/folder", "sessions", split="train")\n'
        + 'scores = load_dataset("path/to/this/folder", "scores", split="train")\n```\n'
    )


def export_hf_dataset(
    transcripts: list[Transcript],
    records: list[ScoreRecord],
    scores: list[SessionScores],
    directory: Path,
    *,
    run_id: str,
) -> dict[str, int]:
    """Write a `datasets`-loadable folder: `data/{sessions,turns,scores}.parquet` and a
    README.md card declaring them as configs. Written beside the target and moved into
    place, so an interrupted export leaves no half folder. Returns rows per config."""
    import pyarrow.parquet as pq

    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TherapygymError(
            f"{directory} exists and is not an empty folder: the hf format writes a folder; "
            "give a new path"
        )
    tables = {
        "sessions": _session_table(transcripts, scores),
        "turns": _turn_table(transcripts),
        "scores": _score_table(records, transcripts),
    }
    counts = {name: table.num_rows for name, table in tables.items()}
    judges = sorted({r.judge for r in records})
    with atomic_directory(directory) as tmp:
        (tmp / "data").mkdir()
        for name, table in tables.items():
            pq.write_table(table, tmp / "data" / f"{name}.parquet")
        (tmp / "README.md").write_text(_dataset_card(run_id, judges, counts), encoding="utf-8")
    return counts


# -- the formats ------------------------------------------------------------------------

RowWriter = Callable[[list[dict[str, Any]], Path], None]
RecordWriter = Callable[[Iterable[BaseModel], Path], int]


class ExportFormat(Protocol):
    """What `export_run` and `runs export` need of a format, whichever it is."""

    name: str
    description: str  # one line, for help
    folder: ClassVar[bool]  # writes a folder (the whole run, every content), not one file

    def export(
        self,
        store: RunStore,
        run_id: str,
        output: Path,
        content: ExportContent,
        how: Aggregation,
        judges: Collection[str] | None = None,
    ) -> int:
        """Write `content` of the run to `output`, the scores of `judges` only when given;
        how many sessions (or score records, for `scores` in a file format) were written."""
        ...


@dataclass(frozen=True)
class FileFormat:
    """One file of flat rows; `write_records`, where the format can hold the records as
    stored (JSONL), writes transcripts and score records unflattened, so they import back."""

    name: str
    description: str
    write_rows: RowWriter
    write_records: RecordWriter | None = None
    folder: ClassVar[bool] = False

    def export(
        self,
        store: RunStore,
        run_id: str,
        output: Path,
        content: ExportContent,
        how: Aggregation,
        judges: Collection[str] | None = None,
    ) -> int:
        from therapygym.summary import judged_by, summary_of

        if content == "transcripts":
            return export_transcripts(store.sessions(run_id), output, self.name)
        heads = store.session_heads(run_id)  # scores and per-session rows need no turns
        records = judged_by(run_id, store.scores(run_id), judges)
        if content == "scores":
            return export_scores(records, output, self.name, heads)
        summary = summary_of(run_id, heads, records, how)
        self.write_rows(session_score_rows(heads, summary.sessions), output)
        return len(heads)


@dataclass(frozen=True)
class FolderFormat:
    """A folder holding the whole run (every content), written by `write(store, run_id,
    folder, how, judges)`, which returns how many sessions it holds."""

    name: str
    description: str
    write: Callable[[RunStore, str, Path, Aggregation, Collection[str] | None], int]
    folder: ClassVar[bool] = True

    def export(
        self,
        store: RunStore,
        run_id: str,
        output: Path,
        content: ExportContent,
        how: Aggregation,
        judges: Collection[str] | None = None,
    ) -> int:
        return self.write(store, run_id, output, how, judges)


def _hf_folder(
    store: RunStore, run_id: str, output: Path, how: Aggregation, judges: Collection[str] | None
) -> int:
    """The folder's tables hold every turn: the whole run is read."""
    from therapygym.summary import judged_by, summary_of

    transcripts = list(store.sessions(run_id))
    records = judged_by(run_id, store.scores(run_id), judges)
    summary = summary_of(run_id, transcripts, records, how)
    export_hf_dataset(transcripts, records, summary.sessions, output, run_id=run_id)
    return len(transcripts)


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", group="therapygym.exports")


def _register(*formats: ExportFormat) -> None:
    for fmt in formats:
        EXPORT_FORMATS.register(fmt.name, fmt)


_register(
    FileFormat(
        "jsonl",
        "one JSON object per line; transcripts and scores exactly as stored",
        _rows_jsonl,
        _records_jsonl,
    ),
    FileFormat("csv", "flat rows for spreadsheets and pandas (lists ;-joined)", _rows_csv),
    FileFormat("parquet", "flat rows, typed, for pandas and Arrow", _rows_parquet),
    FolderFormat("hf", "a Hugging Face datasets folder (sessions, turns, scores)", _hf_folder),
)


def _file_format(name: str) -> FileFormat:
    """The file format `name`, for exports of one content (not a folder of the run)."""
    fmt = EXPORT_FORMATS.get(name)
    if not isinstance(fmt, FileFormat):
        raise TherapygymError(
            f"export format '{name}' writes a folder of the whole run, not one file"
        )
    return fmt


def counted(fmt: str, content: str) -> str:
    """What `export_run`'s count counts, for the line that reports it."""
    return (
        "score records"
        if content == "scores" and not EXPORT_FORMATS.get(fmt).folder
        else "sessions"
    )


def check_export_options(fmt: str, content: str) -> None:
    """A user error, in one line, for a format or content `export_run` does not know."""
    if fmt not in EXPORT_FORMATS:
        raise TherapygymError(f"--format '{fmt}': expected {', '.join(EXPORT_FORMATS.names())}")
    if content not in EXPORT_CONTENTS:
        raise TherapygymError(f"--content '{content}': expected {', '.join(EXPORT_CONTENTS)}")


def export_run(
    store: RunStore,
    run_id: str,
    output: Path,
    fmt: str,
    content: ExportContent = "transcripts",
    how: Aggregation = "mean",
    judges: Collection[str] | None = None,
) -> int:
    """Export a run (what `therapygym runs export` does); returns how many sessions (or,
    for `scores` in a file format, score records) were written. `judges` keeps the scores
    of those judges only (else every judge's, combined as one panel); a judge that did not
    score the run is refused before anything is written, whatever the content."""
    from therapygym.summary import judged_by

    check_export_options(fmt, content)
    store.run(run_id)
    if judges is not None:
        judged_by(run_id, store.scores(run_id), judges)
    return EXPORT_FORMATS.get(fmt).export(store, run_id, output, content, how, judges)


def _turn_ids(data: dict[str, Any]) -> dict[str, Any]:
    """A transcript written elsewhere may leave out its turns' ids: they are SESSION:INDEX,
    what the store names them (`import_transcripts`)."""
    turns = data.get("turns")
    if not isinstance(turns, list):
        return data
    sid = data.get("session_id")
    named = [{"id": f"{sid}:{t.get('index')}", **t} if isinstance(t, dict) else t for t in turns]
    return {**data, "turns": named}


def read_transcripts_jsonl(path: Path) -> list[Transcript]:
    """Read a JSONL transcript file; errors name the file, the line and the field."""
    transcripts: list[Transcript] = []
    seen: set[str] = set()
    for number, data in read_jsonl_objects(path, TranscriptFileError):
        try:
            transcript = Transcript.model_validate(_turn_ids(data))
        except ValidationError as err:
            where = f"{path}, line {number}"
            raise TranscriptFileError(describe_validation_error(err, where)) from None
        if transcript.session_id in seen:
            raise TranscriptFileError(
                f"{path}, line {number}: session_id '{transcript.session_id}' appears twice"
            )
        counts = Counter(turn.index for turn in transcript.turns)
        if twice := sorted(i for i, n in counts.items() if n > 1):
            raise TranscriptFileError(
                f"{path}, line {number}: field 'turns': index {twice[0]} appears twice "
                "(each turn's index is its place in the session, from 0)"
            )
        seen.add(transcript.session_id)
        transcripts.append(transcript)
    return transcripts


def import_transcripts(path: Path, run_id: str, store: Path | None = None) -> tuple[int, int]:
    """Store a JSONL file of transcripts made elsewhere as run `run_id` (created if new) of
    the store at `store`, so they can be judged like any run. The store path and every line
    are checked before the store is opened: a bad file changes nothing. A session whose id
    another run of the store holds (the export of a run imported back as a new one) gets an
    id of its own in `run_id`: no import moves another run's sessions. The run records the
    file's therapists (in order of appearance), as a run made here records its own, so
    `runs list` shows them. Returns (imported, renamed).

    The file: one `Transcript` (records.py) per line, the JSON `runs export` writes, turn
    ids optional; `therapygym runs import --help` spells out the fields."""
    import hashlib

    from therapygym.provenance import collect
    from therapygym.store import RunStore, check_store_path

    check_store_path(store)
    transcripts = read_transcripts_jsonl(path)
    therapists = list(dict.fromkeys(t.therapist for t in transcripts))
    run_store = RunStore(store)
    try:
        taken = {
            head.session_id
            for other in run_store.runs()
            if other.run_id != run_id
            for head in run_store.session_heads(other.run_id)
        }
        run_store.ensure_run(
            run_id, {"imported_from": path.name, "therapists": therapists}, collect()
        )
        for t in transcripts:
            sid = t.session_id
            if sid in taken:  # the same new id each time this file is imported here
                key = f"{run_id}\x1f{sid}".encode()
                sid = f"s-{hashlib.sha256(key).hexdigest()[:16]}"
            # turn ids are unique store-wide: named SESSION:INDEX, as a run made here names
            # them, ids from elsewhere ("t0" in every file) never collide
            turns = [turn.model_copy(update={"id": f"{sid}:{turn.index}"}) for turn in t.turns]
            run_store.save_session(
                t.model_copy(update={"session_id": sid, "run_id": run_id, "turns": turns})
            )
    finally:
        run_store.close()
    renamed = sum(t.session_id in taken for t in transcripts)
    return len(transcripts), renamed
