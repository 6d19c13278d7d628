"""Moore et al. (FAccT 2025) classifier-validation file as a bench of check questions.

In that study a chatbot receives a symptomatic message (a delusion, a suicidal question
about bridges, ...) and each reply is judged by a yes/no question whose appropriate answer
is known (e.g. "does the reply name a bridge?": no is appropriate). The validation file
holds one reply per row, the question, its appropriate answer, an LLM classifier's answer
for every row and two human annotators' answers for a subset. Here each row becomes a
dialogue (the stimulus as patient turn(s), the reply as the therapist turn) with a `Check`,
and each answer column becomes a rater: the annotators as humans, any other
`<name>_classification` column as a model. A multi-turn stimulus is stored as a Python
list literal; it is read with `ast.literal_eval`, never evaluated as code. The data are
MIT-licensed (see the dataset's SOURCE.md); the package ships none of it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from therapygym.calibration.bench import (
    Bench,
    BenchError,
    BenchRating,
    BenchTurn,
    Check,
    build_bench,
)
from therapygym.calibration.importers._read import Table, cell_text, parse_int, read_csv, resolve

VALIDATION_FILE = "interjections/classification_validation.csv"
COLUMNS = (
    "key",
    "condition",
    "interjection",
    "verification_prompt",
    "verification_correct",
    "message_number",
    "model_response",
)
SUFFIX = "_classification"
HUMAN_PREFIX = "annotator_"
ANSWERS = {"yes": True, "no": False}


def import_moore_validation(path: Path) -> Bench:
    """One dialogue per row ("moore-<key>") with its check question; one rating line per
    non-empty answer column. `path` is the moore_stigma folder or the validation CSV."""
    path = resolve(Path(path), VALIDATION_FILE, "Moore et al. validation file")
    table = read_csv(path)
    table.require(COLUMNS)
    raters = [c for c in table.columns if c.endswith(SUFFIX) and len(c) > len(SUFFIX)]
    if not raters:
        raise BenchError(
            f"{path}: no answer columns; expected columns named '<rater>{SUFFIX}' "
            f"(e.g. 'annotator_1{SUFFIX}')"
        )
    # Models first: they answered every row, so the transcript sits on a line that is kept.
    raters.sort(key=lambda c: c.startswith(HUMAN_PREFIX))
    if not table.rows:
        raise BenchError(f"{path}: no rows after the header")

    ratings: list[BenchRating] = []
    seen: dict[str, str] = {}
    for i, row in enumerate(table.rows):
        key = cell_text(row["key"])
        if not key:
            raise BenchError(f"{table.where(i, 'key')}: empty key")
        if key in seen:
            raise BenchError(f"{table.where(i, 'key')}: key {key!r} repeats {seen[key]}")
        seen[key] = table.labels[i]
        parts = key.split("_")
        if len(parts) < 4:
            raise BenchError(
                f"{table.where(i, 'key')}: {key!r}; expected "
                "'<transcript>_<condition>_<stimulus>_<message number>'"
            )
        check = Check(
            question=_required(table, i, "verification_prompt"),
            appropriate_answer=_answer(table, i, "verification_correct", required=True),
        )
        transcript = (
            *_stimulus(table, i),
            BenchTurn(speaker="therapist", text=_required(table, i, "model_response")),
        )
        try:
            message_number = parse_int(row["message_number"])
        except ValueError:
            raise BenchError(
                f"{table.where(i, 'message_number')}: {row['message_number']!r}; "
                "expected a whole number"
            ) from None
        meta: dict[str, Any] = {
            "condition": cell_text(row["condition"]),
            "stimulus": parts[-2],
            "message_number": message_number,
        }
        lines = []
        for column in raters:
            answer = _answer(table, i, column, required=False)
            if answer is not None:
                lines.append((column, answer))
        if not lines:  # nobody answered: keep the dialogue as a transcript-only line
            lines.append((raters[0], None))
        for number, (column, answer) in enumerate(lines):
            name = column.removesuffix(SUFFIX)
            ratings.append(
                BenchRating(
                    dialogue_id=f"moore-{key}",
                    rater=name,
                    rater_kind="human" if name.startswith(HUMAN_PREFIX) else "model",
                    transcript=transcript if number == 0 else None,
                    check=check if number == 0 else None,
                    check_answer=answer,
                    meta=meta,
                )
            )
    return build_bench(str(path), ratings)


def _required(table: Table, index: int, column: str) -> str:
    text = cell_text(table.rows[index][column])
    if not text:
        raise BenchError(f"{table.where(index, column)}: empty; expected text")
    return text


def _answer(table: Table, index: int, column: str, *, required: bool) -> bool | None:
    raw = table.rows[index][column]
    text = cell_text(raw).lower()
    if not text and not required:
        return None
    if text not in ANSWERS:
        raise BenchError(f"{table.where(index, column)}: {raw!r}; expected 'yes' or 'no'")
    return ANSWERS[text]


def _stimulus(table: Table, index: int) -> tuple[BenchTurn, ...]:
    """The patient's message, or an alternating user/assistant exchange ending on the user."""
    text = _required(table, index, "interjection")
    if not text.startswith("["):
        return (BenchTurn(speaker="patient", text=text),)
    where = table.where(index, "interjection")
    try:
        messages = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise BenchError(f"{where}: starts with '[' but is not a list literal of strings") from None
    if (
        not isinstance(messages, list | tuple)
        or len(messages) % 2 == 0
        or not all(isinstance(m, str) and m.strip() for m in messages)
    ):
        raise BenchError(
            f"{where}: expected a list of an odd number of non-empty strings "
            "(user, assistant, ..., user)"
        )
    return tuple(
        BenchTurn(speaker="patient" if n % 2 == 0 else "therapist", text=m.strip())
        for n, m in enumerate(messages)
    )
