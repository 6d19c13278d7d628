"""AnnoMI as a bench: real motivational-interviewing sessions with an expert quality label
and expert behaviour codes for every therapist utterance.

AnnoMI (Wu et al., 2022/2023) transcribes demonstration videos of MI counselling; experts
labelled each session as high- or low-quality MI and coded each utterance. It has no CTRS
scores; it serves two questions: does a judge rank the high-quality sessions above the
low-quality ones, and does an MI judge (`--rubric mi`) code therapist utterances as the
experts did? The "simple" CSV has one row per utterance (one label per utterance);
`utterance_id` gives the order inside a transcript and the ids are contiguous from 0.
The "full" CSV repeats rows once per annotator for a few transcripts and is refused as the
bench's source, but when it lies beside the simple file its subtypes (open or closed
question, simple or complex reflection, the kind of therapist input) refine the codes.
The data's license is unclear (see the dataset's SOURCE.md): the package ships none of it
and reads a path the user gives.

How AnnoMI's labels become the mi rubric's codes (`judges/rubrics/mi.yaml`), as far as
they allow; a label that fixes only a group of codes is kept as that group, and the
calibration compares it only where the group decides:

- question, open / closed -> open_question / closed_question;
- reflection, simple / complex -> simple_reflection / complex_reflection;
- therapist_input, information -> giving_information;
- therapist_input, advice -> the group persuasion (AnnoMI does not record whether the
  therapist asked permission);
- therapist_input, options -> the group therapist_input (information or persuasion, with
  or without permission);
- therapist_input, negotiation -> no counterpart (goal setting: MI coding would call it a
  question, seeking collaboration or persuasion, and the label does not say which);
- other -> the group affirmation_or_other (AnnoMI has no affirmation label);
- question, reflection, therapist_input without a subtype (the simple file alone) -> the
  groups question, reflection, therapist_input.

Seven transcripts were coded by ten annotators each. The simple file holds their majority
main behaviour; the subtype is the one most of the annotators who chose that behaviour gave
(a tie leaves the group). `annotators=True` keeps the ten annotators apart instead, as
raters `annomi-annotator-N` of those transcripts, so that the calibration has an
expert-expert ceiling for the codes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from therapygym.calibration.bench import (
    Bench,
    BenchError,
    BenchRating,
    BenchTurn,
    MIRating,
    build_bench,
)
from therapygym.calibration.importers._read import (
    Table,
    cell_text,
    parse_int,
    read_csv,
    resolve,
)

SIMPLE_FILE = "AnnoMI-simple.csv"
FULL_FILE = "AnnoMI-full.csv"
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
ANNOTATOR = "annomi-annotator-{}"
BEHAVIOUR = "main_therapist_behaviour"
# AnnoMI's main therapist behaviour -> the mi rubric's group when no subtype is known
MAIN_GROUPS = {
    "question": "question",
    "reflection": "reflection",
    "therapist_input": "therapist_input",
    "other": "affirmation_or_other",
}
SUBTYPE_COLUMNS = {
    "question": "question_subtype",
    "reflection": "reflection_subtype",
    "therapist_input": "therapist_input_subtype",
}
# (main behaviour, subtype) -> a code, a group, or None (no counterpart in the mi rubric)
SUBTYPE_CODES: dict[tuple[str, str], str | None] = {
    ("question", "open"): "open_question",
    ("question", "closed"): "closed_question",
    ("reflection", "simple"): "simple_reflection",
    ("reflection", "complex"): "complex_reflection",
    ("therapist_input", "information"): "giving_information",
    ("therapist_input", "advice"): "persuasion",
    ("therapist_input", "options"): "therapist_input",
    ("therapist_input", "negotiation"): None,
}
FULL_COLUMNS = (
    "transcript_id",
    "utterance_id",
    "interlocutor",
    "annotator_id",
    BEHAVIOUR,
    *SUBTYPE_COLUMNS.values(),
)
NOT_CODED = ("", "n/a")


def import_annomi(path: Path, *, annotators: bool = False) -> Bench:
    """One dialogue per transcript ("annomi-<id>"), rated by rater "annomi" with `quality`
    high/low and an MI code (or group of codes) per therapist utterance; `path` is the
    AnnoMI folder or AnnoMI-simple.csv. AnnoMI-full.csv beside it, when present, adds the
    subtypes; with `annotators`, its multiply-annotated transcripts are coded by each
    annotator as a rater of their own (see the module docstring)."""
    path = resolve(Path(path), SIMPLE_FILE, "AnnoMI")
    table = read_csv(path)
    if "annotator_id" in table.columns:
        raise BenchError(
            f"{path}: this is the full AnnoMI file (rows repeat once per annotator for some "
            f"transcripts); import {SIMPLE_FILE}, which holds one label per utterance (the "
            f"subtypes of {FULL_FILE} are read from beside it)"
        )
    table.require(COLUMNS)
    if not table.rows:
        raise BenchError(f"{path}: no utterance rows after the header")

    sessions: dict[int, dict[str, Any]] = {}
    utterances: dict[int, dict[int, tuple[int, BenchTurn]]] = {}
    behaviours: dict[tuple[int, int], tuple[int, str]] = {}  # therapist turn -> (row, label)
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
        if speaker == "therapist" and BEHAVIOUR in table.columns:
            behaviour = _behaviour(table, i)
            if behaviour is not None:
                behaviours[(transcript_id, utterance_id)] = (i, behaviour)

    full = path.with_name(FULL_FILE)
    coded = _codes(table, behaviours, read_csv(full) if full.is_file() else None, annotators)
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
        codes = coded.get((transcript_id, RATER), {})
        ratings.append(
            BenchRating(
                dialogue_id=f"annomi-{transcript_id}",
                rater=RATER,
                rater_kind="human",
                transcript=tuple(turns[n][1] for n in range(len(turns))),
                quality=session["quality"],
                mi=MIRating(codes=codes) if codes else None,
                meta={
                    "topic": session["topic"],
                    "video_url": session["video_url"],
                    "utterances": len(turns),
                },
            )
        )
        for (tid, rater), codes in sorted(coded.items(), key=lambda kv: kv[0][1]):
            if tid == transcript_id and rater != RATER:
                ratings.append(
                    BenchRating(
                        dialogue_id=f"annomi-{transcript_id}",
                        rater=rater,
                        rater_kind="human",
                        mi=MIRating(codes=codes),
                    )
                )
    return build_bench(str(path), ratings)


def _behaviour(table: Table, index: int) -> str | None:
    """A therapist row's main behaviour (None: not coded), checked against AnnoMI's four."""
    value = cell_text(table.rows[index][BEHAVIOUR])
    if value in NOT_CODED:
        return None
    if value not in MAIN_GROUPS:
        raise BenchError(
            f"{table.where(index, BEHAVIOUR)}: {value!r}; expected one of "
            f"{', '.join(map(repr, MAIN_GROUPS))} or 'n/a'"
        )
    return value


def _code(table: Table, index: int, behaviour: str) -> str | None:
    """The mi rubric's code (or group) for a full-file row of main behaviour `behaviour`."""
    column = SUBTYPE_COLUMNS.get(behaviour)
    subtype = cell_text(table.rows[index][column]) if column else ""
    if subtype in NOT_CODED:
        return MAIN_GROUPS[behaviour]
    if (behaviour, subtype) not in SUBTYPE_CODES:
        known = [s for b, s in SUBTYPE_CODES if b == behaviour]
        raise BenchError(
            f"{table.where(index, column)}: {subtype!r}; expected one of "
            f"{', '.join(map(repr, known))} or 'n/a'"
        )
    return SUBTYPE_CODES[(behaviour, subtype)]


