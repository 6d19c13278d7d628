"""A planted API key never reaches an artefact: not the store, the cache, a log, a report,
an export, or an error message.

The key is used for real (the local server receives it, from an `openai:` spec and from an
HTTP chatbot's header) and the server quotes it back in 401 errors, as some gateways do,
so the paths where a key is most likely to leak (a failed call's recorded cause, the CLI's
error line) are exercised. Every file the commands leave behind, SQLite side files
included, and everything they print is then searched for the key.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from judges.scripted import conversation_replier

from therapygym.patients.library import load_profiles
from therapygym.store import RunStore

KEY_ENV = "THERAPYGYM_TEST_PLANTED_KEY"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def readable_text(path: Path) -> str:
    """A file's bytes as text, plus, for Parquet (whose pages may be compressed), its rows."""
    text = path.read_bytes().decode("latin-1")
    if path.suffix == ".parquet":
        text += str(pq.read_table(path).to_pylist())
    return text


def test_a_planted_key_reaches_no_artefact(tmp_path: Path, openai_server: Any) -> None:
    key = f"sk-planted-{uuid.uuid4().hex}"
    # 401s quoting the key hit the first calls; 500s after them are retried.
    server = openai_server(conversation_replier(), fault_script=["401", "401", "500", "401"])
    bot = tmp_path / "bot.yaml"
    bot.write_text(
        yaml.safe_dump(
            {
                "url": f"{server.base_url}/chat/completions",
                "headers": {"Authorization": f"Bearer {{env:{KEY_ENV}}}"},
                "request": {"model": "bot", "messages": "{messages}"},
                "response_path": "choices[0].message.content",
            }
        )
    )
    spec = (
        f"openai:fake-model?base_url={server.base_url}&api_key_env={KEY_ENV}"
        "&backoff_initial_s=0.01&backoff_max_s=0.05"
    )
    env = {
        **os.environ,
        KEY_ENV: key,
        "COLUMNS": "200",
        "THERAPYGYM_STORE": str(tmp_path / "results" / "store.sqlite"),
        "THERAPYGYM_CACHE": str(tmp_path / "cache" / "responses.sqlite"),
    }
    patients = ",".join(p.id for p in load_profiles()[:2])
    evaluate = (
        "eval", "--therapist", spec, "--therapist", f"http:{bot}", "--patient-model", spec,
        "--judge", spec, "--patients", patients, "--max-turns", "4", "--rubric", "ctrs,safety",
        "--run-id", "secret", "--concurrency", "1", "-o", str(tmp_path / "summary.json"),
    )  # fmt: skip
    runs = [
        cli("models", "check", spec, env=env),  # a 401 at once: the CLI's error line
        first := cli(*evaluate, env=env),  # the rest of the 401s fail sessions for good
        cli(*evaluate, env=env),  # the resume retries them
        cli("runs", "list", env=env),
        cli("runs", "show", "secret", env=env),
        cli("runs", "export", "secret", "-o", str(tmp_path / "t.jsonl"), env=env),
        cli("runs", "export", "secret", "-o", str(tmp_path / "s.csv"), "--content", "scores",
            "--format", "csv", env=env),
        cli("runs", "export", "secret", "-o", str(tmp_path / "x.parquet"), "--content",
            "sessions", "--format", "parquet", env=env),
        cli("runs", "export", "secret", "-o", str(tmp_path / "hf"), "--format", "hf", env=env),
        cli("report", "secret", "-o", str(tmp_path / "report.html"), env=env),
        cli("cache", "stats", env=env),
    ]  # fmt: skip
    assert runs[0].returncode == 2 and "HTTP 401" in runs[0].stderr and "***" in runs[0].stderr
    assert all(r.returncode == 0 for r in runs[2:]), [r.stderr for r in runs[2:]]
    assert "failed" in first.stdout

    # The key was really used, by both backends, and its echo really was recorded, masked.
    assert hashlib.sha256(key.encode()).hexdigest() in server.key_digests
    assert server.fault_counts["401"] == 3
    store = RunStore(tmp_path / "results" / "store.sqlite", read_only=True)
    assert all(t.status.value == "completed" for t in store.sessions("secret"))
    store.close()
    assert "Incorrect API key provided: ***" in first.stdout + first.stderr

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"store.sqlite-wal", "responses.sqlite", "report.html", "x.parquet"} <= names
    leaks = [str(p) for p in files if p != bot and key in readable_text(p)]
    assert leaks == []
    for r in runs:
        assert key not in r.stdout and key not in r.stderr
