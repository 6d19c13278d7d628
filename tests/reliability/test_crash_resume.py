"""`eval` killed with SIGKILL at random points, several times, then finished by resuming.

The final store must hold exactly what an uninterrupted `eval` of the same plan stores
(the same session ids, turns and scores), the response cache the same outputs, and both
SQLite files must pass their integrity checks. What was stored before a kill must come
through every later resume untouched.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from judges.scripted import conversation_replier

from therapygym.patients.library import load_profiles
from therapygym.store import RunStore

PROFILES = [p.id for p in load_profiles()[:6]]
SESSIONS = len(PROFILES) * 2
KILLS_WHILE_RUNNING = 2
KILLS_WHILE_JUDGING = 2


def progress(store_path: Path) -> tuple[int, int]:
    """(sessions, score rows) committed so far; (0, 0) before the store has its tables."""
    if not store_path.exists():
        return 0, 0
    try:
        with sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True) as db:
            sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            scores = db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    except sqlite3.OperationalError:
        return 0, 0
    return sessions, scores


def eval_args(tmp_path: Path, name: str, models: Path) -> list[str]:
    return [
        sys.executable, "-m", "therapygym", "eval",
        "--therapist", "bot", "--patient-model", "bot", "--judge", "bot",
        "--patients", ",".join(PROFILES), "--samples", "2", "--max-turns", "6",
        "--rubric", "ctrs,safety", "--concurrency", "3", "--run-id", "crashy",
        "--models-file", str(models),
        "--store", str(tmp_path / f"{name}.sqlite"), "--cache", str(tmp_path / f"{name}.cache"),
    ]  # fmt: skip


def stored(store_path: Path) -> dict[str, Any]:
    """Sessions and scores as stored, every field included."""
    store = RunStore(store_path, read_only=True)
    out = {
        "sessions": {t.session_id: t.model_dump(mode="json") for t in store.sessions("crashy")},
        "scores": {r.score_id: r.model_dump(mode="json") for r in store.scores("crashy")},
    }
    store.close()
    return out


def without_timings(data: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on when (or whether from the cache) a call was answered."""
    sessions = {}
    for sid, t in data["sessions"].items():
        t = {k: v for k, v in t.items() if k not in ("started_at", "wall_s")}
        t["turns"] = [
            {k: v for k, v in turn.items() if k not in ("latency_s", "cached")}
            for turn in t["turns"]
        ]
        sessions[sid] = t
    return {"sessions": sessions, "scores": data["scores"]}


def cached_outputs(cache_path: Path) -> dict[str, str]:
    with sqlite3.connect(cache_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT key, completion FROM responses").fetchall()
    return {key: json.loads(completion)["text"] for key, completion in rows}


def test_eval_killed_four_times_ends_like_an_uninterrupted_eval(
    tmp_path: Path, openai_server: Any
) -> None:
    server = openai_server(conversation_replier(), latency_s=0.02)
    models = tmp_path / "models.yaml"
    models.write_text(
        f"models:\n  bot:\n    backend: openai\n    model: fake-model\n"
        f"    base_url: {server.base_url}\n"
    )
    env = {**os.environ, "COLUMNS": "200"}

    reference = subprocess.run(
        eval_args(tmp_path, "reference", models), env=env, capture_output=True, timeout=300
    )
    assert reference.returncode == 0, reference.stderr.decode()
    expected = stored(tmp_path / "reference.sqlite")
    score_rows = len(expected["scores"])
    assert len(expected["sessions"]) == SESSIONS and score_rows > 0

    # Kill points: a number of committed rows (sessions, then score rows) to wait for,
    # drawn at random from the running phase and from the judging phase.
    rng = random.Random(20261123)
    targets = sorted(rng.sample(range(1, SESSIONS), KILLS_WHILE_RUNNING)) + sorted(
        rng.sample(range(SESSIONS + 1, SESSIONS + score_rows), KILLS_WHILE_JUDGING)
    )
    args = eval_args(tmp_path, "crashy", models)
    store_path = tmp_path / "crashy.sqlite"
    kills: list[tuple[int, int]] = []
    before: dict[str, Any] = {"sessions": {}, "scores": {}}
    for target in targets:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while sum(progress(store_path)) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "no progress towards the kill point"
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
        kills.append(progress(store_path))
        now = stored(store_path)
        for kind in ("sessions", "scores"):  # earlier work is never rewritten by a resume
            for key, value in before[kind].items():
                if kind == "sessions" or value["error"] is None:
                    assert now[kind][key] == value
        before = now

    assert any(s < SESSIONS for s, _ in kills) and any(sc > 0 for _, sc in kills), kills
    finished = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{kills[-1][0]} already done" in finished.stdout

    got = stored(store_path)
    assert without_timings(got) == without_timings(expected)
    for kind in ("sessions", "scores"):
        for key, value in before[kind].items():
            assert got[kind][key] == value
    store = RunStore(store_path)
    assert store.integrity_check() == "ok"
    store.close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == SESSIONS * 6
        assert db.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == score_rows
    assert cached_outputs(tmp_path / "crashy.cache") == cached_outputs(tmp_path / "reference.cache")
