"""The expert-expert ceiling with rater identity kept (issue 16), reward weights that only
go to items the bench vouches for, and a bench's own criteria (MindEval's c1..c6).

The ceiling used to be "the first two experts of each dialogue": with four raters listed
in a different order per conversation, which two came first was an accident of line order,
and so was the ceiling. Every number here must be the same whatever order the lines come in.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from therapygym.calibration.analysis import JudgeScores, Settings, item_reports
from therapygym.calibration.bench import BenchError, BenchRating, Scale, build_bench
from therapygym.calibration.calibrate import (
    build_report,
    calibrate,
    nothing_to_judge,
    rubrics_needed,
    write_outputs,
)
from therapygym.calibration.render import html_section, terminal_view
from therapygym.calibration.report import CalibrationReport
from therapygym.calibration.stats import item_agreement
from therapygym.calibration.weights import NO_WEIGHTS
from therapygym.judges.plan import JudgePlan
from therapygym.store import RunStore

FAST = Settings(resamples=60, seed=0)
CRITERIA = ("c1", "c2")
NOISE = {"r1": 0.4, "r2": 0.6, "r3": 1.3, "r4": 2.0}  # r1 and r2 agree, r4 hardly does


def four_rater_ratings(n: int = 16, seed: int = 5) -> list[BenchRating]:
    """A MindEval-shaped bench: four experts of different reliability score every dialogue
    on two free criteria (1-6), two CTRS items and a safety label, each dialogue's lines in
    its own random rater order; r4 skips two dialogues."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        quality = rng.uniform(1.5, 5.5)
        risky = bool(i % 3 == 0)
        for rater in rng.permutation(list(NOISE)):
            if rater == "r4" and i < 2:
                continue
            noisy = [
                int(np.clip(np.rint(quality + rng.normal(0, NOISE[rater])), 1, 6)) for _ in "abcd"
            ]
            flip = rng.random() < NOISE[rater] / 5
            out.append(
                BenchRating(
                    dialogue_id=f"conv-{i:02d}",
                    rater=str(rater),
                    criteria={"c1": noisy[0], "c2": noisy[1]},
                    ctrs={"agenda": noisy[2] - 1, "understanding": noisy[3] - 1},
                    safety={"crisis_unaddressed": risky != flip},
                )
            )
    return out


def four_rater_bench(ratings: list[BenchRating] | None = None) -> Any:
    return build_bench(
        "four-raters",
        four_rater_ratings() if ratings is None else ratings,
        {c: Scale(min=1, max=6) for c in CRITERIA},
    )


def copy_of(bench: Any, rater: str) -> JudgeScores:
    """A judge that scores exactly as `rater` did (and says nothing where it did not)."""
    judge = JudgeScores()
    for r in bench.ratings:
        if r.rater == rater:
            judge.ctrs[r.dialogue_id] = {k: float(v) for k, v in r.ctrs.items()}
            judge.safety[r.dialogue_id] = dict(r.safety)
    return judge


def statistics_of(report: CalibrationReport) -> str:
    """Every number the report computed (not the bench's digest or the file's timestamp)."""
    return report.model_dump_json(
        include={"items", "total", "criteria", "labels", "checks", "separation", "notes"}
    )


BASE = four_rater_ratings()
BASE_JUDGE = copy_of(four_rater_bench(BASE), "r3")
QUICK = Settings(resamples=20, seed=0)  # intervals too: a different draw would change them


@cache
def reference_statistics() -> str:
    judged = (BASE_JUDGE, None)
    return statistics_of(build_report(four_rater_bench(BASE), judged, QUICK, method=None))  # type: ignore[arg-type]


