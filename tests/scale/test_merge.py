"""`runs merge`: three shards merged equal the run made in one process; merging again, or
into a store that holds part of it, changes nothing; a shard killed with SIGKILL resumes
and still merges to the same; stores of different configs are refused in one line."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from clirun import cli
from conftest import RUN_ID, SHARDS, Sharded, stored, table_dump
from judges.scripted import conversation_replier

from therapygym.merge import MERGED_FROM, merge_stores
from therapygym.shards import Shard
from therapygym.store import RunStore


def test_three_shards_merged_equal_one_process(sharded: Sharded, tmp_path: Path) -> None:
    reference = stored(sharded.reference)
    assert len(reference["sessions"]) == 12 and reference["scores"]
    parts = [stored(path) for path in sharded.shards]
    for k, part in enumerate(parts):  # each shard ran its own sessions, and no other
        shard = Shard(k, SHARDS)
        assert part["config"] == {**reference["config"], "shard": str(shard)}
        assert part["sessions"] and all(shard.holds(sid) for sid in part["sessions"])
        assert {r["session_id"] for r in part["scores"].values()} == set(part["sessions"])

    merged = tmp_path / "merged.sqlite"
    ran = cli("runs", "merge", *map(str, sharded.shards), "-o", str(merged))
    assert ran.code == 0, ran.stderr
    scores = len(reference["scores"])
    assert (
        f"merged 3 stores into {merged}: runs 1 copied, 2 already there; sessions 12 copied, "
        f"0 already there; scores {scores} copied, 0 already there; integrity ok"
    ) in " ".join(ran.stdout.split())
    assert stored(merged) == reference  # same config, session ids, turns and scores

    store = RunStore(merged, read_only=True)
    info = store.run(RUN_ID)
    store.close()
    assert info.provenance[MERGED_FROM] == {
        str(path.resolve()): f"{k}/{SHARDS}" for k, path in enumerate(sharded.shards)
    }
    assert info.provenance["therapygym"]  # the shards' own provenance is kept
    # the merged store is the whole run: resuming it unsharded finds nothing to do
    calls = len(sharded.server.requests)
    again = cli(*sharded.eval_args(merged))
    assert again.code == 0, again.stderr
    assert "12 already done" in again.stdout and len(sharded.server.requests) == calls
    assert stored(merged) == reference


def test_merging_twice_changes_nothing(sharded: Sharded, tmp_path: Path) -> None:
    merged = tmp_path / "merged.sqlite"
    first = merge_stores(sharded.shards, merged)
    before = table_dump(merged)
    second = merge_stores(sharded.shards, merged)
    assert table_dump(merged) == before
    assert second.counts == {
        "runs already there": SHARDS,
        "sessions already there": first.counts["sessions copied"],
        "scores already there": first.counts["scores copied"],
    }
    assert second.integrity == "ok" and second.missing == {RUN_ID: []}


def test_a_partial_merge_says_which_shards_are_missing_and_completes(
    sharded: Sharded, tmp_path: Path
) -> None:
    merged = tmp_path / "merged.sqlite"
    ran = cli("runs", "merge", str(sharded.shards[2]), "-o", str(merged))
    assert ran.code == 0, ran.stderr
    assert f"run {RUN_ID}: shards 0/3, 1/3 are not merged yet" in ran.stdout
    rest = merge_stores(sharded.shards, merged)  # shard 2 again: already there
    assert rest.missing == {RUN_ID: []}
    assert rest.counts["sessions already there"] == len(stored(sharded.shards[2])["sessions"])
    assert stored(merged) == stored(sharded.reference)


def test_a_finished_session_replaces_a_failed_one(sharded: Sharded, tmp_path: Path) -> None:
    """A store that holds a session as failed (merged before the shard's resume retried
    it) takes the finished copy, with its turns and scores, when merged again."""
    merged = tmp_path / "merged.sqlite"
    merge_stores(sharded.shards[:1], merged)
    with sqlite3.connect(merged) as db:
        sid = db.execute("SELECT session_id FROM sessions ORDER BY 1").fetchone()[0]
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM scores WHERE session_id = ?", (sid,))
        db.execute("DELETE FROM turns WHERE session_id = ? AND idx > 0", (sid,))
        db.execute(
            "UPDATE sessions SET status = 'failed', error = 'boom', n_turns = 1"
            " WHERE session_id = ?",
            (sid,),
        )
    result = merge_stores(sharded.shards, merged)
    assert result.counts["sessions replaced"] == 1
    assert stored(merged) == stored(sharded.reference)


def test_stores_of_different_configs_are_refused_in_one_line(
    sharded: Sharded, tmp_path: Path
) -> None:
    other = tmp_path / "other.sqlite"
    ran = cli(*sharded.eval_args(other, "--shard", "1/3", "--max-turns", "2"))
    assert ran.code == 0, ran.stderr
    merged = tmp_path / "merged.sqlite"
    ran = cli("runs", "merge", str(sharded.shards[0]), str(other), "-o", str(merged))
    assert ran.code == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert f"run '{RUN_ID}' has another config in {other}" in lines[0]
    assert "field 'session.max_turns' is 2" in lines[0] and "and 4 in" in lines[0]
    assert not merged.exists()  # refused before anything is written

    # an output that already holds the run under another config is refused the same way
    shutil.copy(other, merged)
    RunStore(merged).close()
    with sqlite3.connect(merged) as db:  # make it a merged (unsharded) store of that run
        config = db.execute("SELECT config FROM runs").fetchone()[0]
        db.execute("UPDATE runs SET config = ?", (config.replace(',"shard":"1/3"', ""),))
    before = table_dump(merged)
    ran = cli("runs", "merge", str(sharded.shards[0]), "-o", str(merged))
    assert ran.code == 2 and "field 'session.max_turns' is 4" in ran.stderr
    assert table_dump(merged) == before


def test_bad_merge_arguments_are_one_line(sharded: Sharded, tmp_path: Path) -> None:
    out = tmp_path / "out.sqlite"
    cases = {
        ("runs", "merge", str(sharded.shards[0]), "-o", str(sharded.shards[0])): "is the output",
        ("runs", "merge", str(tmp_path / "none.sqlite"), "-o", str(out)): "no store at",
        ("runs", "merge", str(sharded.shards[0]), "-o", str(sharded.shards[1])): "holds run",
        ("runs", "merge", str(sharded.shards[0]), "-o", str(tmp_path)): "-o",
    }
    for args, expected in cases.items():
        ran = cli(*args)
        assert ran.code == 2, (args, ran)
        assert len(ran.stderr.strip().splitlines()) == 1 and expected in ran.stderr, ran.stderr
    assert not out.exists()


def _sessions_in(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    except sqlite3.OperationalError:  # before the store has its tables
        return 0


def test_a_shard_killed_mid_run_resumes_and_the_merge_is_unchanged(
    sharded: Sharded, tmp_path: Path, openai_server: Any
) -> None:
    reference = stored(sharded.reference)
    # the same replies, slower (models files are not part of a run's config), so that the
    # kill falls between two sessions
    slow = openai_server(conversation_replier(), latency_s=0.05)
    sharded = replace(sharded, models=tmp_path / "slow.yaml")
    sharded.models.write_text(
        f"models:\n  bot:\n    backend: openai\n    model: fake-model\n"
        f"    base_url: {slow.base_url}\n"
    )
    # the shard with the most sessions, so that the kill falls between two of them
    k = max(range(SHARDS), key=lambda i: len(stored(sharded.shards[i])["sessions"]))
    want = len(stored(sharded.shards[k])["sessions"])
    assert want >= 2
    store = tmp_path / f"killed{k}.sqlite"
    args = [sys.executable, "-m", "therapygym", *sharded.eval_args(store, "--shard", f"{k}/3")]
    args[args.index("--concurrency") + 1] = "1"  # one session at a time: a kill mid-run
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _sessions_in(store) < 1 and proc.poll() is None:
        assert time.monotonic() < deadline, "no session was saved"
        time.sleep(0.002)
    assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()  # type: ignore[union-attr]
    saved = _sessions_in(store)
    assert 1 <= saved < want

    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{saved} already done" in resumed.stdout
    shards = [store if i == k else path for i, path in enumerate(sharded.shards)]
    merged = tmp_path / "merged.sqlite"
    assert merge_stores(shards, merged).integrity == "ok"
    assert stored(merged) == reference


def test_a_store_of_the_first_schema_merges_as_it_is(tmp_path: Path) -> None:
    """A version-1 store (no turns.meta, no runs.provenance) is read, never migrated: the
    merge fills in what it lacks with the defaults and leaves the input as it was."""
    from therapygym.store import _SCHEMA

    v1 = _SCHEMA.replace("  meta              TEXT NOT NULL DEFAULT '{}',\n", "").replace(
        ",\n  provenance  TEXT NOT NULL DEFAULT '{}'\n", "\n"
    )
    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(v1)
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO runs VALUES ('old', '2025-01-01T00:00:00+00:00', '{\"samples\":1}')"
        )
        db.execute(
            "INSERT INTO sessions VALUES ('s1','old','p',1,'rule-based','x',0,0,'completed',"
            "NULL,2,NULL,0.0,'{}','{}')"
        )
        for i in range(2):
            db.execute(
                "INSERT INTO turns VALUES (?, 's1', ?, 'patient', 'hi', 0.0, 0, 0, 0, NULL, '[]')",
                (f"s1:{i}", i),
            )
    before = path.read_bytes()
    merged = tmp_path / "merged.sqlite"
    result = merge_stores([path], merged)
    assert result.counts == {"runs copied": 1, "sessions copied": 1}
    assert path.read_bytes() == before
    store = RunStore(merged, read_only=True)
    (session,) = store.sessions("old")
    assert [t.meta for t in session.turns] == [{}, {}]
    assert store.run("old").provenance == {MERGED_FROM: {str(path.resolve()): None}}
    store.close()


def test_a_session_made_twice_keeps_the_first_and_its_own_scores(
    sharded: Sharded, tmp_path: Path
) -> None:
    """The one-process store and a shard of the same run hold the same session ids made by
    different attempts (other start times): merged into one, the sessions there first
    stay, and the shard's scores, which judged its own texts, are not copied onto them."""
    merged = tmp_path / "merged.sqlite"
    merge_stores([sharded.reference], merged)
    with sqlite3.connect(merged) as db:  # as if merged before its judging was done
        db.execute("DELETE FROM scores")
    before = stored(merged)
    ran = cli("runs", "merge", str(sharded.shards[0]), "-o", str(merged))
    assert ran.code == 0, ran.stderr
    shard = stored(sharded.shards[0])
    n, scores = len(shard["sessions"]), len(shard["scores"])
    assert (
        f"{n} sessions finished here and there by different attempts: kept here's, and not "
        f"the {scores} scores of the other"
    ) in " ".join(ran.stdout.split())
    assert stored(merged) == before and not before["scores"]  # a resume judges them


def test_a_merge_killed_midway_leaves_whole_inputs_and_a_rerun_completes_it(
    sharded: Sharded, tmp_path: Path
) -> None:
    """SIGKILL once the first input is committed (wherever that lands: each input is one
    transaction, so the output holds every shard whole or not at all), then the merge
    again: the same store as a merge never interrupted."""
    merged = tmp_path / "merged.sqlite"
    args = [sys.executable, "-m", "therapygym", "runs", "merge", *map(str, sharded.shards)]
    proc = subprocess.Popen([*args, "-o", str(merged)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _sessions_in(merged) == 0 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(merged)  # recovers what the killed merge committed
    assert store.integrity_check() == "ok"
    have = {t.session_id for t in store.sessions(RUN_ID)} if store.runs() else set()
    scored = {r.session_id for r in store.scores(RUN_ID)} if store.runs() else set()
    store.close()
    for path in sharded.shards:
        part = stored(path)
        assert have & set(part["sessions"]) in (set(), set(part["sessions"]))
        assert scored & set(part["sessions"]) in (set(), set(part["sessions"]))
    ran = subprocess.run([*args, "-o", str(merged)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert stored(merged) == stored(sharded.reference)
