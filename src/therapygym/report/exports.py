"""Runs out of the store: JSONL, CSV, Parquet, a Hugging Face dataset folder, preference
pairs (report/preference.py). Conversations into it: report/import_formats.py.

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

Every format reads the run `SESSION_BATCH` sessions at a time and writes as it reads, so
memory stays flat as runs grow; CSV and Parquet are still the files pandas writes from all
the rows at once (`RowSpool` says how), and the `sessions` rows are the summary's numbers.

Formats are looked up by name in `EXPORT_FORMATS`. A new file format is one function that
writes flat rows to a path plus one registration (`FileFormat(name, description, writer)`);
a format that writes something else (a folder of the whole run) is a `FolderFormat`. A
third-party package registers either through the entry-point group `therapygym.exports`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from therapygym.artefacts import atomic_directory, atomic_path
from therapygym.errors import TherapygymError
from therapygym.judges.aggregate import SessionScores
from therapygym.records import ScoreRecord, Transcript, as_messages
from therapygym.registry import Registry

# The import side lives in import_formats; these names stay importable from here, where
# callers (and plug-ins) have always found them.
from therapygym.report.import_formats import (  # noqa: F401
    TranscriptFileError,
    import_transcripts,
    read_transcripts_jsonl,
)
from therapygym.report.session_batches import run_ctrs_version, scores_of_batch
from therapygym.store import SessionHead, StoreError

if TYPE_CHECKING:
    import pandas as pd
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
SESSION_BATCH = 256  # sessions (or the score records of as many) read and written at a time


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


class _Column:
    """What one column of a spool holds: in how many rows, and a value of each Python type
    seen (a non-empty list where there is one); enough for pandas to infer the type it
    would infer from every row."""

    def __init__(self) -> None:
        self.present = 0
        self.examples: dict[type, Any] = {}

    def see(self, value: Any) -> None:
        self.present += 1
        kind = type(value)
        if kind not in self.examples or (kind is list and value and not self.examples[kind]):
            self.examples[kind] = value


class RowSpool:
    """Flat rows kept in a temporary file, a batch to a JSON line, with what each column
    holds. (Every row builder here makes JSON values: text, numbers, booleans, None,
    lists and mappings, so a batch reads back equal; JSON also keeps the spool free of any
    loader that could run code.) A table writer must know each column's type before its
    first row, and pandas infers it from every row (an integer column with a gap becomes
    float, a string column empty so far has no type): the spool is read back batch by
    batch once the types are known (`example_rows`), so a run's rows are written in the
    memory of one batch.

    Columns are in the order pandas gives a list of rows (first appearance), or
    `order(columns)`: then each row read back has exactly those keys (None where absent).
    """

    def __init__(self) -> None:
        self.rows = 0
        self._batches = 0
        self._columns: dict[str, _Column] = {}
        self._order: list[str] | None = None
        # closed by `close()` (the writers' `finally`): the spool outlives any one block
        self._file = tempfile.TemporaryFile(  # noqa: SIM115
            "w+", encoding="utf-8", prefix="therapygym-spool-"
        )

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]]) -> RowSpool:
        spool = cls()
        spool.add(list(rows))
        return spool

    def add(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        for row in rows:
            for key, value in row.items():
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = _Column()
                column.see(value)
        self._file.write(json.dumps(rows, ensure_ascii=False) + "\n")
        self.rows += len(rows)
        self._batches += 1

    def order(self, columns: list[str]) -> None:
        self._order = columns

    @property
    def columns(self) -> list[str]:
        return self._order if self._order is not None else list(self._columns)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        self._file.seek(0)
        for _ in range(self._batches):
            batch: list[dict[str, Any]] = json.loads(self._file.readline())
            if self._order is not None:
                batch = [{c: row.get(c) for c in self._order} for row in batch]
            yield batch

    def example_rows(self) -> list[dict[str, Any]]:
        """A few rows holding, per column, a value of each type it holds, and NaN where
        some row lacks it (as pandas reads a missing key; None stays None, and the two
        differ: None alone is an object column, NaN with it a float one): what pandas
        infers from these is what it infers from all the rows."""
        values = {}
        for name in self.columns:
            column = self._columns.get(name, _Column())
            seen = list(column.examples.values())
            if column.present < self.rows:
                seen.append(None if self._order is not None else math.nan)
            values[name] = seen
        longest = max((len(v) for v in values.values()), default=0)
        return [{n: v[min(i, len(v) - 1)] for n, v in values.items()} for i in range(longest)]

    def close(self) -> None:
        self._file.close()


def _write_jsonl(lines: Iterable[str], path: Path) -> int:
    """Write each line as it comes (nothing is collected first); returns how many."""
    written = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")
            written += 1
    return written


def _spool_jsonl(spool: RowSpool, path: Path) -> None:
    _write_jsonl(
        (json.dumps(row, ensure_ascii=False) for batch in spool.batches() for row in batch), path
    )


def _rows_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    _spool_jsonl(RowSpool.of(rows), path)


def _records_jsonl(records: Iterable[BaseModel], path: Path) -> int:
    return _write_jsonl((r.model_dump_json() for r in records), path)


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """Lists (evidence turn ids) become `;`-joined text: CSV has no list type."""
    return {k: ";".join(v) if isinstance(v, list) else v for k, v in row.items()}


def _frames(
    spool: RowSpool, prepare: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[pd.DataFrame, Iterator[pd.DataFrame]]:
    """The spool's batches as DataFrames with the column types pandas infers from all
    its rows (from `example_rows`, returned first), each row passed through `prepare`."""
    import pandas as pd

    columns = spool.columns
    examples = pd.DataFrame([prepare(r) for r in spool.example_rows()], columns=columns)

    def frames() -> Iterator[pd.DataFrame]:
        for batch in spool.batches():
            frame = pd.DataFrame([prepare(r) for r in batch], columns=columns)
            for name, dtype in examples.dtypes.items():
                if frame[name].dtype != dtype:
                    frame[name] = frame[name].astype(dtype)
            yield frame

    return examples, frames()


def _spool_csv(spool: RowSpool, path: Path) -> None:
    """The CSV `pandas.DataFrame(rows).to_csv(index=False)` writes, a batch at a time."""
    import pandas as pd

    with atomic_path(path) as tmp:
        if not spool.rows:
            pd.DataFrame([]).to_csv(tmp, index=False)
            return
        _, frames = _frames(spool, _flat)
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for i, frame in enumerate(frames):
                frame.to_csv(fh, index=False, header=i == 0)


def _spool_parquet(spool: RowSpool, path: Path) -> None:
    """The table `pandas.DataFrame(rows).to_parquet(index=False)` writes (same schema,
    same values), a row group per batch."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        if not spool.rows:
            pd.DataFrame([]).to_parquet(tmp, index=False)
            return
        examples, frames = _frames(spool, lambda row: row)
        schema = pa.Schema.from_pandas(examples, preserve_index=False)
        with pq.ParquetWriter(tmp, schema) as writer:
            for frame in frames:
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))


