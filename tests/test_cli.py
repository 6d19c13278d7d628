"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from judges.scripted import judge_replier

from therapygym.models.spec import resolve_spec
from therapygym.patients.library import load_profiles


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def saved_sessions(store: Path) -> int:
    """Sessions a running command has committed to `store` (0 before it exists)."""
    if not store.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])
        except sqlite3.OperationalError:  # the tables are not made yet
            return 0


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
    assert "failed validation" not in stats.stdout
    from therapygym.models import ResponseCache
    from therapygym.models.types import Completion

    with contextlib.closing(ResponseCache(cache)) as rc:
        rc.reject("k", "m", Completion(text="{bad", model="m"), "not JSON")
    stats = run_cli("cache", "stats", "--cache", cache)
    assert "1 replies failed validation: kept for the record, never served" in stats.stdout
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


def test_judge_summarises_the_judges_it_was_given_and_names_them(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """`judge --judge B` on a run judged by A: the summary is B's alone (combining the
    two is a panel a user asks for), and the printed summary names B (issue 16, item 2)."""
    patient = server_spec(openai_server("I feel stuck."))
    low, high = (server_spec(openai_server(judge_replier(score=s))) for s in (3, 6))
    where = ("--store", str(tmp_path / "s.sqlite"), "--no-cache")
    ran = run_cli("run", "--therapist", "rule-based", "--patient-model", patient, "--patients",
                  load_profiles()[0].id, "--max-turns", "4", "--run-id", "r", *where)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    for name, judge in (("a", low), ("b", high)):
        judged = run_cli("judge", "r", "--judge", judge, "--rubric", "ctrs",
                         "-o", str(tmp_path / f"{name}.json"), *where)  # fmt: skip
        assert judged.returncode == 0, judged.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["judges"] == [resolve_spec(high).label]
    assert [t["ctrs_total"]["mean"] for t in summary["therapists"]] == [66]  # B's 6s only
    assert resolve_spec(high).label in judged.stdout
    assert resolve_spec(low).label not in judged.stdout


def test_report_and_export_keep_the_judges_asked_for_and_a_broken_one_stays_out(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """A run judged by a broken judge (every reply invalid), then by A (3s) and B (6s):
    `runs export --judge` and `report --judge` keep those judges' scores only, so the broken
    judge's errors leave the later summaries; without --judge every judge is one panel, and
    a judge that never scored the run is refused in one line (issue 16, item 2)."""
    patient = server_spec(openai_server("I feel stuck."))
    broken = server_spec(
        openai_server(lambda body: "not json" if body.get("response_format") else "ok")
    )
    low, high = (server_spec(openai_server(judge_replier(score=s))) for s in (3, 6))
    where = ("--store", str(tmp_path / "s.sqlite"), "--no-cache")
    ran = run_cli("run", "--therapist", "rule-based", "--patient-model", patient, "--patients",
                  load_profiles()[0].id, "--max-turns", "4", "--run-id", "r", *where)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    failed = run_cli("judge", "r", "--judge", broken, "--rubric", "ctrs", *where)
    assert failed.returncode == 3, failed.stderr  # its unit failed for good
    for judge in (low, high):
        judged = run_cli("judge", "r", "--judge", judge, "--rubric", "ctrs", *where)
        assert judged.returncode == 0, judged.stderr

    def sessions(*judges: str) -> list[dict[str, Any]]:
        out = tmp_path / f"sessions{len(list(tmp_path.glob('sessions*')))}.jsonl"
        flags = [arg for j in judges for arg in ("--judge", j)]
        done = run_cli("runs", "export", "r", "--content", "sessions", "-o", str(out),
                       *flags, *where[:2])  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in out.read_text().splitlines()]

    (alone,) = sessions(high)
    assert (alone["ctrs_total"], alone["judge_errors"]) == (66, 0)
    (pair,) = sessions(low, high)
    assert (pair["ctrs_total"], pair["judge_errors"]) == (49.5, 0)
    (every,) = sessions()
    assert every["ctrs_total"] == 49.5 and every["judge_errors"] > 0  # the broken one counts

    page = tmp_path / "a.html"
    reported = run_cli("report", "r", "--judge", low, "-o", str(page), *where[:2])
    assert reported.returncode == 0, reported.stderr
    html = page.read_text()
    assert f"Judges: {resolve_spec(low).label}." in html
    assert resolve_spec(high).label not in html and resolve_spec(broken).label not in html

    for command in (["report", "r", "-o", str(tmp_path / "x.html")],
                    ["runs", "export", "r", "-o", str(tmp_path / "x.jsonl")]):  # fmt: skip
        refused = run_cli(*command, "--judge", "openai:nobody", *where[:2])
        assert refused.returncode == 2, refused.stderr
        assert "run 'r' has no scores by judge openai:nobody" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.jsonl").exists()


@pytest.mark.usefixtures("ctrl_c_reaches_children")
def test_ctrl_c_says_what_was_saved_and_how_to_resume(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """SIGINT in the middle of a run: exit 130 with how many sessions the store holds and
    the command that resumes it (the run was named by the command, so with its --run-id);
    that command then does only the rest (issue 16, item 10)."""
    server = openai_server("I feel stuck.", latency_s=0.2)  # 0.4 s a session, one at a time
    store = tmp_path / "s.sqlite"
    patients = ",".join(p.id for p in load_profiles()[:4])
    args = ["run", "--therapist", "rule-based", "--patient-model", server_spec(server),
            "--patients", patients, "--samples", "3", "--max-turns", "6", "--concurrency", "1",
            "--store", str(store), "--no-cache"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "therapygym", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    while saved_sessions(store) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = re.search(r"stopped: (\d+) of 12 sessions of run (\S+) are saved in (\S+)", err)
    assert stopped is not None, err
    saved, run_id = int(stopped.group(1)), stopped.group(2)
    assert 2 <= saved < 12 and saved == saved_sessions(store) and stopped.group(3) == str(store)
    assert err.rstrip().endswith(
        f"interrupted: rerun the same command with --run-id {run_id} to resume; "
        "what is saved is kept"
    )
    assert "Traceback" not in err

    resumed = run_cli(*args, "--run-id", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"12 sessions planned, {saved} already done, {12 - saved} completed" in resumed.stdout
