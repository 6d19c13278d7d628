"""`therapygym report`, `view` and `runs export` as a user meets them, on a run that the
real judges scored through the local OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from judges.scripted import judge_replier

from therapygym.calibration.bench import safety_label_ids

ENV = {**os.environ, "COLUMNS": "250", "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


@pytest.fixture
def judged_store(tmp_path: Path, openai_server: Any, server_spec: Any) -> Path:
    server = openai_server(judge_replier(score=4, verdict="no", text="I hear <b>you</b>."))
    spec = server_spec(server)
    store = tmp_path / "store.sqlite"
    result = cli(
        "eval", "--therapist", spec, "--therapist", "rule-based", "--patient-model", spec,
        "--judge", spec, "--rubric", "ctrs,safety", "--patients", "gad-01-priya",
        "--max-turns", "4", "--run-id", "cli", "--no-cache", "--store", str(store),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return store


def test_report_and_exports(judged_store: Path, tmp_path: Path) -> None:
    store = ["--store", str(judged_store)]
    out = tmp_path / "out" / "report.html"
    result = cli("report", "cli", "-o", str(out), *store)
    assert result.returncode == 0, result.stderr
    assert f"report written to {out}" in result.stdout
    html = out.read_text()
    assert "I hear &lt;b&gt;you&lt;/b&gt;." in html and "<b>you</b>" not in html
    assert html.count('class="evidence"') >= 2 * 11  # every CTRS item cites a turn
    assert 'id="leaderboard-table"' in html and "rule-based" in html

    hf = tmp_path / "hf"
    result = cli("runs", "export", "cli", "-o", str(hf), "--format", "hf", *store)
    assert result.returncode == 0 and f"wrote 2 sessions to {hf}" in result.stdout
    assert (hf / "data" / "sessions.parquet").exists() and (hf / "README.md").exists()
    scores = tmp_path / "scores.csv"
    result = cli("runs", "export", "cli", "-o", str(scores), "--content", "scores",
                 "--format", "csv", *store)  # fmt: skip
    assert result.returncode == 0 and "wrote 4 score records" in result.stdout
    frame = pd.read_csv(scores)
    assert len(frame) == 2 * (11 + len(safety_label_ids())) and set(frame["rubric_id"]) == {
        "ctrs",
        "safety",
    }
    sessions = tmp_path / "sessions.parquet"
    result = cli("runs", "export", "cli", "-o", str(sessions), "--content", "sessions",
                 "--format", "parquet", *store)  # fmt: skip
    assert result.returncode == 0
    assert list(pd.read_parquet(sessions)["ctrs_total"]) == [44.0, 44.0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("report", "nope"), "no run 'nope'"),
        (("report", "r1", "--calibration", "missing.json"), "missing.json cannot be read"),
        (("report", "r1", "--aggregation", "mode"), "--aggregation 'mode'"),
        (("runs", "export", "r1", "-o", "x", "--format", "xml"), "--format 'xml'"),
        (("runs", "export", "r1", "-o", "x", "--content", "all"), "--content 'all'"),
    ],
)
def test_errors_are_one_line(store_path: Path, args: tuple[str, ...], fragment: str) -> None:
    result = cli(*args, "--store", str(store_path))
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_view_serves_until_interrupted(judged_store: Path, tmp_path: Path) -> None:
    missing = cli("view", "--store", str(tmp_path / "absent.sqlite"))
    assert missing.returncode == 2 and "no store at" in missing.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "therapygym", "view", "--port", "0", "--store", str(judged_store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "therapygym viewer on http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split(" ")[0]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as r:
            assert [run["run_id"] for run in json.loads(r.read())] == ["cli"]
        with urllib.request.urlopen(url + "runs/cli", timeout=30) as r:
            assert r.status == 200 and "rule-based" in r.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
