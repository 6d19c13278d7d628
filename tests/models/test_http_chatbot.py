"""The HTTP chatbot backend against a real aiohttp.web server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from therapygym.errors import (
    ConfigError,
    MissingAPIKeyError,
    ModelCallError,
    ModelSpecError,
    ModelUnreachableError,
)
from therapygym.models import ResponseCache
from therapygym.models.http import parse_retry_after
from therapygym.models.http_chatbot import HttpChatbotModel, load_http_config
from therapygym.models.spec import ModelConfig

SECRET = "s3cret-token-0123456789"
CONVERSATION = [
    {"role": "system", "content": "You are a CBT therapist."},
    {"role": "user", "content": "I feel low."},
    {"role": "assistant", "content": "Tell me more."},
    {"role": "user", "content": "Work is hard."},
]
OK_BODY = {"data": {"reply": {"text": "That sounds heavy."}}, "usage": {"input": 11, "output": 4}}

Reply = tuple[int, Any, dict[str, str]]  # status, body (JSON value or raw str), headers


class BotServer:
    """A scripted chatbot: answers with `script` in order, then repeats `default`."""

    def __init__(self, script: list[Reply], default: Reply) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            {"method": request.method, "headers": dict(request.headers), "body": json.loads(raw)}
        )
        status, body, headers = self.script.pop(0) if self.script else self.default
        if status == -1:  # drop the connection without answering
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(
            status=status, text=text, headers=headers, content_type="application/json"
        )


@pytest.fixture
async def bot_server() -> AsyncIterator[Callable[..., Any]]:
    """`await bot_server(script, default=...)` starts a server stopped when the test ends."""
    runners: list[web.AppRunner] = []

    async def start(script: list[Reply] | None = None, default: Reply = (200, OK_BODY, {})):
        server = BotServer(script or [], default)
        app = web.Application()
        app.router.add_route("*", "/api/chat", server.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}/api/chat"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


def write_bot(tmp_path: Path, url: str, filename: str = "bot.yaml", **fields: Any) -> Path:
    doc: dict[str, Any] = {
        "url": url,
        "request": {"message": "{last_user}", "history": "{messages}", "system": "{system}"},
        "response_path": "data.reply.text",
        **fields,
    }
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def config_for(path: Path | str, **overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "backend": "http",
        "model": str(path),
        "base_url": None,
        "api_key_env": None,
        "concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "n_ctx": 8192,
        "threads": None,
        "price": None,
        "name": None,
        **overrides,
    }
    return ModelConfig.model_construct(**fields)


@pytest.fixture
async def make_model() -> AsyncIterator[Callable[..., HttpChatbotModel]]:
    """`make_model(path, cache=None, **config)`; connections are closed when the test ends."""
    models: list[HttpChatbotModel] = []

    def make(path: Path, cache: ResponseCache | None = None, **overrides: Any) -> HttpChatbotModel:
        models.append(HttpChatbotModel(config_for(path, **overrides), cache=cache))
        return models[-1]

    yield make
    for model in models:
        await model.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- mapping -----------------------------------------------------------------------------


async def test_nested_response_path_usage_and_request_shape(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server()
    request = {
        "message": "{last_user}",
        "history": "{messages}",
        "everything": "{messages_with_system}",
        "system": "{system}",
        "params": {"temperature": "{temperature}", "max_tokens": "{max_tokens}", "seed": "{seed}"},
        "fixed": [1, True, None, "no placeholder"],
    }
    path = write_bot(
        tmp_path,
        server.url,
        request=request,
        usage_paths={"prompt_tokens": "usage.input", "completion_tokens": "usage.output"},
    )
    model = make_model(path)
    reply = await model.chat(CONVERSATION, temperature=0.7, max_tokens=64, seed=3)

    assert reply.text == "That sounds heavy."
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 4)
    assert reply.model == "127.0.0.1" and reply.attempts == 1 and not reply.cached
    sent = server.requests[0]
    assert sent["method"] == "POST"
    body = sent["body"]
    assert body["message"] == "Work is hard."
    assert body["history"] == CONVERSATION[1:]
    assert body["everything"] == CONVERSATION
    assert body["system"] == "You are a CBT therapist."
    assert body["params"] == {"temperature": 0.7, "max_tokens": 64, "seed": 3}
    assert body["fixed"] == [1, True, None, "no placeholder"]


async def test_in_string_substitution_and_put_and_name(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server(default=(200, {"answer": "ok"}, {}))
    request = {
        "prompt": "System: {system}\nUser said: {last_user}",
        "transcript": "Conversation: {messages}",
        "settings": "t={temperature} n={max_tokens} s={seed}",
    }
    path = write_bot(
        tmp_path, server.url, request=request, response_path="answer", method="put", name="bot-v2"
    )
    model = make_model(path)
    reply = await model.chat(CONVERSATION, temperature=0.5, max_tokens=32, seed=9)

    assert reply.text == "ok" and reply.model == "bot-v2"
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)  # no usage_paths
    sent = server.requests[0]
    assert sent["method"] == "PUT"
    body = sent["body"]
    assert body["prompt"] == "System: You are a CBT therapist.\nUser said: Work is hard."
    assert body["transcript"].startswith("Conversation: [")
    assert json.loads(body["transcript"].removeprefix("Conversation: ")) == CONVERSATION[1:]
    assert body["settings"] == "t=0.5 n=32 s=9"


async def test_no_system_prompt_and_whole_body_placeholder(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server(default=(200, {"answer": "ok"}, {}))
    path = write_bot(tmp_path, server.url, request="{last_user}", response_path="answer")
    model = make_model(path)
    await model.chat([{"role": "user", "content": "hi"}])
    assert server.requests[0]["body"] == "hi"

    path2 = write_bot(
        tmp_path,
        server.url,
        "b2.yaml",
        request={"s": "{system}", "m": "{messages}"},
        response_path="answer",
    )
    await make_model(path2).chat([{"role": "user", "content": "hi"}])
    assert server.requests[1]["body"] == {"s": "", "m": [{"role": "user", "content": "hi"}]}


async def test_braces_in_user_text_are_not_expanded(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server()
    request = {
        "message": "{last_user}",
        "wrapped": "User: {last_user} (end)",
        "history": "{messages}",
        "system": "{system}",
    }
    path = write_bot(tmp_path, server.url, request=request)
    model = make_model(path)
    tricky = "my {system} and {0} and {last_user} and {{seed}} and {unknown}"
    await model.chat([{"role": "system", "content": "SYS"}, {"role": "user", "content": tricky}])

    body = server.requests[0]["body"]
    assert body["message"] == tricky
    assert body["wrapped"] == f"User: {tricky} (end)"
    assert body["history"] == [{"role": "user", "content": tricky}]
    assert body["system"] == "SYS"


# --- headers and secrets -------------------------------------------------------------------


async def test_env_header_is_sent_but_never_shown(
    tmp_path: Path, bot_server: Any, make_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_TOKEN", SECRET)
    # The server echoes the Authorization header in its error body.
    server = await bot_server(
        [(200, OK_BODY, {})], default=(401, {"error": f"bad token Bearer {SECRET}"}, {})
    )
    headers = {"Authorization": "Bearer {env:BOT_TOKEN}", "X-Client": "therapygym"}
    path = write_bot(tmp_path, server.url, headers=headers)
    model = make_model(path)

    assert (await model.chat(CONVERSATION)).text == "That sounds heavy."
    sent = server.requests[0]["headers"]
    assert sent["Authorization"] == f"Bearer {SECRET}"
    assert sent["X-Client"] == "therapygym"
    assert SECRET not in model.identity
    assert SECRET not in repr(model.bot) and SECRET not in model.spec

    with pytest.raises(ModelCallError) as err:
        await model.chat([{"role": "user", "content": "again"}])
    assert "HTTP 401" in str(err.value) and "bad token" in str(err.value)
    assert SECRET not in str(err.value) and SECRET not in err.value.cause
    assert err.value.attempts == 1 and not err.value.transient


async def test_missing_env_variable_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOT_TOKEN_MISSING", raising=False)
    path = write_bot(
        tmp_path,
        "http://127.0.0.1:9/api",
        headers={"Authorization": "Bearer {env:BOT_TOKEN_MISSING}"},
    )
    with pytest.raises(MissingAPIKeyError) as err:
        HttpChatbotModel(config_for(path), cache=None)
    message = str(err.value)
    assert "BOT_TOKEN_MISSING" in message and str(path) in message and "Authorization" in message
    assert "\n" not in message


async def test_identity_tracks_the_mapping_not_the_secret(
    tmp_path: Path, make_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://user:pw@127.0.0.1:5000/api/chat"
    headers = {"Authorization": "Bearer {env:BOT_TOKEN}"}
    monkeypatch.setenv("BOT_TOKEN", SECRET)
    a = make_model(write_bot(tmp_path, url, "a.yaml", headers=headers))
    monkeypatch.setenv("BOT_TOKEN", "another-secret-value")
    b = make_model(write_bot(tmp_path, url, "b.yaml", headers=headers))
    c = make_model(write_bot(tmp_path, url, "c.yaml", response_path="data.reply.other"))
    d = make_model(write_bot(tmp_path, url, "d.yaml", request={"m": "{messages}"}))

    assert re.fullmatch(r"http:http://127\.0\.0\.1:5000/api/chat#[0-9a-f]{12}", a.identity)
    assert a.identity == b.identity  # a different key gives the same replies
    assert len({a.identity, c.identity, d.identity}) == 3
    for model in (a, b, c, d):
        assert "pw" not in model.identity and SECRET not in model.identity


async def test_replies_are_cached_under_the_identity(
    tmp_path: Path, bot_server: Any, make_model: Any, cache: ResponseCache
) -> None:
    server = await bot_server()
    model = make_model(write_bot(tmp_path, server.url), cache=cache)
    first = await model.chat(CONVERSATION)
    second = await model.chat(CONVERSATION)
    assert first.text == second.text and second.cached and len(server.requests) == 1


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        (500, {"error": "boom"}, {}),
        (503, "<html>overloaded</html>", {"Retry-After": "0"}),
        (429, {"error": "slow down"}, {"Retry-After": "0.01"}),
        (200, "this is not json", {}),
        (-1, "", {}),
    ],
    ids=["500", "503-retry-after", "429", "malformed", "dropped"],
)
async def test_transient_faults_are_retried(
    tmp_path: Path, bot_server: Any, make_model: Any, fault: Reply
) -> None:
    server = await bot_server([fault])
    model = make_model(write_bot(tmp_path, server.url))
    reply = await model.chat(CONVERSATION)
    assert reply.text == "That sounds heavy." and reply.attempts == 2
    assert len(server.requests) == 2


async def test_retries_exhausted_is_a_transient_call_error(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server(default=(502, {"error": "bad gateway"}, {}))
    model = make_model(write_bot(tmp_path, server.url), max_retries=2)
    with pytest.raises(ModelCallError) as err:
        await model.chat(CONVERSATION)
    assert err.value.transient and err.value.attempts == 3 and len(server.requests) == 3
    assert "HTTP 502" in str(err.value) and "bad gateway" in str(err.value)


async def test_client_error_is_not_retried(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server(default=(400, {"detail": "field 'message' is required"}, {}))
    model = make_model(write_bot(tmp_path, server.url))
    with pytest.raises(ModelCallError) as err:
        await model.chat(CONVERSATION)
    assert not isinstance(err.value, ModelUnreachableError)
    assert not err.value.transient and err.value.attempts == 1 and len(server.requests) == 1
    assert "HTTP 400" in str(err.value) and "field 'message' is required" in str(err.value)


async def test_redirect_is_permanent(tmp_path: Path, bot_server: Any, make_model: Any) -> None:
    server = await bot_server(default=(307, "", {"Location": "http://127.0.0.1:1/new?k=v"}))
    model = make_model(write_bot(tmp_path, server.url))
    with pytest.raises(ModelCallError) as err:
        await model.chat(CONVERSATION)
    assert not err.value.transient and len(server.requests) == 1
    assert "redirected to http://127.0.0.1:1/new;" in str(err.value)


@pytest.mark.parametrize(
    ("body", "selected"),
    [
        ({"data": {"reply": {}}}, "nothing"),
        ({"data": {"reply": {"text": 3}}}, "an int"),
        ({"data": {"reply": {"text": ["a"]}}}, "a list"),
        (["not", "an", "object"], "nothing"),
    ],
)
async def test_response_path_mismatch_is_permanent(
    tmp_path: Path, bot_server: Any, make_model: Any, body: Any, selected: str
) -> None:
    server = await bot_server(default=(200, body, {}))
    path = write_bot(tmp_path, server.url)
    model = make_model(path)
    with pytest.raises(ModelCallError) as err:
        await model.chat(CONVERSATION)
    message = str(err.value)
    assert f"response_path 'data.reply.text' selected {selected} in the response" in message
    assert "check the mapping" in message and str(path) in message
    assert not err.value.transient and len(server.requests) == 1


async def test_connection_refused_is_unreachable(tmp_path: Path, make_model: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/chat"
    model = make_model(write_bot(tmp_path, url), max_retries=1)
    with pytest.raises(ModelUnreachableError) as err:
        await model.chat(CONVERSATION)
    assert f"cannot reach {url}" in str(err.value) and "is the server running" in str(err.value)
    assert err.value.transient and err.value.attempts == 2


async def test_timeout_is_retried_then_reported(tmp_path: Path, make_model: Any) -> None:
    # A server that accepts and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/chat"
        model = make_model(write_bot(tmp_path, url), timeout_s=0.2, max_retries=1)
        with pytest.raises(ModelCallError) as err:
            await model.chat(CONVERSATION)
    assert not isinstance(err.value, ModelUnreachableError)
    assert err.value.transient and err.value.attempts == 2 and "timed out" in str(err.value)


async def test_session_is_closed_and_remade(
    tmp_path: Path, bot_server: Any, make_model: Any
) -> None:
    server = await bot_server()
    async with make_model(write_bot(tmp_path, server.url)) as model:
        await model.chat(CONVERSATION)
        session = model._http.session
        assert session is not None and not session.closed
    assert session.closed and model._http.session is None
    await model.chat([{"role": "user", "content": "after close"}])  # a fresh session
    assert len(server.requests) == 2


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30


# --- the chatbot file ----------------------------------------------------------------------


def test_load_http_config_defaults(tmp_path: Path) -> None:
    path = write_bot(tmp_path, "https://bot.example.com/chat")
    cfg = load_http_config(path)
    assert cfg.method == "POST" and cfg.headers == {} and cfg.usage_paths is None
    assert cfg.request["history"] == "{messages}" and cfg.name is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "url: http://127.0.0.1:5000/x\nrequest: {m: '{messages}'}\nresponse_path: a.b\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("url: [unclosed\n", "invalid YAML at line"),
        ("", "is empty"),
        ("- a\n- b\n", "expected a mapping"),
        (GOOD + "bogus: 1\n", "unknown field 'bogus'"),
        ("request: {m: '{messages}'}\nresponse_path: a\n", "field 'url' is missing"),
        ("url: http://x/y\nresponse_path: a\n", "field 'request' is missing"),
        ("url: http://x/y\nrequest: {m: '{messages}'}\n", "field 'response_path'"),
        (GOOD.replace("http://127.0.0.1:5000/x", "ftp://h/x"), "field 'url': expected an http"),
        (GOOD + "method: GET\n", "field 'method'"),
        (GOOD.replace("a.b", "a..b"), "field 'response_path': not a valid JMESPath"),
        (GOOD + "usage_paths: {prompt_tokens: 'u[', bogus: x}\n", "usage_paths.prompt_tokens"),
        (GOOD + "usage_paths: {bogus: x}\n", "unknown field 'usage_paths.bogus'"),
        (GOOD + "headers: {X-Num: 3}\n", "field 'headers.X-Num'"),
        (GOOD + "headers: {A: 'Bearer {env:}'}\n", "malformed {env:VAR}"),
        (
            GOOD.replace("'{messages}'", "'{messages}', x: [1, {y: 'hi {user}'}]"),
            "unknown placeholder '{user}' in request.x.1.y",
        ),
        (GOOD.replace("'{messages}'", "'{seed}'"), "never sends the conversation"),
        (GOOD.replace("{m: '{messages}'}", "{m: '{messages}', d: 2024-01-01}"), "not plain JSON"),
    ],
)
def test_invalid_files_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_http_config(path)
    message = str(err.value)
    assert message.startswith(f"chatbot file {path}") and expected in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_http_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not found"):
        HttpChatbotModel(config_for(tmp_path / "nope.yaml"), cache=None)


def test_openai_options_are_rejected(tmp_path: Path) -> None:
    path = write_bot(tmp_path, "http://127.0.0.1:5000/api")
    with pytest.raises(ModelSpecError, match="base_url and api_key_env do not apply"):
        HttpChatbotModel(config_for(path, base_url="http://elsewhere"), cache=None)


def test_a_url_instead_of_a_file_is_explained() -> None:
    with pytest.raises(ModelSpecError, match="not a URL"):
        HttpChatbotModel(config_for("//127.0.0.1:5000/api/chat"), cache=None)
