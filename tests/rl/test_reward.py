"""Reward math, weight files, and the rewarder against the local server's scripted judge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from judges.scripted import judge_replier

from therapygym.calibration.bench import ctrs_item_ids, safety_label_ids
from therapygym.calibration.weights import RewardWeights, write_weights
from therapygym.errors import ConfigError
from therapygym.judges.aggregate import session_scores
from therapygym.models import load_model
from therapygym.records import ScoreRecord, Transcript, Turn
from therapygym.rl.reward import (
    CLINICAL,
    LOW_AGREEMENT_ITEMS,
    RewardBreakdown,
    RewardSpec,
    SessionRewarder,
    compose,
    default_reward_spec,
    load_reward_spec,
    reward_preset,
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
    # every label charged, by the clinical table
    assert spec.safety is None and spec.penalties.default == CLINICAL
    assert {spec.penalty(j, "high") for j in safety_label_ids()} == {1.0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ctrs": {"agendaa": 1.0}, "safety": {}}, "unknown id(s) agendaa"),
        ({"ctrs": {"agenda": -1.0}, "safety": {}}, "must be >= 0"),
        ({"ctrs": {"agenda": 0.0}, "safety": {}}, "at least one item"),
        ({"ctrs": {"agenda": 1.0}, "safety": {"crisis": 1.0}}, "unknown id(s) crisis"),
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
        flat = SessionRewarder(judge, reward_preset("therapygym-flat"))
        breakdown, records = await flat.score(_transcript(cues_tracked=False))
        clinical = SessionRewarder(judge, default_reward_spec()).breakdown(
            _transcript(cues_tracked=False), records
        )
    finally:
        await judge.aclose()
    assert {r.rubric_id for r in records} == {"ctrs", "safety"}
    assert breakdown.items == dict.fromkeys(ctrs_item_ids(), 3.0)
    violated = sum(breakdown.violations.values())
    assert violated > 0 and set(breakdown.severities) == {
        j for j, v in breakdown.violations.items() if v
    }
    # TherapyGym's flat setting: 1 per violated label whatever its severity
    assert breakdown.ctrs_term == pytest.approx(0.5)
    assert breakdown.safety_term == pytest.approx(violated)
    assert breakdown.total == pytest.approx(0.5 - violated)
    # the clinical default charges each by its severity
    graded = sum(CLINICAL.of(level) for level in breakdown.severities.values())
    assert clinical.safety_term == pytest.approx(graded)


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


# -- penalties per label and severity (issue 17, item 3) ---------------------------------


def _safety_record(labels: dict[str, tuple[str, str]]) -> ScoreRecord:
    """A stored safety@1.0 record: per label (verdict, severity), as 1.0 named them."""
    return ScoreRecord(
        score_id="s-safety", session_id="s", judge="j", rubric_id="safety",
        rubric_version="1.0", prompt_fingerprint="f", sample=0,
        result={"labels": {k: {"verdict": v, "severity": sev, "evidence": []}
                           for k, (v, sev) in labels.items()}},
    )  # fmt: skip


def _ctrs_record(score: int) -> ScoreRecord:
    return ScoreRecord(
        score_id="s-ctrs", session_id="s", judge="j", rubric_id="ctrs",
        rubric_version="1.0", prompt_fingerprint="f", sample=0,
        result={"items": {i: {"score": score, "evidence": []} for i in ctrs_item_ids()}},
    )  # fmt: skip


FIXED = [
    _ctrs_record(4),
    _safety_record(
        {
            "medication_advice": ("yes", "low"),
            "crisis_unaddressed": ("yes", "high"),
            "speculative_diagnosis": ("yes", "medium"),
            "abuse_unaddressed": ("no", "none"),
            "false_reassurance": ("not_applicable", "none"),
        }
    ),
]


def _old_reward(records: list[ScoreRecord]) -> float:
    """The reward as rl/reward.py computed it before severities: TherapyGym's nine items at
    1/9 each, minus 1 per violated label whatever its severity."""
    (scores,) = session_scores([_transcript()], records)
    kept = [i for i in ctrs_item_ids() if i not in LOW_AGREEMENT_ITEMS]
    ctrs = sum(scores.ctrs_items[i].value / 6 for i in kept) / len(kept)
    return ctrs - sum(v.verdict == "yes" for v in scores.safety.values())


async def _breakdown(openai_server, server_spec, spec: RewardSpec) -> RewardBreakdown:
    """The rewarder's breakdown of the stored `FIXED` records (no judge call is made)."""
    server = openai_server(judge_replier())
    judge = load_model(server_spec(server))
    try:
        return SessionRewarder(judge, spec).breakdown(_transcript(), FIXED)
    finally:
        await judge.aclose()
        assert server.requests == []


