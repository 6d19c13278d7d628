"""Judge separation in training: an evaluation judge scores the rollouts the reward judge
scored, is stored and logged beside it, and never enters the reward. Two scripted judges on
the local server give different scores; no GRPO step is run (tests/rl/test_train_smoke.py
is the real run)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from judges.scripted import instance
from rich.console import Console

from therapygym.errors import ConfigError
from therapygym.models import load_model
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig
from therapygym.rl.env import TherapyEnv
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.reward import RewardBreakdown, RewardSpec, SessionRewarder
from therapygym.rl.trl import EVAL_COLUMN, REWARD_COLUMN, TherapyRollout, reward_functions
from therapygym.store import RunStore
from therapygym.therapists.prompted import resolve_prompt

PROFILE = select_profiles("dep-01-maya")[0]
SPEC = RewardSpec(ctrs={"agenda": 1.0}, safety={"medication_advice": 1.0})
PROMPT = [{"role": "user", "content": "I feel low."}]


def two_judges(body: dict[str, Any]) -> Any:
    """The reward judge rates every item 6, the evaluation judge 1; neither finds a
    violation. Calls without a schema are the patient's."""
    fmt = body.get("response_format")
    if fmt is None:
        return "I suppose so."
    schema = fmt["json_schema"]["schema"]
    return instance(schema, schema, 6 if body["model"] == "reward-judge" else 1, "no")


