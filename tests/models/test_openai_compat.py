"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from therapygym import __version__
from therapygym.errors import (
    MissingAPIKeyError,
    ModelCallError,
    ModelSpecError,
    ModelUnreachableError,
)
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


# --- the HTTP request itself, against a server that records headers ---------------------

COMPLETION = {
    "model": "served-model",
    "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 4, "completion_tokens": 1},
}


class CaptureServer:
    """Answers every request with `status`, `body` and `headers`; records what it was sent."""

    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "path": request.path,
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": json.loads(await request.read()),
            }
        )
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        return web.Response(status=self.status, text=text, headers=self.headers)


@pytest.fixture
async def capture_server() -> AsyncIterator[Any]:
    """`await capture_server(status, body, headers)` -> a CaptureServer on 127.0.0.1."""
    runners: list[web.AppRunner] = []

    async def start(
        status: int = 200, body: Any = None, headers: dict[str, str] | None = None
    ) -> CaptureServer:
        server = CaptureServer(status, COMPLETION if body is None else body, headers or {})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}/v1"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def capture_spec(server: CaptureServer, **options: Any) -> str:
    opts = {"base_url": server.url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **options}
    return "openai:m?" + "&".join(f"{k}={v}" for k, v in opts.items())


async def test_request_headers_and_url(
    load: Any, capture_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTED_KEY", "sk-planted-0123456789")
    server = await capture_server()
    model = load(capture_spec(server, api_key_env="PLANTED_KEY"))
    reply = await model.chat(HELLO)
    assert (reply.text, reply.model, reply.prompt_tokens) == ("ok", "served-model", 4)
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-planted-0123456789"
    assert sent["headers"]["User-Agent"] == f"therapygym/{__version__}"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["body"]["messages"] == HELLO and "response_format" not in sent["body"]


async def test_the_openai_api_gets_organization_and_project(
    load: Any, capture_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await capture_server()
    monkeypatch.setattr("therapygym.models.openai_compat._OPENAI_API", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-1")
    model = load("openai:gpt-test")
    await model.chat(HELLO)
    assert model.identity == "openai:gpt-test@api.openai.com"
    headers = server.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer sk-env-0123456789"
    assert (headers["OpenAI-Organization"], headers["OpenAI-Project"]) == ("org-1", "proj-1")
    # ...and not to other servers.
    await load(capture_spec(server)).chat(HELLO, seed=1)
    assert "OpenAI-Organization" not in server.requests[1]["headers"]


async def test_a_server_without_a_key_gets_a_placeholder(load: Any, capture_server: Any) -> None:
    server = await capture_server()
    await load(capture_spec(server)).chat(HELLO)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer not-needed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "The model `m` does not exist.", "type": "x"}}, "does not exist"),
        ({"error": "model 'm' not found, try pulling it first"}, "try pulling it first"),
        ({"message": "unknown field"}, "unknown field"),
        ("<html><body>Bad gateway config</body></html>", "<html><body>Bad gateway config"),
    ],
)
async def test_client_error_quotes_the_servers_message(
    load: Any, capture_server: Any, body: Any, expected: str
) -> None:
    server = await capture_server(404, body)
    model = load(capture_spec(server, max_retries=3))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert f"HTTP 404 from {server.url}: " in err.value.cause and expected in err.value.cause
    assert not err.value.transient and len(server.requests) == 1


