"""The bad-input catalogue (issue 9): every file and argument a user hands the CLI, broken
in the ways files and arguments get broken.

Each case runs the real command line (`therapygym.cli.app.main`, in-process for speed; a few
also as a real subprocess) and must end with:

1. exit status 2;
2. exactly one line on stderr, starting with `error:`, and no traceback;
3. that line naming the file (its path) and, where there is one, the field or line;
4. nothing written: every file under the test's folder (the store, the cache, outputs,
   the input itself) is byte-identical afterwards, and no file or folder appeared.

A case is one row: the files it writes, the arguments (`{d}` is the work folder), and the
fragments the error line must hold. The corruptions every file kind gets are listed once
(`YAML_CORRUPTIONS`, `jsonl_corruptions()`) and crossed with the file kinds.

Decisions the cases hold the code to: config-like files (YAML, prompts) are capped at
`MAX_CONFIG_BYTES`; a YAML "billion laughs" is refused once its aliases expand past
`MAX_YAML_VALUES` (legitimate anchors and merge keys still work); JSON Lines imports have
no size cap, but a bad line anywhere (however long) fails the whole file before the store
is opened; a byte-order mark, CRLF line ends, emoji, bidi controls and zero-width
characters in text are accepted (`ACCEPTED`), while a lone surrogate escape is refused.

Every path a command writes (`OUTPUTS`, issue 16) is put under a regular file and under
/proc, where nothing can be created. The output faults that cannot be made the same way on
every machine have tests of their own after the catalogue: a folder of mode 0500 (skipped
as root), a read-only file system (EROFS, mocked) and a disk that fills up mid-write
(temporary files linked to /dev/full, which fails every write with ENOSPC).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import traceback
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from therapygym.cli.app import main
from therapygym.yamlfile import MAX_CONFIG_BYTES

# -- running the command line --------------------------------------------------------------


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Ran:
    """`therapygym ARGS` in this process, through `main()` as the console script runs it."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["therapygym", *args]),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # what a user would see as a traceback
            traceback.print_exc(file=stderr)
            code = 1
    return Ran(code, stdout.getvalue(), stderr.getvalue())


