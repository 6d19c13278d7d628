"""Reading the files importers start from, so every importer words its errors the same way.

A table is a header and rows of cells. CSV and TSV are read with pandas, every cell as
text (no NaN guessing: "n/a" stays "n/a", "007" stays "007"); rows are numbered as a
spreadsheet shows them, the header being row 1. JSONL is one object per line and keeps
JSON types (a transcript or a list of scores may be a list there); its rows are numbered
by file line. A CSV cell holding a list or an object is JSON text, or the Python literal
pandas writes for a list column; it is parsed, never evaluated as code. Errors name the
file, the row and the column, and say what was expected.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from therapygym.calibration.bench import BenchError, BenchTurn
from therapygym.errors import describe_validation_error
from therapygym.yamlfile import read_jsonl_objects

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ROLE_TO_SPEAKER = {"user": "patient", "assistant": "therapist"}


@dataclass(frozen=True)
class Table:
    """The cells of one file, with the labels its errors use ("row 5" or "line 5")."""

    path: Path
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    labels: tuple[str, ...]

    def where(self, index: int, column: str | None = None) -> str:
        place = f"{self.path}, {self.labels[index]}"
        return f"{place}, column '{column}'" if column is not None else place

    def require(self, columns: Iterable[str], why: str = "") -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            names = ", ".join(f"'{c}'" for c in missing)
            raise BenchError(
                f"{self.path}: missing column{'s' if len(missing) > 1 else ''} {names}{why}; "
                f"the file has {', '.join(repr(c) for c in self.columns)}"
            )


def resolve(path: Path, default_name: str, what: str) -> Path:
    """A dataset may be named by its folder or its file; return the file, or say what is missing."""
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise BenchError(
            f"{what} {path}: file not found (give the dataset folder or {default_name})"
        )
    return path


def read_table(path: Path, fmt: str | None = None) -> Table:
    """Read CSV, TSV or JSONL (by `fmt`, else by the file's extension)."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BenchError(
            f"{path}: cannot tell the format from the extension '{path.suffix}'; expected one of "
            f"{', '.join(FORMATS)} (or set `format:` in the mapping)"
        )
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_csv(path, sep="\t" if fmt == "tsv" else ",")


def read_csv(path: Path, sep: str = ",") -> Table:
    kind = "TSV" if sep == "\t" else "CSV"
    try:
        # header=None: a row with more fields than the header is an error with its line
        # number, instead of pandas quietly turning the first column into an index.
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            index_col=False,
            encoding="utf-8-sig",
        )
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise BenchError(f"{path}: is a directory, expected a {kind} file") from None
    except UnicodeDecodeError:
        raise BenchError(f"{path}: not UTF-8 text (is it a binary file?)") from None
    except pd.errors.EmptyDataError:
        raise BenchError(f"{path}: the file is empty (expected a header row)") from None
    except pd.errors.ParserError as err:
        detail = str(err).strip().removeprefix("Error tokenizing data. C error: ")
        raise BenchError(f"{path}: not a valid {kind} file: {detail}") from None
    except OSError as err:
        raise BenchError(f"{path}: cannot read ({err.strerror})") from None
    records = frame.to_numpy(dtype=object).tolist()
    header = [str(c).strip() for c in records[0]]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise BenchError(f"{path}, row 1: column '{name}' appears twice in the header")
        seen.add(name)
    rows = tuple(dict(zip(header, record, strict=True)) for record in records[1:])
    labels = tuple(f"row {n}" for n in range(2, len(records) + 1))
    return Table(path, tuple(header), rows, labels)


def read_jsonl(path: Path) -> Table:
    rows, labels, columns = [], [], {}
    for number, data in read_jsonl_objects(path, BenchError, encoding="utf-8-sig"):
        columns.update(dict.fromkeys(data))
        rows.append(data)
        labels.append(f"line {number}")
    return Table(path, tuple(columns), tuple(rows), tuple(labels))


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def cell_text(value: Any) -> str:
    """A cell as stripped text: "" for empty, whole floats without ".0"."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_int(value: Any) -> int:
    """A whole number from a cell ("4", "4.0", 4); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a true/false value")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{str(value).strip()!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{value!r}")
    return int(number)


def _structured(value: Any) -> Any:
    """A cell's JSON (or Python literal) text as the value it spells; anything else as is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(text) from None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_list(value: Any, where: str, example: str) -> list[Any]:
    """A list-valued cell (a JSON list, or its text in CSV); `example` shows the expected
    shape in the error, e.g. 'a list of 4 scores'."""
    try:
        parsed = _structured(value)
    except ValueError as err:
        raise BenchError(f"{where}: {_shown(str(err))} is not a list; expected {example}") from None
    if not isinstance(parsed, list):
        got = _shown(value) if isinstance(value, str) else type(value).__name__
        raise BenchError(f"{where}: {got} is not a list; expected {example}")
    return parsed


def parse_object(value: Any, where: str, example: str) -> dict[str, Any]:
    """An object-valued cell (a JSON object, or its text in CSV); a blank cell is an empty
    object, as a blank cell elsewhere is a value nobody gave."""
    if is_blank(value):
        return {}
    try:
        parsed = _structured(value)
    except ValueError as err:
        raise BenchError(
            f"{where}: {_shown(str(err))} is not an object; expected {example}"
        ) from None
    if not isinstance(parsed, dict):
        got = _shown(value) if isinstance(value, str) else type(value).__name__
        raise BenchError(f"{where}: {got} is not an object; expected {example}")
    return {cell_text(k): v for k, v in parsed.items()}


def parse_turns(value: Any, where: str) -> tuple[BenchTurn, ...]:
    """A transcript given as JSON text or a list: turns of {speaker, text} (speaker
    therapist/patient) or {role, content} (role user -> patient, assistant -> therapist)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise BenchError(f"{where}: the transcript is not valid JSON ({err.msg})") from None
    if not isinstance(value, list) or not value:
        raise BenchError(
            f"{where}: expected a transcript as a non-empty JSON list of turns, "
            f"got {type(value).__name__ if value else 'an empty list'}"
        )
    turns = []
    for number, turn in enumerate(value, start=1):
        if isinstance(turn, dict) and "role" in turn:
            role = turn.get("role")
            if role not in ROLE_TO_SPEAKER:
                raise BenchError(
                    f"{where}: turn {number}: role {role!r} is not a dialogue role; "
                    "expected 'user' (patient) or 'assistant' (therapist)"
                )
            if set(turn) - {"role", "content"}:
                extra = ", ".join(sorted(set(turn) - {"role", "content"}))
                raise BenchError(f"{where}: turn {number}: unknown field(s) {extra}")
            turn = {"speaker": ROLE_TO_SPEAKER[role], "text": turn.get("content")}
        try:
            turns.append(BenchTurn.model_validate(turn))
        except ValidationError as err:
            raise BenchError(describe_validation_error(err, f"{where}: turn {number}")) from None
    return tuple(turns)


def spelled(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)