def _rows_csv(rows: list[dict[str, Any]], path: Path) -> None:
    _spool_csv(RowSpool.of(rows), path)


def _rows_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    _spool_parquet(RowSpool.of(rows), path)


def _write_spool(file_format: FileFormat, spool: RowSpool, path: Path) -> None:
    """Write spooled rows: batch by batch where the format can, else (a plug-in format
    that takes a list of rows) all at once."""
    try:
        if file_format.write_spool is not None:
            file_format.write_spool(spool, path)
        else:
            file_format.write_rows([row for batch in spool.batches() for row in batch], path)
    finally:
        spool.close()


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def export_transcripts(transcripts: Iterable[Transcript], path: Path, fmt: str) -> int:
    """Write transcripts to `path` in the file format `fmt`; returns how many sessions.

    Writes to a temporary file and renames, so an interrupted export leaves no partial file.
    JSONL writes each transcript as it is read, so a run streamed from the store
    (`RunStore.sessions`) is exported in the memory of one page of it. CSV and Parquet
    flatten `SESSION_BATCH` sessions at a time into a `RowSpool` and write it back batch
    by batch once every column's type is known: the file pandas would write from all the
    rows, in the memory of one batch.
    """
    file_format = _file_format(fmt)
    if file_format.write_records is not None:
        return file_format.write_records(transcripts, path)
    spool, sessions = RowSpool(), 0
    for chunk in _chunks(transcripts, SESSION_BATCH):
        spool.add(turn_rows(chunk))
        sessions += len(chunk)
    _write_spool(file_format, spool, path)
    return sessions


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
    CSV/Parquet as `score_rows` (a batch of records at a time). Returns how many records
    were written."""
    heads = list(transcripts)
    batches = _chunks(records, 10 * SESSION_BATCH)
    return _export_score_batches(batches, lambda _: heads, path, fmt)


def _export_score_batches(
    batches: Iterable[list[ScoreRecord]],
    heads_of: Callable[[list[ScoreRecord]], Sequence[SessionHead | Transcript]],
    path: Path,
    fmt: str,
) -> int:
    """`export_scores` of records coming in batches, each batch's session columns from
    `heads_of(batch)`."""
    file_format = _file_format(fmt)
    if file_format.write_records is not None:
        return file_format.write_records((r for batch in batches for r in batch), path)
    spool, written = RowSpool(), 0
    for batch in batches:
        spool.add(score_rows(batch, heads_of(batch)))
        written += len(batch)
    _write_spool(file_format, spool, path)
    return written


def _store_score_batches(
    store: RunStore, run_id: str, judges: Collection[str] | None, *, raw: bool
) -> Iterator[list[ScoreRecord]]:
    """A run's score records (of `judges` when given) in the order of `RunStore.scores`,
    those of `SESSION_BATCH` sessions at a time; `raw`: with the judges' raw output, which
    only the records as stored (JSONL) hold, not the rows."""
    for batch in store.iter_scores(run_id, sessions=SESSION_BATCH, raw=raw):
        kept = batch if judges is None else [r for r in batch if r.judge in judges]
        if kept:
            yield kept


def _heads_of(store: RunStore) -> Callable[[list[ScoreRecord]], list[SessionHead]]:
    return lambda batch: store.session_heads_of(sorted({r.session_id for r in batch}))


def session_score_rows(
    transcripts: Iterable[SessionHead | Transcript], scores: Iterable[SessionScores]
) -> list[dict[str, Any]]:
    """One row per session (transcripts, or heads without turns): its metadata and the
    panel's combined scores (`ctrs_<item>` 0-6, `safety_<label>` yes/no/not_applicable and
    `safety_<label>_severity`, `severity` the gravest of the session's violations,
    `response_<dimension>` 1-5). Sessions without scores (failed, or not judged yet) have
    empty score columns. Rows of a batch of sessions have the columns of the scores in
    that batch; `SessionColumns` gives those of a whole run."""
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


@dataclass
class SessionColumns:
    """The columns `session_score_rows` gives a whole run, gathered batch by batch: the
    fixed ones, then every CTRS item, safety label and response dimension any session
    has, sorted (as one call over all of the run's sessions orders them)."""

    items: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    dims: set[str] = field(default_factory=set)

    def add(self, scores: Iterable[SessionScores]) -> None:
        for s in scores:
            self.items.update(s.ctrs_items)
            self.labels.update(s.safety)
            self.dims.update(s.response)

    def names(self) -> list[str]:
        fixed = ["n_turns", "ctrs_total", "ctrs_normalised", "competent", "violation_share"]
        return [
            *SESSION_COLUMNS, *fixed, "severity", "judge_errors",
            *(f"ctrs_{i}" for i in sorted(self.items)),
            *(c for lb in sorted(self.labels) for c in (f"safety_{lb}", f"safety_{lb}_severity")),
            *(f"response_{d}" for d in sorted(self.dims)),
        ]  # fmt: skip


def session_score_batches(
    store: RunStore,
    run_id: str,
    how: Aggregation,
    judges: Collection[str] | None,
    sessions: Iterable[Sequence[SessionHead | Transcript]] | None = None,
) -> Iterator[tuple[Sequence[SessionHead | Transcript], list[SessionScores]]]:
    """The run's sessions (`sessions` batches, else its heads `SESSION_BATCH` at a time)
    with their combined scores: the numbers `summary.summary_of` gives each session,
    computed one batch at a time (`report.session_batches`)."""
    version = run_ctrs_version(store, run_id, judges)
    batches = sessions or store.iter_session_heads(run_id, batch=SESSION_BATCH)
    for batch in batches:
        yield batch, scores_of_batch(store, batch, how, version, judges)


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


def _session_hf_rows(
    transcripts: Sequence[Transcript], scores: list[SessionScores]
) -> list[dict[str, Any]]:
    """`session_score_rows` with each session's chat-format `messages` and its `turns`."""
    flat = session_score_rows(transcripts, scores)
    for row, t in zip(flat, transcripts, strict=True):
        row["messages"] = as_messages(t.turns, "therapist")
        row["turns"] = [
            {"id": x.id, "index": x.index, "speaker": x.speaker, "text": x.text, "cues": x.cues}
            for x in t.turns
        ]
    return flat


def _session_schema(names: list[str]) -> pa.Schema:
    import pyarrow as pa

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
    return pa.schema(
        [(n, special[n] if n in special else _arrow_type(_column_type(n))) for n in names]
    )


def _turn_schema() -> pa.Schema:
    import pyarrow as pa

    types = {
        "profile_version": "int64", "sample": "int64", "seed": "int64", "turn_index": "int64",
        "latency_s": "float64", "prompt_tokens": "int64", "completion_tokens": "int64",
        "cached": "bool",
    }  # fmt: skip
    names = [
        *SESSION_COLUMNS, "turn_id", "turn_index", "speaker", "text", "latency_s",
        "prompt_tokens", "completion_tokens", "cached", "model", "cues",
    ]  # fmt: skip
    return pa.schema([(n, _arrow_type(types.get(n, "string"))) for n in names])


def _turn_table(transcripts: Sequence[Transcript]) -> pa.Table:
    import pyarrow as pa

    rows = [r for r in turn_rows(transcripts) if r["turn_id"] is not None]
    return pa.Table.from_pylist(rows, schema=_turn_schema())


def _score_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(n, _arrow_type(kind)) for n, kind in SCORE_COLUMNS])


