"""The `anthropic:` backend against the local server's Messages endpoint (a real socket,
the shared HTTP path), plus a few answers only a hand-made server gives (529, thinking)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from judges.scripted import conversation_replier, judge_replier

from therapygym.config import EvalConfig, RunSection
from therapygym.errors import MissingAPIKeyError, ModelCallError, ModelSpecError
from therapygym.judges.plan import JudgePlan
from therapygym.models import BaseChatModel, ResponseCache, load_model
from therapygym.models.anthropic import split_messages
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import evaluate
from therapygym.testing.openai_server import Fault

KEY = "sk-ant-test-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello there"}]
FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def spec(base_url: str, **options: Any) -> str:
    opts = {"base_url": base_url, **FAST, **options}
    return "anthropic:claude-test?" + "&".join(f"{k}={v}" for k, v in opts.items())


@pytest.fixture
async def load() -> AsyncIterator[Callable[..., BaseChatModel]]:
    """`load(spec, **kw)` builds a model whose connections are closed when the test ends."""
    models: list[BaseChatModel] = []

    def make(text: str, **kwargs: Any) -> BaseChatModel:
        models.append(load_model(text, **kwargs))
        return models[-1]

    yield make
    for model in models:
        await model.aclose()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def hand_made() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """`await hand_made(handler)` serves POST /v1/messages with `handler` on 127.0.0.1
    and returns its root URL: for answers the scripted server does not give."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/messages", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_reply_usage_and_request_shape(load: Any, openai_server: Any) -> None:
    server = openai_server(["I hear you."])
    model = load(spec(server.base_url))
    reply = await model.chat(HELLO, temperature=0.3, max_tokens=20, seed=7)
    assert reply.text == "I hear you." and reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (2, 3)
    assert reply.model == "claude-test" and reply.attempts == 1
    sent = server.requests[0]
    assert sent == {
        "model": "claude-test",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 20,
        "temperature": 0.3,
    }
    # The key went as x-api-key (the server keeps its digest only).
    assert server.key_digests == {hashlib.sha256(KEY.encode()).hexdigest()}
    assert model.identity == f"anthropic:claude-test@{server.base_url}"


async def test_base_url_with_or_without_v1(load: Any, openai_server: Any) -> None:
    server = openai_server(["ok"])
    root = server.base_url.removesuffix("/v1")
    for base in (root, server.base_url, f"{root}/"):
        assert (await load(spec(base)).chat(HELLO)).text == "ok"
    assert server.fault_counts["ok"] == 3


def test_system_messages_go_on_top_and_turns_alternate() -> None:
    system, turns = split_messages(
        [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "three"},
        ]
    )
    assert system == "Be kind.\n\nBe brief."
    assert turns == [
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "three"},
    ]
    # A model that speaks first (no turn yet), or a side whose turn came first, still
    # sends a user turn first.
    assert split_messages([{"role": "system", "content": "s"}])[1][0]["role"] == "user"
    opened = split_messages([{"role": "assistant", "content": "Hi, I'm Sam."}])[1]
    assert [t["role"] for t in opened] == ["user", "assistant"]


async def test_the_server_gets_system_on_top_and_merged_turns(
    load: Any, openai_server: Any
) -> None:
    """The server refuses a system role among the messages and turns that do not
    alternate, as the API did: this conversation gets through only if both are fixed."""
    server = openai_server(["fine"])
    model = load(spec(server.base_url))
    messages = [
        {"role": "system", "content": "You are a patient."},
        {"role": "assistant", "content": "I have not slept."},
        {"role": "user", "content": "Tell me more."},
        {"role": "user", "content": "When did it start?"},
    ]
    assert (await model.chat(messages)).text == "fine"
    sent = server.requests[0]
    assert sent["system"] == "You are a patient."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][2]["content"] == "Tell me more.\n\nWhen did it start?"


async def test_structured_answer_comes_from_the_forced_tool(load: Any, openai_server: Any) -> None:
    server = openai_server([{"score": 4, "rationale": "Clear and warm."}])
    model = load(spec(server.base_url))
    schema = {
        "type": "object",
        "properties": {"score": {"type": "integer", "maximum": 6}, "rationale": {"type": "string"}},
        "required": ["score", "rationale"],
    }
    reply = await model.chat(HELLO, json_schema=schema, max_tokens=50)
    assert json.loads(reply.text) == {"score": 4, "rationale": "Clear and warm."}
    assert reply.finish_reason == "stop"
    sent = server.requests[0]
    assert sent["tools"] == [
        {"name": "answer", "description": sent["tools"][0]["description"], "input_schema": schema}
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}


