"""AnnoMI as a bench: real motivational-interviewing sessions with an expert quality label.

AnnoMI (Wu et al., 2022/2023) transcribes demonstration videos of MI counselling; experts
labelled each session as high- or low-quality MI and coded each utterance. It has no CTRS
scores, so it serves one question: does a judge rank the high-quality sessions above the
low-quality ones? The "simple" CSV has one row per utterance (one label per utterance);
`utterance_id` gives the order inside a transcript and the ids are contiguous from 0.
The "full" CSV repeats rows once per annotator for a few transcripts and is refused here.
The data's license is unclear (see the dataset's SOURCE.md): the package ships none of it
and reads a path the user gives. Utterance codes are not carried into the bench.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from therapygym.calibration.bench import Bench, BenchError, BenchRating, BenchTurn, build_bench
from therapygym.calibration.importers._read import (
    Table,
    cell_text,
    parse_int,
    read_csv,
    resolve,
)

SIMPLE_FILE = "AnnoMI-simple.csv"
COLUMNS = (
    "transcript_id",
    "mi_quality",
    "video_url",
    "topic",
    "utterance_id",
    "interlocutor",
    "utterance_text",
)
SPEAKERS = {"therapist": "therapist", "client": "patient"}
QUALITIES = ("high", "low")
RATER = "annomi"


def import_annomi(path: Path) -> Bench:
    """One dialogue per transcript ("annomi-<id>"), rated once by rater "annomi" with
    `quality` high/low; `path` is the AnnoMI folder or AnnoMI-simple.csv."""
    path = resolve(Path(path), SIMPLE_FILE, "AnnoMI")
    table = read_csv(path)
    if "annotator_id" in table.columns:
        raise BenchError(
            f"{path}: this is the full AnnoMI file (rows repeat once per annotator for some "
            f"transcripts); import {SIMPLE_FILE}, which holds one label per utterance"
        )
    table.require(COLUMNS)
    if not table.rows:
        raise BenchError(f"{path}: no utterance rows after the header")

    sessions: dict[int, dict[str, Any]] = {}
    utterances: dict[int, dict[int, tuple[int, BenchTurn]]] = {}
    for i, row in enumerate(table.rows):
        transcript_id = _integer(table, i, "transcript_id")
        utterance_id = _integer(table, i, "utterance_id")
        speaker = SPEAKERS.get(cell_text(row["interlocutor"]))
        if speaker is None:
            raise BenchError(
                f"{table.where(i, 'interlocutor')}: {row['interlocutor']!r}; "
                "expected 'therapist' or 'client'"
            )
        quality = cell_text(row["mi_quality"])
        if quality not in QUALITIES:
            raise BenchError(
                f"{table.where(i, 'mi_quality')}: {row['mi_quality']!r}; expected 'high' or 'low'"
            )
        text = cell_text(row["utterance_text"])
        if not text:
            raise BenchError(f"{table.where(i, 'utterance_text')}: empty utterance")
        session = {
            "quality": quality,
            "topic": cell_text(row["topic"]),
            "video_url": cell_text(row["video_url"]),
        }
        first = sessions.setdefault(transcript_id, session | {"row": i})
        for field, value in session.items():
            if first[field] != value:
                column = "mi_quality" if field == "quality" else field
                raise BenchError(
                    f"{table.where(i, column)}: transcript {transcript_id} has {value!r} here "
                    f"but {first[field]!r} at {table.labels[first['row']]}; one value per "
                    "transcript"
                )
        turns = utterances.setdefault(transcript_id, {})
        if utterance_id in turns:
            raise BenchError(
                f"{table.where(i, 'utterance_id')}: transcript {transcript_id} has utterance "
                f"{utterance_id} twice (also at {table.labels[turns[utterance_id][0]]})"
            )
        turns[utterance_id] = (i, BenchTurn(speaker=speaker, text=text))

    ratings = []
    for transcript_id in sorted(sessions):
        turns = utterances[transcript_id]
        gaps = sorted(set(range(len(turns))) - set(turns))
        if gaps:
            raise BenchError(
                f"{path}: transcript {transcript_id}: utterance ids are not contiguous from 0 "
                f"(missing {', '.join(map(str, gaps[:5]))}{'...' if len(gaps) > 5 else ''})"
            )
        session = sessions[transcript_id]
        ratings.append(
            BenchRating(
                dialogue_id=f"annomi-{transcript_id}",
                rater=RATER,
                rater_kind="human",
                transcript=tuple(turns[n][1] for n in range(len(turns))),
                quality=session["quality"],
                meta={
                    "topic": session["topic"],
                    "video_url": session["video_url"],
                    "utterances": len(turns),
                },
            )
        )
    return build_bench(str(path), ratings)


def _integer(table: Table, index: int, column: str) -> int:
    row = table.rows[index]
    try:
        value = parse_int(row[column])
    except ValueError:
        raise BenchError(
            f"{table.where(index, column)}: {row[column]!r}; expected a whole number"
        ) from None
    if value < 0:
        raise BenchError(f"{table.where(index, column)}: {value}; expected 0 or more")
    return value