def _score_table(
    records: list[ScoreRecord], transcripts: Sequence[SessionHead | Transcript]
) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pylist(score_rows(records, transcripts), schema=_score_schema())


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


def _check_hf_folder(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TherapygymError(
            f"{directory} exists and is not an empty folder: the hf format writes a folder; "
            "give a new path"
        )


def _write_hf_dataset(
    sessions: Iterable[tuple[Sequence[Transcript], list[SessionScores]]],
    scores: Iterable[tuple[list[ScoreRecord], Sequence[SessionHead | Transcript]]],
    directory: Path,
    *,
    run_id: str,
) -> dict[str, int]:
    """The hf folder from batches of sessions (with their combined scores) and batches of
    score records (with their sessions), each table written a batch at a time (a row group
    each). The sessions table's columns depend on every session's scores, so its rows are
    spooled until the last batch has been read (`RowSpool`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts = {"sessions": 0, "turns": 0, "scores": 0}
    judges: set[str] = set()
    columns = SessionColumns()
    spool = RowSpool()
    try:
        with atomic_directory(directory) as tmp:
            data = tmp / "data"
            data.mkdir()
            with pq.ParquetWriter(data / "turns.parquet", _turn_schema()) as turns:
                for transcripts, scored in sessions:
                    columns.add(scored)
                    spool.add(_session_hf_rows(transcripts, scored))
                    table = _turn_table(transcripts)
                    turns.write_table(table)
                    counts["turns"] += table.num_rows
            with pq.ParquetWriter(data / "scores.parquet", _score_schema()) as writer:
                for records, heads in scores:
                    judges.update(r.judge for r in records)
                    table = _score_table(records, heads)
                    writer.write_table(table)
                    counts["scores"] += table.num_rows
            names = [*columns.names(), "messages", "turns"]
            if not spool.rows:
                names = [*SESSION_COLUMNS, "messages", "turns"]
            spool.order(names)
            schema = _session_schema(names)
            with pq.ParquetWriter(data / "sessions.parquet", schema) as writer:
                for batch in spool.batches():
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            counts["sessions"] = spool.rows
            card = _dataset_card(run_id, sorted(judges), counts)
            (tmp / "README.md").write_text(card, encoding="utf-8")
    finally:
        spool.close()
    return counts


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
    place, so an interrupted export leaves no half folder. Returns rows per config.
    (`runs export --format hf` streams a run from the store into the same folder.)"""
    _check_hf_folder(directory)
    return _write_hf_dataset(
        [(transcripts, scores)], [(records, transcripts)], directory, run_id=run_id
    )


# -- the formats ------------------------------------------------------------------------

RowWriter = Callable[[list[dict[str, Any]], Path], None]
RecordWriter = Callable[[Iterable[BaseModel], Path], int]
SpoolWriter = Callable[[RowSpool, Path], None]


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
    # writes rows a batch at a time from a `RowSpool` (the built-in formats); a format
    # without one (a plug-in's `write_rows`) is given every row in one list
    write_spool: SpoolWriter | None = None
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
        if content == "transcripts":
            return export_transcripts(store.sessions(run_id), output, self.name)
        if content == "scores":
            raw = self.write_records is not None
            batches = _store_score_batches(store, run_id, judges, raw=raw)
            return _export_score_batches(batches, _heads_of(store), output, self.name)
        spool, columns = RowSpool(), SessionColumns()
        for heads, scored in session_score_batches(store, run_id, how, judges):
            columns.add(scored)
            spool.add(session_score_rows(heads, scored))
        if spool.rows:
            spool.order(columns.names())
        sessions = spool.rows
        _write_spool(self, spool, output)
        return sessions


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
    """The folder's tables hold every turn: the run is read `SESSION_BATCH` sessions (and
    the score records of as many) at a time."""
    _check_hf_folder(output)
    sessions = _chunks(store.sessions(run_id), SESSION_BATCH)
    scored = session_score_batches(store, run_id, how, judges, sessions)
    records = (
        (batch, _heads_of(store)(batch))
        for batch in _store_score_batches(store, run_id, judges, raw=False)
    )
    counts = _write_hf_dataset(scored, records, output, run_id=run_id)  # type: ignore[arg-type]
    return counts["sessions"]


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
        _spool_jsonl,
    ),
    FileFormat(
        "csv",
        "flat rows for spreadsheets and pandas (lists ;-joined)",
        _rows_csv,
        write_spool=_spool_csv,
    ),
    FileFormat(
        "parquet",
        "flat rows, typed, for pandas and Arrow",
        _rows_parquet,
        write_spool=_spool_parquet,
    ),
    FolderFormat("hf", "a Hugging Face datasets folder (sessions, turns, scores)", _hf_folder),
)
# DPO/KTO pairs from the judged sessions: registered by path, so exports never import it
# (nor it this module's callers) until the format is asked for
EXPORT_FORMATS.register("preference", "therapygym.report.preference:PREFERENCE_FORMAT")


