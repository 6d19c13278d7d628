"""Reading files the user wrote (YAML, or any text), with one-line errors that name them.

Models files, patient profiles, rubrics, chatbot mappings, bench and transcript files all
start here, so a missing file, a directory, binary junk, a syntax error or an empty file
reads the same way everywhere.

Config-like files (YAML, prompts) are capped at `MAX_CONFIG_BYTES`: the largest we ship is
35 KB, and PyYAML parses about 1 MB/s, so a file over the cap is a mistake (the wrong file,
a dataset given as a config) that would otherwise take minutes and memory to say so. YAML
aliases are shared, not copied, when loaded, but whatever walks the document afterwards
(validation, fingerprints) sees every repetition: a "billion laughs" of nested aliases is
refused once it expands past `MAX_YAML_VALUES` values, far more than the cap allows
without aliases. JSON Lines files (transcripts, benches) are data and may be large: they
have no cap, and each bad line is named.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from therapygym.errors import TherapygymError, describe_validation_error

M = TypeVar("M", bound=BaseModel)

MAX_CONFIG_BYTES = 2 * 1024 * 1024
MAX_YAML_VALUES = MAX_CONFIG_BYTES // 2  # "[1,1,...]": at most one value per two bytes
# \ud800-\udfff: half of a UTF-16 pair, which JSON and YAML accept but is no character
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = "a \\u escape names a lone surrogate ({}), which is not a character"
_YAML_SURROGATE = (
    "a \\u escape names a surrogate ({}), which is not a character in YAML: write the "
    "character itself (or \\U0001F600 for one beyond \\uffff)"
)


def read_text(
    path: Path,
    what: str,
    error: type[TherapygymError],
    *,
    encoding: str = "utf-8-sig",
    max_bytes: int | None = None,
) -> str:
    """A user's text file, or `error` ("<what> <path>: <problem>") saying why not.

    A byte-order mark is dropped and line ends read as `\\n`, as text mode reads them;
    NUL bytes (binary files, UTF-16) and files over `max_bytes` are refused.
    """
    where = f"{what} {path}".strip()
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size  # 0 for a pipe or a device: read to see
            data = b""
            if max_bytes is None:
                data = f.read()
            elif size <= max_bytes:
                data = f.read(max_bytes + 1)
                size = len(data)
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    except IsADirectoryError:
        raise error(f"{where}: is a directory, expected a file") from None
    except OSError as err:
        raise error(f"{where}: cannot read ({err.strerror})") from None
    if max_bytes is not None and size > max_bytes:
        raise error(
            f"{where}: larger than {max_bytes // 2**20} MB ({size / 2**20:.1f} MB), the limit "
            "for a config file; is it the right file?"
        )
    if b"\x00" in data:
        raise error(f"{where}: holds NUL bytes, so not UTF-8 text (a binary file, or UTF-16?)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise error(f"{where}: not UTF-8 text (is it a binary file?)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_jsonl_objects(
    path: Path, error: type[TherapygymError], *, encoding: str = "utf-8-sig"
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
        except RecursionError:
            raise error(f"{path}, line {number}: invalid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(data).__name__}")
        if (escape := _SURROGATE_ESCAPE.search(line)) and not _encodable(data):
            raise error(f"{path}, line {number}: " + _LONE_SURROGATE.format(escape.group()))
        out.append((number, data))
    if not out:
        raise error(f"{path}: the file is empty (expected one JSON object per line)")
    return out


def _encodable(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_yaml(path: Path, what: str, error: type[TherapygymError]) -> Any:
    """Parse `path`; raise `error` ("<what> <path>: <problem>") for anything unreadable."""
    text = read_text(path, what, error, max_bytes=MAX_CONFIG_BYTES)
    if not text.strip():
        raise error(f"{what} {path}: file is empty")
    try:
        data = _parse(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        if isinstance(err, yaml.reader.ReaderError):  # a control character
            where = f" at line {text.count(chr(10), 0, err.position) + 1}"
            problem = f"unacceptable character #x{err.character:04x} ({err.reason})"
        raise error(f"{what} {path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise error(f"{what} {path}: invalid YAML: nested too deeply") from None
    if data is None:
        raise error(f"{what} {path}: file is empty")
    _check_expansion(data, f"{what} {path}", error)
    if escape := _SURROGATE_ESCAPE.search(text):
        _check_surrogates(data, f"{what} {path}", error, escape.group())
    return data


# libyaml's parser, where PyYAML was built with it: about 10 times faster than the pure-Python
# one (the 52 shipped profiles, which every `run` reads: 15 ms against 150 ms of CPU).
_FAST_LOADER: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)
# libyaml nests far deeper than the Python parser's recursion allows; a document nested
# deeper than this is parsed again by the Python parser, so it is refused as before.
_FAST_MAX_DEPTH = 64


def _parse(text: str) -> Any:
    """`yaml.safe_load(text)`, through libyaml when it has the same answer.

    Every message above is written for the pure-Python parser's errors (marks, reader
    errors, its recursion limit), so a document libyaml refuses, or one it takes that nests
    deeper than `_FAST_MAX_DEPTH` or holds more than `MAX_YAML_VALUES` values, is parsed
    again by the Python parser: it raises (or returns) exactly what it did before.
    """
    if _FAST_LOADER is not None:
        # what yaml.load(text, Loader=CSafeLoader) does, written out so that no call of
        # yaml.load appears in the package (tests/reliability/test_unsafe_calls.py)
        loader = _FAST_LOADER(text)
        try:
            data = loader.get_single_data()
        except (yaml.YAMLError, RecursionError):
            pass
        else:
            if _shallow(data):
                return data
        finally:
            loader.dispose()
    return yaml.safe_load(text)


def _shallow(data: Any) -> bool:
    """Whether `data` nests at most `_FAST_MAX_DEPTH` deep in at most `MAX_YAML_VALUES`
    values (a self-containing alias nests without end, so it is not)."""
    for count, (_, depth) in enumerate(_nodes(data)):
        if depth > _FAST_MAX_DEPTH or count >= MAX_YAML_VALUES:
            return False
    return True


def _nodes(data: Any) -> Iterator[tuple[Any, int]]:
    """(node, depth) for every key and value of a parsed document, depth first, each alias
    followed (so a repeated or self-containing alias yields its content again, without
    end)."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in (*node, *node.values()))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _check_expansion(data: Any, where: str, error: type[TherapygymError]) -> None:
    """Refuse a document that holds more than `MAX_YAML_VALUES` values once its aliases
    are followed (or an alias that contains itself), before anything walks it."""
    for count, _ in enumerate(_nodes(data)):
        if count >= MAX_YAML_VALUES:
            raise error(
                f"{where}: the document expands to more than {MAX_YAML_VALUES:,} values "
                "through YAML aliases (*name) that repeat or contain each other"
            )


def _check_surrogates(data: Any, where: str, error: type[TherapygymError], escape: str) -> None:
    for node, _ in _nodes(data):
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise error(f"{where}: " + _YAML_SURROGATE.format(escape)) from None


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