def run_subprocess(*args: str, cwd: Path) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )
    return Ran(done.returncode, done.stdout, done.stderr)


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file (with its sha256) and folder under `root`. SQLite's shared-memory index
    (`-shm`) and an empty write-ahead log (`-wal`) are left out: any reader of a WAL-mode
    store makes them, a read-only one cannot remove them, and they hold no data."""
    seen = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            seen[rel + "/"] = "dir"
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if rel.endswith("-shm") or (rel.endswith("-wal") and digest == EMPTY_SHA256):
            continue
        seen[rel] = digest
    return seen


def assert_one_line_error(ran: Ran, fragments: Iterable[str]) -> str:
    assert "Traceback" not in ran.stderr, ran.stderr
    assert ran.code == 2, f"exit {ran.code}\nstdout: {ran.stdout}\nstderr: {ran.stderr}"
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


# -- contents ----------------------------------------------------------------------------


class Directory:
    """Put a folder where the file should be."""


@dataclass(frozen=True)
class Huge:
    """A file of `size` bytes: `head`, then `fill` repeated (or a sparse run of NULs)."""

    head: bytes = b""
    fill: bytes = b""
    size: int = 50 * 2**20


Content = bytes | str | Directory | Huge | None  # None: the file is not there


def write_content(path: Path, content: Content) -> None:
    if content is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Directory):
        path.mkdir()
        (path / "inside.txt").write_text("a folder, not a file")
    elif isinstance(content, Huge):
        with path.open("wb") as f:
            f.write(content.head)
            if content.fill:
                rest = content.size - len(content.head)
                f.write((content.fill * (rest // len(content.fill) + 1))[:rest])
            f.truncate(content.size)
    else:
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


RANDOM_BYTES = random.Random(9).randbytes(4096)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01" + bytes(range(256))
NUL_BYTES = b"\x00" * 256
LATIN_1 = "name: caf\xe9 au lait\n".encode("latin-1")
BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
)
RECURSIVE_YAML = "a: &loop [*loop]\n"
DEEP_YAML = "a: " + "[" * 1100 + "]" * 1100 + "\n"  # past Python's recursion limit
SURROGATE_YAML = 'name: "\\ud800"\n'

# (id, content, fragment of the error): what any YAML file kind can be broken into.
YAML_CORRUPTIONS: list[tuple[str, Content, str]] = [
    ("missing", None, "file not found"),
    ("directory", Directory(), "is a directory"),
    ("empty", b"", "file is empty"),
    ("whitespace-only", b"  \n\t\n\n", "file is empty"),
    ("comments-only", b"# nothing here\n", "file is empty"),
    ("random-bytes", RANDOM_BYTES, "not UTF-8"),
    ("png", PNG, "not UTF-8"),
    ("nul-bytes", NUL_BYTES, "NUL bytes"),
    ("latin-1", LATIN_1, "not UTF-8"),
    ("syntax-error", b"a: [1, 2\nb: c\n", "invalid YAML at line"),
    ("tab-indent", b"a:\n\tb: 1\n", "invalid YAML at line 2"),
    ("a-list", b"- a\n- b\n", "expected a mapping of fields, got list"),
    ("a-scalar", b"just some words\n", "expected a mapping of fields, got str"),
    ("billion-laughs", BILLION_LAUGHS, "expands to more than"),
    ("recursive-alias", RECURSIVE_YAML, "expands to more than"),
    ("deep-nesting", DEEP_YAML, "nested too deeply"),
    ("huge", Huge(b"a: 1\n"), f"larger than {MAX_CONFIG_BYTES // 2**20} MB"),
    ("lone-surrogate", SURROGATE_YAML, "surrogate"),
]


def yaml_of(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def shipped(*parts: str) -> dict[str, Any]:
    """A YAML file shipped with therapygym, as data to break."""
    return yaml.safe_load(resources.files("therapygym").joinpath(*parts).read_text("utf-8"))


# -- the catalogue ---------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...] = ()
    files: dict[str, Content] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None  # before the snapshot (e.g. a store)


CASES: list[Case] = []


def cases(kind: str, *items: Case) -> None:
    for item in items:
        item.id = f"{kind}/{item.id}"
        CASES.append(item)


def corrupt_yaml(
    kind: str, name: str, args: tuple[str, ...], what: str, skip: tuple[str, ...] = ()
) -> None:
    """The YAML corruptions for one file kind: the file `name` given as `args` say."""
    for cid, content, fragment in YAML_CORRUPTIONS:
        if cid not in skip:
            case = Case(cid, args, (f"{what} {{d}}/{name}", fragment), files={name: content})
            cases(kind, case)


SERVER = "openai:m?base_url=http://127.0.0.1:9/v1&max_retries=0"  # never called
STORE = ("--store", "{d}/store.sqlite")
MAYA = ("--patients", "dep-01-maya", "--patient-model", SERVER)
RUN = ("run", "--therapist", "rule-based", *MAYA, *STORE)

# ---- models file (--models-file): read by `models list`, and by every spec it names ----

MODELS = "models.yaml"
GOOD_MODEL = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
corrupt_yaml(
    "models-file",
    MODELS,
    ("models", "check", "mine", "--models-file", "{d}/" + MODELS),
    "models file",
)
cases(
    "models-file",
    Case(
        "wrong-type-models",
        ("models", "list", "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}", "field 'models'"),
        files={MODELS: yaml_of({"models": ["mine"]})},
    ),
    Case(
        "wrong-type-concurrency",
        ("models", "check", "mine", "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}, model 'mine'", "field 'concurrency'"),
        files={MODELS: yaml_of({"models": {"mine": {**GOOD_MODEL, "concurrency": "many"}}})},
    ),
    Case(
        "unknown-top-field",
        ("models", "list", "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}", "unknown field 'modles'"),
        files={MODELS: yaml_of({"modles": {"mine": GOOD_MODEL}})},
    ),
    Case(
        "unknown-entry-field",
        ("run", "--therapist", "mine", *MAYA, *STORE, "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}, model 'mine'", "unknown field 'temprature'"),
        files={MODELS: yaml_of({"models": {"mine": {**GOOD_MODEL, "temprature": 0}}})},
    ),
    Case(
        "missing-backend",
        ("run", "--therapist", "mine", *MAYA, *STORE, "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}, model 'mine'", "field 'backend' is missing"),
        files={MODELS: yaml_of({"models": {"mine": {"model": "m"}}})},
    ),
    Case(
        "negative-price",
        ("models", "list", "--models-file", "{d}/" + MODELS),
        (f"models file {{d}}/{MODELS}", "field 'prices.m.input_per_mtok'"),
        files={MODELS: yaml_of({"prices": {"m": {"input_per_mtok": -1}}})},
    ),
    Case(
        "judge-name-not-in-file",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            "mine",
            "--patient-model",
            "mine",
            *MAYA,
            *STORE,
            "--models-file",
            "{d}/" + MODELS,
        ),
        ("unknown model spec 'mine'", "named models: other"),
        files={MODELS: yaml_of({"models": {"other": GOOD_MODEL}})},
    ),
)

# ---- patient profiles (patients validate, --patients FILE|DIR, patients show FILE) --------

MAYA_PROFILE = shipped("patients", "library", "dep-01-maya.yaml")
PROFILE = "dep-01-maya.yaml"
# (`patients validate FOLDER` validates the profiles in it: a folder is no corruption there)
corrupt_yaml(
    "profile",
    PROFILE,
    ("patients", "validate", "{d}/" + PROFILE),
    "patient profile",
    skip=("directory",),
)
cases(
    "profile",
    Case(
        "directory",
        ("run", "--therapist", "rule-based", "--patients", "{d}/" + PROFILE, *STORE),
        (f"patient profile {{d}}/{PROFILE}", "is a directory"),
        files={PROFILE: Directory()},
    ),
    Case(
        "wrong-type",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'conditions'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "conditions": "depression"})},
    ),
    Case(
        "unknown-field",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "unknown field 'mood'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "mood": "low"})},
    ),
    Case(
        "missing-field",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'history' is missing"),
        files={PROFILE: yaml_of({k: v for k, v in MAYA_PROFILE.items() if k != "history"})},
    ),
    Case(
        "bad-enum",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'severity'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "severity": "very bad"})},
    ),
    Case(
        "rtl-override-in-id",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'id'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "id": "dep-01\u202emaya"})},
    ),
    Case(
        "zero-width-in-id",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'id'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "id": "dep-01\u200bmaya"})},
    ),
    Case(
        "nfd-name-non-ascii-id",
        ("patients", "validate", "{d}/" + unicodedata.normalize("NFD", "café-01.yaml")),
        ("field 'id'", "expected lowercase letters"),
        files={
            unicodedata.normalize("NFD", "café-01.yaml"): yaml_of(
                {**MAYA_PROFILE, "id": unicodedata.normalize("NFC", "café-01")}
            )
        },
    ),
    Case(
        "id-not-file-name",
        ("patients", "validate", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "field 'id' is 'dep-02-maya'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "id": "dep-02-maya"})},
    ),
    Case(
        "folder-without-profiles",
        ("patients", "validate", "{d}/profiles"),
        ("{d}/profiles: a folder with no profile files",),
        files={"profiles/readme.txt": "nothing here"},
    ),
    Case(
        "run-patients-file",
        ("run", "--therapist", "rule-based", "--patients", "{d}/" + PROFILE, *STORE),
        (f"{{d}}/{PROFILE}", "field 'conditions'"),
        files={PROFILE: yaml_of({**MAYA_PROFILE, "conditions": "depression"})},
    ),
    Case(
        "run-patients-folder",
        ("run", "--therapist", "rule-based", "--patients", "{d}/profiles", *STORE),
        (f"{{d}}/profiles/{PROFILE}", "invalid YAML at line"),
        files={"profiles/" + PROFILE: b"id: [dep\n"},
    ),
    Case(
        "run-patients-missing-file",
        ("run", "--therapist", "rule-based", "--patients", "{d}/nobody.yaml", *STORE),
        ("{d}/nobody.yaml", "file not found"),
    ),
    Case(
        "show-binary-file",
        ("patients", "show", "{d}/" + PROFILE),
        (f"{{d}}/{PROFILE}", "not UTF-8"),
        files={PROFILE: PNG},
    ),
)

# ---- HTTP chatbot files (http:bot.yaml) ----------------------------------------------------

BOT = "bot.yaml"
GOOD_BOT = {
    "url": "http://127.0.0.1:9/chat",
    "request": {"message": "{last_user}"},
    "response_path": "reply",
}
corrupt_yaml("chatbot", BOT, ("models", "check", "http:{d}/" + BOT), "chatbot file")
cases(
    "chatbot",
    Case(
        "wrong-type",
        ("models", "check", "http:{d}/" + BOT),
        (f"chatbot file {{d}}/{BOT}", "field 'headers'"),
        files={BOT: yaml_of({**GOOD_BOT, "headers": ["Authorization: x"]})},
    ),
    Case(
        "unknown-field",
        ("models", "check", "http:{d}/" + BOT),
        (f"chatbot file {{d}}/{BOT}", "unknown field 'respones_path'"),
        files={BOT: yaml_of({**GOOD_BOT, "respones_path": "x"})},
    ),
    Case(
        "missing-field",
        ("run", "--therapist", "http:{d}/" + BOT, *MAYA, *STORE),
        (f"chatbot file {{d}}/{BOT}", "field 'response_path' is missing"),
        files={BOT: yaml_of({k: v for k, v in GOOD_BOT.items() if k != "response_path"})},
    ),
    Case(
        "bad-url",
        ("run", "--therapist", "http:{d}/" + BOT, *MAYA, *STORE),
        (f"chatbot file {{d}}/{BOT}", "field 'url'"),
        files={BOT: yaml_of({**GOOD_BOT, "url": "ftp://x"})},
    ),
    Case(
        "unknown-placeholder",
        ("models", "check", "http:{d}/" + BOT),
        (f"chatbot file {{d}}/{BOT}", "unknown placeholder '{lastuser}'"),
        files={BOT: yaml_of({**GOOD_BOT, "request": {"m": "{last_user}", "n": "{lastuser}"}})},
    ),
)

# ---- therapist prompt files (--therapist-prompt FILE) ------------------------------------

PROMPT = "prompt.md"
for cid, content, fragment in [
    ("missing", None, "file not found"),
    ("directory", Directory(), "is a directory"),
    ("empty", b"", "is empty"),
    ("whitespace-only", b" \n\n\t ", "is empty"),
    ("random-bytes", RANDOM_BYTES, "not UTF-8"),
    ("png", PNG, "not UTF-8"),
    ("nul-bytes", NUL_BYTES, "NUL bytes"),
    ("latin-1", LATIN_1, "not UTF-8"),
    ("huge", Huge(b"You are a therapist.\n"), f"larger than {MAX_CONFIG_BYTES // 2**20} MB"),
]:
    cases(
        "therapist-prompt",
        Case(
            cid,
            ("run", "--therapist", SERVER, "--therapist-prompt", "{d}/" + PROMPT, *MAYA, *STORE),
            (f"therapist prompt file {{d}}/{PROMPT}", fragment),
            files={PROMPT: content},
        ),
    )

# ---- table mappings (calibrate --bench table:DATA --mapping FILE) --------------------------

MAPPING = "mapping.yaml"
GOOD_MAPPING = {
    "layout": "wide",
    "dialogue_column": "id",
    "rater_column": "rater",
    "ctrs": {"Agenda": "agenda"},
}
TABLE = "ratings.csv"
GOOD_TABLE = "id,rater,Agenda\nd1,x,4\nd1,y,3\nd2,x,2\nd2,y,2\n"
CALIBRATE_TABLE = ("calibrate", "--bench", "table:{d}/" + TABLE, "--humans-only")
corrupt_yaml(
    "table-mapping",
    MAPPING,
    (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
    "table mapping",
)
for case in CASES:
    if case.id.startswith("table-mapping/"):
        case.files[TABLE] = GOOD_TABLE
cases(
    "table-mapping",
    Case(
        "wrong-type",
        (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
        (f"table mapping {{d}}/{MAPPING}", "field 'score_offset'"),
        files={TABLE: GOOD_TABLE, MAPPING: yaml_of({**GOOD_MAPPING, "score_offset": "one"})},
    ),
    Case(
        "unknown-field",
        (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
        (f"table mapping {{d}}/{MAPPING}", "unknown field 'dialog_column'"),
        files={TABLE: GOOD_TABLE, MAPPING: yaml_of({**GOOD_MAPPING, "dialog_column": "id"})},
    ),
    Case(
        "missing-field",
        (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
        (f"table mapping {{d}}/{MAPPING}", "field 'layout' is missing"),
        files={
            TABLE: GOOD_TABLE,
            MAPPING: yaml_of({k: v for k, v in GOOD_MAPPING.items() if k != "layout"}),
        },
    ),
    Case(
        "unknown-ctrs-item",
        (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
        (f"table mapping {{d}}/{MAPPING}", "field 'ctrs'", "unknown CTRS item 'agendum'"),
        files={TABLE: GOOD_TABLE, MAPPING: yaml_of({**GOOD_MAPPING, "ctrs": {"A": "agendum"}})},
    ),
    Case(
        "no-mapping",
        CALIBRATE_TABLE,
        ("a table source needs a mapping file",),
        files={TABLE: GOOD_TABLE},
    ),
)

# ---- rating tables (table:, annomi:, moore: sources) ----------------------------------------

for cid, content, fragment in [
    ("missing", None, "file not found"),
    ("directory", Directory(), "is a directory"),
    ("empty", b"", "the file is empty"),
    ("random-bytes", RANDOM_BYTES, "not UTF-8"),
    ("png", PNG, "not UTF-8"),
    ("latin-1", "id,rater,Agenda\nd\xe9,x,4\n".encode("latin-1"), "not UTF-8"),
    ("header-only", "id,rater,Agenda\n", "no data rows"),
    ("missing-column", "id,rater\nd1,x\n", "missing column 'Agenda'"),
    ("ragged-row", "id,rater,Agenda\nd1,x,4,9,9\n", "not a valid CSV file"),
    ("score-not-a-number", "id,rater,Agenda\nd1,x,four\nd1,y,3\n", "row 2, column 'Agenda'"),
    ("score-out-of-range", "id,rater,Agenda\nd1,x,9\nd1,y,3\n", "row 2, column 'Agenda'"),
    ("duplicate-header", "id,rater,Agenda,Agenda\nd1,x,4,4\n", "appears twice"),
]:
    cases(
        "rating-table",
        Case(
            cid,
            (*CALIBRATE_TABLE, "--mapping", "{d}/" + MAPPING),
            (f"{{d}}/{TABLE}", fragment),
            files={MAPPING: yaml_of(GOOD_MAPPING), TABLE: content},
        ),
    )
for source, default in (("annomi", "AnnoMI-simple.csv"), ("moore", "classification_validation")):
    cases(
        f"{source}-source",
        Case(
            "missing",
            ("calibrate", "--bench", f"{source}:{{d}}/nothing", "--humans-only"),
            ("{d}/nothing", "file not found"),
        ),
        Case(
            "folder-without-file",
            ("calibrate", "--bench", f"{source}:{{d}}/data", "--humans-only"),
            ("{d}/data", default),
            files={"data/other.csv": "a,b\n1,2\n"},
        ),
        Case(
            "binary-file",
            ("calibrate", "--bench", f"{source}:{{d}}/data.csv", "--humans-only"),
            ("{d}/data.csv", "not UTF-8"),
            files={"data.csv": PNG},
        ),
        Case(
            "wrong-columns",
            ("calibrate", "--bench", f"{source}:{{d}}/data.csv", "--humans-only"),
            ("{d}/data.csv", "missing column"),
            files={"data.csv": "a,b\n1,2\n"},
        ),
    )
cases(
    "bench-source",
    Case(
        "unknown-importer",
        ("calibrate", "--bench", "excel:{d}/x.xlsx", "--humans-only"),
        ("unknown importer 'excel'",),
    ),
)

# ---- JSON Lines: bench files (calibrate --bench FILE) and transcripts (runs import FILE) ----

RATING = {
    "format": "therapygym.bench/1",
    "dialogue_id": "d1",
    "rater": "x",
    "transcript": [{"speaker": "patient", "text": "I feel low."}],
    "ctrs": {"agenda": 4},
}
TRANSCRIPT = {
    "format": "therapygym.transcript/1",
    "session_id": "s1",
    "profile_id": "p",
    "therapist": "t",
    "patient": "m",
    "status": "completed",
    "turns": [{"id": "s1:0", "index": 0, "speaker": "patient", "text": "Hello"}],
}


def jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def numbered(row: dict[str, Any], key: str, n: int) -> list[dict[str, Any]]:
    return [{**row, key: f"{row[key]}-{i}"} for i in range(n)]


def jsonl_corruptions(good: dict[str, Any], key: str) -> list[tuple[str, Content, str]]:
    """What a JSON Lines file can be broken into; `key` is a field that must differ per line."""
    other = {**good, key: "other"}
    return [
        ("missing", None, "file not found"),
        ("directory", Directory(), "is a directory"),
        ("empty", b"", "the file is empty"),
        ("whitespace-only", b"\n  \n\t\n", "the file is empty"),
        ("random-bytes", RANDOM_BYTES, "not UTF-8"),
        ("png", PNG, "not UTF-8"),
        ("nul-bytes", NUL_BYTES, "NUL bytes"),
        ("latin-1", jsonl(good).encode() + b'{"x": "caf\xe9"}\n', "not UTF-8"),
        ("not-json", jsonl(good, "{this is not json"), "line 2: invalid JSON"),
        ("a-json-list", jsonl(good, [1, 2]), "line 2: expected a JSON object, got list"),
        ("a-json-string", jsonl('"just text"'), "line 1: expected a JSON object, got str"),
        ("bad-line-in-middle", jsonl(*numbered(good, key, 5), "{", other), "line 6: invalid JSON"),
        ("truncated-last-line", jsonl(good) + json.dumps(other)[:-5], "line 2: invalid JSON"),
        ("unknown-field", jsonl(good, {**other, "colour": 1}), "line 2: unknown field 'colour'"),
        ("deep-nesting", jsonl(good, "[" * 100_000), "line 2: invalid JSON (nested too deeply)"),
        ("lone-surrogate", jsonl(good, json.dumps(other)[:-1] + ', "x": "\\ud800"}'), "line 2"),
        ("absurd-junk-line", jsonl(good) + "x" * (20 * 2**20) + "\n", "line 2: invalid JSON"),
        ("huge-junk-file", Huge(b"{not json ", b"junk " * 1000), "line 1: invalid JSON"),
    ]  # fmt: skip


BENCH = "bench.jsonl"
for cid, content, fragment in [
    *jsonl_corruptions(RATING, "rater"),
    ("wrong-type", jsonl(RATING, {**RATING, "rater": "y", "ctrs": {"agenda": "four"}}), "line 2"),
    ("missing-field", jsonl(RATING, {"dialogue_id": "d1", "ctrs": {}}), "field 'rater' is missing"),
    ("score-out-of-range", jsonl({**RATING, "ctrs": {"agenda": 7}}), "field 'ctrs.agenda'"),
    ("unknown-item", jsonl({**RATING, "ctrs": {"agendum": 3}}), "unknown CTRS item 'agendum'"),
    ("a-transcript-file", jsonl(TRANSCRIPT), "line 1"),
]:  # fmt: skip
    cases(
        "bench-jsonl",
        Case(
            cid,
            ("calibrate", "--bench", "{d}/" + BENCH, "--humans-only"),
            (f"{{d}}/{BENCH}", fragment),
            files={BENCH: content},
        ),
    )

IMPORT = "sessions.jsonl"


def stored_run(d: Path) -> None:
    """A store holding one imported run, so that imports into it must leave it unchanged."""
    from therapygym.records import Transcript
    from therapygym.store import RunStore

    store = RunStore(d / "store.sqlite")
    store.ensure_run("before", {"imported_from": "x"})
    store.save_session(Transcript.model_validate({**TRANSCRIPT, "run_id": "before"}))
    store.close()


for cid, content, fragment in [
    *jsonl_corruptions(TRANSCRIPT, "session_id"),
    ("wrong-type", jsonl({**TRANSCRIPT, "turns": "hello"}), "line 1: field 'turns'"),
    ("missing-field", jsonl({k: v for k, v in TRANSCRIPT.items() if k != "status"}), "'status'"),
    ("bad-status", jsonl({**TRANSCRIPT, "status": "done"}), "line 1: field 'status'"),
    ("duplicate-session", jsonl(TRANSCRIPT, TRANSCRIPT), "line 2: session_id 's1' appears twice"),
    (
        "duplicate-turn-index",
        jsonl({**TRANSCRIPT, "turns": TRANSCRIPT["turns"] * 2}),
        "line 1: field 'turns': index 0 appears twice",
    ),
    ("a-bench-file", jsonl(RATING), "line 1"),
]:  # fmt: skip
    cases(
        "transcripts",
        Case(
            cid,
            ("runs", "import", "{d}/" + IMPORT, "--run-id", "x", *STORE),
            (f"{{d}}/{IMPORT}", fragment),
            files={IMPORT: content},
        ),
        Case(
            cid + "-into-existing-store",
            ("runs", "import", "{d}/" + IMPORT, "--run-id", "before", *STORE),
            (f"{{d}}/{IMPORT}", fragment),
            files={IMPORT: content},
            setup=stored_run,
        ),
    )

# ---- probe files (probe FAMILY --probe-file FILE), stigma designs, Moore folders ------------

PROBES = "probes.yaml"
PROBE = ("probe", "inappropriate", "--therapist", "rule-based", "--judge", SERVER, *STORE)
INAPPROPRIATE = shipped("probes", "data", "inappropriate.yaml")
corrupt_yaml("probe-file", PROBES, (*PROBE, "--probe-file", "{d}/" + PROBES), "probe file")
first = INAPPROPRIATE["stimuli"][0]
cases(
    "probe-file",
    Case(
        "wrong-type",
        (*PROBE, "--probe-file", "{d}/" + PROBES),
        (f"probe file {{d}}/{PROBES}", "field 'stimuli.0.checks'"),
        files={PROBES: yaml_of({**INAPPROPRIATE, "stimuli": [{**first, "checks": "yes"}]})},
    ),
    Case(
        "unknown-field",
        (*PROBE, "--probe-file", "{d}/" + PROBES),
        (f"probe file {{d}}/{PROBES}", "unknown field 'stimuli.0.mesage'"),
        files={PROBES: yaml_of({**INAPPROPRIATE, "stimuli": [{**first, "mesage": "hi"}]})},
    ),
    Case(
        "missing-field",
        (*PROBE, "--probe-file", "{d}/" + PROBES),
        (f"probe file {{d}}/{PROBES}", "field 'stimuli' is missing"),
        files={PROBES: yaml_of({k: v for k, v in INAPPROPRIATE.items() if k != "stimuli"})},
    ),
    Case(
        "other-family",
        (*PROBE, "--probe-file", "{d}/" + PROBES),
        (f"{{d}}/{PROBES}", "holds escalation probes, not inappropriate"),
        files={PROBES: yaml_of(shipped("probes", "data", "escalation.yaml"))},
    ),
)

STIGMA = "stigma.yaml"
STIGMA_ARGS = ("probe", "stigma", "--therapist", "rule-based", *STORE)
corrupt_yaml(
    "stigma-design", STIGMA, (*STIGMA_ARGS, "--probe-file", "{d}/" + STIGMA), "stigma design"
)
DESIGN = shipped("probes", "data", "stigma.yaml")
cases(
    "stigma-design",
    Case(
        "wrong-type",
        (*STIGMA_ARGS, "--probe-file", "{d}/" + STIGMA),
        (f"stigma design {{d}}/{STIGMA}", "field 'conditions'"),
        files={STIGMA: yaml_of({**DESIGN, "conditions": "depression"})},
    ),
    Case(
        "unknown-field",
        (*STIGMA_ARGS, "--probe-file", "{d}/" + STIGMA),
        (f"stigma design {{d}}/{STIGMA}", "unknown field 'colour'"),
        files={STIGMA: yaml_of({**DESIGN, "colour": "red"})},
    ),
    Case(
        "missing-field",
        (*STIGMA_ARGS, "--probe-file", "{d}/" + STIGMA),
        (f"stigma design {{d}}/{STIGMA}", "field 'questions' is missing"),
        files={STIGMA: yaml_of({k: v for k, v in DESIGN.items() if k != "questions"})},
    ),
)  # fmt: skip
cases(
    "moore-stigma",
    Case(
        "missing",
        (*STIGMA_ARGS, "--moore", "{d}/moore"),
        ("Moore stigma data {d}/moore", "not a directory"),
    ),
    Case(
        "a-file",
        (*STIGMA_ARGS, "--moore", "{d}/moore"),
        ("Moore stigma data {d}/moore", "not a directory"),
        files={"moore": "a file"},
    ),
    Case(
        "empty-folder",
        (*STIGMA_ARGS, "--moore", "{d}/moore"),
        ("Moore stigma data {d}/moore", "expected one JSON Lines file of vignettes"),
        files={"moore/readme.md": "empty"},
    ),
    Case(
        "junk-files",
        (*STIGMA_ARGS, "--moore", "{d}/moore"),
        ("Moore stigma data {d}/moore", "expected one JSON Lines file"),
        files={"moore/a.jsonl": PNG, "moore/b.jsonl": "[" * 100_000},
    ),
)

# ---- scorecard batteries (scorecard --config, probe consistency|demographics --probe-file) --

BATTERY = "battery.yaml"
SCORECARD = ("scorecard", "--therapist", "rule-based", "--judge", SERVER, "--patient-model", SERVER,
             *STORE)  # fmt: skip
corrupt_yaml("battery", BATTERY, (*SCORECARD, "--config", "{d}/" + BATTERY), "scorecard config")
DEFAULT_BATTERY = shipped("probes", "data", "scorecard.yaml")
cases(
    "battery",
    Case(
        "wrong-type",
        (*SCORECARD, "--config", "{d}/" + BATTERY),
        (f"scorecard config {{d}}/{BATTERY}", "field 'fidelity.samples'"),
        files={
            BATTERY: yaml_of(
                {**DEFAULT_BATTERY, "fidelity": {**DEFAULT_BATTERY["fidelity"], "samples": "x"}}
            )
        },
    ),
    Case(
        "unknown-field",
        (*SCORECARD, "--config", "{d}/" + BATTERY),
        (f"scorecard config {{d}}/{BATTERY}", "unknown field 'empathy'"),
        files={BATTERY: yaml_of({**DEFAULT_BATTERY, "empathy": {}})},
    ),
    Case(
        "missing-field",
        (
            "probe",
            "consistency",
            "--therapist",
            "rule-based",
            "--judge",
            SERVER,
            "--patient-model",
            SERVER,
            *STORE,
            "--probe-file",
            "{d}/" + BATTERY,
        ),
        (f"scorecard config {{d}}/{BATTERY}", "field 'demographics' is missing"),
        files={BATTERY: yaml_of({k: v for k, v in DEFAULT_BATTERY.items() if k != "demographics"})},
    ),
    Case(
        "patients-match-nothing",
        (*SCORECARD, "--config", "{d}/" + BATTERY),
        (f"scorecard config {{d}}/{BATTERY}: field 'demographics.patients'", "matches no profile"),
        files={
            BATTERY: yaml_of(
                {
                    **DEFAULT_BATTERY,
                    "demographics": {**DEFAULT_BATTERY["demographics"], "patients": "nobody-*"},
                }
            )
        },
    ),
)

# ---- train configs (train --config FILE) and the reward weights they name --------------------

TRAIN = "train.yaml"
GOOD_TRAIN = {"run_id": "t", "patients": "dep-01-maya", "output_dir": "{d}/out"}
corrupt_yaml("train-config", TRAIN, ("train", "--config", "{d}/" + TRAIN, *STORE), "train config")
WEIGHTS = "weights.yaml"


def train_case(cid: str, config: dict[str, Any], expect: tuple[str, ...], **files: Content) -> Case:
    return Case(
        cid,
        ("train", "--config", "{d}/" + TRAIN, *STORE),
        expect,
        files={TRAIN: yaml_of(config), **files},
    )


cases(
    "train-config",
    train_case("wrong-type", {**GOOD_TRAIN, "seeds": "zero"}, ("{d}/" + TRAIN, "field 'seeds'")),
    train_case(
        "unknown-field", {**GOOD_TRAIN, "learning_rate": 1}, ("unknown field 'learning_rate'",)
    ),
    train_case(
        "missing-field",
        {k: v for k, v in GOOD_TRAIN.items() if k != "run_id"},
        ("{d}/" + TRAIN, "field 'run_id' is missing"),
    ),
    train_case("bad-run-id", {**GOOD_TRAIN, "run_id": "../x"}, ("field 'run_id'",)),
    train_case(
        "patients-match-nothing", {**GOOD_TRAIN, "patients": "nobody-*"}, ("matches no profile",)
    ),
    train_case("unknown-judge", {**GOOD_TRAIN, "judge": "gpt5"}, ("unknown model spec 'gpt5'",)),
    train_case(
        "missing-prompt",
        {**GOOD_TRAIN, "therapist_prompt": "{d}/nothing.md"},
        ("therapist prompt file {d}/nothing.md", "file not found"),
    ),
)
for cid, content, fragment in [
    *YAML_CORRUPTIONS,
    ("unknown-item", yaml_of({"ctrs": {"agendum": 1}, "safety": {}}), "unknown id(s) agendum"),
    ("wrong-type", yaml_of({"ctrs": {"agenda": "heavy"}, "safety": {}}), "field 'ctrs.agenda'"),
    # `safety` may be left out (every label then costs lambda 1, issue 17); `ctrs` may not
    ("missing-field", yaml_of({"safety": {}}), "field 'ctrs' is missing"),
    ("unknown-preset", yaml_of({"ctrs": {}, "penalties": "lenient"}), "unknown preset 'lenient'"),
]:
    cases(
        "reward-weights",
        train_case(
            cid,
            {**GOOD_TRAIN, "reward_weights": "{d}/" + WEIGHTS},
            (f"reward weights {{d}}/{WEIGHTS}", fragment),
            **{WEIGHTS: content},
        ),
    )

# ---- report inputs (report --scorecard FILE, --calibration FILE) ---------------------------


def empty_run(d: Path) -> None:
    from therapygym.store import RunStore

    store = RunStore(d / "store.sqlite")
    store.ensure_run("r", {"therapists": ["rule-based"]})
    store.close()


for option, what, default in (
    ("--scorecard", "scorecard", "scorecard.json"),
    ("--calibration", "calibration", "calibration.json"),
):
    for cid, content, fragment in [
        ("missing", None, "cannot be read"),
        ("empty", b"", "Invalid JSON"),
        ("random-bytes", RANDOM_BYTES, "not UTF-8"),
        ("png", PNG, "not UTF-8"),
        ("not-json", b"{nope", "Invalid JSON"),
        ("a-list", b"[]", "(top level)"),
        ("wrong-format", b'{"format": "therapygym.bench/1"}', "field 'format'"),
        ("deep-nesting", "[" * 100_000, "JSON"),
    ]:
        cases(
            f"report-{what}",
            Case(
                cid,
                ("report", "r", option, "{d}/in.json", "-o", "{d}/out.html", *STORE),
                (f"{what} file {{d}}/in.json", fragment),
                files={"in.json": content},
                setup=empty_run,
            ),
        )
    cases(
        f"report-{what}",
        Case(
            "folder-without-file",
            ("report", "r", option, "{d}/folder", "-o", "{d}/out.html", *STORE),
            (f"{what} file {{d}}/folder/{default}", "cannot be read"),
            files={"folder/other.json": "{}"},
            setup=empty_run,
        ),
    )

# ---- the run store (--store) and the response cache (--cache) ------------------------------


def junk_store(d: Path) -> None:
    (d / "store.sqlite").write_bytes(PNG)


def text_store(d: Path) -> None:
    (d / "store.sqlite").write_text("not a database, just text\n" * 50)


def other_apps_db(d: Path) -> None:
    with contextlib.closing(sqlite3.connect(d / "store.sqlite")) as db:
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('Ana', '555')")
        db.commit()


def store_folder(d: Path) -> None:
    (d / "store.sqlite").mkdir()


def future_store(d: Path) -> None:
    with contextlib.closing(sqlite3.connect(d / "store.sqlite")) as db:
        db.execute("PRAGMA user_version = 99")
        for table in ("runs", "sessions", "turns", "scores"):
            db.execute(f"CREATE TABLE {table} (id TEXT)")
        db.commit()


STORE_COMMANDS = {
    "runs-list": ("runs", "list", *STORE),
    "runs-show": ("runs", "show", "r", *STORE),
    "runs-export": ("runs", "export", "r", "-o", "{d}/out.jsonl", *STORE),
    "runs-import": ("runs", "import", "{d}/" + IMPORT, "--run-id", "x", *STORE),
    "report": ("report", "r", "-o", "{d}/out.html", *STORE),
    "judge": ("judge", "r", "--judge", SERVER, *STORE),
    "run": RUN,
}
for label, setup, fragment in (
    ("binary-junk", junk_store, "cannot be opened"),
    ("text-file", text_store, "cannot be opened"),
    ("a-folder", store_folder, "store.sqlite"),
    ("future-schema", future_store, "schema version 99"),
):
    for command, args in STORE_COMMANDS.items():
        cases(
            "store",
            Case(
                f"{label}-{command}",
                args,
                ("{d}/store.sqlite", fragment),
                files={IMPORT: jsonl(TRANSCRIPT)},
                setup=setup,
            ),
        )
for command, args in STORE_COMMANDS.items():
    cases(
        "store",
        Case(
            f"another-apps-db-{command}",
            args,
            ("{d}/store.sqlite", "not a therapygym run store"),
            files={IMPORT: jsonl(TRANSCRIPT)},
            setup=other_apps_db,
        ),
    )
cases(
    "store",
    *(
        Case(
            f"no-store-{command}",
            args,
            ("no store at {d}/store.sqlite",),
        )
        for command, args in STORE_COMMANDS.items()
        if command in ("runs-list", "runs-show", "runs-export", "report", "judge")
    ),
    Case("unknown-run-show", ("runs", "show", "nope", *STORE), ("no run 'nope'",), setup=empty_run),
    Case(
        "unknown-run-export",
        ("runs", "export", "nope", "-o", "{d}/out.csv", "--format", "csv", *STORE),
        ("no run 'nope'",),
        setup=empty_run,
    ),
    Case(
        "unknown-run-report",
        ("report", "nope", "-o", "{d}/out.html", *STORE),
        ("no run 'nope'",),
        setup=empty_run,
    ),
    Case(
        "unknown-run-judge",
        ("judge", "nope", "--judge", SERVER, *STORE),
        ("no run 'nope'",),
        setup=empty_run,
    ),
    Case(
        "unknown-session",
        ("runs", "show", "r", "--session", "nope", *STORE),
        ("nope",),
        setup=empty_run,
    ),
)
CACHE = ("models", "check", SERVER, "--cache", "{d}/cache.sqlite")
for label, content, expect in (
    ("binary-junk", PNG, ("response cache {d}/cache.sqlite", "cannot be opened")),
    ("a-folder", Directory(), ("--cache {d}/cache.sqlite: is a directory, expected a file name",)),
):
    cases("cache", Case(label, CACHE, expect, files={"cache.sqlite": content}))

# ---- output paths: every file and folder a command writes ----------------------------------


@dataclass(frozen=True)
class Output:
    """One output of one command: its arguments (`{out}` is the output path), the option
    (or file and field) its error must name, and the input files and store it needs."""

    args: tuple[str, ...]
    option: str
    files: tuple[tuple[str, str], ...] = ()
    setup: Callable[[Path], None] | None = None

    def case(self, cid: str, out: str, expect: tuple[str, ...], **files: Content) -> Case:
        """This output at `out`, as a catalogue case (`{out}` filled in, args and files)."""
        given = {name: text.replace("{out}", out) for name, text in self.files}
        args = tuple(a.replace("{out}", out) for a in self.args)
        return Case(cid, args, expect, files={**given, **files}, setup=self.setup)


TRAIN_FILE = ((TRAIN, yaml_of(GOOD_TRAIN)),)
CALIBRATE_JUDGE = ("calibrate", "--bench", "table:{d}/" + TABLE, "--judge", SERVER)
OUTPUTS: dict[str, Output] = {
    "report": Output(("report", "r", "-o", "{out}", *STORE), "--output", setup=empty_run),
    "judge-summary": Output(
        ("judge", "r", "--judge", SERVER, "-o", "{out}", *STORE), "--output", setup=empty_run
    ),
    "eval-summary": Output(
        ("eval", "--therapist", "rule-based", "--judge", SERVER, *MAYA, "-o", "{out}", *STORE),
        "--output",
    ),
    "export-jsonl": Output(
        ("runs", "export", "r", "-o", "{out}", *STORE), "--output", setup=empty_run
    ),
    "export-hf-folder": Output(
        ("runs", "export", "r", "--format", "hf", "-o", "{out}", *STORE),
        "--output",
        setup=empty_run,
    ),
    "calibrate-folder": Output(
        (*CALIBRATE_TABLE, "-o", "{out}"), "--output-dir", files=((TABLE, GOOD_TABLE),)
    ),
    "calibrate-store": Output(
        (*CALIBRATE_JUDGE, "--store", "{out}"), "--store", files=((TABLE, GOOD_TABLE),)
    ),
    "calibrate-cache": Output(
        (*CALIBRATE_JUDGE, *STORE, "--cache", "{out}"), "--cache", files=((TABLE, GOOD_TABLE),)
    ),
    "probe-report": Output((*PROBE, "-o", "{out}"), "--output"),
    "probe-store": Output((*PROBE, "--store", "{out}"), "--store"),
    "probe-cache": Output((*PROBE, "--cache", "{out}"), "--cache"),
    "scorecard-folder": Output((*SCORECARD, "-o", "{out}"), "--output-dir"),
    "scorecard-store": Output((*SCORECARD, "--store", "{out}"), "--store"),
    "scorecard-cache": Output((*SCORECARD, "--cache", "{out}"), "--cache"),
    "run-store": Output(("run", "--therapist", "rule-based", *MAYA, "--store", "{out}"), "--store"),
    "eval-store": Output(
        ("eval", "--therapist", "rule-based", "--judge", SERVER, *MAYA, "--store", "{out}"),
        "--store",
    ),
    "judge-store": Output(("judge", "r", "--judge", SERVER, "--store", "{out}"), "--store"),
    "import-store": Output(
        ("runs", "import", "{d}/" + IMPORT, "--run-id", "x", "--store", "{out}"),
        "--store",
        files=((IMPORT, jsonl(TRANSCRIPT)),),
    ),
    "train-store": Output(
        ("train", "--config", "{d}/" + TRAIN, "--store", "{out}"), "--store", files=TRAIN_FILE
    ),
    "train-output-dir": Output(
        ("train", "--config", "{d}/" + TRAIN, *STORE),
        f"train config {{d}}/{TRAIN}: field 'output_dir'",
        files=((TRAIN, yaml_of({**GOOD_TRAIN, "output_dir": "{out}"})),),
    ),
    "run-cache": Output((*RUN, "--cache", "{out}"), "--cache"),
    "models-check-cache": Output(("models", "check", SERVER, "--cache", "{out}"), "--cache"),
}
for oid, output in OUTPUTS.items():
    cases(
        "output-path",
        output.case(
            f"under-a-file-{oid}",
            "{d}/afile/out",
            (f"{output.option} {{d}}/afile/out", "{d}/afile is a file, not a folder"),
            afile="a file, not a folder\n",
        ),
        output.case(
            f"unwritable-place-{oid}",
            "/proc/nope/out",
            (f"{output.option} /proc/nope/out", "cannot create files in /proc"),
        ),
    )

# ---- command-line arguments ----------------------------------------------------------------

OPTION = "Invalid value for"
cases(
    "arguments",
    Case("concurrency-zero", (*RUN, "--concurrency", "0"), (OPTION, "'--concurrency'")),
    Case("concurrency-negative", (*RUN, "--concurrency", "-3"), (OPTION, "'--concurrency'")),
    Case("concurrency-not-a-number", (*RUN, "--concurrency", "many"), (OPTION, "'--concurrency'")),
    Case("samples-zero", (*RUN, "--samples", "0"), (OPTION, "'--samples'")),
    Case("max-turns-zero", (*RUN, "--max-turns", "0"), (OPTION, "'--max-turns'")),
    Case("max-tokens-tiny", (*RUN, "--max-tokens", "1"), (OPTION, "'--max-tokens'")),
    Case("temperature-high", (*RUN, "--temperature", "9"), (OPTION, "'--temperature'")),
    Case("temperature-negative", (*RUN, "--temperature", "-0.1"), (OPTION, "'--temperature'")),
    Case("temperature-nan", (*RUN, "--temperature", "nan"), ("'--temperature'",)),
    Case("opener-unknown", (*RUN, "--opener", "both"), ("run option 'opener'",)),
    Case("run-id-unsafe", (*RUN, "--run-id", "../../etc"), ("run option 'run_id'",)),
    Case("unknown-option", (*RUN, "--therapists", "x"), ("No such option: --therapists",)),
    Case("missing-therapist", ("run", *MAYA, *STORE), ("Missing option '--therapist'",)),
    Case("unknown-command", ("evaluate",), ("No such command 'evaluate'",)),
    Case(
        "unknown-therapist",
        ("run", "--therapist", "gpt5", *MAYA, *STORE),
        ("--therapist: unknown model spec 'gpt5'",),
    ),
    Case(
        "unknown-backend",
        ("run", "--therapist", "claude:x", *MAYA, *STORE),
        ("--therapist: unknown model spec 'claude:x'",),
    ),
    Case(
        "bad-spec-option",
        ("run", "--therapist", SERVER + "&concurency=2", *MAYA, *STORE),
        ("unknown option(s) concurency",),
    ),
    Case(
        "missing-api-key",
        ("run", "--therapist", "openai:gpt-4o-mini", *MAYA, *STORE),
        ("OPENAI_API_KEY is not set",),
    ),
    Case(
        "missing-gguf",
        ("run", "--therapist", "gguf:{d}/nothing.gguf", *MAYA, *STORE),
        ("{d}/nothing.gguf",),
    ),
    Case(
        "python-spec-not-importable",
        ("run", "--therapist", "python:no_such_module_x:reply", *MAYA, *STORE),
        ("no_such_module_x",),
    ),
    Case(
        "unknown-patient-model",
        ("run", "--therapist", "rule-based", "--patient-model", "gpt5", *STORE),
        ("--patient-model: unknown model spec 'gpt5'",),
    ),
    Case(
        "unknown-patient",
        ("run", "--therapist", "rule-based", "--patients", "nobody-01", *STORE),
        ("--patients term 'nobody-01' matches no profile",),
    ),
    Case(
        "bad-patient-filter",
        ("run", "--therapist", "rule-based", "--patients", "severity:awful", *STORE),
        ("--patients term 'severity:awful'",),
    ),
    Case(
        "empty-patients",
        ("run", "--therapist", "rule-based", "--patients", " , ", *STORE),
        ("--patients is empty",),
    ),
    Case(
        "bad-theraagent-option",
        ("run", "--therapist", f"theraagent[rounds=x]:{SERVER}", *MAYA, *STORE),
        ("rounds",),
    ),
    Case(
        "eval-bad-judge-before-any-session",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            "gpt5",
            "--patient-model",
            SERVER,
            *MAYA,
            *STORE,
        ),
        ("--judge: unknown model spec 'gpt5'",),
    ),
    Case(
        "eval-missing-judge-key",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            "openai:gpt-4o",
            "--patient-model",
            SERVER,
            *MAYA,
            *STORE,
        ),
        ("--judge: model openai:gpt-4o: OPENAI_API_KEY is not set",),
    ),
    Case(
        "eval-bad-rubric",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            SERVER,
            "--rubric",
            "ctrs,empathy",
            *MAYA,
            *STORE,
        ),
        ("judge option 'rubrics.1'",),
    ),
    Case(
        "eval-empty-rubric",
        ("eval", "--therapist", "rule-based", "--judge", SERVER, "--rubric", ",", *MAYA, *STORE),
        ("--rubric ','",),
    ),
    Case(
        "eval-bad-ctrs-mode",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            SERVER,
            "--ctrs-mode",
            "each",
            *MAYA,
            *STORE,
        ),
        ("judge option 'ctrs_mode'",),
    ),
    Case(
        "eval-bad-aggregation",
        (
            "eval",
            "--therapist",
            "rule-based",
            "--judge",
            SERVER,
            "--aggregation",
            "max",
            *MAYA,
            *STORE,
        ),
        ("--aggregation 'max'",),
    ),
    Case(
        "eval-judge-samples-zero",
        ("eval", "--therapist", "rule-based", "--judge", SERVER, "--judge-samples", "0", *STORE),
        (OPTION, "'--judge-samples'"),
    ),
    Case(
        "judge-bad-judge-spec",
        ("judge", "r", "--judge", "gpt5", *STORE),
        ("--judge: unknown model spec 'gpt5'",),
        setup=empty_run,
    ),
    Case(
        "judge-bad-rubric",
        ("judge", "r", "--judge", SERVER, "--rubric", "vibes", *STORE),
        ("judge option 'rubrics.0'",),
        setup=empty_run,
    ),
    Case(
        "export-bad-format",
        ("runs", "export", "r", "-o", "{d}/out.xml", "--format", "xml", *STORE),
        ("expected jsonl, csv",),
        setup=empty_run,
    ),
    Case(
        "export-bad-content",
        ("runs", "export", "r", "-o", "{d}/out.csv", "--content", "vibes", *STORE),
        ("vibes",),
        setup=empty_run,
    ),
    Case(
        "export-output-is-a-folder",
        ("runs", "export", "r", "-o", "{d}/folder", *STORE),
        ("output {d}/folder: is a directory",),
        files={"folder/keep.txt": "keep"},
        setup=empty_run,
    ),
    Case(
        "report-bad-aggregation",
        ("report", "r", "--aggregation", "max", *STORE),
        ("--aggregation 'max'",),
        setup=empty_run,
    ),
    Case("view-port-out-of-range", ("view", "--port", "70000", *STORE), (OPTION, "'--port'")),
    Case(
        "calibrate-no-judge",
        ("calibrate", "--bench", "{d}/" + BENCH),
        ("give --judge SPEC, or --humans-only",),
        files={BENCH: jsonl(RATING)},
    ),
    Case(
        "calibrate-bad-recalibrate",
        ("calibrate", "--bench", "{d}/" + BENCH, "--humans-only", "--recalibrate", "spline"),
        ("--recalibrate 'spline'",),
        files={BENCH: jsonl(RATING)},
    ),
    Case(
        "calibrate-fit-fraction",
        ("calibrate", "--bench", "{d}/" + BENCH, "--humans-only", "--fit-fraction", "1.5"),
        (OPTION, "'--fit-fraction'"),
        files={BENCH: jsonl(RATING)},
    ),
    Case(
        "calibrate-bad-judge",
        ("calibrate", "--bench", "{d}/" + BENCH, "--judge", "gpt5", *STORE),
        ("--judge: unknown model spec 'gpt5'",),
        files={BENCH: jsonl(RATING, {**RATING, "rater": "y"})},
    ),
    Case(
        "probe-unknown-family",
        ("probe", "vibes", "--therapist", "rule-based", "--judge", SERVER, *STORE),
        ("probe family 'vibes'",),
    ),
    Case(
        "probe-needs-judge",
        ("probe", "inappropriate", "--therapist", "rule-based", *STORE),
        ("need a check-question judge",),
    ),
    Case(
        "probe-bad-judge",
        ("probe", "inappropriate", "--therapist", "rule-based", "--judge", "gpt5", *STORE),
        ("--judge: unknown model spec 'gpt5'",),
    ),
    Case(
        "probe-bad-therapist",
        ("probe", "stigma", "--therapist", "gpt5", *STORE),
        ("--therapist: unknown model spec 'gpt5'",),
    ),
    Case(
        "scorecard-bad-judge",
        ("scorecard", "--therapist", "rule-based", "--judge", "gpt5", *STORE),
        ("--judge: unknown model spec 'gpt5'",),
    ),
    Case(
        "models-check-unknown-spec",
        ("models", "check", "gpt5", "--cache", "{d}/cache.sqlite"),
        ("unknown model spec 'gpt5'",),
    ),
)


# -- the test ---------------------------------------------------------------------------------


class StartedEmbeddedModel(BaseException):
    """Not an Exception, so that no layer records it as a model failure and goes on."""


@pytest.fixture(autouse=True)
def _no_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A case that got past validation must fail, not load the 135M model on shared cores."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StartedEmbeddedModel("a bad-input case got as far as starting the embedded model")

    monkeypatch.setattr("therapygym.models.llamacpp._load_server", refuse)


_LIBRARY: list[Any] = []


@pytest.fixture(autouse=True)
def _library_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped profiles are read once for the catalogue, not once a case (44 files,
    0.13 s a time); a user's own profile files and folders are read as always."""
    from therapygym.patients import library

    def load_profiles(directory: Any = None) -> list[Any]:
        if directory is not None:
            return library.load_profiles(directory)
        if not _LIBRARY:
            _LIBRARY.extend(library.load_profiles())
        return list(_LIBRARY)

    monkeypatch.setattr("therapygym.patients.select.load_profiles", load_profiles)
    monkeypatch.setattr("therapygym.probes.scorecard.load_profiles", load_profiles)


