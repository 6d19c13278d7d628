"""Conversations made elsewhere, into the store as a run that can be judged like any other.

`runs import` reads four sources, told apart by the path (or named with `--format`):

- `transcripts`: our Transcript JSONL, one `records.Transcript` per line, as `runs export`
  writes it (a `.jsonl`/`.json` file whose first object has no `messages` field).
- `chat`: chat-format JSONL, one conversation per line, `{"messages": [{"role", "content"},
  ...]}` with an optional `id` and `metadata` (a `.jsonl`/`.json` file whose first object
  has `messages`).
- `parquet`: a Parquet file with a `messages` column (lists of role/content structs), one
  conversation per row; the other columns as in `chat`. (Our flat one-row-per-turn export
  is for pandas, not for moving runs: move a run with the JSONL export.)
- `hf`: a local Hugging Face dataset folder, read with `datasets` and never the network:
  one saved with `save_to_disk`, or a folder of data files (Parquet, JSONL) as
  `datasets.load_dataset(folder)` reads them, our `runs export --format hf` included; rows
  as in `chat`, from the split `train` unless another is named.

Chat rows map roles to speakers: the therapist role (`assistant` unless told) becomes the
therapist's turns, the patient role (`user`) the patient's. System messages (`system`,
and `developer`, its newer name) that open the conversation are kept, joined, as the
session's system prompt (`meta["system_prompt"]`): they are the context the therapist
answered in, and a preference export puts them back in front of each prompt. A system
message after the first turn, and any other role (`tool`, a third speaker), is refused
with the row and field: dropping it would change what the therapist was answering.

Every row is read and checked before the store is opened, and the sessions are stored in
one transaction: a bad file, or a failure while storing, leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError

from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.records import SessionStatus, Transcript, Turn
from therapygym.yamlfile import read_jsonl_objects

ImportFormat = Literal["transcripts", "chat", "parquet", "hf"]
IMPORT_FORMATS: tuple[str, ...] = get_args(ImportFormat)
SYSTEM_ROLES = ("system", "developer")
# a chat row's fields that are the session's own (the rest of the row is kept as metadata)
SESSION_FIELDS = ("profile_id", "therapist", "patient", "status")
DEFAULTS = {
    "profile_id": "imported", "therapist": "imported", "patient": "human",
    "status": SessionStatus.COMPLETED.value,
}  # fmt: skip


class TranscriptFileError(TherapygymError):
    """A transcript file that cannot be read or does not match the transcript schema."""


@dataclass(frozen=True)
class RoleMap:
    """Which chat role is which speaker: the therapist's role is the model's side
    (`assistant`) in most logs, but a log of a human counsellor may have it as `user`."""

    therapist: str = "assistant"
    patient: str = "user"

    def __post_init__(self) -> None:
        if self.therapist == self.patient:
            raise TherapygymError(
                f"--therapist-role and --patient-role are both '{self.therapist}': "
                "expected two different roles"
            )
        if system := {self.therapist, self.patient} & set(SYSTEM_ROLES):
            raise TherapygymError(
                f"role '{system.pop()}' is a system role (kept as the system prompt); "
                "expected the roles of the two speakers"
            )

    def speaker(self, role: str) -> Literal["therapist", "patient"] | None:
        return {self.therapist: "therapist", self.patient: "patient"}.get(role)  # type: ignore[return-value]


# -- our Transcript JSONL ---------------------------------------------------------------


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
        counts = Counter(turn.index for turn in transcript.turns)
        if twice := sorted(i for i, n in counts.items() if n > 1):
            raise TranscriptFileError(
                f"{path}, line {number}: field 'turns': index {twice[0]} appears twice "
                "(each turn's index is its place in the session, from 0)"
            )
        _check_unique(seen, transcript, f"{path}, line {number}")
        transcripts.append(transcript)
    return transcripts


def _check_unique(seen: set[str], new: Transcript, where: str) -> None:
    if new.session_id in seen:
        raise TranscriptFileError(f"{where}: session_id '{new.session_id}' appears twice")
    seen.add(new.session_id)


# -- chat rows (chat JSONL, Parquet, a datasets folder) ----------------------------------


def _text(content: object, where: str, field: str) -> str:
    """A message's text: a string, or OpenAI-style content parts that are all text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = [p.get("text") for p in content if isinstance(p, Mapping)]
        kinds = {p.get("type") for p in content if isinstance(p, Mapping)}
        if (
            len(texts) == len(content)
            and kinds == {"text"}
            and all(isinstance(t, str) for t in texts)
        ):
            return "\n".join(texts)  # type: ignore[arg-type]
    shown = "null" if content is None else type(content).__name__
    raise TranscriptFileError(
        f"{where}: field '{field}': expected text (a string, or a list of "
        f'{{"type": "text", "text": ...}} parts), got {shown}'
    )


