"""Reading a YAML file the user wrote, with one-line errors that name it.

Models files, patient profiles, rubrics and chatbot mappings all start here, so a missing
file, binary junk, a syntax error or an empty file reads the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from therapygym.errors import TherapygymError


def read_yaml(path: Path, what: str, error: type[TherapygymError]) -> Any:
    """Parse `path`; raise `error` ("<what> <path>: <problem>") for anything unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path}: file not found") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path}: not UTF-8 text (is it a binary file?)") from None
    except OSError as err:
        raise error(f"{what} {path}: cannot read ({err.strerror})") from None
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
