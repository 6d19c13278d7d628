"""Reading files the user wrote (YAML, or any text), with one-line errors that name them.

Models files, patient profiles, rubrics, chatbot mappings, bench and transcript files all
start here, so a missing file, a directory, binary junk, a syntax error or an empty file
reads the same way everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from therapygym.errors import TherapygymError, describe_validation_error

M = TypeVar("M", bound=BaseModel)


def read_text(
    path: Path, what: str, error: type[TherapygymError], *, encoding: str = "utf-8"
) -> str:
    """A user's text file, or `error` ("<what> <path>: <problem>") saying why not."""
    where = f"{what} {path}".strip()
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except IsADirectoryError:
        raise error(f"{where}: is a directory, expected a file") from None
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text (is it a binary file?)") from None
    except OSError as err:
        raise error(f"{where}: cannot read ({err.strerror})") from None


def read_jsonl_objects(
    path: Path, error: type[TherapygymError], *, encoding: str = "utf-8"
) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file; `error` names
    the file and line of anything that is not one JSON object (an empty file included)."""
    out = []
    for number, line in enumerate(read_text(path, "", error, encoding=encoding).splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{path}, line {number}: invalid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(data).__name__}")
        out.append((number, data))
    if not out:
        raise error(f"{path}: the file is empty (expected one JSON object per line)")
    return out


def read_yaml(path: Path, what: str, error: type[TherapygymError]) -> Any:
    """Parse `path`; raise `error` ("<what> <path>: <problem>") for anything unreadable."""
    text = read_text(path, what, error)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise error(f"{what} {path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise error(f"{what} {path}: file is empty")
    return data


def read_yaml_mapping(path: Path, what: str, error: type[TherapygymError]) -> dict[str, Any]:
    """`read_yaml`, and the document must be a mapping of fields."""
    data = read_yaml(path, what, error)
    if not isinstance(data, dict):
        raise error(f"{what} {path}: expected a mapping of fields, got {type(data).__name__}")
    return data


def read_yaml_model(path: Path, what: str, model: type[M], error: type[TherapygymError]) -> M:
    """A YAML mapping validated as `model`; `error` names the file and the field at fault."""
    raw = read_yaml_mapping(path, what, error)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise error(describe_validation_error(err, f"{what} {path}")) from None