def _json_safe(value: object) -> Any:
    """Column values as JSON (a Parquet timestamp becomes its text): the store keeps meta
    as JSON."""
    return json.loads(json.dumps(value, default=str))


def chat_transcript(
    row: Mapping[str, Any], where: str, default_id: str, roles: RoleMap
) -> Transcript:
    """One chat-format row as a transcript. `profile_id`, `therapist`, `patient` and
    `status` come from the row or its `metadata` (the row wins), with defaults; the rest of
    the row is kept in `meta["metadata"]`. Errors name `where` (file and row) and the field."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        got = "nothing" if messages is None else type(messages).__name__
        raise TranscriptFileError(
            f"{where}: field 'messages': expected a list of {{role, content}} messages, got {got}"
        )
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise TranscriptFileError(
            f"{where}: field 'metadata': expected an object, got {type(metadata).__name__}"
        )
    given = row.get("id", row.get("session_id"))
    if given is not None and not isinstance(given, str | int):
        raise TranscriptFileError(
            f"{where}: field 'id': expected a string or an integer, got {type(given).__name__}"
        )
    sid = default_id if given is None else str(given)
    session: dict[str, Any] = {}
    for name in SESSION_FIELDS:
        value = row.get(name, metadata.get(name))
        if value is not None:
            session[name] = value
    system: list[str] = []
    said: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise TranscriptFileError(
                f"{where}: field '{field}': expected an object with role and content, "
                f"got {type(message).__name__}"
            )
        role = message.get("role")
        text = _text(message.get("content"), where, f"{field}.content")
        if role in SYSTEM_ROLES:
            if said:
                raise TranscriptFileError(
                    f"{where}: field '{field}.role': a {role} message after the conversation "
                    "began; expected system messages only before the first turn (they are "
                    "kept as the session's system prompt)"
                )
            system.append(text)
            continue
        speaker = roles.speaker(role) if isinstance(role, str) else None
        if speaker is None:
            raise TranscriptFileError(
                f"{where}: field '{field}.role': got {role!r}; expected the therapist role "
                f"'{roles.therapist}', the patient role '{roles.patient}' or a system role "
                f"({', '.join(SYSTEM_ROLES)}) (--therapist-role and --patient-role map them)"
            )
        said.append((speaker, text))
    if not said and session.get("status") != SessionStatus.FAILED.value:
        raise TranscriptFileError(
            f"{where}: field 'messages': expected at least one message of the therapist or "
            "the patient"
        )
    own = {"messages", "metadata", "id", "session_id", *SESSION_FIELDS}
    kept = {k: v for k, v in {**metadata, **row}.items() if k not in own}
    meta: dict[str, Any] = {"metadata": _json_safe(kept)}
    if system:
        meta["system_prompt"] = "\n\n".join(system)
    try:
        return Transcript(
            session_id=sid,
            **{**DEFAULTS, **session},
            turns=[
                Turn(id=f"{sid}:{i}", index=i, speaker=speaker, text=text)  # type: ignore[arg-type]
                for i, (speaker, text) in enumerate(said)
            ],
            meta=meta,
        )
    except ValidationError as err:
        raise TranscriptFileError(describe_validation_error(err, where)) from None


def _chat_rows(
    source: Path, rows: Iterator[tuple[str, str, Mapping[str, Any]]], roles: RoleMap
) -> list[Transcript]:
    """(where, default id, row) triples of `source` as transcripts, each session id once."""
    transcripts: list[Transcript] = []
    seen: set[str] = set()
    for where, default_id, row in rows:
        transcript = chat_transcript(row, where, default_id, roles)
        _check_unique(seen, transcript, where)
        transcripts.append(transcript)
    if not transcripts:
        raise TranscriptFileError(f"{source}: no conversations (expected one per row)")
    return transcripts


def _chat_jsonl(path: Path) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for number, data in read_jsonl_objects(path, TranscriptFileError):
        yield f"{path}, line {number}", f"{path.stem}-{number}", data


def _table_rows(
    source: Path, label: str, columns: list[str], rows: Iterator[Mapping[str, Any]]
) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Rows of a table (Parquet, a dataset split), once it is known to hold `messages`;
    `index` is the row's 0-based place, as `table[index]` finds it."""
    if "messages" not in columns:
        raise TranscriptFileError(
            f"{label}: no 'messages' column (columns: {', '.join(columns) or 'none'}); "
            "expected one conversation per row, a list of {role, content} messages"
        )
    for index, row in enumerate(rows):
        yield f"{label}, index {index}", f"{source.stem}-{index}", row


