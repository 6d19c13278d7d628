"""The verifiers 0.4.0 adapter end to end: verifiers' therapist agent (its null harness,
interception and OpenAI client) against our patient and judges, all on the local server;
and the env loaded by its id from the shipped prime-rl config, served and driven the way
prime-rl's orchestrator drives an env (verifiers' EnvServer and EnvClient).

Skipped where verifiers is not installed (our CI: it needs openai<3); run it in its own
venv, see docs/training.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("verifiers.v1", reason="verifiers 0.4.0 lives in its own venv (needs openai<3)")

import verifiers.v1 as vf
from aiohttp import ClientSession, web
from judges.scripted import judge_replier
from verifiers.v1.serve import EnvClient, EnvServer, env_config_data
from verifiers.v1.utils.loaders import resolve_env_config

from therapygym.judges.severity import rank
from therapygym.models import load_model
from therapygym.patients.select import select_profiles
from therapygym.records import SessionConfig
from therapygym.rl.reward import SessionRewarder, load_reward_spec
from therapygym.rl.trl import transcript_from_chat
from therapygym.rl.verifiers import (
    REWARD_NAME,
    TherapyVerifiersConfig,
    TherapyVerifiersEnv,
)
from therapygym.therapists.prompted import default_prompt

PROFILE = select_profiles("dep-01-maya")[0]
POLICY = "policy-under-test"
PRIME_RL_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "prime-rl-qwen3-4b.toml"


def replier(judge: Any) -> Any:
    """The policy (asked by verifiers under POLICY) and the patient (our spec's model)
    get numbered lines, so the test can tell who said what; judge calls get `judge`."""
    counters = {POLICY: itertools.count(1), "patient": itertools.count(1)}

    def reply(body: dict[str, Any]) -> Any:
        if body.get("response_format"):
            return judge(body)
        who = POLICY if body.get("model") == POLICY else "patient"
        return f"{who} line {next(counters[who])}"

    return reply


async def streaming_front(upstream: str) -> tuple[web.AppRunner, str]:
    """verifiers' harness always streams and our test server does not: relay each request
    unstreamed and answer it as one SSE chunk plus the usage chunk."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        stream = body.pop("stream", False)
        body.pop("stream_options", None)
        async with (
            ClientSession() as http,
            http.post(f"{upstream}/chat/completions", json=body) as r,
        ):
            data, status = await r.json(), r.status
        if status != 200 or not stream:
            return web.json_response(data, status=status)
        head = {"id": data["id"], "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = data["model"]
        choice = data["choices"][0]
        delta = {"role": "assistant", "content": choice["message"]["content"]}
        chunks = [
            {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**head, "choices": [], "usage": data["usage"]},
        ]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return web.Response(text=text, content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/v1"


async def play(
    server: Any, spec: str, weights: Path, max_turns: int
) -> tuple[TherapyVerifiersEnv, vf.Episode]:
    """One episode of dep-01-maya through verifiers' own `run_episode`."""
    runner, front = await streaming_front(server.base_url)
    try:
        config = TherapyVerifiersConfig(
            taskset={"patients": PROFILE.id, "seeds": [3]},
            patient_model=spec,
            judge=spec,
            reward_weights=str(weights),
            session=SessionConfig(max_turns=max_turns),
        )
        env = TherapyVerifiersEnv(config)
        (task,) = list(env.taskset)
        client = vf.EvalClientConfig(base_url=front, api_key_var="THERAPYGYM_TEST_KEY")
        async with env.serving():
            episode = await env.run_episode(task, vf.ModelContext(model=POLICY, client=client))
        return env, episode
    finally:
        await runner.cleanup()


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "weights.yaml"
    # a label no one-event pair can take over (the scripted judge answers yes everywhere,
    # and medication_advice then counts as medical_red_flag_missed: safety@2.0's rule)
    path.write_text("ctrs: {agenda: 1.0, feedback: 0.5}\nsafety: {stigmatising_language: 2.0}\n")
    return path


@pytest.mark.timeout(240)
async def test_episode_reward_is_the_sessions_R(openai_server, server_spec, weights) -> None:
    server = openai_server(replier(judge_replier(score=4, verdict="yes")))
    spec = server_spec(server)
    env, episode = await play(server, spec, weights, max_turns=4)
    assert episode.ok, episode.errors
    (trace,) = episode.traces
    assert trace.agent.name == "therapist"

    # The therapist's side of the session: our system prompt, the authored opening, and
    # the policy's and patient's lines alternating until the session's turn limit; each
    # patient line ends with the turn note a prompted therapist gets.
    messages = [(type(m).__name__, m.content) for m in trace.messages]
    assert [role for role, _ in messages] == [
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
        "UserMessage",
        "AssistantMessage",
    ]
    assert messages[0][1] == default_prompt()
    said = [c.split("\n\n[Session note", 1) for _, c in messages[1:]]
    assert said[0] == [
        PROFILE.opening_line,
        "; the client does not see it: this is your reply 1 of 2.]",
    ]
    assert said[2] == [
        "patient line 1",
        "; the client does not see it: this is your last reply (2 of 2).]",
    ]
    assert [s[0] for s in said[1:]] == [f"{POLICY} line 1", "patient line 1", f"{POLICY} line 2"]

    # R as our rewarder computes it on the same conversation (no made-up value).
    chat = [
        {"role": "user" if r == "UserMessage" else "assistant", "content": s[0]}
        for (r, _), s in zip(messages[1:], said, strict=True)
    ]
    judge = load_model(spec)
    try:
        rewarder = SessionRewarder(judge, load_reward_spec(weights))
        transcript = transcript_from_chat(chat[:-1], chat[-1]["content"], "check")
        expected, _ = await rewarder.score(transcript)
    finally:
        await judge.aclose()
    # both items 4/6; one violation, its weight 2.0 times its severity's rung
    cost = expected.penalties["stigmatising_language"]
    assert cost > 0 and sum(expected.penalties.values()) == cost  # the others cost 0
    assert expected.total == pytest.approx(1.5 * 4 / 6 - cost)
    assert trace.rewards[REWARD_NAME].score == pytest.approx(expected.total)
    assert trace.reward == pytest.approx(expected.total)
    assert trace.metrics["ctrs/agenda"] == 4.0
    assert trace.metrics["safety/stigmatising_language"] == 1.0
    level = expected.severities["stigmatising_language"]
    assert trace.metrics["severity/stigmatising_language"] == float(rank(level)) > 0
    assert trace.metrics["safety_penalty/stigmatising_language"] == pytest.approx(cost)
    assert trace.metrics["safety_term"] == pytest.approx(cost)
    assert trace.metrics["patient_turns"] == 2.0
    assert env.patient_model is None  # models closed with serving()


@pytest.mark.timeout(240)
async def test_failed_judge_fails_the_episode(openai_server, server_spec, weights) -> None:
    server = openai_server(replier(lambda body: "not json"))
    _env, episode = await play(server, server_spec(server, max_retries=0), weights, max_turns=2)
    assert not episode.ok
    assert REWARD_NAME not in episode.traces[0].rewards
    assert any("no reward for" in e.message for e in episode.errors), episode.errors


def prime_rl_env_block() -> dict[str, Any]:
    """The `env` table of the shipped prime-rl config's one train env: what prime-rl's
    orchestrator hands to verifiers' env server (`env_config_data`, then
    `resolve_env_config` in the server process)."""
    config = tomllib.loads(PRIME_RL_CONFIG.read_text())
    (entry,) = config["orchestrator"]["train"]["env"]
    return entry["env"]


def test_the_prime_rl_config_loads_the_env_by_id(tmp_path: Path) -> None:
    """In a fresh interpreter outside the checkout (so nothing of ours is imported first),
    verifiers resolves the config's taskset id to the installed `therapygym_verifiers`
    module, narrows the env block to our config class and builds our env, through the
    wire form prime-rl ships to its env server."""
    code = (
        "import json, sys\n"
        "from verifiers.v1.serve import env_config_data\n"
        "from verifiers.v1.utils.loaders import load_environment, resolve_env_config\n"
        "wire = env_config_data(resolve_env_config(json.load(sys.stdin)))\n"
        "config = resolve_env_config(wire)\n"
        "env = load_environment(config)\n"
        "print(json.dumps([type(config).__qualname__, type(env).__module__,\n"
        "    type(env).__qualname__, config.patient_model, config.session.max_turns,\n"
        "    'therapygym_verifiers' in sys.modules]))\n"
    )
    block = prime_rl_env_block()
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(block),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config_cls, module, env_cls, patient, turns, imported = json.loads(done.stdout)
    assert (config_cls, module, env_cls) == (
        "TherapyVerifiersConfig",
        "therapygym.rl.verifiers",
        "TherapyVerifiersEnv",
    )
    assert patient == block["patient_model"] and turns == 10 and imported


@pytest.mark.timeout(240)
async def test_a_rollout_through_verifiers_env_server(openai_server, server_spec, weights) -> None:
    """The prime-rl env block, its models pointed at the local server (as a command-line
    override would), served by verifiers' EnvServer and run by its EnvClient: one episode
    comes back over the wire with R recorded."""
    server = openai_server(replier(judge_replier(score=4, verdict="yes")))
    spec = server_spec(server)
    block = prime_rl_env_block() | {
        "taskset": {**prime_rl_env_block()["taskset"], "patients": PROFILE.id, "seeds": [3]},
        "patient_model": spec,
        "judge": spec,
        "reward_weights": str(weights),
        "session": {"max_turns": 2},
    }
    config = resolve_env_config(env_config_data(resolve_env_config(block)))
    runner, front = await streaming_front(server.base_url)
    env_server = EnvServer(config=config, address="tcp://127.0.0.1:0")
    serving = asyncio.create_task(env_server.run())
    client = EnvClient(address=env_server.address)
    try:
        await client.wait_for_server_startup()
        (task,) = list(env_server.env.taskset)
        episode = await client.run(
            client=vf.EvalClientConfig(base_url=front, api_key_var="THERAPYGYM_TEST_KEY"),
            model=POLICY,
            sampling=vf.SamplingConfig(),
            task_data=task.data.model_dump(mode="json"),
        )
    finally:
        await client.close()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await runner.cleanup()
    assert episode.ok, episode.errors
    (trace,) = episode.traces
    assert trace.rewards[REWARD_NAME].score == pytest.approx(trace.reward)
    assert trace.metrics["ctrs/agenda"] == 4.0 and trace.metrics["patient_turns"] == 1.0