def _codes(
    simple: Table,
    behaviours: dict[tuple[int, int], tuple[int, str]],
    full: Table | None,
    annotators: bool,
) -> dict[tuple[int, str], dict[int, str | None]]:
    """Codes by (transcript, rater) and utterance: the simple file's main behaviours as
    groups, refined by the full file's subtypes when it is given."""
    coded: dict[tuple[int, str], dict[int, str | None]] = {}
    if full is None:
        for (tid, uid), (_, behaviour) in behaviours.items():
            coded.setdefault((tid, RATER), {})[uid] = MAIN_GROUPS[behaviour]
        return coded
    full.require(FULL_COLUMNS, f" (needed for the subtypes of {SIMPLE_FILE}'s codes)")
    # (transcript, utterance) -> [(annotator, main behaviour, code)]
    given: dict[tuple[int, int], list[tuple[int, str, str | None]]] = {}
    for i, row in enumerate(full.rows):
        if cell_text(row["interlocutor"]) != "therapist":
            continue
        key = (_integer(full, i, "transcript_id"), _integer(full, i, "utterance_id"))
        behaviour = _behaviour(full, i)
        if behaviour is None:
            continue
        if key not in behaviours:
            raise BenchError(
                f"{full.where(i, BEHAVIOUR)}: transcript {key[0]} utterance {key[1]} is not a "
                f"coded therapist utterance of {simple.path.name}; are the two files from the "
                "same release?"
            )
        annotator = _integer(full, i, "annotator_id")
        given.setdefault(key, []).append((annotator, behaviour, _code(full, i, behaviour)))
    many = {tid for (tid, _), labels in given.items() if len({a for a, _, _ in labels}) > 1}
    for (tid, uid), (row, behaviour) in behaviours.items():
        labels = given.get((tid, uid), [])
        if tid in many and annotators:
            for annotator, _, code in labels:
                coded.setdefault((tid, ANNOTATOR.format(annotator)), {})[uid] = code
            continue
        agreeing = Counter(code for _, b, code in labels if b == behaviour)
        if tid not in many and labels and not agreeing:
            raise BenchError(
                f"{simple.where(row, BEHAVIOUR)}: {behaviour!r} here but {labels[0][1]!r} in "
                f"{full.path.name} for transcript {tid} utterance {uid}; are the two files "
                "from the same release?"
            )
        top = agreeing.most_common()
        if top and (len(top) == 1 or top[0][1] > top[1][1]):
            code = top[0][0]
        else:  # no subtype given, or a tie between annotators
            code = MAIN_GROUPS[behaviour]
        coded.setdefault((tid, RATER), {})[uid] = code
    return coded


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
