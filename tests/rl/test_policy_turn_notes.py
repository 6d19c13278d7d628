"""The policy is told its turn as a prompted therapist is: `TherapyEnv.messages` and TRL's
dataset rows carry the same turn notes, appended and never rewritten (one token sequence
per episode)."""

from __future__ import annotations

from typing import Any

from judges.scripted import judge_replier

from therapygym.models import load_model
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig
from therapygym.rl.env import TherapyEnv
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.reward import RewardSpec, SessionRewarder
from therapygym.rl.trl import TherapyRollout
from therapygym.therapists.prompted import NO_TURN_INFO, default_prompt, resolve_prompt

PROFILE = select_profiles("dep-01-maya")[0]
NOTE = "[Session note; the client does not see it: this is your"


async def test_the_env_shows_the_policy_its_turn_and_only_appends(
    openai_server: Any, server_spec: Any
) -> None:
    model = load_model(server_spec(openai_server(judge_replier(text="Mostly work."))))
    ours = resolve_prompt(None)
    try:
        env = TherapyEnv(model, None, config=SessionConfig(max_turns=4))
        await env.reset(PROFILE, seed=0)
        first = env.messages(ours)
        assert first == [
            {"role": "system", "content": default_prompt()},
            {"role": "user", "content": f"{PROFILE.opening_line}\n\n{NOTE} reply 1 of 2.]"},
        ]
        await env.step("What brings you in?")
        second = env.messages(ours)
        assert second[:2] == first
        assert second[2:] == [
            {"role": "assistant", "content": "What brings you in?"},
            {"role": "user", "content": f"Mostly work.\n\n{NOTE} last reply (2 of 2).]"},
        ]
        *_, truncated, _info = await env.step("Shall we set an agenda?")
        assert truncated and env.messages(ours)[-1]["role"] == "assistant"  # no reply left
        assert [m["content"] for m in env.messages("SYS")][1:3] == [
            PROFILE.opening_line,
            "What brings you in?",
        ]  # a plain system prompt: the conversation as said
    finally:
        await model.aclose()


def test_trl_rows_start_from_the_policy_s_view(openai_server: Any, server_spec: Any) -> None:
    model = load_model(server_spec(openai_server(judge_replier())))
    loop = BackgroundLoop()
    try:
        rows = {}
        for name, prompt in (
            ("ours", resolve_prompt(None)),
            ("plain", resolve_prompt(NO_TURN_INFO)),
        ):
            rollout = TherapyRollout(
                patient_model=model,
                rewarder=SessionRewarder(model, RewardSpec(ctrs={"agenda": 1.0})),
                loop=loop,
                session=SessionConfig(max_turns=6),
                prompt=prompt,
            )
            (rows[name],) = rollout.dataset([PROFILE], [0])
    finally:
        loop.run(model.aclose())
        loop.close()
    assert rows["ours"]["prompt"][1]["content"].endswith(f"{NOTE} reply 1 of 3.]")
    assert rows["plain"]["prompt"][1] == {"role": "user", "content": PROFILE.opening_line}
    assert rows["plain"]["prompt"][0]["content"] != rows["ours"]["prompt"][0]["content"]
