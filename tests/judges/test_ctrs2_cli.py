"""ctrs@2.0 from the command line (issue 18, items 1 and 2): `--no-examples` on `judge` and
`eval`, a run judged under 1.0 and then 2.0 against the local server, and `calibrate
--examples both`, which judges one bench with and without the skill examples in one command
and reports the two side by side."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from clirun import cli
from scripted import instance

from therapygym.calibration.bench import BenchRating, build_bench, write_bench_jsonl
from therapygym.config import EvalConfig, RunSection
from therapygym.judges.plan import JudgePlan
from therapygym.records import SessionConfig
from therapygym.runner import evaluate
from therapygym.store import RunStore

EXAMPLES_HEADING = "Examples (illustrations, not from this session):"


def _ctrs_requests(server: Any) -> list[str]:
    """The user message of every CTRS judge call the server answered, in order."""
    return [
        b["messages"][1]["content"]
        for b in server.requests
        if "agenda"
        in b.get("response_format", {})
        .get("json_schema", {})
        .get("schema", {})
        .get("properties", {})
    ]


def test_eval_and_judge_take_no_examples() -> None:
    """`--no-examples` is `judge.examples: false` in the resolved config (the default is
    true, as `EvalConfig` says)."""
    for flags, shown in (([], True), (["--no-examples"], False), (["--examples"], True)):
        ran = cli("eval", "--therapist", "rule-based", "--judge", "x", *flags, "--print-config")
        assert ran.code == 0, ran.stderr
        assert yaml.safe_load(ran.stdout)["judge"]["examples"] is shown


def test_a_1_0_run_summarises_under_1_0_and_is_judged_again_under_2_0(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """Judged with ctrs@1.0 the run summarises as before under 1.0; `judge --rubric ctrs
    --no-examples` then adds 2.0 units (new fingerprint, no examples in the prompt), and
    the summary reads 2.0 alone; `judge` with the examples judges again, with them."""
    server = openai_server(
        lambda body: (
            instance(s := body["response_format"]["json_schema"]["schema"], s, 4, "no")
            if body.get("response_format")
            else "I see."
        )
    )
    spec = server_spec(server)
    store = tmp_path / "store.sqlite"
    config = EvalConfig(
        run_id="r",
        run=RunSection(
            therapists=("rule-based",),
            patient_model=spec,
            patients="dep-01-maya",
            session=SessionConfig(max_turns=4),
        ),
        judge=JudgePlan(judges=(spec,), rubrics=("ctrs@1.0",)),
        store=store,
        no_cache=True,
    )
    result = asyncio.run(evaluate(config))
    assert result.summary is not None
    (old,) = result.summary.therapists
    assert old.ctrs_version == "1.0" and old.ctrs_total.mean == 44 and old.ctrs_displaced == {}
    assert all(EXAMPLES_HEADING not in text for text in _ctrs_requests(server))

    asked = len(_ctrs_requests(server))
    out = tmp_path / "summary.json"
    base = ["judge", "r", "--judge", spec, "--rubric", "ctrs", "--store", str(store), "--no-cache"]
    ran = cli(*base, "--no-examples", "-o", str(out))
    assert ran.code == 0, ran.stderr
    new = _ctrs_requests(server)[asked:]
    assert len(new) == 1 and EXAMPLES_HEADING not in new[0] and "Risk: " in new[0]
    (therapist,) = json.loads(out.read_text())["therapists"]
    assert therapist["ctrs_version"] == "2.0" and therapist["ctrs_total"]["mean"] == 44
    assert set(therapist["ctrs_displaced"]) == {
        "agenda", "guided_discovery", "focus_on_key_cognitions", "strategy_for_change",
        "application_of_techniques", "homework",
    }  # fmt: skip
    assert "CTRS 2.0" in ran.stdout and "50-minute-session norm (Beck)" in ran.stdout

    ran = cli(*base)
    assert ran.code == 0, ran.stderr
    (latest,) = _ctrs_requests(server)[asked + 1 :]
    assert EXAMPLES_HEADING in latest
    read = RunStore(store, read_only=True)
    try:
        units = {(r.rubric_version, r.prompt_fingerprint) for r in read.scores("r", "ctrs")}
    finally:
        read.close()
    assert len(units) == 3 and {v for v, _ in units} == {"1.0", "2.0"}


def _bench(path: Path) -> Path:
    """Eight dialogues, two experts each, whose CTRS scores follow a marker the scripted
    judge also follows, so the judge's agreement with them is defined."""
    ratings = []
    for i in range(8):
        good = i % 2 == 0
        transcript = [
            {"speaker": "patient", "text": f"Dialogue {i}: I keep putting off my work."},
            {"speaker": "therapist", "text": "What goes through your mind?" + " [good]" * good},
        ]
        for rater, offset in (("a", 0), ("b", 1)):
            score = (5 if good else 1) + offset - (i % 3 == 0)
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{i}",
                    rater=rater,
                    transcript=transcript if rater == "a" else None,
                    ctrs={"agenda": score, "feedback": score},
                )
            )
    write_bench_jsonl(build_bench("examples", ratings), path)
    return path