def test_the_eval_judge_scores_the_same_rollouts_and_is_stored_beside_the_reward(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    spec = server_spec(openai_server(two_judges))
    patient = load_model(spec)
    reward_judge = load_model(spec.replace("fake-model", "reward-judge", 1))
    eval_judge = load_model(spec.replace("fake-model", "eval-judge", 1))
    store = RunStore(tmp_path / "store.sqlite")
    store.ensure_run("train", {"test": True})
    loop = BackgroundLoop()
    try:
        rollout = TherapyRollout(
            patient_model=patient,
            rewarder=SessionRewarder(reward_judge, SPEC),
            eval_rewarder=SessionRewarder(eval_judge, SPEC),
            loop=loop,
            session=SessionConfig(max_turns=4),
            prompt=resolve_prompt(None),
            store=store,
            run_id="train",
        )
        envs = []
        for n in (1, 2):
            env = TherapyEnv(patient, rollout.rewarder, config=rollout.session, run_id="train")
            loop.run(env.reset(PROFILE, seed=n, session_id=f"train:step0:{n}"))
            loop.run(env.step("What brings you in today?"))
            *_, truncated, _info = loop.run(env.step("Shall we set an agenda?", judge=False))
            assert truncated
            envs.append(env)
        breakdowns, evaluated = rollout.finish(envs, [loop.run(rollout.judge(e)) for e in envs])
    finally:
        for model in (patient, reward_judge, eval_judge):
            loop.run(model.aclose())
        loop.close()

    assert [b.total for b in breakdowns] == [pytest.approx(1.0)] * 2  # agenda 6/6
    assert evaluated is not None
    assert [b.total for b in evaluated] == [pytest.approx(1 / 6)] * 2  # agenda 1/6
    sessions = list(store.sessions("train"))
    assert len(sessions) == 2
    for t in sessions:
        assert t.meta["reward"]["total"] == pytest.approx(1.0)
        assert t.meta["eval_reward"]["total"] == pytest.approx(1 / 6)
    by_judge = {(r.judge, r.rubric_id) for r in store.scores("train")}
    assert by_judge == {
        (reward_judge.spec, "ctrs"),
        (reward_judge.spec, "safety"),
        (eval_judge.spec, "ctrs"),
        (eval_judge.spec, "safety"),
    }


def test_the_eval_judge_is_logged_beside_the_reward_and_never_added_to_it() -> None:
    ctrs, safety = reward_functions()
    rewards = [
        RewardBreakdown(total=0.9, ctrs_term=1.0, safety_term=0.1).model_dump(),
        RewardBreakdown(total=0.7, ctrs_term=0.7, safety_term=0.0).model_dump(),
    ]
    evals = [
        RewardBreakdown(total=0.2, ctrs_term=0.3, safety_term=0.1).model_dump(),
        RewardBreakdown(total=None, ctrs_term=None, safety_term=None, error="judge").model_dump(),
    ]
    logged: list[tuple[str, float]] = []
    columns = {REWARD_COLUMN: rewards, EVAL_COLUMN: evals, "log_metric": _append(logged)}
    assert ctrs([PROMPT] * 2, ["a", "b"], **columns) == [1.0, 0.7]
    assert safety([PROMPT] * 2, ["a", "b"], **columns) == [-0.1, -0.0]
    assert dict(logged) == {  # the one sample judged; the failed one is left out
        "eval_judge/reward": pytest.approx(0.2),
        "eval_judge/ctrs_fidelity": pytest.approx(0.3),
        "eval_judge/safety_penalty": pytest.approx(-0.1),
    }

    failed = dict(columns, **{EVAL_COLUMN: [evals[1]] * 2, "log_metric": _append(logged := [])})
    ctrs([PROMPT] * 2, ["a", "b"], **failed)
    assert len(logged) == 3 and all(math.isnan(v) for _, v in logged)  # TRL logs None


def _append(into: list[tuple[str, float]]) -> Any:
    return lambda name, value: into.append((name, value))


def test_rewards_jsonl_holds_both_judges_per_logged_step(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the [train] extra is not installed")
    from therapygym.rl.train import reward_log

    path = tmp_path / "rewards.jsonl"
    out = io.StringIO()
    callback = reward_log(path, Console(file=out, width=200))
    step = {
        "loss": 0.01,
        "kl": 0.0,
        "reward": 0.9,
        "rewards/ctrs_fidelity/mean": 1.0,
        "rewards/safety_penalty/mean": -0.1,
        "eval_judge/reward": 0.2,
        "eval_judge/ctrs_fidelity": 0.3,
        "eval_judge/safety_penalty": -0.1,
    }
    state = SimpleNamespace(global_step=1, is_world_process_zero=True)  # the main process
    callback.on_log(None, state, None, logs=step)
    callback.on_log(None, state, None, logs={"train_runtime": 3.0})
    (row,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert row == {"step": 1} | {k: v for k, v in step.items() if k not in ("loss", "kl")}
    assert "eval_judge/reward=0.200" in out.getvalue()


def _train_config(tmp_path: Path, **fields: Any) -> Any:
    from therapygym.rl.train import load_train_config

    body = {"run_id": "t", "patients": "dep-01-maya", "output_dir": str(tmp_path / "out")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**body, **fields}))
    return load_train_config(path)


@pytest.mark.parametrize(
    ("eval_judge", "message"),
    [
        ("local:smollm2", r"field 'eval_judge': local:smollm2 is the reward judge"),
        ("no-such-model", r"field 'eval_judge': .*unknown model spec"),
    ],
)
def test_an_eval_judge_that_cannot_separate_is_refused_before_the_run_is_stored(
    tmp_path: Path, eval_judge: str, message: str
) -> None:
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import train

    store = RunStore(tmp_path / "s.sqlite")
    config = _train_config(tmp_path, judge="local:smollm2", eval_judge=eval_judge)
    with pytest.raises(ConfigError, match=message):
        train(config, store=store, cache=None)
    assert store.runs() == []


def test_the_training_record_names_the_eval_judge_and_the_turn_notes(tmp_path: Path) -> None:
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, run_record

    plain = _train_config(tmp_path)
    record = run_record(plain, check_train_config(plain))
    assert "eval_judge" not in record["train"]  # runs stored before the field still resume
    assert len(record["turn_notes"]) == 16  # our prompt with notes: its fingerprint

    other = "openai:eval?base_url=http://127.0.0.1:9"
    both = _train_config(tmp_path, eval_judge=other, therapist_prompt="no-turn-info")
    record = run_record(both, check_train_config(both))
    assert record["train"]["eval_judge"] == other and "turn_notes" not in record


def test_the_reward_judge_can_leave_out_the_ctrs_examples(
    tmp_path: Path, recording_model: Any
) -> None:
    """judge_examples: false is recorded (a run with examples is not resumed without them)
    and reaches the CTRS judge, whose fingerprint changes with it; true is the old
    default and stays out of the record."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, run_record

    plain = _train_config(tmp_path)
    assert "judge_examples" not in run_record(plain, check_train_config(plain))["train"]
    short = _train_config(tmp_path, judge_examples=False)
    assert run_record(short, check_train_config(short))["train"]["judge_examples"] is False
    with_examples = SessionRewarder(recording_model()).judges[0]
    without = SessionRewarder(recording_model(), examples=False).judges[0]
    assert with_examples.rubric.id == "ctrs" and without.rubric.id == "ctrs"
    assert with_examples.examples is not None and without.examples is None
    assert with_examples.fingerprint != without.fingerprint
