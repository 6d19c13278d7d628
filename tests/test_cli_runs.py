"""`therapygym patients` and `therapygym run|runs` as a user meets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from clirun import subprocess_cli as cli

from therapygym.patients.library import library_dir, load_profiles


def test_patients_list_and_show() -> None:
    listed = cli("patients", "list", "--patients", "risk")
    assert listed.returncode == 0
    first = next(p for p in load_profiles() if p.risk_cues)
    assert first.id in listed.stdout
    shown = cli("patients", "show", first.id)
    assert shown.returncode == 0 and first.presenting_problem[:30] in shown.stdout


def test_patients_validate(tmp_path: Path) -> None:
    good = library_dir() / f"{load_profiles()[0].id}.yaml"
    assert cli("patients", "validate", str(good)).returncode == 0
    bad = tmp_path / "broken.yaml"
    bad.write_text(good.read_text().replace("id: ", "id: x", 1).replace("age: ", "age: old # ", 1))
    result = cli("patients", "validate", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "field 'demographics.age'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_show_export_import(tmp_path: Path, openai_server: Any, server_spec: Any) -> None:
    server = openai_server(["I hear you.", "It has been a hard week."])
    spec = server_spec(server)
    store = tmp_path / "store.sqlite"
    ids = ",".join(p.id for p in load_profiles()[:2])
    run = cli(
        "run", "--therapist", spec, "--therapist", "rule-based", "--patient-model", spec,
        "--patients", ids, "--max-turns", "4", "--run-id", "cli", "--no-cache", store=store,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"2 patient profiles selected by '{ids}'" in run.stdout
    assert "4 sessions planned, 0 already done, 4 completed, 0 failed" in run.stdout
    assert "therapist" in run.stdout and "patient" in run.stdout  # the usage table

    rerun = cli(
        "run", "--therapist", spec, "--therapist", "rule-based", "--patient-model", spec,
        "--patients", ids, "--max-turns", "4", "--run-id", "cli", "--no-cache", store=store,
    )  # fmt: skip
    assert "4 already done, 0 completed" in rerun.stdout

    changed = cli(
        "run", "--therapist", spec, "--patient-model", spec, "--patients", ids,
        "--max-turns", "6", "--run-id", "cli", store=store,
    )  # fmt: skip
    assert changed.returncode == 2 and "different" in changed.stderr

    listed = cli("runs", "list", store=store)
    assert "cli" in listed.stdout
    shown = cli("runs", "show", "cli", store=store)
    assert shown.returncode == 0 and "completed" in shown.stdout

    out = tmp_path / "out"
    for fmt in ("jsonl", "csv", "parquet"):
        exported = cli(
            "runs", "export", "cli", "-o", str(out / f"t.{fmt}"), "--format", fmt, store=store
        )
        assert exported.returncode == 0, exported.stderr
    lines = (out / "t.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["format"] == "therapygym.transcript/1"
    for frame in (pd.read_csv(out / "t.csv"), pd.read_parquet(out / "t.parquet")):
        assert len(frame) == 16 and set(frame["speaker"]) == {"patient", "therapist"}

    imported = cli("runs", "import", str(out / "t.jsonl"), "--run-id", "again", store=store)
    assert imported.returncode == 0 and "imported 4 sessions" in imported.stdout
    again = cli("runs", "show", "again", store=store)
    assert again.stdout.count("completed") == 4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("run", "--therapist", "rule-based", "--patients", "nobody-*"), "matches no profile"),
        (
            ("run", "--therapist", "rule-based", "--opener", "both"),
            "run option 'opener': Input should be 'patient' or 'therapist'",
        ),
        (("run", "--therapist", "gpt5"), "unknown model spec 'gpt5'"),
        (("runs", "show", "missing"), "no store at"),
        (("runs", "export", "missing", "-o", "x.csv", "--format", "xml"), "expected jsonl, csv"),
    ],
)
def test_run_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    result = cli(*args, store=tmp_path / "s.sqlite")
    assert result.returncode == 2, result.stdout
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_import_errors_name_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"session_id": "a", "profile_id": "p", "therapist": "t", "patient": "p"}\n')
    result = cli("runs", "import", str(bad), "--run-id", "x", store=tmp_path / "s.sqlite")
    assert result.returncode == 2
    assert f"{bad}, line 1: field 'status'" in result.stderr


def _paragraph(text: str, start: str) -> str:
    return next(p for p in text.split("\n\n") if p.startswith(start))


def test_import_help_spells_out_the_format_as_the_schema_has_it() -> None:
    from therapygym.cli.runs import IMPORT_EXAMPLE, IMPORT_HELP
    from therapygym.records import Transcript, Turn

    def fields(model: type[Any], required: bool) -> set[str]:
        return {n for n, f in model.model_fields.items() if f.is_required() == required}

    required, turns = _paragraph(IMPORT_HELP, "Required:"), _paragraph(IMPORT_HELP, "turns:")
    optional = _paragraph(IMPORT_HELP, "Optional:")
    assert all(f in required for f in fields(Transcript, True))
    assert all(f in turns for f in fields(Turn, True) - {"id"})  # id: default SESSION:INDEX
    assert all(f in optional for f in fields(Transcript, False) - {"turns"})
    assert all(f in optional for f in fields(Turn, False) | {"id"})

    shown = cli("runs", "import", "--help")
    assert shown.returncode == 0
    assert " ".join(IMPORT_EXAMPLE.split()) in " ".join(shown.stdout.split())


def test_the_import_example_imports_and_lists_its_therapist(tmp_path: Path) -> None:
    from therapygym.cli.runs import IMPORT_EXAMPLE

    example = tmp_path / "example.jsonl"
    example.write_text(IMPORT_EXAMPLE + "\n")
    store = tmp_path / "s.sqlite"
    imported = cli("runs", "import", str(example), "--run-id", "external", store=store)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 sessions" in imported.stdout
    listed = cli("runs", "list", store=store)
    (row,) = [line for line in listed.stdout.splitlines() if "external" in line]
    assert "my-bot" in row  # the therapists column of an imported run


def test_turn_ids_from_elsewhere_may_repeat_across_sessions(tmp_path: Path) -> None:
    from therapygym.store import RunStore

    turn = {"id": "t0", "index": 0, "speaker": "patient", "text": "Hello"}
    session = {"profile_id": "p", "therapist": "t", "patient": "h", "status": "completed"}
    lines = [json.dumps({**session, "session_id": sid, "turns": [turn]}) for sid in ("a", "b")]
    (tmp_path / "two.jsonl").write_text("\n".join(lines) + "\n")
    store = tmp_path / "s.sqlite"
    done = cli("runs", "import", str(tmp_path / "two.jsonl"), "--run-id", "x", store=store)
    assert done.returncode == 0, done.stderr
    stored = RunStore(store, read_only=True)
    assert [t.turns[0].id for t in stored.sessions("x")] == ["a:0", "b:0"]


def test_an_export_imported_back_as_a_new_run_leaves_the_first_run_whole(
    tmp_path: Path,
) -> None:
    """Issue 16, item 1: `runs import` used to move the sessions of the run it was
    exported from (same session ids), leaving that run empty and its scores orphaned."""
    from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
    from therapygym.report.exports import export_transcripts, import_transcripts
    from therapygym.store import RunStore

    path = tmp_path / "s.sqlite"
    store = RunStore(path)
    store.ensure_run("evalrun", {})
    for k in range(3):
        store.save_session(
            Transcript(session_id=f"s{k}", run_id="evalrun", profile_id="p", therapist="t",
                       patient="x", status=SessionStatus.COMPLETED,
                       turns=[Turn(id=f"s{k}:0", index=0, speaker="patient", text="hi")])
        )  # fmt: skip
        store.save_scores(
            [ScoreRecord(score_id=f"sc{k}", session_id=f"s{k}", judge="j", rubric_id="ctrs",
                         rubric_version="1", prompt_fingerprint="f", sample=0)]
        )  # fmt: skip
    exported = tmp_path / "evalrun.jsonl"
    export_transcripts(store.sessions("evalrun"), exported, "jsonl")
    store.close()

    assert import_transcripts(exported, "evalcopy", path) == (3, 3)  # all three re-keyed
    store = RunStore(path, read_only=True)
    original = sorted(t.session_id for t in store.sessions("evalrun"))
    copy = sorted(t.session_id for t in store.sessions("evalcopy"))
    assert original == ["s0", "s1", "s2"] and len(copy) == 3 and not set(copy) & set(original)
    assert len(store.scores("evalrun")) == 3 and store.scores("evalcopy") == []
    assert [t.turns[0].text for t in store.sessions("evalcopy")] == ["hi"] * 3
    store.close()

    # the command says that it re-keyed, and why
    again = cli("runs", "import", str(exported), "--run-id", "evalthird", store=path)
    assert again.returncode == 0, again.stderr
    assert (
        "imported 3 sessions into run evalthird (3 with new ids: other runs hold theirs)"
        in again.stdout
    )


def test_the_readme_shows_the_import_example_of_the_help() -> None:
    """Issue 16, item 7: the README's example line is the one `runs import --help` prints
    (and which `test_the_import_example_imports_and_lists_its_therapist` imports)."""
    from therapygym.cli.runs import IMPORT_EXAMPLE

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Importing transcripts (`runs import`)")[1].split("\n## ")[0]
    assert f"```json\n{IMPORT_EXAMPLE}\n```" in section