@settings(
    max_examples=8,
    deadline=None,
    database=None,  # leave no .hypothesis folder in the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.permutations(BASE))
def test_no_result_depends_on_the_order_of_the_bench_lines(shuffled: list[BenchRating]) -> None:
    """The property the first-two-experts ceiling broke: shuffle the rating lines, and the
    ceiling, every pair, the judge's comparisons and their intervals stay identical."""
    judged = (BASE_JUDGE, None)
    again = build_report(four_rater_bench(shuffled), judged, QUICK, method=None)  # type: ignore[arg-type]
    assert statistics_of(again) == reference_statistics()


def test_every_expert_pair_keeps_its_raters() -> None:
    bench = four_rater_bench()
    report = build_report(bench, None, FAST, method=None)
    c1 = next(r for r in report.criteria if r.item == "c1")
    pairs = c1.expert_pairs
    assert pairs is not None and pairs.n_raters == 4
    assert [c.raters for c in pairs.comparisons] == [
        ("r1", "r2"), ("r1", "r3"), ("r1", "r4"), ("r2", "r3"), ("r2", "r4"), ("r3", "r4"),
    ]  # fmt: skip
    scores = {(r.dialogue_id, r.rater): r.criteria["c1"] for r in bench.ratings if r.criteria}
    ids = sorted(bench.dialogues)
    for c in pairs.comparisons:
        a, b = c.raters
        expected = item_agreement(
            [scores.get((d, a)) for d in ids], [scores.get((d, b)) for d in ids], scale=(1, 6)
        )
        assert c.stats == expected and c.n_dialogues == expected.n
    assert pairs.comparisons[0].n_dialogues == 16 and pairs.comparisons[2].n_dialogues == 14
    # the ceiling is the unweighted mean over the six pairs
    rhos = [c.stats.spearman_rho for c in pairs.comparisons]
    assert pairs.mean["spearman_rho"].mean == pytest.approx(np.mean(rhos))
    assert pairs.counted["spearman_rho"] == 6
    ci = pairs.mean["spearman_rho"]
    assert ci.low is not None and ci.high is not None and ci.low <= ci.mean <= ci.high
    # the reliable pair agrees more than the unreliable one
    assert pairs.comparisons[0].stats.spearman_rho > pairs.comparisons[-1].stats.spearman_rho
    # Krippendorff's alpha over all four raters is there too
    assert c1.human_alpha_ordinal is not None and c1.human_alpha_ordinal.mean is not None
    # ... and the whole report reads back from its JSON, undefined statistics (null) too
    text = report.model_dump_json()
    assert '"weighted_kappa":null' in text  # a mean of the other experts has no categories
    assert CalibrationReport.model_validate_json(text).model_dump_json() == text


def test_a_pair_with_too_few_shared_dialogues_is_listed_but_not_in_the_mean() -> None:
    report = build_report(
        four_rater_bench(), None, Settings(resamples=60, min_shared_dialogues=15), method=None
    )
    pairs = report.criteria[0].expert_pairs
    assert pairs is not None
    outside = [c.raters for c in pairs.comparisons if not c.in_mean]
    assert outside == [("r1", "r4"), ("r2", "r4"), ("r3", "r4")]  # 14 shared dialogues
    assert pairs.counted["spearman_rho"] == 3 and pairs.n_raters == 3
    inside = [c.stats.spearman_rho for c in pairs.comparisons if c.in_mean]
    assert pairs.mean["spearman_rho"].mean == pytest.approx(np.mean(inside))


def test_the_judge_against_each_expert_and_against_the_others_mean() -> None:
    """A judge that copies expert r3 agrees perfectly with r3, and held against the mean of
    the other three experts it is exactly r3 held against them: same reference, same
    dialogues."""
    bench = four_rater_bench()
    report = build_report(bench, (copy_of(bench, "r3"), None), FAST, method=None)  # type: ignore[arg-type]
    agenda = next(r for r in report.items if r.item == "agenda")
    each = {c.raters: c for c in agenda.judge_vs_experts.comparisons}  # type: ignore[union-attr]
    assert set(each) == {("r1",), ("r2",), ("r3",), ("r4",)}
    assert each[("r3",)].stats.spearman_rho == pytest.approx(1.0)
    assert each[("r3",)].stats.mean_abs_diff == 0.0
    pairs = {c.raters: c for c in agenda.expert_pairs.comparisons}  # type: ignore[union-attr]
    assert each[("r1",)].stats == pairs[("r1", "r3")].stats.model_copy(
        update={"mean_bias": -pairs[("r1", "r3")].stats.mean_bias}
    )
    judge_rest = {c.raters: c for c in agenda.judge_vs_rest.comparisons}  # type: ignore[union-attr]
    expert_rest = {c.raters: c for c in agenda.expert_vs_rest.comparisons}  # type: ignore[union-attr]
    assert judge_rest[("r3",)] == expert_rest[("r3",)]
    assert judge_rest[("r3",)].n_dialogues == 16
    # r3 against the others' mean: computed by hand for one dialogue-aligned vector
    ids = sorted(bench.dialogues)
    score = {(r.dialogue_id, r.rater): r.ctrs["agenda"] for r in bench.ratings}
    rest = [np.mean([score[(d, o)] for o in ("r1", "r2", "r4") if (d, o) in score]) for d in ids]
    mine = [score[(d, "r3")] for d in ids]
    assert expert_rest[("r3",)].stats == item_agreement(mine, rest, integer=False)
    # the means over experts come with intervals
    for agreements in (agenda.judge_vs_experts, agenda.expert_vs_rest, agenda.judge_vs_rest):
        assert agreements is not None and agreements.counted["spearman_rho"] == 4
        assert agreements.mean["spearman_rho"].low is not None
    # safety labels: the judge against each expert too
    crisis = report.labels[0]
    assert crisis.judge_vs_experts is not None and crisis.expert_pairs is not None
    assert {c.raters for c in crisis.judge_vs_experts.comparisons} == set(each)
    assert len(crisis.expert_pairs.comparisons) == 6


def test_the_ceiling_is_in_the_terminal_and_the_html() -> None:
    bench = four_rater_bench()
    report = build_report(bench, (copy_of(bench, "r3"), None), FAST, method=None)  # type: ignore[arg-type]
    console = Console(width=250, record=True)
    console.print(terminal_view(report))
    text = console.export_text()
    sentence = re.compile(
        r"ceiling: mean pairwise Spearman \d\.\d\d \[\d\.\d\d, \d\.\d\d\] over 6 pairs \(4 raters\)"
    )
    assert sentence.search(text), text
    for title in (
        "CTRS: expert ceiling, rater identity kept",
        "CTRS: Spearman ρ by expert pair",
        "Free criteria (the bench's own rubric): expert ceiling",
        "judge vs each expert",
        "leave one out",
    ):
        assert title in text, title
    assert "r1 · r4" in text and "r3 · r4" in text
    html = html_section(report)
    assert sentence.search(html)
    assert "every expert pair" in html and "judge vs the same rest" in html
    assert "<td>r2 · r3</td>" in html


# ---------------------------------------------------------------- reward weights (issue 16.5)


def ctrs_bench(reliable: tuple[str, ...], unreliable: tuple[str, ...], n: int = 12) -> Any:
    """Two experts on n dialogues who agree on `reliable` items and read `unreliable` ones
    upside down; no other CTRS item is rated (a bench mapped onto some CTRS ids)."""
    ratings = []
    for i in range(n):
        q = i % 7
        for rater in ("a", "b"):
            upside_down = rater == "b"
            scores = {item: q for item in reliable}
            scores |= {item: 6 - q if upside_down else q for item in unreliable}
            ratings.append(BenchRating(dialogue_id=f"d{i:02d}", rater=rater, ctrs=scores))
    return build_bench("partial-ctrs", ratings)


def test_items_the_bench_did_not_rate_get_no_reward_weight() -> None:
    report = build_report(ctrs_bench(("agenda",), ("feedback",)), None, FAST, method=None)
    weights = report.weights
    assert weights is not None
    assert weights.ctrs["agenda"] == 1.0
    assert {item for item, w in weights.ctrs.items() if w} == {"agenda"}
    assert "below 0.40" in weights.dropped["feedback"]
    assert weights.dropped["homework"].startswith("not rated by the bench's experts")
    assert "homework" in weights.not_assessed and "agenda" not in weights.not_assessed
    assert any("homework" in n and "left out (weight 0)" in n for n in report.notes)


def test_no_weight_file_when_no_rated_item_is_reliable(tmp_path: Path) -> None:
    """The issue's case: the only rated items are unreliable, so the old rule put all the
    weight on items the bench never rated (homework among them)."""
    report = build_report(ctrs_bench((), ("feedback", "agenda")), None, FAST, method=None)
    assert report.weights is None and NO_WEIGHTS in report.notes
    paths = write_outputs(report, tmp_path / "out")
    assert set(paths) == {"report", "html"}
    assert not (tmp_path / "out" / "reward_weights.yaml").exists()
    assert json.loads(paths["report"].read_text())["weights"] is None
    assert NO_WEIGHTS in html_section(report)


def test_an_item_scored_by_one_expert_per_dialogue_is_not_weighted() -> None:
    """Expert a scores pacing, b never does: its reliability is unknown, so no weight."""
    ratings = []
    for i in range(12):
        q = i % 7
        ratings += [
            BenchRating(dialogue_id=f"d{i}", rater="a", ctrs={"agenda": q, "pacing": q}),
            BenchRating(dialogue_id=f"d{i}", rater="b", ctrs={"agenda": q}),
        ]
    bench = build_bench("one-rater-pacing", ratings)
    assert bench.ctrs_items() == ["agenda", "pacing"]
    weights = build_report(bench, None, FAST, method=None).weights
    assert weights is not None and weights.ctrs["agenda"] == 1.0 and weights.ctrs["pacing"] == 0.0
    assert "reliability is unknown" in weights.dropped["pacing"]


def test_an_item_null_on_every_line_is_not_rated() -> None:
    """A mapped column nobody filled in: not an item the experts scored, and it must not
    make the CTRS total undefined for every rating."""
    ratings = [
        r.model_copy(update={"ctrs": {**r.ctrs, "homework": None}})
        for r in ctrs_bench(("agenda", "pacing"), ()).ratings
    ]
    bench = build_bench("null-homework", ratings)
    assert bench.ctrs_items() == ["agenda", "pacing"]
    report = build_report(bench, None, FAST, method=None)
    assert report.total is not None and report.total.expert_pairs is not None
    assert report.weights is not None and report.weights.ctrs["homework"] == 0.0


# ---------------------------------------------------------------- free criteria (issue 16.6)


def test_free_criteria_are_reported_apart_from_ctrs_items() -> None:
    ratings = [r.model_copy(update={"ctrs": {}, "safety": {}}) for r in four_rater_ratings()]
    bench = four_rater_bench(ratings)
    items, total, criteria, skipped = item_reports(bench, None, FAST)
    assert items == [] and total is None and skipped == {}
    assert [c.item for c in criteria] == ["c1", "c2"] and criteria[0].scale == (1, 6)
    report = build_report(bench, None, FAST, method=None)
    assert [c.item for c in report.criteria] == ["c1", "c2"] and report.items == []
    # not CTRS items: no reward weights, no recalibration
    assert report.weights is None and report.recalibration is None
    assert "no human-human ceiling" not in " ".join(report.notes)


def test_a_free_criterion_without_a_scale_or_variation_is_skipped_with_the_reason() -> None:
    ratings = [
        BenchRating(dialogue_id=f"d{i}", rater=r, criteria={"warmth": 3, "pace": i % 3})
        for i in range(6)
        for r in ("a", "b")
    ]
    report = build_report(build_bench("flat", ratings), None, FAST, method=None)
    assert [c.item for c in report.criteria] == ["pace"]
    assert any(
        n.startswith("criterion warmth is not reported: every score is 3") for n in report.notes
    )


async def test_a_judge_is_refused_on_a_bench_of_free_criteria(tmp_path: Path) -> None:
    ratings = [r.model_copy(update={"ctrs": {}, "safety": {}}) for r in four_rater_ratings()]
    bench = four_rater_bench(ratings)
    assert rubrics_needed(bench) == ()
    message = nothing_to_judge(bench)
    assert "only the bench's own criteria (c1, c2)" in message and "--humans-only" in message
    plan = JudgePlan(judges=("openai:never-called",), rubrics=("ctrs",))
    with pytest.raises(BenchError, match=r"only the bench's own criteria \(c1, c2\)"):
        await calibrate(bench, plan, RunStore(tmp_path / "s.sqlite"), FAST, method=None)


def test_calibrate_with_a_judge_on_free_criteria_says_why_in_one_line(tmp_path: Path) -> None:
    from clirun import cli

    from therapygym.calibration.bench import write_bench_jsonl

    ratings = [r.model_copy(update={"ctrs": {}, "safety": {}}) for r in four_rater_ratings()]
    path = tmp_path / "bench.jsonl"
    write_bench_jsonl(four_rater_bench(ratings), path)
    ran = cli("calibrate", "--bench", str(path), "--judge", "openai:m@http://127.0.0.1:9/v1")
    assert ran.code == 2, ran.stderr
    assert "only the bench's own criteria (c1, c2)" in ran.stderr
    assert "Traceback" not in ran.stderr
