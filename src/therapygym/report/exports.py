"""Transcripts out of the store (JSONL, CSV, Parquet) and into it (JSONL).

JSONL holds one `Transcript` per line, the same JSON the store round-trips, so a file
exported here imports back unchanged, and conversations produced elsewhere can be judged
once written in this shape. CSV and Parquet are flat: one row per turn, with the
session's columns repeated, ready for pandas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.session import Transcript
from therapygym.yamlfile import read_jsonl_objects

ExportFormat = Literal["jsonl", "csv", "parquet"]
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


def export_transcripts(transcripts: Iterable[Transcript], path: Path, fmt: ExportFormat) -> int:
    """Write transcripts to `path` in `fmt`; returns how many sessions were written.

    Writes to a temporary file and renames, so an interrupted export leaves no partial file.
    """
    items = list(transcripts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if fmt == "jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for t in items:
                fh.write(t.model_dump_json() + "\n")
    else:
        import pandas as pd

        frame = pd.DataFrame(turn_rows(items))
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return len(items)


def read_transcripts_jsonl(path: Path) -> list[Transcript]:
    """Read a JSONL transcript file; errors name the file, the line and the field."""
    transcripts: list[Transcript] = []
    seen: set[str] = set()
    for number, data in read_jsonl_objects(path, TranscriptFileError):
        try:
            transcript = Transcript.model_validate(data)
        except ValidationError as err:
            where = f"{path}, line {number}"
            raise TranscriptFileError(describe_validation_error(err, where)) from None
        if transcript.session_id in seen:
            raise TranscriptFileError(
                f"{path}, line {number}: session_id '{transcript.session_id}' appears twice"
            )
        seen.add(transcript.session_id)
        transcripts.append(transcript)
    return transcripts
