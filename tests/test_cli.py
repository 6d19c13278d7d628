"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("models", "cache", "demo"):
        assert command in result.stdout


def test_models_check_against_local_server(openai_server: Any, server_spec: Any) -> None:
    server = openai_server(["Hello from the local server."])
    result = run_cli("models", "check", server_spec(server), "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout and " ms" in result.stdout
    assert "Hello from the local server." in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("models", "check", "gpt5"), {}, "unknown model spec 'gpt5'"),
        (("models", "check", "openai:gpt-4o-mini"), {}, "OPENAI_API_KEY is not set"),
        (
            ("models", "check", "openai:m?base_url=http://127.0.0.1:9/v1&api_key_env=K"),
            {},
            "K is not set",
        ),
        (
            ("models", "check", "gguf:/nonexistent/model.gguf"),
            {},
            "GGUF file /nonexistent/model.gguf not found",
        ),
        (
            ("models", "check", "openai:m?base_url=http://127.0.0.1:9/v1&max_retries=0"),
            {},
            "cannot reach http://127.0.0.1:9/v1",
        ),
        (
            ("models", "list", "--models-file", "/nonexistent.yaml"),
            {},
            "models file /nonexistent.yaml: file not found",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(
    args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cache_stats_and_clear(tmp_path: Path, openai_server: Any, server_spec: Any) -> None:
    server = openai_server(["cached reply"])
    cache = str(tmp_path / "c.sqlite")
    assert run_cli("models", "check", server_spec(server), "--cache", cache).returncode == 0
    second = run_cli("models", "check", server_spec(server), "--cache", cache)
    assert "cache" in second.stdout and len(server.requests) == 1
    stats = run_cli("cache", "stats", "--cache", cache)
    assert "1 entries" in stats.stdout and "openai:fake-model@" in stats.stdout
    cleared = run_cli("cache", "clear", "--cache", cache)
    assert "deleted 1" in cleared.stdout
    assert "0 entries" in run_cli("cache", "stats", "--cache", cache).stdout


def test_models_list_shows_embedded_and_named(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  judge: {backend: openai, model: qwen, base_url: 'http://127.0.0.1:8000/v1'}\n"
    )
    result = run_cli("models", "list", "--models-file", str(path))
    assert result.returncode == 0
    assert "local:smollm2" in result.stdout and "judge" in result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    """The README's main job, for real: sessions, judging and the summary, offline."""
    result = subprocess.run(
        [sys.executable, "-m", "therapygym", "demo", "--cache", str(tmp_path / "c.sqlite")],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "not a clinical device" in result.stdout
    assert "4 sessions planned, 0 already done, 4 completed, 0 failed" in result.stdout
    # schema-constrained output from the 135M judge parses: no unit failed
    assert "judging: 8 units, 0 already done, 8 judged, 0 failed" in result.stdout
    assert "Summary of demo" in result.stdout and "rule-based" in result.stdout
    assert "carry no clinical meaning" in result.stdout
    summary = json.loads((tmp_path / "results" / "demo-summary.json").read_text())
    assert {t["therapist"] for t in summary["therapists"]} == {"local:smollm2", "rule-based"}
    assert (tmp_path / "results" / "therapygym.sqlite").exists()
    report = tmp_path / "results" / "demo-report.html"
    assert "report written to results/demo-report.html" in result.stdout
    assert "Leaderboard" in report.read_text() and "rule-based" in report.read_text()