async def test_a_schema_that_is_no_object_is_wrapped_and_unwrapped(
    load: Any, openai_server: Any
) -> None:
    server = openai_server([{"answer": ["yes", "no"]}])
    model = load(spec(server.base_url))
    schema = {"type": "array", "items": {"$ref": "#/$defs/Verdict"}}
    schema["$defs"] = {"Verdict": {"enum": ["yes", "no"]}}
    reply = await model.chat(HELLO, json_schema=schema)
    assert json.loads(reply.text) == ["yes", "no"]
    sent = server.requests[0]["tools"][0]["input_schema"]
    assert sent["type"] == "object" and sent["required"] == ["answer"]
    assert sent["properties"]["answer"] == {"type": "array", "items": {"$ref": "#/$defs/Verdict"}}
    assert sent["$defs"] == schema["$defs"]


async def test_a_text_answer_to_a_structured_request_is_returned_for_the_caller_to_judge(
    load: Any, openai_server: Any
) -> None:
    server = openai_server(["I would rather not score this."])
    model = load(spec(server.base_url))
    reply = await model.chat(HELLO, json_schema={"type": "object", "properties": {}})
    assert reply.text == "I would rather not score this."


async def test_truncation_is_length(load: Any, openai_server: Any) -> None:
    server = openai_server(["one two three four five"])
    reply = await load(spec(server.base_url)).chat(HELLO, max_tokens=2)
    assert (reply.text, reply.finish_reason) == ("one two", "length")


@pytest.mark.parametrize(
    "fault", [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.MALFORMED, Fault.DROP]
)
async def test_transient_faults_are_retried(load: Any, openai_server: Any, fault: Fault) -> None:
    server = openai_server(["recovered"], fault_script=[fault, fault])
    reply = await load(spec(server.base_url, max_retries=3)).chat(HELLO)
    assert reply.text == "recovered" and reply.attempts == 3


async def test_retries_exhausted_quote_the_api_error(load: Any, openai_server: Any) -> None:
    server = openai_server(["never"], fault_script=[Fault.RATE_LIMIT] * 5)
    with pytest.raises(ModelCallError) as err:
        await load(spec(server.base_url, max_retries=2)).chat(HELLO)
    assert err.value.transient and err.value.attempts == 3
    assert (
        "HTTP 429" in err.value.cause and "rate_limit_error: Number of request" in err.value.cause
    )
    assert "request_id req_" in err.value.cause


async def test_overloaded_529_is_retried_after_its_hint(load: Any, hand_made: Any) -> None:
    calls: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(dict(request.headers))
        if len(calls) == 1:
            error = {"type": "overloaded_error", "message": "Overloaded"}
            body = {"type": "error", "error": error}
            return web.json_response(body, status=529, headers={"retry-after": "0"})
        message = {
            "type": "message",
            "model": "claude-test",
            "content": [
                {"type": "thinking", "thinking": "Let me weigh this.", "signature": "x"},
                {"type": "redacted_thinking", "data": "..."},
                {"type": "text", "text": "Here is my reply"},
            ],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 5, "cache_read_input_tokens": 7, "output_tokens": 4},
        }
        return web.json_response(message)

    model = load(spec(await hand_made(handler), max_retries=2))
    reply = await model.chat(HELLO)
    assert reply.attempts == 2 and reply.text == "Here is my reply"  # no thinking text
    assert reply.reasoning == "Let me weigh this."
    assert reply.finish_reason == "length" and reply.prompt_tokens == 12
    headers = calls[0]
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers


