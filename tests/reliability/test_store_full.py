"""A store whose disk fills up mid-run: one line naming the store, nothing half-written,
and the store usable again once there is room (issue 16, item 9).

SQLite reports a full disk as SQLITE_FULL; `PRAGMA max_page_count` makes it report
exactly that when the file reaches a size, so the test needs no tiny filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
from therapygym.store import RunStore, StoreError


def _session(session_id: str, size: int) -> Transcript:
    return Transcript(
        session_id=session_id, run_id="r", profile_id="p", therapist="t", patient="x",
        status=SessionStatus.COMPLETED,
        turns=[Turn(id=f"{session_id}:{i}", index=i, speaker="patient", text="w" * size)
               for i in range(4)],
    )  # fmt: skip


def _score(i: int) -> ScoreRecord:
    return ScoreRecord(
        score_id=f"x{i}", session_id="kept", judge="j", rubric_id="ctrs", rubric_version="1",
        prompt_fingerprint="f", sample=0, raw_outputs=["r" * 20_000],
    )  # fmt: skip


def _fill(store: RunStore) -> None:
    """Cap the file at its current size, as a disk with no space left would."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_one_line_and_nothing_is_half_saved(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    store.ensure_run("r", {})
    store.save_session(_session("kept", 10))
    _fill(store)
    writes = {
        "save_session": lambda: store.save_session(_session("big", 20_000)),
        "save_scores": lambda: store.save_scores([_score(i) for i in range(4)]),
        "add_provenance": lambda: store.add_provenance("r", "k", {"v": "p" * 80_000}),
        "ensure_run": lambda: store.ensure_run("r2" + "n" * 80_000, {"x": "y" * 80_000}),
    }
    for name, write in writes.items():
        with pytest.raises(StoreError, match=r"s\.sqlite: the disk is full; nothing of this"):
            write()
        assert not store._db.in_transaction, name
    assert [t.session_id for t in store.sessions("r")] == ["kept"]
    assert store.scores("r") == [] and "k" not in store.run("r").provenance
    store._db.execute("PRAGMA max_page_count = 1073741823")  # room again: it resumes
    store.save_session(_session("big", 20_000))
    assert {t.session_id for t in store.sessions("r")} == {"kept", "big"}