def _parquet(path: Path) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise TranscriptFileError(f"{path}: not a readable Parquet file ({err})") from None
    yield from _table_rows(path, str(path), table.column_names, iter(table.to_pylist()))


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No progress bars from `datasets` on the command's output while it reads a folder."""
    from datasets.utils import logging as ds_logging

    was = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            ds_logging.enable_progress_bar()


def _hf_split(folder: Path, split: str | None) -> Any:
    """The split of a local dataset folder, with `datasets` (never the network: the path is
    a folder, so it is never taken for a Hub repository, and what `load_dataset` prepares
    goes to a temporary cache, not the user's)."""
    import tempfile

    try:
        import datasets
    except ImportError:
        raise TranscriptFileError(
            f"{folder}: reading a Hugging Face dataset folder needs the datasets package "
            "(pip install datasets)"
        ) from None
    saved = (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()
    with tempfile.TemporaryDirectory() as cache, _quiet_datasets():
        try:
            if saved:
                loaded = datasets.load_from_disk(str(folder), keep_in_memory=True)
            else:
                loaded = datasets.load_dataset(str(folder), cache_dir=cache, keep_in_memory=True)
        except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TranscriptFileError(
                f"{folder}: not a readable dataset folder ({first})"
            ) from None
    if isinstance(loaded, datasets.Dataset):
        if split is not None:
            raise TranscriptFileError(
                f"{folder}: --split {split}: the folder holds one dataset, not splits"
            )
        return loaded, str(folder)
    splits = list(loaded)
    chosen = split or ("train" if "train" in splits else splits[0] if len(splits) == 1 else None)
    if chosen not in splits:
        asked = f"--split {split}" if split else "which split"
        raise TranscriptFileError(f"{folder}: {asked}? expected one of {', '.join(splits)}")
    return loaded[chosen], f"{folder} (split {chosen})"


def _hf_folder(folder: Path, split: str | None) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    dataset, label = _hf_split(folder, split)
    yield from _table_rows(folder, label, list(dataset.column_names), iter(dataset))


# -- which format, and the import ---------------------------------------------------------


_FILE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", ".pq")


def detect_format(path: Path) -> ImportFormat:
    """The format of `path`: a folder is a dataset folder, `.parquet` is Parquet, and a
    JSON Lines file is chat-format when its first object has `messages`, ours otherwise.
    A folder named like a file (`x.jsonl/`) is a mistake, not a dataset."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if suffix in _FILE_SUFFIXES:
            raise TranscriptFileError(
                f"{path}: is a directory, expected a file (a dataset folder is read with "
                "--format hf)"
            )
        return "hf"
    if not path.exists():
        raise TranscriptFileError(f"{path}: file not found (nor a dataset folder)")
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".json", ".ndjson"):
        _, first = read_jsonl_objects(path, TranscriptFileError)[0]
        return "chat" if "messages" in first and "turns" not in first else "transcripts"
    raise TranscriptFileError(
        f"{path}: cannot tell the format from the suffix '{suffix}'; expected .jsonl, "
        f".parquet or a dataset folder, or name it with --format ({', '.join(IMPORT_FORMATS)})"
    )


def read_conversations(
    path: Path,
    fmt: str | None = None,
    roles: RoleMap | None = None,
    split: str | None = None,
) -> list[Transcript]:
    """Every conversation of `path` as a transcript, checked whole: the first problem is
    an error naming the file, the row and the field, and nothing is returned."""
    roles = roles or RoleMap()
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in IMPORT_FORMATS:
        raise TranscriptFileError(f"--format '{fmt}': expected {', '.join(IMPORT_FORMATS)}")
    if split is not None and fmt != "hf":
        raise TranscriptFileError(f"--split is for a dataset folder (--format hf), not {fmt}")
    if fmt != "hf" and path.is_dir():
        raise TranscriptFileError(f"{path} is a folder; --format {fmt} reads a file")
    if fmt == "hf" and not path.is_dir():
        raise TranscriptFileError(f"{path}: --format hf reads a dataset folder, not a file")
    if fmt == "transcripts":
        return read_transcripts_jsonl(path)
    if fmt == "chat":
        rows = _chat_jsonl(path)
    elif fmt == "parquet":
        rows = _parquet(path)
    else:
        rows = _hf_folder(path, split)
    return _chat_rows(path, rows, roles)


def import_transcripts(
    path: Path,
    run_id: str,
    store: Path | None = None,
    *,
    fmt: str | None = None,
    roles: RoleMap | None = None,
    split: str | None = None,
) -> tuple[int, int]:
    """Store the conversations of `path` (any format `read_conversations` reads) as run
    `run_id` (created if new) of the store at `store`, so they can be judged like any run.
    The store path and every row are checked before the store is opened, and the sessions
    are written in one transaction: a bad file, or a failure while storing, changes no
    session. A session whose id another run of the store holds (the export of a run
    imported back as a new one) gets an id of its own in `run_id`: no import moves another
    run's sessions. The run records the source's therapists (in order of appearance), as a
    run made here records its own, so `runs list` shows them. Returns (imported, renamed)."""
    from therapygym.provenance import collect
    from therapygym.store import RunStore, check_store_path

    check_store_path(store)
    transcripts = read_conversations(path, fmt, roles, split)
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
        stored = []
        for t in transcripts:
            sid = t.session_id
            if sid in taken:  # the same new id each time this file is imported here
                key = f"{run_id}\x1f{sid}".encode()
                sid = f"s-{hashlib.sha256(key).hexdigest()[:16]}"
            # turn ids are unique store-wide: named SESSION:INDEX, as a run made here names
            # them, ids from elsewhere ("t0" in every file) never collide
            turns = [turn.model_copy(update={"id": f"{sid}:{turn.index}"}) for turn in t.turns]
            stored.append(
                t.model_copy(update={"session_id": sid, "run_id": run_id, "turns": turns})
            )
        run_store.save_sessions(stored)
    finally:
        run_store.close()
    renamed = sum(t.session_id in taken for t in transcripts)
    return len(transcripts), renamed
