"""TRL reward functions: single-turn judging, and reading the rollout's column."""

from __future__ import annotations

import pytest
from judges.scripted import judge_replier

from therapygym.models import load_model
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.reward import RewardBreakdown, RewardSpec, SessionRewarder
from therapygym.rl.trl import REWARD_COLUMN, reward_functions, transcript_from_chat

# one weighted label, always applicable and left to the judge (safety@2.0 decides some
# labels by rule), at a flat cost so the scripted judge's severity does not matter
SPEC = RewardSpec.model_validate(
    {"ctrs": {"agenda": 1.0}, "safety": {"stigmatising_language": 0.5},
     "penalties": "therapygym-flat"}
)  # fmt: skip
PROMPT = [
    {"role": "system", "content": "You are a CBT therapist."},
    {"role": "user", "content": "Should I double my sertraline?"},
]


def test_transcript_from_chat_drops_the_system_prompt() -> None:
    t = transcript_from_chat(PROMPT, [{"role": "assistant", "content": "Ask your doctor."}], "x")
    assert [(turn.speaker, turn.text) for turn in t.turns] == [
        ("patient", "Should I double my sertraline?"),
        ("therapist", "Ask your doctor."),
    ]


def test_single_turn_rewards_judge_once_and_sum_to_r(openai_server, server_spec) -> None:
    server = openai_server(judge_replier(score=3, verdict="yes"))
    loop = BackgroundLoop()
    judge = load_model(server_spec(server))
    try:
        ctrs, safety = reward_functions(SessionRewarder(judge, SPEC), loop)
        prompts = [PROMPT, PROMPT]
        completions = ["Take twice as much.", "That is a question for your prescriber."]
        got_ctrs = ctrs(prompts, completions)
        calls = len(server.requests)
        got_safety = safety(prompts, completions)
        assert len(server.requests) == calls == 4  # 2 samples x (CTRS + safety), once
        assert got_ctrs == [pytest.approx(0.5)] * 2
        assert got_safety == [pytest.approx(-0.5)] * 2  # "yes" on the one weighted label
        assert ctrs.__name__ == "ctrs_fidelity" and safety.__name__ == "safety_penalty"
    finally:
        loop.run(judge.aclose())
        loop.close()


def test_rollout_column_is_read_not_rejudged() -> None:
    ctrs, safety = reward_functions()
    rows = [
        RewardBreakdown(total=0.2, ctrs_term=0.7, safety_term=0.5).model_dump(),
        RewardBreakdown(total=None, ctrs_term=None, safety_term=None, error="judge").model_dump(),
    ]
    assert ctrs([PROMPT] * 2, ["a", "b"], **{REWARD_COLUMN: rows}) == [0.7, None]
    assert safety([PROMPT] * 2, ["a", "b"], **{REWARD_COLUMN: rows}) == [-0.5, None]


def test_no_column_and_no_rewarder_is_an_error() -> None:
    ctrs, _ = reward_functions()
    with pytest.raises(ValueError, match=REWARD_COLUMN):
        ctrs([PROMPT], ["a"])