def _file_format(name: str) -> FileFormat:
    """The file format `name`, for exports of one content (not a folder of the run)."""
    fmt = EXPORT_FORMATS.get(name)
    if not isinstance(fmt, FileFormat):
        raise TherapygymError(
            f"export format '{name}' writes a folder of the whole run, not one file"
        )
    return fmt


class ConfigurableFormat(Protocol):
    """A format with options of its own (`preference`: margin, level, score...): the
    registered object carries the defaults, `with_options` gives the format to use. Other
    formats take none, and `check_export_options` refuses the options they are given."""

    option_names: ClassVar[tuple[str, ...]]  # the keys `with_options` accepts

    def with_options(self, options: Mapping[str, Any]) -> ExportFormat: ...


def counted(fmt: str, content: str) -> str:
    """What `export_run`'s count counts, for the line that reports it (a format may say,
    with a `counts` attribute: the preference format counts pairs)."""
    format_ = EXPORT_FORMATS.get(fmt)
    if (counts := getattr(format_, "counts", None)) is not None:
        return str(counts)
    return "score records" if content == "scores" and not format_.folder else "sessions"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_export_options(fmt: str, content: str, options: Mapping[str, Any] | None = None) -> None:
    """A user error, in one line, for a format or content `export_run` does not know, or
    a format option (`options`, None values left out: not given) the format does not take."""
    if fmt not in EXPORT_FORMATS:
        raise TherapygymError(f"--format '{fmt}': expected {', '.join(EXPORT_FORMATS.names())}")
    if content not in EXPORT_CONTENTS:
        raise TherapygymError(f"--content '{content}': expected {', '.join(EXPORT_CONTENTS)}")
    given = sorted(k for k, v in (options or {}).items() if v is not None)
    takes = getattr(EXPORT_FORMATS.get(fmt), "option_names", ())
    if refused := [k for k in given if k not in takes]:
        own = f"its options: {', '.join(map(_flag, takes))}" if takes else "it takes none"
        raise TherapygymError(
            f"{_flag(refused[0])} is not an option of --format {fmt} ({own}); "
            "see `runs export --help` for which format takes it"
        )