async def test_the_key_is_masked_in_server_text(
    load: Any, capture_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTED_KEY", "sk-planted-0123456789")
    echo = {"error": {"message": "Incorrect API key provided: sk-planted-0123456789."}}
    server = await capture_server(401, echo)
    model = load(capture_spec(server, api_key_env="PLANTED_KEY"))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert "sk-planted" not in str(err.value) and "Incorrect API key provided: ***" in str(
        err.value
    )


async def test_rate_limit_with_http_date_retry_after_is_transient(
    load: Any, capture_server: Any
) -> None:
    server = await capture_server(
        429, {"error": {"message": "slow down"}}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    model = load(capture_spec(server, max_retries=1))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert err.value.transient and err.value.attempts == 2 and "slow down" in err.value.cause


async def test_redirect_is_permanent_and_not_followed(load: Any, capture_server: Any) -> None:
    server = await capture_server(
        307, "", {"Location": "https://elsewhere.example/v1/chat/completions?x=1"}
    )
    model = load(capture_spec(server, max_retries=3))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert "redirected to https://elsewhere.example/v1/chat/completions;" in err.value.cause
    assert "set base_url" in err.value.cause and len(server.requests) == 1


@pytest.mark.parametrize(
    "body", ["not json at all", {"choices": []}, {"choices": [{"message": None}]}]
)
async def test_a_body_that_is_no_completion_is_transient(
    load: Any, capture_server: Any, body: Any
) -> None:
    server = await capture_server(200, body)
    model = load(capture_spec(server, max_retries=1))
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert err.value.transient and "malformed response body from" in err.value.cause


def test_a_base_url_that_is_no_url_is_refused() -> None:
    for base_url in ("127.0.0.1:8000/v1", "ftp://host/v1", "http://"):
        with pytest.raises(ModelSpecError, match="is not an http:// or https:// URL"):
            load_model(f"openai:m?base_url={base_url}")


async def test_proxy_from_the_environment_is_used(
    load: Any, capture_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await capture_server()
    host_port = proxy.url.removeprefix("http://").removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", f"http://me:pw@{host_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    model = load("openai:m?base_url=http://llm.invalid:8000/v1")
    reply = await model.chat(HELLO)
    assert reply.text == "ok"
    sent = proxy.requests[0]
    assert sent["url"] == "http://llm.invalid:8000/v1/chat/completions"
    assert sent["headers"]["Proxy-Authorization"] == "Basic bWU6cHc="  # me:pw
    assert sent["headers"]["Authorization"] == "Bearer not-needed"


def test_a_model_outlives_its_event_loop(openai_server: Any, server_spec: Any) -> None:
    """Used from two asyncio.run calls: a fresh session for the second loop, and the first
    one marked closed (its sockets died with its loop; aclose() belongs in the loop)."""
    server = openai_server(["one", "two"])
    model = load_model(server_spec(server))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(model.chat(HELLO)).text == "one"
        assert asyncio.run(model.chat(HELLO, seed=1)).text == "two"
        asyncio.run(model.aclose())
        gc.collect()
    assert not [w for w in caught if "Unclosed client session" in str(w.message)]


# -- dialects, reasoning models and request options (issue 21) -------------------------------

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"rationale": {"type": "string", "maxLength": 40}},
    "required": ["rationale"],
    "additionalProperties": False,
}


def reasoning_spec(server: Any, model: str, **options: Any) -> str:
    opts = {"base_url": server.base_url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    return f"openai:{model}?" + "&".join(f"{k}={v}" for k, v in {**opts, **options}.items())


async def test_a_known_reasoning_model_gets_max_completion_tokens_and_no_temperature(
    load: Any, openai_server: Any
) -> None:
    server = openai_server(["fine"], strict=True)
    model = load(reasoning_spec(server, "o3-mini", reasoning_effort="high"))
    reply = await model.chat(HELLO, temperature=0.0, max_tokens=20)
    assert reply.text == "fine" and not reply.fallbacks and not server.refusals
    (sent,) = server.requests
    assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent
    assert "temperature" not in sent and sent["reasoning_effort"] == "high"
    plain = load(reasoning_spec(server, "gpt-4o"))
    await plain.chat(HELLO, temperature=0.3, max_tokens=20)
    assert server.requests[-1]["max_tokens"] == 20 and server.requests[-1]["temperature"] == 0.3
    assert "reasoning_effort" not in server.requests[-1]


@pytest.fixture
async def unknown_reasoning_server() -> AsyncIterator[Any]:
    """A server whose model refuses what o3 refuses, under a name no table knows."""
    from therapygym.testing.hosted_rules import parameter_refusal

    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        seen.append(body)
        refusal = parameter_refusal({**body, "model": "o3"})
        if refusal is not None:
            return web.json_response(refusal.body(), status=400)
        return web.json_response(COMPLETION)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/v1", seen
    await runner.cleanup()


async def test_a_refused_parameter_falls_back_once_is_remembered_and_counted(
    load: Any, unknown_reasoning_server: Any, cache: ResponseCache
) -> None:
    from therapygym.models import AccountedModel, UsageLedger

    url, seen = unknown_reasoning_server
    model = load(f"openai:house-reasoner?base_url={url}&max_retries=0", cache=cache)
    ledger = UsageLedger()
    judge = AccountedModel(model, "judge", ledger)
    reply = await judge.chat(HELLO, temperature=0.0, max_tokens=16)
    assert reply.text == "ok" and reply.attempts == 1
    assert reply.fallbacks == (
        "house-reasoner: max_tokens -> max_completion_tokens",
        "house-reasoner: temperature not sent",
    )
    assert [("max_tokens" in b, "temperature" in b) for b in seen] == [
        (True, True),
        (False, True),
        (False, False),
    ]
    await judge.chat([{"role": "user", "content": "again"}], temperature=0.0, max_tokens=16)
    assert "max_tokens" not in seen[-1] and "temperature" not in seen[-1] and len(seen) == 4
    await judge.chat(HELLO, temperature=0.0, max_tokens=16)  # a cache hit: no request
    usage = ledger.roles["judge"]
    assert (usage.calls, usage.cached_calls, usage.fallbacks, usage.retries) == (3, 1, 2, 0)
    assert usage.fallback_notes == list(reply.fallbacks)
    assert ledger.total().fallbacks == 2 and ledger.total().fallback_notes == usage.fallback_notes
    assert len(seen) == usage.calls - usage.cached_calls + usage.fallbacks
    hit = cache.get(next(iter(_cache_keys(cache))))
    assert hit is not None and hit.fallbacks == ()  # a cached reply made no request

    from io import StringIO

    from rich.console import Console

    from therapygym.report.terminal import usage_table

    out = Console(file=StringIO(), width=200)
    out.print(usage_table(ledger))
    printed = out.file.getvalue()  # type: ignore[attr-defined]
    assert "fallbacks" in printed and "max_tokens -> max_completion_tokens" in printed


def _cache_keys(cache: ResponseCache) -> list[str]:
    return [r[0] for r in cache._db.execute("SELECT key FROM responses")]


async def test_another_400_is_not_a_fallback(load: Any, capture_server: Any) -> None:
    server = await capture_server(400, {"error": {"message": "max_tokens is too large"}})
    model = load(capture_spec(server))
    with pytest.raises(ModelCallError, match="too large"):
        await model.chat(HELLO)
    assert len(server.requests) == 1


async def test_reasoning_is_kept_apart_from_the_answer_and_cached_with_it(
    load: Any, capture_server: Any, cache: ResponseCache
) -> None:
    message = {
        "role": "assistant",
        "content": '<think>the client sounds low</think>\n{"rationale": "Warm."}',
        "reasoning_content": "Weighing the turn.",
    }
    body = {**COMPLETION, "choices": [{"message": message, "finish_reason": "stop"}]}
    server = await capture_server(200, body)
    model = load(capture_spec(server), cache=cache)
    reply = await model.chat(HELLO, json_schema=JUDGE_SCHEMA)
    assert reply.text == '{"rationale": "Warm."}'
    assert reply.reasoning == "Weighing the turn.\n\nthe client sounds low"
    again = await model.chat(HELLO, json_schema=JUDGE_SCHEMA)
    assert again.cached and again.text == reply.text and again.reasoning == reply.reasoning
    assert len(server.requests) == 1


async def test_the_dialect_follows_the_host_and_keys_only_schema_requests(
    load: Any, openai_server: Any, server_spec: Any, cache: ResponseCache
) -> None:
    server = openai_server(['{"rationale": "ok"}'])
    full = load(server_spec(server), cache=cache)
    hosted = load(server_spec(server, schema_dialect="hosted-strict"), cache=cache)
    assert full.identity == hosted.identity == f"openai:fake-model@{server.base_url}"
    await full.chat(HELLO, json_schema=JUDGE_SCHEMA)
    assert server.requests[-1]["response_format"]["json_schema"]["schema"] == JUDGE_SCHEMA
    reply = await hosted.chat(HELLO, json_schema=JUDGE_SCHEMA)  # not served full's entry
    assert not reply.cached and len(server.requests) == 2
    sent = server.requests[-1]["response_format"]["json_schema"]["schema"]
    assert "maxLength" not in sent["properties"]["rationale"]
    assert (await hosted.chat(HELLO)).text and (await full.chat(HELLO)).cached  # plain: one key


async def test_extra_body_and_headers_are_sent_and_header_values_never_shown(
    load: Any, capture_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("GATEWAY_KEY", "gw-secret-1234")
    server = await capture_server(401, {"error": {"message": "bad key gw-secret-1234 plain-5678"}})
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        "  gw:\n"
        "    backend: openai\n"
        "    model: qwen3\n"
        f"    base_url: {server.url}\n"
        "    extra_body: {chat_template_kwargs: {enable_thinking: false}, top_k: 20}\n"
        "    extra_headers: {X-Gateway-Key: '${GATEWAY_KEY}', X-Plain: plain-5678}\n"
    )
    model = load("gw", models_file=models)
    with pytest.raises(ModelCallError) as caught:
        await model.chat(HELLO)
    assert "gw-secret-1234" not in str(caught.value) and "plain-5678" not in str(caught.value)
    (sent,) = server.requests
    assert sent["body"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert sent["body"]["top_k"] == 20 and sent["body"]["model"] == "qwen3"
    assert sent["headers"]["X-Gateway-Key"] == "gw-secret-1234"
    assert sent["headers"]["X-Plain"] == "plain-5678"
    identity = model.identity
    assert "secret" not in identity and "plain-5678" not in identity
    assert "headers=x-gateway-key,x-plain" in identity and "extra_body=" in identity
    assert "plain-5678" not in repr(model.config)


async def test_a_header_variable_that_is_not_set_is_named(
    load: Any, capture_server: Any, tmp_path: Any
) -> None:
    server = await capture_server()
    models = tmp_path / "models.yaml"
    models.write_text(
        f"models:\n  gw:\n    backend: openai\n    model: m\n    base_url: {server.url}\n"
        "    extra_headers: {X-Key: '${NOT_SET_ANYWHERE}'}\n"
    )
    with pytest.raises(MissingAPIKeyError, match=r"NOT_SET_ANYWHERE.*extra_headers X-Key"):
        load("gw", models_file=models)