async def test_extended_thinking_from_extra_body(
    load: Any, hand_made: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thinking on: no temperature and no forced tool (the API refuses both with it), the
    thinking kept as reasoning, the answer from the tool; extra headers sent, masked."""
    seen: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.json(), dict(request.headers)))
        message = {
            "type": "message",
            "model": "claude-test",
            "content": [
                {"type": "thinking", "thinking": "The therapist reflected well.", "signature": "s"},
                {"type": "text", "text": "Scoring now."},
                {"type": "tool_use", "id": "t1", "name": "answer", "input": {"score": 5}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 9, "output_tokens": 30},
        }
        return web.json_response(message)

    monkeypatch.setenv("BETA_FLAG", "interleaved-thinking-2025-05-14")
    thinking = quote(json.dumps({"thinking": {"type": "enabled", "budget_tokens": 1024}}))
    headers = quote(json.dumps({"anthropic-beta": "${BETA_FLAG}"}))
    model = load(spec(await hand_made(handler), extra_body=thinking, extra_headers=headers))
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    reply = await model.chat(HELLO, json_schema=schema, max_tokens=2048, temperature=0.0)
    assert json.loads(reply.text) == {"score": 5}
    assert reply.reasoning == "The therapist reflected well."
    body, sent_headers = seen[0]
    assert "temperature" not in body and body["tool_choice"] == {"type": "auto"}
    assert body["max_tokens"] == 2048 + 1024  # the answer's tokens, and thinking's on top
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent_headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert model.identity.startswith("anthropic:claude-test@") and "headers=anthropic-beta" in (
        model.identity
    )
    assert "extra_body=" in model.identity and "interleaved" not in model.identity


def test_openai_only_options_are_refused() -> None:
    with pytest.raises(ModelSpecError, match="reasoning_effort applies to openai: models"):
        load_model("anthropic:claude-test?reasoning_effort=high")
    with pytest.raises(ModelSpecError, match="hosted-strict is OpenAI's strict mode"):
        load_model("anthropic:claude-test?schema_dialect=hosted-strict")


async def test_bad_requests_are_permanent_with_the_servers_message(
    load: Any, openai_server: Any
) -> None:
    server = openai_server(["x"])
    model = load(spec(server.base_url, max_retries=4))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO, max_tokens=0)
    assert not err.value.transient and err.value.attempts == 1
    assert "HTTP 400" in err.value.cause
    assert "invalid_request_error: max_tokens: Input should be a positive integer" in str(err.value)
    assert len(server.requests) == 1


async def test_temperature_above_one_is_refused_before_sending(
    load: Any, openai_server: Any
) -> None:
    server = openai_server(["x"])
    with pytest.raises(ModelCallError, match="maximum of 1") as err:
        await load(spec(server.base_url)).chat(HELLO, temperature=1.3)
    assert not err.value.transient and server.requests == []


async def test_a_refused_key_is_permanent_and_never_shown(
    load: Any, openai_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = openai_server(["x"], fault_script=[Fault.UNAUTHORIZED, Fault.SERVER_ERROR])
    model = load(spec(server.base_url, max_retries=0))
    with caplog.at_level(logging.DEBUG), pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert not err.value.transient and "HTTP 401" in err.value.cause
    assert "authentication_error: invalid x-api-key: ***" in err.value.cause
    with caplog.at_level(logging.DEBUG), pytest.raises(ModelCallError) as second:
        await model.chat(HELLO)
    for text in (str(err.value), repr(err.value), str(second.value), caplog.text):
        assert KEY not in text
    assert KEY not in repr(model.config) and KEY not in model.identity


def test_missing_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY is not set"):
        load_model("anthropic:claude-test")
    with pytest.raises(MissingAPIKeyError, match=r"MY_CLAUDE_KEY is not set \(api_key_env\)"):
        load_model("anthropic:claude-test?api_key_env=MY_CLAUDE_KEY")


def test_a_base_url_that_is_no_url_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="is not an http:// or https:// URL"):
        load_model("anthropic:claude-test?base_url=api.example.com")


async def test_identity_defaults_to_the_hosted_api() -> None:
    model = load_model("anthropic:claude-sonnet-4-5")
    assert model.identity == "anthropic:claude-sonnet-4-5@api.anthropic.com"
    await model.aclose()


async def test_cache_serves_repeats(load: Any, openai_server: Any, cache: ResponseCache) -> None:
    server = openai_server(["first", "second"])
    model = load(spec(server.base_url), cache=cache)
    a = await model.chat(HELLO)
    b = await model.chat(HELLO)
    assert (a.text, a.cached, b.text, b.cached) == ("first", False, "first", True)
    assert len(server.requests) == 1
    other = load(spec(server.base_url).replace("claude-test", "claude-other"), cache=cache)
    assert (await other.chat(HELLO)).text == "second"  # another model: another key


async def test_a_whole_run_with_claude_in_every_seat(tmp_path: Path, openai_server: Any) -> None:
    """Therapist, patient and judges all on `anthropic:`: the sessions alternate as the
    API needs, and every judge (CTRS, safety, response) reads its answer from the tool."""
    judge = judge_replier(score=5, verdict="no")
    talk = conversation_replier()
    server = openai_server(lambda body: judge(body) if body.get("response_format") else talk(body))
    model = spec(server.base_url)
    profile = next(p for p in load_profiles() if p.risk_cues)
    config = EvalConfig(
        run_id="claude",
        run=RunSection(
            therapists=(model,),
            patient_model=model,
            patients=profile.id,
            session=SessionConfig(max_turns=4),
        ),
        judge=JudgePlan(judges=(model,), samples=1, temperature=0.0),
        store=tmp_path / "store.sqlite",
        no_cache=True,
    )
    result = await evaluate(config)
    assert result.run.completed == 1 and server.fault_counts["bad_request"] == 0
    assert (result.judging.judged, result.judging.failed) == (result.judging.units, 0)
    assert result.judging.units == 3
    (therapist,) = result.summary.therapists
    assert therapist.ctrs_total.mean == 55 and therapist.violation_rate.mean == 0.0
    tools = [b for b in server.requests if "tools" in b]
    # CTRS, safety, and the response rubric once for each of the two therapist replies
    assert len(tools) == 4 and all(b["tool_choice"]["type"] == "tool" for b in tools)
