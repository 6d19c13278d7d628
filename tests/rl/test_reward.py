"""Reward math, weight files, and the rewarder against the local server's scripted judge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from judges.scripted import judge_replier

from therapygym.calibration.bench import ctrs_item_ids, safety_label_ids
from therapygym.calibration.weights import RewardWeights, write_weights
from therapygym.errors import ConfigError
from therapygym.models import load_model
from therapygym.records import Transcript, Turn
from therapygym.rl.reward import (
    LOW_AGREEMENT_ITEMS,
    RewardSpec,
    SessionRewarder,
    compose,
    default_reward_spec,
    load_reward_spec,
)


def _transcript(cues_tracked: bool = True) -> Transcript:
    texts = ["I can't sleep.", "Tell me more about the nights.", "I lie awake worrying."]
    turns = [
        Turn(id=f"s:{i}", index=i, speaker="patient" if i % 2 == 0 else "therapist", text=t)
        for i, t in enumerate([*texts, "What goes through your mind then?"])
    ]
    return Transcript(
        session_id="s",
        profile_id="p",
        therapist="t",
        patient="pt",
        status="completed",
        turns=turns,
        meta={"cues_tracked": cues_tracked},
    )


def test_compose_by_hand() -> None:
    spec = RewardSpec(
        ctrs={"agenda": 0.5, "feedback": 0.5},
        safety={"medication_advice": 2.0, "crisis_unaddressed": 1.0},
    )
    got = compose(
        {"agenda": 6, "feedback": 3, "homework": 0},
        {"medication_advice": 1, "crisis_unaddressed": 0, "false_reassurance": 1},
        spec,
    )
    # 0.5*6/6 + 0.5*3/6 = 0.75; penalty 2*1 + 1*0 = 2 (unweighted labels cost nothing)
    assert got.ctrs_term == pytest.approx(0.75)
    assert got.safety_term == pytest.approx(2.0)
    assert got.total == pytest.approx(-1.25)
    assert got.error is None


def test_compose_refuses_a_missing_weighted_item() -> None:
    spec = RewardSpec(ctrs={"agenda": 1.0}, safety={})
    got = compose({"feedback": 6}, {}, spec)
    assert got.total is None and "agenda" in (got.error or "")


def test_default_spec_follows_therapygym() -> None:
    spec = default_reward_spec()
    kept = [i for i in ctrs_item_ids() if i not in LOW_AGREEMENT_ITEMS]
    assert len(kept) == 9
    assert all(spec.ctrs[i] == pytest.approx(1 / 9) for i in kept)
    assert all(spec.ctrs[i] == 0 for i in LOW_AGREEMENT_ITEMS)
    assert spec.ctrs_max == pytest.approx(1.0)
    assert set(spec.safety) == set(safety_label_ids()) and set(spec.safety.values()) == {1.0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ctrs": {"agendaa": 1.0}, "safety": {}}, "unknown id(s) agendaa"),
        ({"ctrs": {"agenda": -1.0}, "safety": {}}, "must be >= 0"),
        ({"ctrs": {"agenda": 0.0}, "safety": {}}, "at least one item"),
        ({"ctrs": {"agenda": 1.0}}, "safety"),
    ],
)
def test_weight_file_errors_name_file_and_field(tmp_path: Path, body: dict, message: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError) as info:
        load_reward_spec(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_reads_the_file_calibrate_writes(tmp_path: Path) -> None:
    ctrs = dict.fromkeys(ctrs_item_ids(), 0.0) | {"agenda": 0.25, "understanding": 0.75}
    weights = RewardWeights(
        created_at="2026-11-23T00:00:00+00:00",
        bench="b.jsonl",
        bench_digest="abc",
        min_human_alpha=0.4,
        ctrs=ctrs,
        safety=dict.fromkeys(safety_label_ids(), 0.5),
        dropped={},
        not_assessed=[],
    )
    write_weights(weights, tmp_path / "reward_weights.yaml")
    spec = load_reward_spec(tmp_path / "reward_weights.yaml")
    assert spec.ctrs["understanding"] == 0.75 and spec.safety["medication_advice"] == 0.5
    assert spec.source == str(tmp_path / "reward_weights.yaml")


async def test_rewarder_composes_the_judges_scores(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=3, verdict="yes"))
    judge = load_model(server_spec(server))
    try:
        rewarder = SessionRewarder(judge, default_reward_spec())
        breakdown, records = await rewarder.score(_transcript(cues_tracked=False))
    finally:
        await judge.aclose()
    assert {r.rubric_id for r in records} == {"ctrs", "safety"}
    assert breakdown.items == dict.fromkeys(ctrs_item_ids(), 3.0)
    # every label asked (cues unknown) and every verdict "yes": 12 violations at lambda 1
    assert breakdown.ctrs_term == pytest.approx(0.5)
    assert breakdown.safety_term == pytest.approx(12.0)
    assert breakdown.total == pytest.approx(0.5 - 12.0)


async def test_zero_weight_labels_skip_the_safety_call(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=6))
    judge = load_model(server_spec(server))
    spec = RewardSpec(ctrs={"agenda": 1.0}, safety={})
    try:
        breakdown, records = await SessionRewarder(judge, spec).score(_transcript())
    finally:
        await judge.aclose()
    assert [r.rubric_id for r in records] == ["ctrs"]
    assert len(server.requests) == 1
    assert breakdown.total == pytest.approx(1.0)


async def test_a_failed_judge_gives_no_reward(openai_server, server_spec) -> None:
    server = openai_server(lambda body: "not json at all")
    judge = load_model(server_spec(server, max_retries=0))
    try:
        breakdown, _ = await SessionRewarder(judge).score(_transcript())
    finally:
        await judge.aclose()
    assert breakdown.total is None and breakdown.ctrs_term is None
    assert "ctrs" in (breakdown.error or "")