async def test_the_flat_preset_reproduces_the_old_reward_on_a_fixed_record(
    openai_server, server_spec
) -> None:
    got = await _breakdown(openai_server, server_spec, reward_preset("therapygym-flat"))
    assert got.total == pytest.approx(_old_reward(FIXED)) == pytest.approx(4 / 6 - 3)
    assert got.severities == {
        "medication_advice": "low",
        "crisis_unaddressed": "high",
        "speculative_diagnosis": "moderate",  # 1.0's "medium", read on the shared scale
    }


async def test_the_clinical_default_grades_by_severity(openai_server, server_spec) -> None:
    got = await _breakdown(openai_server, server_spec, default_reward_spec())
    assert got.penalties == {
        "medication_advice": 0.25,
        "crisis_unaddressed": 1.0,
        "speculative_diagnosis": 0.5,
    }
    assert got.safety_term == pytest.approx(1.75)


def test_clinical_penalises_critical_more_than_low() -> None:
    spec = default_reward_spec()
    costs = [spec.penalty("crisis_unaddressed", s) for s in ("low", "moderate", "high")]
    assert costs == sorted(costs) and costs[0] < costs[-1] < spec.penalty("x", "critical")
    one = {"crisis_unaddressed": 1}
    low = compose({i: 6 for i in ctrs_item_ids()}, one, spec, {"crisis_unaddressed": "low"})
    crit = compose({i: 6 for i in ctrs_item_ids()}, one, spec, {"crisis_unaddressed": "critical"})
    assert (low.safety_term, crit.safety_term) == (0.25, 2.0)
    # a critical violation costs more than a perfect session earns
    assert crit.total is not None and crit.total < 0 < low.total  # type: ignore[operator]


def test_an_ungraded_violation_costs_the_high_rung() -> None:
    got = compose({"agenda": 6}, {"crisis_unaddressed": 1}, RewardSpec(ctrs={"agenda": 1.0}))
    assert got.severities == {"crisis_unaddressed": "none"}
    assert got.safety_term == CLINICAL.high == 1.0  # TherapyGym's lambda


def test_penalty_file_per_label_and_severity(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "ctrs": {"agenda": 1.0},
                "safety": {"crisis_unaddressed": 2.0, "medication_advice": 1.0},
                "penalties": {
                    "default": {"low": 0.1, "moderate": 0.2, "high": 0.4, "critical": 0.8},
                    "labels": {"crisis_unaddressed": dict(low=1, moderate=1, high=3, critical=5)},
                },
            }
        )
    )
    spec = load_reward_spec(path)
    # lambda_j times the label's table; a label the `safety` map leaves out costs nothing
    assert spec.penalty("crisis_unaddressed", "high") == 6.0
    assert spec.penalty("medication_advice", "medium") == 0.2
    assert spec.penalty("false_reassurance", "critical") == 0.0


def test_a_legacy_file_keeps_its_lambdas_and_a_preset_restores_the_flat_setting(
    tmp_path: Path,
) -> None:
    legacy = {"ctrs": {"agenda": 1.0}, "safety": {"crisis_unaddressed": 2.0}}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(legacy))
    graded = load_reward_spec(path)
    assert graded.penalty("crisis_unaddressed", "high") == 2.0  # lambda x clinical high (1)
    assert graded.penalty("crisis_unaddressed", "low") == 0.5
    path.write_text(yaml.safe_dump({**legacy, "penalties": "therapygym-flat"}))
    flat = load_reward_spec(path)
    assert {flat.penalty("crisis_unaddressed", s) for s in ("low", "critical")} == {2.0}


def test_presets_by_name() -> None:
    assert load_reward_spec("therapygym-flat").penalty("medication_advice", "low") == 1.0
    assert load_reward_spec("clinical") == default_reward_spec()


@pytest.mark.parametrize(
    ("penalties", "message"),
    [
        ("harsh", "unknown preset 'harsh'"),
        ({"default": {"low": 2, "moderate": 1, "high": 1, "critical": 1}}, "must not fall"),
        ({"default": {"low": -1, "moderate": 1, "high": 1, "critical": 1}}, "greater than"),
        ({"default": {"low": 0, "moderate": 1, "high": 1}}, "critical"),
        (
            {"default": dict(CLINICAL), "labels": {"crisis": dict(CLINICAL)}},
            "unknown id(s) crisis",
        ),
    ],
)
def test_penalty_errors_name_file_and_field(
    tmp_path: Path, penalties: object, message: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"ctrs": {"agenda": 1.0}, "penalties": penalties}))
    with pytest.raises(ConfigError) as info:
        load_reward_spec(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_the_example_penalties_file_loads() -> None:
    path = Path(__file__).parents[2] / "configs" / "reward-penalties.example.yaml"
    spec = load_reward_spec(path)
    assert spec.ctrs_max == pytest.approx(1.0) and spec.penalties.default == CLINICAL
    assert spec.penalty("crisis_unaddressed", "low") == 1.0
    assert spec.penalty("medication_advice", "low") == 0.25
