"""`runs import` of conversations kept elsewhere: chat-format JSONL, Parquet, a local
Hugging Face dataset folder; the role mapping, errors that name the row and field, nothing
stored on error, and an imported run judged like any other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clirun import cli
from judges.scripted import judge_replier
from report_store import RUN

from therapygym.errors import TherapygymError
from therapygym.records import SessionStatus, Transcript, Turn
from therapygym.report.exports import export_run
from therapygym.report.import_formats import (
    RoleMap,
    TranscriptFileError,
    detect_format,
    read_conversations,
)
from therapygym.store import RunStore, StoreError
from therapygym.summary import summarise


def chat(*said: tuple[str, str], **row: Any) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in said], **row}


ROWS = [
    chat(
        ("system", "You are a supportive counsellor."),
        ("user", "I keep lying awake."),
        ("assistant", "What goes through your mind then?"),
        ("user", "Work, mostly."),
        id="c1",
        metadata={"profile_id": "client-1", "therapist": "my-bot", "source": "pilot"},
    ),
    chat(("user", "Hello."), ("assistant", "Hi, what brings you here?")),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chat_jsonl_maps_roles_and_keeps_the_system_prompt(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "logs.jsonl", ROWS)
    assert detect_format(path) == "chat"
    first, second = read_conversations(path)
    assert first.session_id == "c1" and second.session_id == "logs-2"  # file stem, line
    assert (first.profile_id, first.therapist, first.patient) == ("client-1", "my-bot", "human")
    assert [(t.speaker, t.index) for t in first.turns] == [
        ("patient", 0), ("therapist", 1), ("patient", 2),
    ]  # fmt: skip
    assert first.meta["system_prompt"] == "You are a supportive counsellor."
    assert first.meta["metadata"] == {"source": "pilot"}
    assert second.profile_id == "imported" and "system_prompt" not in second.meta

    swapped = read_conversations(path, roles=RoleMap(therapist="user", patient="assistant"))
    assert swapped[0].turns[0].speaker == "therapist"
    with pytest.raises(TherapygymError, match="both 'user'"):
        RoleMap(therapist="user", patient="user")


def test_content_parts_are_text(tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]
    row = {"messages": [{"role": "user", "content": parts}]}
    (got,) = read_conversations(write_jsonl(tmp_path / "p.jsonl", [row]))
    assert got.turns[0].text == "First.\nSecond."


@pytest.mark.parametrize(
    ("rows", "where", "fragment"),
    [
        (
            [ROWS[1], chat(("user", "Hi"), ("tool", "{}"))],
            "line 2: field 'messages[1].role'",
            "got 'tool'; expected the therapist role 'assistant', the patient role 'user'",
        ),
        (
            [{"messages": [{"role": "assistant", "content": None}]}],
            "line 1: field 'messages[0].content'",
            "expected text",
        ),
        (
            [chat(("user", "Hi"), ("system", "Be brief."))],
            "line 1: field 'messages[1].role'",
            "a system message after the conversation began",
        ),
        ([{"conversation": []}], "line 1: field 'messages'", "expected a list"),
        ([chat(("user", "Hi"), status="unknown")], "line 1: field 'status'", "Input should be"),
        ([ROWS[0], ROWS[0]], "line 2", "session_id 'c1' appears twice"),
    ],
)
def test_chat_errors_name_the_line_and_field(
    tmp_path: Path, rows: list[dict[str, Any]], where: str, fragment: str
) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TranscriptFileError) as err:
        read_conversations(path, "chat")
    assert f"{path}, {where}" in str(err.value) and fragment in str(err.value)


def test_parquet_messages_column(tmp_path: Path) -> None:
    path = tmp_path / "logs.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    first, second = read_conversations(path)
    assert first.therapist == "my-bot" and second.session_id == "logs-1"  # 0-based index
    assert first.turns[1].text == "What goes through your mind then?"

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([ROWS[1], chat(("robot", "beep"))]), bad)
    with pytest.raises(
        TranscriptFileError, match=r"bad\.parquet, index 1: field 'messages\[0\]\.role'"
    ):
        read_conversations(bad)
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"session_id": ["a"], "speaker": ["patient"], "text": ["hi"]}), flat)
    with pytest.raises(TranscriptFileError, match="no 'messages' column"):
        read_conversations(flat)


def test_dataset_folders(tmp_path: Path, store_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    dataset = datasets.Dataset.from_list(ROWS[1:] * 2)
    datasets.DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(saved)
    assert detect_format(saved) == "hf"
    assert len(read_conversations(saved)) == 2
    assert len(read_conversations(saved, split="test")) == 1
    with pytest.raises(TranscriptFileError, match="expected one of train, test"):
        read_conversations(saved, split="validation")

    files = tmp_path / "files"
    files.mkdir()
    write_jsonl(files / "part.jsonl", ROWS)
    assert [t.session_id for t in read_conversations(files)] == ["c1", "files-1"]

    # our own hf export (its default config `sessions` has messages) imports back
    exported = tmp_path / "hf"
    export_run(RunStore(store_path, read_only=True), RUN, exported, "hf")
    back = read_conversations(exported)
    assert len(back) == 9 and sum(t.status == SessionStatus.FAILED for t in back) == 1
    original = {t.session_id: t for t in RunStore(store_path, read_only=True).sessions(RUN)}
    for t in back:
        assert [x.text for x in t.turns] == [x.text for x in original[t.session_id].turns]
        assert t.therapist == original[t.session_id].therapist

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TranscriptFileError, match="not a readable dataset folder"):
        read_conversations(empty)


def test_the_format_comes_from_the_path_or_is_named(tmp_path: Path) -> None:
    odd = write_jsonl(tmp_path / "logs.txt", ROWS)
    with pytest.raises(TranscriptFileError, match="cannot tell the format from the suffix"):
        read_conversations(odd)
    assert len(read_conversations(odd, "chat")) == 2
    with pytest.raises(TranscriptFileError, match="--split is for a dataset folder"):
        read_conversations(odd, "chat", split="train")


def test_a_failure_while_storing_stores_nothing(tmp_path: Path) -> None:
    """Every session of an import is written in one transaction: the second one failing
    (its id held by another run) leaves the first unstored too."""
    store = RunStore(tmp_path / "s.sqlite")
    store.ensure_run("a", {})
    store.ensure_run("b", {})

    def t(sid: str, run: str) -> Transcript:
        turn = [Turn(id=f"{sid}:0", index=0, speaker="patient", text="hi")]
        return Transcript(session_id=sid, run_id=run, profile_id="p", therapist="t",
                          patient="h", status=SessionStatus.COMPLETED, turns=turn)  # fmt: skip

    store.save_session(t("held", "a"))
    with pytest.raises(StoreError, match="belongs to run 'a'"):
        store.save_sessions([t("new", "b"), t("held", "b")])
    assert list(store.sessions("b")) == []


def test_an_imported_chat_log_is_judged_like_any_run(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    path = write_jsonl(tmp_path / "logs.jsonl", ROWS)
    store = tmp_path / "s.sqlite"
    where = ("--store", str(store))
    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], chat(("user", "Hi"), ("function", "x"))])
    refused = cli("runs", "import", str(bad), "--run-id", "logs", *where)
    assert refused.code == 2 and f"{bad}, line 2: field 'messages[1].role'" in refused.stderr
    assert not store.exists()  # checked whole before the store is opened

    done = cli("runs", "import", str(path), "--run-id", "logs", *where)
    assert done.code == 0, done.stderr
    assert "imported 2 sessions" in done.stdout
    judge = server_spec(openai_server(judge_replier(score=5, verdict="no")))
    judged = cli("judge", "logs", "--judge", judge, "--rubric", "ctrs,safety", "--no-cache",
                 *where)  # fmt: skip
    assert judged.code == 0, judged.stderr
    summary = summarise(RunStore(store, read_only=True), "logs")
    assert sorted(s.session_id for s in summary.sessions) == ["c1", "logs-2"]
    assert all(s.ctrs_total == 55 and s.safety for s in summary.sessions)
    assert {t.therapist for t in summary.therapists} == {"my-bot", "imported"}