def _fill(text: str, d: Path) -> str:
    return text.replace("{d}", str(d))


def _params() -> list[Any]:
    return [pytest.param(c, id=c.id) for c in CASES]


def _prepare(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default outputs (results/...) land here, and are checked
    monkeypatch.setenv("THERAPYGYM_STORE", str(work / "default-store.sqlite"))
    for name, content in case.files.items():
        if isinstance(content, str):
            content = _fill(content, work)
        write_content(work / name, content)
    if case.setup is not None:
        case.setup(work)
    return work


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = _prepare(case, tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    ran = run_cli(*(_fill(a, work) for a in case.args))
    assert_one_line_error(ran, [_fill(f, work) for f in case.expect])
    assert snapshot(tmp_path) == before, "the command wrote or changed files"


# A few cases end to end: the console script's exit status and stderr in a real process.
END_TO_END = [
    "models-file/syntax-error",
    "transcripts/bad-line-in-middle-into-existing-store",
    "arguments/concurrency-zero",
    "arguments/unknown-option",
    "store/binary-junk-runs-list",
]


@pytest.mark.parametrize("case_id", END_TO_END)
def test_bad_input_in_a_real_process(
    case_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (case,) = [c for c in CASES if c.id == case_id]
    work = _prepare(case, tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    ran = run_subprocess(*(_fill(a, work) for a in case.args), cwd=work)
    assert_one_line_error(ran, [_fill(f, work) for f in case.expect])
    assert snapshot(tmp_path) == before


# Output paths whose fault cannot be made the same way on every machine: a folder the user
# may not write to (root may write anywhere), a read-only file system and a full disk
# (neither can be mounted without privileges; both are simulated where the OS reports them).


def _refused_before_any_work(
    case: Case,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[], None] = lambda: None,
) -> None:
    """`test_bad_input` for `case`, with `fault` made after the files and before the run."""
    work = _prepare(case, tmp_path, monkeypatch)
    before = snapshot(tmp_path)
    fault()
    ran = run_cli(*(_fill(a, work) for a in case.args))
    assert_one_line_error(ran, [_fill(f, work) for f in case.expect])
    assert snapshot(tmp_path) == before, "the command wrote or changed files"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a folder whatever its mode")
@pytest.mark.parametrize("oid", OUTPUTS)
def test_an_unwritable_folder_is_refused_before_any_work(
    oid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = OUTPUTS[oid]
    expect = (f"{output.option} {{d}}/locked/out", "cannot create files in {d}/locked")
    case = output.case(oid, "{d}/locked/out", (*expect, "Permission denied"))

    def locked_folder(d: Path) -> None:
        if output.setup is not None:
            output.setup(d)
        (d / "locked").mkdir(mode=0o500)

    case.setup = locked_folder
    _refused_before_any_work(case, tmp_path, monkeypatch)


@pytest.mark.parametrize("oid", OUTPUTS)
def test_a_read_only_file_system_is_refused_before_any_work(
    oid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mounting one needs privileges; creating a file on one fails with EROFS, as here."""

    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    # the whole work folder is read-only: the first output checked names itself
    expect = ("cannot create files in {d}: Read-only file system",)
    _refused_before_any_work(
        OUTPUTS[oid].case(oid, "{d}/out", expect),
        tmp_path,
        monkeypatch,
        fault=lambda: monkeypatch.setattr(tempfile, "mkstemp", read_only),
    )


def one_session_run(d: Path) -> None:
    """A store holding run 'r' with one session: something to export and report."""
    from therapygym.records import Transcript
    from therapygym.store import RunStore

    store = RunStore(d / "store.sqlite")
    store.ensure_run("r", {"therapists": ["t"]})
    store.save_session(Transcript.model_validate({**TRANSCRIPT, "run_id": "r"}))
    store.close()


OLD = "an older file, which must stay as it is\n"
EXPORT = ("runs", "export", "r", *STORE, "-o")
FULL_DISK = [  # (the case, the output its error names, under the folder out/)
    (Case("report", ("report", "r", *STORE, "-o", "{d}/out/r.html"), setup=one_session_run),
     "r.html"),
    (Case("judge-summary", ("judge", "r", "--judge", SERVER, *STORE, "-o", "{d}/out/s.json"),
          setup=empty_run),
     "s.json"),
    (Case("export-jsonl", (*EXPORT, "{d}/out/t.jsonl"), setup=one_session_run), "t.jsonl"),
    (Case("export-csv", (*EXPORT, "{d}/out/t.csv", "--format", "csv"), setup=one_session_run),
     "t.csv"),
    (Case("export-parquet", (*EXPORT, "{d}/out/t.parquet", "--format", "parquet"),
          setup=one_session_run),
     "t.parquet"),
    (Case("calibrate", ("calibrate", "--bench", "{d}/" + BENCH, "--humans-only", "--resamples",
                        "100", "-o", "{d}/out"),
          files={BENCH: jsonl(RATING, {**RATING, "rater": "y"})}),
     "calibration.json"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "written"), FULL_DISK, ids=[c.id for c, _ in FULL_DISK])
def test_a_disk_that_fills_up_mid_write_is_one_line(
    case: Case, written: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every artefact is written to a temporary file; here each one is a link to /dev/full,
    where the kernel fails every write with ENOSPC, as a full disk does. The command must
    name the file it could not write, leave no partial file beside it, and leave the file
    that was there before unchanged. (The store and the cache may have changed: the work
    had begun.)"""
    work = _prepare(case, tmp_path, monkeypatch)
    write_content(work / "out" / written, OLD)
    before = snapshot(work / "out")

    def to_dev_full(dir: str, prefix: str, suffix: str) -> tuple[int, str]:
        link = Path(dir) / f"{prefix}full{suffix}"
        link.symlink_to("/dev/full")
        return os.open(link, os.O_WRONLY), str(link)

    monkeypatch.setattr(tempfile, "mkstemp", to_dev_full)
    ran = run_cli(*(_fill(a, work) for a in case.args))
    assert "Traceback" not in ran.stderr and ran.code == 2, ran.stderr
    last = ran.stderr.strip().splitlines()[-1]  # after any progress bar
    assert last.startswith(f"error: cannot write {work / 'out'}/"), last
    assert "No space left on device" in last
    assert snapshot(work / "out") == before, "a partial file was left, or the old one changed"


def test_catalogue_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# -- odd but valid: what must not be refused -----------------------------------------------

ODD = "😢 \u202eRTL override\u202c zero\u200bwidth, e\u0301 (NFD)"
ANCHORED_MODELS = """\
models:
  mine: &base {backend: openai, model: m, base_url: "http://127.0.0.1:9/v1"}
  other: {<<: *base, model: n}
"""
ACCEPTED = [
    (
        "models-file-with-bom-and-crlf",
        {MODELS: "\ufeff" + yaml_of({"models": {"mine": GOOD_MODEL}}).replace("\n", "\r\n")},
        ("models", "list", "--models-file", "{d}/" + MODELS),
        "mine",
    ),
    (
        "models-file-with-anchors-and-merge-keys",
        {MODELS: ANCHORED_MODELS},
        ("models", "list", "--models-file", "{d}/" + MODELS),
        "openai:n",
    ),
    (
        "profile-with-bom-emoji-rtl-zero-width",
        {PROFILE: "\ufeff" + yaml_of({**MAYA_PROFILE, "opening_line": f"Hello. {ODD}"})},
        ("patients", "validate", "{d}/" + PROFILE),
        "ok",
    ),
    (
        "transcripts-with-bom-emoji-and-surrogate-pairs",
        {
            IMPORT: "\ufeff"
            + jsonl({**TRANSCRIPT, "turns": [{**TRANSCRIPT["turns"][0], "text": "@"}]}).replace(
                '"@"', json.dumps(ODD, ensure_ascii=False)[:-1] + ' \\ud83d\\ude22"'
            )
        },
        ("runs", "import", "{d}/" + IMPORT, "--run-id", "x", *STORE),
        "imported 1 sessions",
    ),
    (
        "bench-with-bom-and-crlf",
        {BENCH: "\ufeff" + jsonl(RATING, {**RATING, "rater": "y"}).replace("\n", "\r\n")},
        ("calibrate", "--bench", "{d}/" + BENCH, "--humans-only", "--resamples", "100"),
        "wrote",
    ),
]


@pytest.mark.parametrize(
    ("files", "args", "fragment"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED]
)
def test_odd_but_valid_input_is_accepted(
    files: dict[str, Content],
    args: tuple[str, ...],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = _prepare(Case("accepted", args, files=files), tmp_path, monkeypatch)
    ran = run_cli(*(_fill(a, work) for a in args))
    assert ran.code == 0, ran.stderr
    assert fragment in ran.stdout


def test_imported_text_keeps_its_unusual_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (name, files, args, _) = ACCEPTED[3]
    work = _prepare(Case(name, args, files=files), tmp_path, monkeypatch)
    assert run_cli(*(_fill(a, work) for a in args)).code == 0
    from therapygym.store import RunStore

    (stored,) = RunStore(work / "store.sqlite", read_only=True).sessions("x")
    assert stored.turns[0].text == ODD + " 😢"


# -- rubric files: read by the library (JudgePlan.rubric_files), by no command yet ---------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        *((content, fragment) for _, content, fragment in YAML_CORRUPTIONS),
        (yaml_of({"kind": "vibes"}), "field 'kind' must be one of"),
        (yaml_of({**shipped("judges", "rubrics", "ctrs.yaml"), "items": "all"}), "field 'items'"),
    ],
    ids=[*(cid for cid, _, _ in YAML_CORRUPTIONS), "unknown-kind", "wrong-type"],
)
def test_rubric_file_errors_are_one_line(content: Content, fragment: str, tmp_path: Path) -> None:
    from therapygym.errors import ConfigError
    from therapygym.judges.rubric import load_rubric

    path = tmp_path / "rubric.yaml"
    write_content(path, content)
    with pytest.raises(ConfigError) as info:
        load_rubric(path)
    message = str(info.value)
    assert "\n" not in message and f"rubric file {path}" in message and fragment in message
