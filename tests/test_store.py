"""The run store: round trips, resume bookkeeping, atomic replacement, permissions."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from therapygym.session import SessionStatus, Transcript, Turn
from therapygym.store import _SCHEMA, SCHEMA_VERSION, RunStore, StoreError


def transcript(
    session_id: str, status: SessionStatus = SessionStatus.COMPLETED, n: int = 4
) -> Transcript:
    return Transcript(
        session_id=session_id,
        run_id="r1",
        profile_id="dep-01",
        profile_version=1,
        therapist="rule-based",
        patient="llm-patient:x",
        status=status,
        error="boom" if status is SessionStatus.FAILED else None,
        turns=[
            Turn(
                id=f"{session_id}:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=f"utterance {i} with 'quotes' and ünïcode",
                prompt_tokens=i,
                cues=["self_harm"] if i == 2 else [],
            )
            for i in range(n)
        ],
        meta={"note": "x"},
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "runs" / "store.sqlite")
    s.ensure_run("r1", {"therapists": ["rule-based"], "samples": 1})
    return s


def test_round_trip(store: RunStore) -> None:
    original = transcript("s1")
    store.save_session(original)
    assert store.session("s1") == original
    assert [t.session_id for t in store.sessions("r1")] == ["s1"]


def test_finished_ids_and_failed_replacement(store: RunStore) -> None:
    store.save_session(transcript("s1"))
    store.save_session(transcript("s2", SessionStatus.FAILED, n=1))
    store.save_session(transcript("s3", SessionStatus.ENDED_BY_PATIENT, n=3))
    assert store.finished_session_ids("r1") == {"s1", "s3"}
    store.save_session(transcript("s2"))  # the retry replaces the failed attempt and its turns
    assert store.finished_session_ids("r1") == {"s1", "s2", "s3"}
    assert len(store.session("s2").turns) == 4
    info = store.run("r1")
    assert (info.sessions, info.finished, info.failed) == (3, 3, 0)


def test_resume_requires_same_configuration(store: RunStore) -> None:
    assert store.ensure_run("r1", {"therapists": ["rule-based"], "samples": 1}) is True
    with pytest.raises(StoreError, match="different samples"):
        store.ensure_run("r1", {"therapists": ["rule-based"], "samples": 2})


def test_unknown_run_and_session(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"no run .nope.*recent runs: r1"):
        store.run("nope")
    with pytest.raises(StoreError, match="no session 'nope'"):
        store.session("nope")


def test_owner_only_and_integrity(store: RunStore) -> None:
    store.save_session(transcript("s1"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.integrity_check() == "ok"


def test_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        RunStore(junk)


def test_read_only_mode(store: RunStore, tmp_path: Path) -> None:
    store.save_session(transcript("s1"))
    reader = RunStore(store.path, read_only=True)
    assert reader.session("s1") == store.session("s1")
    assert [r.run_id for r in reader.runs()] == ["r1"]
    with pytest.raises(Exception, match="readonly"):
        reader.save_session(transcript("s2"))
    with pytest.raises(Exception, match="readonly"):
        reader.ensure_run("r2", {})
    # it sees what the writer commits, and data_version says that something changed
    version = reader.data_version()
    store.save_session(transcript("s2"))
    assert reader.data_version() != version
    assert {t.session_id for t in reader.sessions("r1")} == {"s1", "s2"}
    assert [r.session_id for r in reader.scores("r1", session_id="s1")] == []

    absent = tmp_path / "absent" / "store.sqlite"
    with pytest.raises(StoreError, match="no store at"):
        RunStore(absent, read_only=True)
    assert not absent.parent.exists()  # nothing is created
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a therapygym run store"):
        RunStore(other, read_only=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        RunStore(junk, read_only=True)


def test_turn_meta_round_trips(store: RunStore) -> None:
    original = transcript("s1")
    original.turns[1].meta = {"theraagent": {"kept": 1, "rounds": [{"text": "draft"}]}}
    store.save_session(original)
    assert store.session("s1") == original
    assert store.session("s1").turns[1].meta["theraagent"]["kept"] == 1


def test_a_version_1_store_is_read_and_upgraded(tmp_path: Path) -> None:
    """Stores written before turns had `meta` are read as they are (read-only) and gain the
    column, with `{}` for every old turn, when opened for writing."""
    path = tmp_path / "v1.sqlite"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA.replace("  meta              TEXT NOT NULL DEFAULT '{}',\n", ""))
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO runs VALUES ('r1', '2025-01-01T00:00:00+00:00', '{}')")
    old = transcript("s1", n=2)
    db.execute(
        "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ("s1", "r1", "dep-01", 1, "rule-based", "p", 0, 0, "completed", None, 2, None, 0.0,
         old.config.model_dump_json(), '{"note": "x"}'),
    )  # fmt: skip
    for t in old.turns:
        db.execute(
            "INSERT INTO turns VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (t.id, "s1", t.index, t.speaker, t.text, 0.0, t.prompt_tokens, 0, 0, None, "[]"),
        )
    db.commit()
    db.close()
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(turns)")]
    assert "meta" not in columns

    reader = RunStore(path, read_only=True)
    assert [t.text for t in reader.session("s1").turns] == [t.text for t in old.turns]
    assert all(t.meta == {} for t in reader.session("s1").turns)
    reader.close()

    writer = RunStore(path)
    assert all(t.meta == {} for t in writer.session("s1").turns)
    fresh = transcript("s2")
    fresh.turns[1].meta = {"k": [1, 2]}
    writer.save_session(fresh)
    assert writer.session("s2") == fresh
    writer.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()
    assert RunStore(path, read_only=True).session("s2") == fresh
