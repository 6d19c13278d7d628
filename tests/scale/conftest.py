"""One small evaluation made twice against the local server, for the shard and merge tests:
in one process (`reference`) and as three shards, each with its own store and cache.
Made once per test session; tests that change a store copy it first."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clirun import cli
from judges.scripted import conversation_replier

from therapygym.patients.library import load_profiles
from therapygym.store import RunStore
from therapygym.testing.openai_server import FakeOpenAIServer

RUN_ID = "sharded"
PROFILES = [p.id for p in load_profiles()[:6]]
SHARDS = 3


@dataclass
class Sharded:
    """The reference store, the three shard stores, and how to make more of the same run."""

    server: FakeOpenAIServer
    models: Path
    reference: Path
    shards: list[Path]
    folder: Path

    def eval_args(self, store: Path, *extra: str) -> list[str]:
        """`eval` of the run (without the program name), into `store` with its own cache."""
        return [
            "eval", "--therapist", "bot", "--therapist", "rule-based", "--patient-model", "bot",
            "--judge", "bot", "--patients", ",".join(PROFILES), "--samples", "1",
            "--max-turns", "4", "--rubric", "ctrs,safety", "--concurrency", "4",
            "--run-id", RUN_ID, "--models-file", str(self.models),
            "--store", str(store), "--cache", str(store.with_suffix(".cache")), *extra,
        ]  # fmt: skip


@pytest.fixture(scope="session")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharded]:
    folder = tmp_path_factory.mktemp("sharded")
    server = FakeOpenAIServer(conversation_replier(), latency_s=0.005).start()
    models = folder / "models.yaml"
    models.write_text(
        f"models:\n  bot:\n    backend: openai\n    model: fake-model\n"
        f"    base_url: {server.base_url}\n"
    )
    made = Sharded(server, models, folder / "reference.sqlite", [], folder)
    ran = cli(*made.eval_args(made.reference))
    assert ran.code == 0, ran.stderr
    for k in range(SHARDS):
        store = folder / f"shard{k}.sqlite"
        ran = cli(*made.eval_args(store, "--shard", f"{k}/{SHARDS}"))
        assert ran.code == 0, ran.stderr
        made.shards.append(store)
    yield made
    server.stop()


def stored(store_path: Path, run_id: str = RUN_ID) -> dict[str, Any]:
    """A run as stored: its config, sessions with turns and scores, without what depends
    on when (or whether from the cache) a call was answered."""
    store = RunStore(store_path, read_only=True)
    sessions = {}
    for t in store.sessions(run_id):
        data = t.model_dump(mode="json", exclude={"started_at", "wall_s"})
        data["turns"] = [
            {k: v for k, v in turn.items() if k not in ("latency_s", "cached")}
            for turn in data["turns"]
        ]
        sessions[t.session_id] = data
    out = {
        "config": store.run(run_id).config,
        "sessions": sessions,
        "scores": {r.score_id: r.model_dump(mode="json") for r in store.scores(run_id)},
    }
    store.close()
    return out


def table_dump(store_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store's four tables, as they are (for "changes nothing")."""
    with sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("runs", "sessions", "turns", "scores")
        }
