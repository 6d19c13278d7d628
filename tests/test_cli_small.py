"""Small things a user reads (issue 16, item 12): help text, `models list`, and the judge
failure lines a run prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clirun import subprocess_cli as cli

from therapygym.judges.base import JudgeSettings
from therapygym.judges.ctrs import CTRSJudge
from therapygym.judges.rubric import builtin_rubric
from therapygym.records import SessionStatus, Transcript, Turn


def test_train_help_names_the_train_extra() -> None:
    """Rich markup would take `[train]` for a style tag and print 'judges ()'."""
    shown = cli("train", "--help")
    assert shown.returncode == 0 and "safety judges ([train])." in shown.stdout


@pytest.mark.parametrize("command", [(), ("run",), ("eval",), ("train",), ("runs", "export")])
def test_flags_show_no_value_placeholder(command: tuple[str, ...]) -> None:
    shown = cli(*command, "--help")
    assert shown.returncode == 0
    flags = [line for line in shown.stdout.splitlines() if "--help" in line or "--no-cache" in line]
    assert flags and not any("<bool>" in line for line in flags), flags
    assert "<path>" in shown.stdout or not command  # options that take a value keep theirs


def test_models_list_names_every_backend() -> None:
    from therapygym.models import BACKENDS

    shown = cli("models", "list")
    assert shown.returncode == 0
    for name in BACKENDS.names():
        assert BACKENDS.get(name).usage in shown.stdout, name
    assert "http:/path/to/bot.yaml" in shown.stdout and "hf:<dir|file.gguf|smollm2>" in shown.stdout


def _transcript() -> Transcript:
    said = ["I feel low.", "What has been happening?", "Nothing works.", "Tell me more."]
    return Transcript(
        session_id="s-1",
        profile_id="p",
        therapist="t",
        patient="m",
        status=SessionStatus.COMPLETED,
        turns=[
            Turn(id=f"s-1:{i}", index=i, speaker="patient" if i % 2 == 0 else "therapist", text=t)
            for i, t in enumerate(said)
        ],
    )


@pytest.mark.parametrize("mode", ["one_call", "per_item"])
async def test_a_ctrs_failure_names_its_cause_once_and_first(
    mode: str, recording_model: Any
) -> None:
    """Listing all 11 items before the cause pushed the cause past the terminal's line."""
    judge = CTRSJudge(
        recording_model("not json at all"),
        builtin_rubric("ctrs"),
        JudgeSettings(max_attempts=1),
        mode=mode,  # type: ignore[arg-type]
    )
    (rec,) = await judge.score(_transcript())
    assert rec.error == (
        "invalid judge output after 1 attempt(s): it is not valid JSON "
        "(Expecting value at character 0)"
    )


async def test_ctrs_items_that_failed_differently_are_named(recording_model: Any) -> None:
    replies = iter(["[]"])  # the first item gets a JSON list, every other one plain words

    judge = CTRSJudge(
        recording_model(lambda messages: next(replies, "nope")),
        builtin_rubric("ctrs"),
        JudgeSettings(max_attempts=1),
        mode="per_item",
    )
    (rec,) = await judge.score(_transcript())
    first, rest = (rec.error or "").split("; ")
    assert first.startswith("agenda: invalid judge output after 1 attempt(s): it does not match")
    assert rest.startswith("feedback, understanding, ") and rest.endswith(
        ": invalid judge output after 1 attempt(s): it is not valid JSON "
        "(Expecting value at character 0)"
    )


def test_a_judge_failure_line_keeps_its_cause(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """The line `judge` prints for a failed unit ends with why it failed, whole."""
    spec = server_spec(openai_server(["Not JSON, just words."]), max_retries=0)
    store = tmp_path / "s.sqlite"
    ran = cli(
        "run", "--therapist", "rule-based", "--patient-model", spec, "--patients",
        "dep-01-maya", "--max-turns", "2", "--run-id", "r", "--no-cache", store=store,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    judged = cli("judge", "r", "--judge", spec, "--rubric", "ctrs", "--no-cache", store=store)
    (line,) = [line for line in judged.stderr.splitlines() if "judge failure" in line]
    assert line.endswith("it is not valid JSON (Expecting value at character 0)"), line