def _check_judges(store: RunStore, run_id: str, judges: Collection[str]) -> None:
    """`summary.judged_by`'s refusal of a judge that did not score the run, from the
    run's judges alone (its records are not read here)."""
    scored = store.score_judges(run_id)
    if unknown := sorted(set(judges) - set(scored)):
        known = ", ".join(scored) or "none"
        raise StoreError(
            f"run '{run_id}' has no scores by judge {', '.join(unknown)} (judges: {known})"
        )


def export_run(
    store: RunStore,
    run_id: str,
    output: Path,
    fmt: str,
    content: ExportContent = "transcripts",
    how: Aggregation = "mean",
    judges: Collection[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> int:
    """Export a run (what `therapygym runs export` does); returns how many sessions (or,
    for `scores` in a file format, score records; for `preference`, pairs) were written.
    `judges` keeps the scores of those judges only (else every judge's, combined as one
    panel); a judge that did not score the run is refused before anything is written,
    whatever the content. `options` are the format's own (None values: not given)."""
    check_export_options(fmt, content, options)
    store.run(run_id)
    if judges is not None:
        _check_judges(store, run_id, judges)
    format_ = EXPORT_FORMATS.get(fmt)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    if given:
        format_ = format_.with_options(given)  # type: ignore[attr-defined]
    return format_.export(store, run_id, output, content, how, judges)
