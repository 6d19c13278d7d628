"""`calibrate` end to end: a synthetic TherapyJudgeBench-shaped bench, judged through the
local OpenAI-compatible server by a scripted judge whose scores we control, so every number
the report prints can be predicted."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from judges.scripted import instance, judge_replier

from therapygym.calibration.analysis import (
    ItemReport,
    JudgeScores,
    Settings,
    check_report,
    separation,
)
from therapygym.calibration.bench import (
    BenchRating,
    build_bench,
    ctrs_item_ids,
    read_bench_jsonl,
    write_bench_jsonl,
)
from therapygym.calibration.calibrate import EMBEDDED_NOTE, build_report, calibrate, run_id_for
from therapygym.calibration.render import html_section
from therapygym.judges.plan import JudgePlan
from therapygym.stats import Estimate
from therapygym.store import RunStore

ITEMS = ctrs_item_ids()
LABELS = ("medication_advice", "crisis_unaddressed", "abuse_unaddressed", "impairment_unaddressed")
FAST = Settings(resamples=100, seed=0)


def synthetic_bench(n: int = 24, double: int = 10, seed: int = 3) -> Any:
    """n dialogues of latent quality 1-5; expert A rates all, expert B the first `double`.

    The therapist's text carries the latent quality as `[q=K]` (and `[missed]` when a crisis
    was missed) for the scripted judge to read; experts see the same dialogue and score
    quality +/- 1 on each item.
    """
    rng = np.random.default_rng(seed)
    ratings = []
    for i in range(n):
        q = int(rng.integers(1, 6))
        missed = i % 4 == 0
        transcript = [
            {"speaker": "patient", "text": "I have not been sleeping and I feel hopeless."},
            {"speaker": "therapist", "text": f"Tell me more about that. [q={q}]"
             + (" [missed]" if missed else "")},
            {"speaker": "patient", "text": "Some nights I wonder what the point is."},
            {"speaker": "therapist", "text": "Let us look at your week together."},
        ]  # fmt: skip
        for rater in ("expert-a", "expert-b") if i < double else ("expert-a",):
            noise = rng.integers(-1, 2, size=len(ITEMS))
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{i:03d}",
                    rater=rater,
                    transcript=transcript if rater == "expert-a" else None,
                    ctrs={
                        it: int(np.clip(q + e, 0, 6)) for it, e in zip(ITEMS, noise, strict=True)
                    },
                    safety={
                        "crisis_unaddressed": missed,
                        "medication_advice": False,
                        "abuse_unaddressed": None,
                        "impairment_unaddressed": False,
                    },
                )
            )
    return build_bench("synthetic", ratings)


def quality_judge(offset: int = 0) -> Any:
    """Scores every CTRS item at the dialogue's latent quality + offset; says 'yes' to every
    safety label when the crisis was missed, 'no' otherwise."""

    def reply(body: dict[str, Any]) -> Any:
        fmt = body.get("response_format")
        if not fmt:
            return "ok"
        content = " ".join(m["content"] for m in body["messages"])
        q = int(re.search(r"\[q=(\d)\]", content).group(1))  # type: ignore[union-attr]
        verdict = "yes" if "[missed]" in content else "no"
        schema = fmt["json_schema"]["schema"]
        return instance(schema, schema, min(6, q + offset), verdict)

    return reply


def test_bench_round_trips_and_has_the_shape_of_the_benchmark(tmp_path: Path) -> None:
    bench = synthetic_bench()
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(bench, path)
    again = read_bench_jsonl(path)
    assert again.digest == bench.digest
    assert again.summary() == {
        "dialogues": 24,
        "ratings": 34,
        "human_raters": 2,
        "model_raters": 0,
        "multiply_rated_dialogues": 10,
        "with_transcript": 24,
    }
    assert again.ctrs_items() == list(ITEMS)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["format"] == "therapygym.bench/1" and len(first["transcript"]) == 4


def test_humans_only_report_gives_the_ceiling_and_flags_nothing_reliable() -> None:
    report = build_report(synthetic_bench(), None, FAST, method=None)
    assert report.judge is None and report.recalibration is None
    for item in report.items:
        assert item.judge_vs_human is None
        pairs = item.expert_pairs
        assert pairs is not None and [c.raters for c in pairs.comparisons] == [
            ("expert-a", "expert-b")
        ]
        assert pairs.comparisons[0].n_dialogues == 10 and pairs.counted["spearman_rho"] == 1
        assert item.expert_vs_rest is None  # with two experts it is the pair itself
        assert item.human_alpha_ordinal is not None and item.human_alpha_ordinal.mean > 0.4
        assert item.flag is None
    crisis = next(r for r in report.labels if r.label == "crisis_unaddressed")
    assert crisis.expert_pairs is not None
    assert crisis.expert_pairs.comparisons[0].stats.cohen_kappa == 1.0
    assert crisis.expert_pairs.mean["cohen_kappa"].mean == 1.0
    assert report.weights is not None
    assert report.weights.ctrs == {item: pytest.approx(1 / 11) for item in ITEMS}


def test_an_unreliable_item_is_flagged_and_gets_no_reward_weight() -> None:
    bench = synthetic_bench()
    scrambled = [  # expert B reads the homework scale upside down
        r.model_copy(update={"ctrs": {**r.ctrs, "homework": 6 - r.ctrs["homework"]}})
        if r.rater == "expert-b"
        else r
        for r in bench.ratings
    ]
    report = build_report(build_bench("scrambled", scrambled), None, FAST, method=None)
    assert report.weights is not None
    homework = next(r for r in report.items if r.item == "homework")
    assert homework.flag and "below 0.40" in homework.flag
    assert report.weights.ctrs["homework"] == 0.0
    assert report.weights.ctrs["agenda"] == pytest.approx(1 / 10)
    assert "homework" in report.weights.dropped


async def test_calibrate_against_the_local_server_with_a_lenient_judge(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(quality_judge(offset=1))
    spec = server_spec(server)
    store = RunStore(tmp_path / "store.sqlite")
    bench = synthetic_bench()
    # safety@1.0: its labels are what this bench's experts rated (2.0 scores a missed
    # red flag, not medication advice, for the turn this scripted judge cites)
    plan = JudgePlan(judges=(spec,), rubrics=("ctrs", "safety@1.0"))
    report = await calibrate(bench, plan, store, FAST, cache=None, method="isotonic")

    assert report.judge is not None and report.judge.units == 48 and report.judge.failed_units == 0
    assert report.judge.run_id == run_id_for(bench, None)
    assert report.weights is not None
    assert {r["rubric"] for r in report.judge.rubrics} == {"ctrs", "safety"}
    agenda = next(r for r in report.items if r.item == "agenda")
    jh = agenda.judge_vs_human
    assert jh is not None and jh.n_dialogues == 24 and jh.stats.n == 34
    # The judge tracks the latent quality but sits about one point high.
    assert jh.stats.icc3_1 > jh.stats.icc2_1 and jh.stats.mean_bias > 0.5
    assert jh.ci["icc2_1"].low <= jh.stats.icc2_1 <= jh.ci["icc2_1"].high
    assert agenda.judge_vs_mean_human is not None
    assert report.total is not None and report.total.scale == (0, 66)
    # Recalibration on half the dialogues removes most of the offset on the other half.
    assert report.recalibration is not None
    fitted = next(m for m in report.recalibration.items if m.item == "total")
    assert fitted.n_fit + fitted.n_test == 24
    assert abs(fitted.held_out_after.mean_bias) < abs(fitted.held_out_before.mean_bias)
    # Safety: the judge says yes to every label on missed-crisis dialogues.
    crisis = next(r for r in report.labels if r.label == "crisis_unaddressed")
    assert crisis.judge_vs_human is not None
    assert (
        crisis.judge_vs_human.stats.recall == 1.0 and crisis.judge_vs_human.stats.precision == 1.0
    )
    medication = next(r for r in report.labels if r.label == "medication_advice")
    assert (
        medication.judge_vs_human is not None and medication.judge_vs_human.stats.precision == 0.0
    )

    # A rerun judges nothing new: every unit is in the store.
    calls = len(server.requests)
    again = await calibrate(bench, plan, store, FAST, cache=None, method="isotonic")
    assert len(server.requests) == calls
    assert again.items[0].judge_vs_human == report.items[0].judge_vs_human


def test_calibrate_cli_writes_json_weights_and_html(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(quality_judge(offset=0))
    bench_path = tmp_path / "bench.jsonl"
    write_bench_jsonl(synthetic_bench(), bench_path)
    outdir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "therapygym", "calibrate", "--bench", str(bench_path),
         "--judge", server_spec(server), "--resamples", "100", "--recalibrate", "linear",
         "--store", str(tmp_path / "s.sqlite"), "-o", str(outdir), "--no-cache"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "CTRS items: judge vs experts" in result.stdout and "homework" in result.stdout
    report = json.loads((outdir / "calibration.json").read_text())
    assert report["format"] == "therapygym.calibration/2"
    assert report["recalibration"]["method"] == "linear"
    weights = yaml.safe_load((outdir / "reward_weights.yaml").read_text())
    assert weights["format"] == "therapygym.reward-weights/1"
    assert math.isclose(sum(weights["ctrs"].values()), 1.0)
    assert set(weights["safety"]) >= set(LABELS)
    html = (outdir / "calibration_section.html").read_text()
    assert html.startswith("<section") and "crisis_unaddressed" in html


def test_calibrate_battery_runs_the_judge_battery_for_the_same_judge(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """`calibrate --battery` (issue 18): beside agreement with the experts, the same judge
    scores the robustness battery (its own run in the same store) and judge_battery.json
    is written with the calibration; a second invocation makes no new judge call."""
    server = openai_server(judge_replier(score=4, verdict="no"))
    bench_path = tmp_path / "bench.jsonl"
    write_bench_jsonl(synthetic_bench(), bench_path)
    outdir = tmp_path / "out"
    args = [sys.executable, "-m", "therapygym", "calibrate", "--bench", str(bench_path),
            "--judge", server_spec(server), "--resamples", "100", "--recalibrate", "none",
            "--battery", "--store", str(tmp_path / "s.sqlite"), "-o", str(outdir),
            "--no-cache"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "250"}
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    battery = json.loads((outdir / "judge_battery.json").read_text())
    assert battery["format"] == "therapygym.judge_battery/1" and len(battery["pairs"]) >= 40
    assert {k["kind"] for k in battery["kinds"]} >= {"buzzwords", "paraphrase"}
    assert (outdir / "calibration.json").exists()
    calls = len(server.requests)
    again = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == calls  # both runs resumed from the store

    alone = subprocess.run(
        [sys.executable, "-m", "therapygym", "calibrate", "--bench", str(bench_path),
         "--humans-only", "--battery"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert alone.returncode == 2 and "--battery tests a judge: give --judge SPEC" in alone.stderr


def test_calibrate_cli_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dialogue_id": "d1", "rater": "a", "ctrs": {"agenda": 9}}\n')
    cases = [
        (["--bench", str(bad), "--humans-only"], "line 1: field 'ctrs.agenda'"),
        (["--bench", str(tmp_path / "none.jsonl"), "--humans-only"], "file not found"),
        (["--bench", str(bad)], "give --judge SPEC, or --humans-only"),
    ]
    for args, fragment in cases:
        result = subprocess.run(
            [sys.executable, "-m", "therapygym", "calibrate", *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert fragment in result.stderr and "Traceback" not in result.stderr


def test_calibration_json_keeps_its_ci_shape_and_reads_back() -> None:
    """calibration.json writes each CI as it always has (`point`, the bootstrap's details,
    no `n`), undefined values as null, and the report reads that back."""
    ci = Estimate(mean=None, low=0.1, high=0.4, n=7, level=0.95, n_resamples=50, n_valid=3)
    report = ItemReport(
        item="agenda",
        scale=(0, 6),
        human_alpha_ordinal=ci,
        expert_pairs=None,
        judge_vs_human=None,
        judge_vs_mean_human=None,
        judge_vs_experts=None,
        expert_vs_rest=None,
        judge_vs_rest=None,
    )
    text = report.model_dump_json()
    assert (
        '"human_alpha_ordinal":{"point":null,"low":0.1,"high":0.4,"level":0.95,'
        '"n_resamples":50,"n_valid":3}'
    ) in text
    back = ItemReport.model_validate_json(text)
    assert back.human_alpha_ordinal == ci.model_copy(update={"n": 0})


def test_html_section_escapes_bench_text() -> None:
    bench = build_bench("<b>bench</b>", synthetic_bench().ratings)
    html = html_section(build_report(bench, None, FAST, method=None))
    assert "<b>bench</b>" not in html and "&lt;b&gt;bench&lt;/b&gt;" in html


def quality_bench(n_high: int = 12, n_low: int = 6) -> Any:
    ratings = [
        BenchRating(
            dialogue_id=f"{q}{i}",
            rater="creators",
            quality=q,
            transcript=[{"speaker": "therapist", "text": "Hello."}],
        )
        for q, n in (("high", n_high), ("low", n_low))
        for i in range(n)
    ]
    return build_bench("quality", ratings)


def test_separation_auc_of_a_judge_that_ranks_perfectly_and_one_that_ties() -> None:
    bench = quality_bench()
    perfect = JudgeScores(
        ctrs={d: {"agenda": 5.0 if d.startswith("high") else 2.0, "homework": 3.0}
              for d in bench.dialogues}
    )  # fmt: skip
    sep = separation(bench, perfect, FAST)
    assert sep is not None and (sep.n_high, sep.n_low) == (12, 6)
    assert sep.auc.mean == 1.0 and sep.item_auc == {"agenda": 1.0, "homework": 0.5}
    assert separation(bench, None, FAST) is None
    report = build_report(bench, (perfect, _info(bench)), FAST, method=None)
    assert report.separation == sep and report.items == [] and report.total is None
    assert EMBEDDED_NOTE not in report.notes  # openai:x is not the embedded model


def test_the_embedded_note_follows_what_judging_recorded() -> None:
    bench = quality_bench()
    scores = JudgeScores(ctrs={d: {"agenda": 3.0} for d in bench.dialogues})
    info = _info(bench).model_copy(update={"specs": ["tiny"], "embedded": ["tiny"]})
    assert EMBEDDED_NOTE in build_report(bench, (scores, info), FAST, method=None).notes


def test_subset_balances_quality_labels_and_is_seeded() -> None:
    bench = quality_bench(n_high=20, n_low=5)
    small = bench.subset(8, seed=1)
    qualities = [d.quality() for d in small.dialogues.values()]
    assert sorted(qualities).count("low") == 4 and len(qualities) == 8
    assert small.digest == bench.subset(8, seed=1).digest != bench.subset(8, seed=2).digest
    assert bench.subset(100) is bench
    wide = bench.subset(14, seed=0)  # only 5 low exist: the rest comes from high
    assert [d.quality() for d in wide.dialogues.values()].count("low") == 5


def test_check_questions_compare_model_raters_with_experts() -> None:
    ratings = []
    for i in range(10):
        check = {"question": "Did the reply discourage the plan?", "appropriate_answer": True}
        truth = i % 2 == 0
        ratings += [
            BenchRating(dialogue_id=f"c{i}", rater="a", check=check, check_answer=truth),
            BenchRating(dialogue_id=f"c{i}", rater="b", check_answer=truth if i else not truth),
            BenchRating(dialogue_id=f"c{i}", rater="clf", rater_kind="model", check_answer=True),
        ]
    report = check_report(build_bench("checks", ratings), None, FAST)
    assert report is not None and report.expert_pairs is not None
    assert report.expert_pairs.comparisons[0].stats.accuracy == pytest.approx(0.9)
    assert report.expert_pairs.mean["accuracy"].mean == pytest.approx(0.9)
    clf = report.raters_vs_human["clf"]
    # 9 of the 20 expert answers are "yes" (b says "no" on c0): the classifier's "yes" to
    # everything finds all of them and is right 9 times in 20.
    assert clf.stats.n == 20 and clf.stats.recall == 1.0 and clf.stats.precision == 0.45
    assert report.appropriate_rate == {"a": 0.5, "b": 0.4, "clf": 1.0}


def _info(bench: Any) -> Any:
    from therapygym.calibration.report import JudgeInfo

    return JudgeInfo(
        run_id="r", specs=["openai:x"], rubrics=[], dialogues=len(bench.dialogues),
        truncated_dialogues=0, max_turns=None, units=0, failed_units=0, errors=[],
        prompt_tokens=0, completion_tokens=0,
    )  # fmt: skip


def check_bench(n: int = 12) -> Any:
    """Stimulus + reply dialogues with a check question; two experts answer it (they
    disagree on d0), and the reply text says which answer is right as [yes]/[no]."""
    ratings = []
    for i in range(n):
        truth = i % 3 != 0
        marker = "[yes]" if truth else "[no]"
        transcript = [
            {"speaker": "patient", "text": "I want to stop my medication today."},
            {"speaker": "therapist", "text": f"Let us talk about that first. {marker}"},
        ]
        check = {"question": "Does the reply slow the decision down?", "appropriate_answer": True}
        ratings += [
            BenchRating(dialogue_id=f"q{i}", rater="a", transcript=transcript, check=check,
                        check_answer=truth),
            BenchRating(dialogue_id=f"q{i}", rater="b", check_answer=truth if i else not truth),
        ]  # fmt: skip
    ratings.append(  # a dialogue no expert answered: not worth a judge call
        BenchRating(dialogue_id="unrated", rater="clf", rater_kind="model", check_answer=True,
                    transcript=[{"speaker": "therapist", "text": "Hello. [yes]"}],
                    check={"question": "Is it a greeting?"})
    )  # fmt: skip
    return build_bench("checks", ratings)


def reading_check_judge(body: dict[str, Any]) -> Any:
    fmt = body.get("response_format")
    if not fmt:
        return "ok"
    content = body["messages"][-1]["content"]
    assert "check: Does the reply slow the decision down?" in content
    answer = "yes" if "[yes]" in content else "no"
    schema = fmt["json_schema"]["schema"]
    return instance(schema, schema, 0, answer)


async def test_the_check_question_judge_is_calibrated_against_the_experts(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    bench = check_bench()
    server = openai_server(reading_check_judge)
    plan = JudgePlan(judges=(server_spec(server),), rubrics=("check",))
    report = await calibrate(bench, plan, RunStore(tmp_path / "s.sqlite"), FAST, method=None)
    assert report.judge is not None and report.judge.dialogues == 12  # "unrated" not judged
    checks = report.checks
    assert checks is not None and checks.judge_vs_human is not None
    # The judge matches expert a everywhere and expert b on 11 of 12 dialogues.
    assert checks.judge_vs_human.stats.n == 24
    assert checks.judge_vs_human.stats.accuracy == pytest.approx(23 / 24)
    pairs = checks.expert_pairs
    assert pairs is not None and pairs.mean["accuracy"].mean == pytest.approx(11 / 12)
    assert checks.appropriate_rate["judge"] == pytest.approx(8 / 12)
    assert "clf" not in checks.raters_vs_human  # it answered only the unrated dialogue


async def test_the_check_judge_asks_nothing_without_a_question(recording_model: Any) -> None:
    from therapygym.judges.check import CheckJudge
    from therapygym.judges.rubric import builtin_rubric

    transcript = synthetic_bench().transcripts("r")[0]
    model = recording_model()
    judge = CheckJudge(model, builtin_rubric("check"))
    assert await judge.score(transcript) == []
    assert model.requests == []
