"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from therapygym.errors import MissingAPIKeyError, ModelCallError, ModelUnreachableError
from therapygym.models import BaseChatModel, ResponseCache, load_model
from therapygym.testing.openai_server import Fault

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def load() -> AsyncIterator[Any]:
    """`load(spec, **kw)` builds a model whose connections are closed when the test ends."""
    models: list[BaseChatModel] = []

    def make(spec: str, **kwargs: Any) -> BaseChatModel:
        models.append(load_model(spec, **kwargs))
        return models[-1]

    yield make
    for model in models:
        await model.aclose()


async def test_reply_usage_and_request_shape(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(["I hear you."])
    model = load(server_spec(server))
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    reply = await model.chat(HELLO, temperature=0.3, max_tokens=20, seed=7, json_schema=schema)
    assert reply.text == "I hear you."
    assert (reply.prompt_tokens, reply.completion_tokens) == (2, 3)
    assert reply.model == "fake-model" and not reply.cached and reply.attempts == 1
    sent = server.requests[0]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 20 and sent["seed"] == 7
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema
    await model.aclose()


@pytest.mark.parametrize(
    "fault", [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.MALFORMED, Fault.DROP]
)
async def test_transient_faults_are_retried(
    load: Any, openai_server: Any, server_spec: Any, fault: Fault
) -> None:
    server = openai_server(["recovered"], fault_script=[fault, fault])
    model = load(server_spec(server, max_retries=3))
    reply = await model.chat(HELLO)
    assert reply.text == "recovered" and reply.attempts == 3
    assert len(server.requests) == 3 if fault is not Fault.DROP else len(server.requests) >= 3


async def test_hang_past_timeout_is_retried(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(["late but fine"], fault_script=[Fault.HANG], hang_s=5.0)
    model = load(server_spec(server, timeout_s=0.3, max_retries=1))
    started = time.perf_counter()
    reply = await model.chat(HELLO)
    assert reply.text == "late but fine" and reply.attempts == 2
    assert time.perf_counter() - started < 3.0


async def test_retries_exhausted_give_a_recorded_error(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(["never"], fault_script=[Fault.SERVER_ERROR] * 10)
    model = load(server_spec(server, max_retries=2))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert err.value.attempts == 3 and err.value.transient
    assert "HTTP 500" in err.value.cause
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(["x"])
    model = load(server_spec(server, max_retries=4))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO, max_tokens=-1)  # the server rejects it with HTTP 400
    assert not err.value.transient and err.value.attempts == 1
    assert "HTTP 400" in str(err.value)


async def test_retry_after_is_honoured_but_bounded(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(["ok"], fault_script=[Fault.RATE_LIMIT])
    model = load(server_spec(server, max_retries=1))
    reply = await model.chat(HELLO)
    assert reply.attempts == 2


async def test_unreachable_server_is_named(load: Any) -> None:
    model = load("openai:m?base_url=http://127.0.0.1:9/v1&max_retries=1&backoff_initial_s=0.01")
    with pytest.raises(ModelUnreachableError) as err:
        await model.chat(HELLO)
    assert "cannot reach http://127.0.0.1:9/v1" in str(err.value)
    assert "is the server running" in str(err.value)


def test_missing_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingAPIKeyError, match="MY_KEY is not set"):
        load_model("openai:m?base_url=http://127.0.0.1:9/v1&api_key_env=MY_KEY")
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY is not set"):
        load_model("openai:gpt-4o-mini")


async def test_cache_serves_repeats_and_skips_errors(
    load: Any, openai_server: Any, server_spec: Any, cache: ResponseCache
) -> None:
    server = openai_server(["first", "second", "third"], fault_script=[None, Fault.SERVER_ERROR])
    model = load(server_spec(server, max_retries=0), cache=cache)
    a = await model.chat(HELLO)
    b = await model.chat(HELLO)
    assert (a.text, a.cached, b.text, b.cached) == ("first", False, "first", True)
    with pytest.raises(ModelCallError):
        await model.chat(HELLO, seed=1)  # a new sample: not cached, and the server fails it
    c = await model.chat(HELLO, seed=1)  # the failure was not cached
    assert c.text == "second" and not c.cached  # faulted requests consume no scripted reply
    assert len(server.requests) == 3


async def test_concurrency_limit_is_respected(
    load: Any, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(None, latency_s=0.2)
    model = load(server_spec(server, concurrency=2))
    started = time.perf_counter()
    await asyncio.gather(*(model.chat([{"role": "user", "content": f"n{i}"}]) for i in range(6)))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.6  # 6 calls, 2 at a time, 0.2 s each: at least three waves


async def test_api_key_goes_only_in_the_header(
    load: Any,
    openai_server: Any,
    server_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    cache: ResponseCache,
) -> None:
    monkeypatch.setenv("PLANTED_KEY", "sk-planted-0123456789")
    server = openai_server(["fine"])
    model = load(server_spec(server, api_key_env="PLANTED_KEY"), cache=cache)
    await model.chat(HELLO)
    assert "sk-planted" not in repr(server.requests)
    assert "sk-planted" not in model.identity and "sk-planted" not in model.spec
    assert b"sk-planted" not in cache.path.read_bytes()


@pytest.mark.parametrize(
    ("fault", "fragment"), [(Fault.DROP, "dropped"), (Fault.HANG, "timed out")]
)
async def test_failure_causes_say_what_happened(
    load: Any, openai_server: Any, server_spec: Any, fault: Fault, fragment: str
) -> None:
    server = openai_server(["never"], fault_script=[fault] * 5, hang_s=3.0)
    model = load(server_spec(server, max_retries=1, timeout_s=0.3))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert fragment in err.value.cause and err.value.attempts == 2
