"""Work that failed for good fails the command (issue 16, item 8).

`--fail-on-error` has Inspect AI's meaning (any, never, a count, a fraction; default any)
and one implementation (`therapygym.failure`, `cli/output.py`) behind `run`, `judge`,
`eval`, `probe` and `calibrate`. A breach exits with status 3 (bad input stays 2) and one
line that says how much failed of how much and how to retry it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from clirun import cli

from therapygym.calibration.bench import (
    BenchRating,
    build_bench,
    ctrs_item_ids,
    write_bench_jsonl,
)
from therapygym.failure import FailurePolicy, Tally
from therapygym.patients.library import load_profiles
from therapygym.store import RunStore

PATIENTS = ",".join(p.id for p in load_profiles()[:2])
DEAD = "openai:m?base_url=http://127.0.0.1:9/v1&max_retries=0"  # nothing listens on port 9
PROSE = "I refuse to answer in JSON."  # what a judge that never gives valid JSON says
ITEMS = ctrs_item_ids()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ---- the policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "failed", "total", "fails"),
    [
        ("any", 0, 10, False),
        ("any", 1, 10, True),
        ("never", 10, 10, False),
        ("3", 2, 10, False),
        ("3", 3, 10, True),  # a count: N or more
        ("1", 1, 100, True),
        ("1.0", 1, 100, True),  # 1.0 is the count 1, as in Inspect
        ("0.25", 2, 10, False),
        ("0.25", 3, 10, True),  # a fraction: at least that share
        ("0.5", 1, 2, True),
        ("0.5", 0, 0, False),  # nothing to do, nothing failed
    ],
)
def test_the_policy_has_inspects_meaning(text: str, failed: int, total: int, fails: bool) -> None:
    policy = FailurePolicy.parse(text)
    assert policy.breached_by(Tally("sessions", failed, total)) is fails
    assert str(policy) == text.removesuffix(".0")


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "lots", "", "nan", "inf", "true"])
def test_a_policy_that_means_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="give any, never, a count"):
        FailurePolicy.parse(text)


def test_each_kind_of_work_is_held_to_the_limit_on_its_own() -> None:
    two = FailurePolicy.parse("2")
    sessions, units = Tally("sessions", 1, 4), Tally("judgement units", 1, 12)
    assert two.verdict([sessions, units]) is None  # 2 failures, but 1 of each kind
    units = Tally("judgement units", 2, 12)
    # the verdict names every kind that failed, not only the one over the limit
    assert two.verdict([sessions, units]) == (
        "1 of 4 sessions failed and 2 of 12 judgement units failed"
    )
    assert two.verdict([Tally("sessions", 0, 4), units]) == "2 of 12 judgement units failed"


# ---- the commands ----------------------------------------------------------------------


def test_run_with_the_patient_server_down_exits_3_and_says_how_to_retry(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    args = ("run", "--therapist", "rule-based", "--patient-model", DEAD, "--patients",
            PATIENTS, "--max-turns", "4", "--store", str(store), "--no-cache")  # fmt: skip
    code, out, err = cli(*args)
    assert code == 3, err
    run_id = re.search(r"run (\S+): 2 sessions planned", out).group(1)  # type: ignore[union-attr]
    # a run named by the command resumes only under that name: the hint gives it
    assert error_lines(err) == [
        f"error: 2 of 2 sessions failed (--fail-on-error any); rerun the same command with "
        f"--run-id {run_id} to retry them"
    ]
    assert "Traceback" not in err
    heads = RunStore(store, read_only=True).session_heads(run_id)
    assert [h.status.value for h in heads] == ["failed", "failed"]  # kept, with their cause

    for opt_out in (("--fail-on-error", "never"), ("--no-fail-on-error",)):
        code, _, err = cli(*args, "--run-id", "kept-going", *opt_out)
        assert code == 0 and not error_lines(err), err


@pytest.mark.parametrize(
    ("policy", "code"),
    [(None, 3), ("1", 3), ("2", 0), ("0.5", 3), ("0.6", 0), ("never", 0)],
)
def test_a_count_or_a_fraction_sets_how_much_may_fail(
    tmp_path: Path, openai_server: Any, server_spec: Any, policy: str | None, code: int
) -> None:
    # one session at a time; the first patient call gets a 500 and is not retried: 1 of 2
    server = openai_server("I feel stuck.", fault_script=["500"])
    args = ["run", "--therapist", "rule-based", "--patient-model",
            server_spec(server, max_retries=0), "--patients", PATIENTS, "--max-turns", "4",
            "--concurrency", "1", "--run-id", "half", "--store", str(tmp_path / "s.sqlite"),
            "--no-cache"]  # fmt: skip
    if policy is not None:
        args += ["--fail-on-error", policy]
    got, out, err = cli(*args)
    assert "2 sessions planned, 0 already done, 1 completed, 1 failed" in out
    assert got == code, err
    if code:
        assert error_lines(err) == [
            f"error: 1 of 2 sessions failed (--fail-on-error {policy or 'any'}); "
            "rerun the same command to retry them"
        ]


def test_judge_whose_every_unit_is_invalid_json_exits_3(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    store = str(tmp_path / "s.sqlite")
    patient = server_spec(openai_server("I feel stuck."))
    code, _, err = cli("run", "--therapist", "rule-based", "--patient-model", patient,
                       "--patients", PATIENTS, "--max-turns", "4", "--run-id", "r",
                       "--store", store, "--no-cache")  # fmt: skip
    assert code == 0, err
    judge = server_spec(openai_server(PROSE), max_retries=0)
    args = ("judge", "r", "--judge", judge, "--store", store, "--no-cache")
    code, out, err = cli(*args)
    assert "judging: 6 units, 0 already done, 0 judged, 6 failed" in out  # 2 sessions x 3
    assert code == 3, err
    assert error_lines(err) == [
        "error: 6 of 6 judgement units failed (--fail-on-error any); "
        "rerun the same command to retry them"
    ]
    code, _, err = cli(*args, "--fail-on-error", "never")
    assert code == 0, err


def test_eval_names_each_kind_of_work_that_failed(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    # the first patient call fails (1 of 2 sessions); the judge never answers in JSON
    patient = server_spec(openai_server("I feel stuck.", fault_script=["500"]), max_retries=0)
    judge = server_spec(openai_server(PROSE), max_retries=0)
    code, _, err = cli("eval", "--therapist", "rule-based", "--patient-model", patient,
                       "--judge", judge, "--rubric", "ctrs", "--patients", PATIENTS,
                       "--max-turns", "4", "--concurrency", "1", "--run-id", "both",
                       "--store", str(tmp_path / "s.sqlite"), "--no-cache")  # fmt: skip
    assert code == 3, err
    assert error_lines(err) == [
        "error: 1 of 2 sessions failed and 1 of 1 judgement units failed "
        "(--fail-on-error any); rerun the same command to retry them"
    ]


def test_probe_shares_the_policy(tmp_path: Path, openai_server: Any, server_spec: Any) -> None:
    judge = server_spec(openai_server(PROSE), max_retries=0)
    args = ("probe", "escalation", "--therapist", "rule-based", "--judge", judge,
            "--store", str(tmp_path / "s.sqlite"), "--no-cache")  # fmt: skip
    code, _, err = cli(*args)
    assert code == 3, err
    [line] = error_lines(err)
    assert re.fullmatch(
        r"error: (\d+) of \1 judgement units failed \(--fail-on-error any\); "
        r"rerun the same command to retry them",
        line,
    ), line
    code, _, err = cli(*args, "--fail-on-error", "1.0", "--no-fail-on-error")
    assert code == 2 and "not both" in err  # one of the two would be ignored


def test_calibrate_shares_the_policy(tmp_path: Path, openai_server: Any, server_spec: Any) -> None:
    talk = [
        {"speaker": "patient", "text": "I have not been sleeping."},
        {"speaker": "therapist", "text": "Tell me more about that."},
    ]
    bench = build_bench(
        "tiny",
        [
            BenchRating(
                dialogue_id=f"d{i}", rater="expert", transcript=talk, ctrs=dict.fromkeys(ITEMS, i)
            )
            for i in range(3)
        ],
    )
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(bench, path)
    judge = server_spec(openai_server(PROSE), max_retries=0)
    code, out, err = cli("calibrate", "--bench", str(path), "--judge", judge, "--resamples",
                         "100", "--recalibrate", "none", "--store", str(tmp_path / "s.sqlite"),
                         "-o", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    assert code == 3, err
    assert "wrote" in out  # what could be measured is still written
    assert error_lines(err) == [
        "error: 3 of 3 judgement units failed (--fail-on-error any); "
        "rerun the same command to retry them"
    ]


@pytest.mark.parametrize("value", ["0", "1.5", "lots"])
def test_a_bad_value_is_a_usage_error(value: str) -> None:
    code, _, err = cli("run", "--therapist", "rule-based", "--fail-on-error", value)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(
        f"error: Invalid value for '--fail-on-error': '{value}': give any, never, a count of "
        "failed units (1 or more) or a fraction of them (between 0 and 1) (see '"
    )