def _marked_judge(body: dict[str, Any]) -> Any:
    schema = body["response_format"]["json_schema"]["schema"]
    transcript = body["messages"][1]["content"].split("<transcript>")[1]
    return instance(schema, schema, 5 if "[good]" in transcript else 1, "no")


def test_calibrate_compares_with_and_without_examples_in_one_command(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(_marked_judge)
    spec = server_spec(server)
    bench, out = _bench(tmp_path / "bench.jsonl"), tmp_path / "out"
    ran = cli(
        "calibrate", "--bench", str(bench), "--judge", spec, "--examples", "both",
        "--store", str(tmp_path / "store.sqlite"), "--no-cache", "--resamples", "100",
        "-o", str(out),
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    asked = _ctrs_requests(server)
    assert len(asked) == 16  # 8 dialogues, once with the examples and once without
    assert sum(EXAMPLES_HEADING in text for text in asked) == 8
    assert "CTRS judged with examples" in ran.stdout
    assert "CTRS judged without examples" in ran.stdout
    assert "CTRS with and without skill examples" in ran.stdout
    for folder in ("with-examples", "without-examples"):
        report = json.loads((out / folder / "calibration.json").read_text())
        assert report["judge"]["units"] == 8 and report["judge"]["failed_units"] == 0
    both = json.loads((out / "examples_comparison.json").read_text())["variants"]
    assert set(both) == {"with examples", "without examples"}
    prints = [v["prompt_fingerprints"] for v in both.values()]
    assert len(prints[0]) == 1 and prints[0] != prints[1]
    for variant in both.values():
        assert variant["units"] == 8 and variant["parse_rate"] == 1.0
        assert variant["judge_vs_experts_spearman"]["agenda"]["mean"] > 0.5
    with_tokens = both["with examples"]["prompt_tokens_per_unit"]
    assert with_tokens is not None

    again = cli(
        "calibrate", "--bench", str(bench), "--judge", spec, "--examples", "both",
        "--rubric", "ctrs@1.0", "--store", str(tmp_path / "store.sqlite"), "--no-cache",
    )  # fmt: skip
    assert again.code == 2 and "belong to ctrs@2.0" in again.stderr
    assert len(_ctrs_requests(server)) == 16  # refused before judging anything

    # the versions compare on the same bench and store: 1.0's units are its own
    old = cli(
        "calibrate", "--bench", str(bench), "--judge", spec, "--rubric", "ctrs@1.0",
        "--store", str(tmp_path / "store.sqlite"), "--no-cache", "--resamples", "100",
        "-o", str(tmp_path / "v1"),
    )  # fmt: skip
    assert old.code == 0, old.stderr
    report = json.loads((tmp_path / "v1" / "calibration.json").read_text())
    assert {r["version"] for r in report["judge"]["rubrics"]} == {"1.0"}
    assert report["judge"]["units"] == 8
    assert all(EXAMPLES_HEADING not in text for text in _ctrs_requests(server)[16:])
