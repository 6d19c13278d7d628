"""FakeOpenAIServer, driven by the real ``openai.AsyncOpenAI`` client and by raw aiohttp.

The official client is the point: every scripted reply and every fault must surface
exactly as it would from the real API, or the integration tests built on this server
would test the wrong error paths.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

import therapygym.testing.openai_server as openai_server_module
from therapygym.testing.openai_server import FakeOpenAIServer, Fault

USER_HELLO = [{"role": "user", "content": "hello there world"}]


def client_for(server: FakeOpenAIServer, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=timeout
    )


async def ask(client: openai.AsyncOpenAI, content: str = "hello there world", **kwargs: Any) -> Any:
    return await client.chat.completions.create(
        model=kwargs.pop("model", "gpt-test"),
        messages=[{"role": "user", "content": content}],
        **kwargs,
    )


async def raw_post_text(server: FakeOpenAIServer, body: Any) -> tuple[int, str, str]:
    """POST to /chat/completions without the openai client: (status, content type, body)."""
    data = body if isinstance(body, str) else json.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/chat/completions",
            data=data,
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


async def raw_post(server: FakeOpenAIServer, body: Any) -> tuple[int, dict[str, Any]]:
    status, _, text = await raw_post_text(server, body)
    return status, json.loads(text)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


# ------------------------------------------------------------------------- replies


@pytest.mark.asyncio
async def test_default_reply_echoes_last_user_message(server: FakeOpenAIServer) -> None:
    async with client_for(server) as client:
        completion = await client.chat.completions.create(
            model="gpt-test",
            messages=[
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
            ],
        )
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"  # echoes the requested model
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: hello there world"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + 1 + 1 + 3
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 12
    assert server.fault_counts == {"ok": 1}
    assert server.requests[0]["model"] == "gpt-test"


@pytest.mark.asyncio
async def test_sequence_replies_cycle_and_dicts_become_json() -> None:
    verdict = {"score": 4, "rationale": "empathic and  specific"}
    with FakeOpenAIServer(["one", verdict]) as server:
        async with client_for(server) as client:
            contents = [(await ask(client)).choices[0].message.content for _ in range(3)]
    assert contents[0] == "one"
    assert json.loads(contents[1]) == verdict
    assert contents[1] == json.dumps(verdict)  # whitespace inside kept verbatim
    assert contents[2] == "one"


@pytest.mark.asyncio
async def test_dict_reply_with_json_schema_response_format() -> None:
    verdict = {"score": 2}
    with FakeOpenAIServer(verdict) as server:  # a single reply is a one-element script
        async with client_for(server) as client:
            completion = await ask(
                client,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "verdict", "schema": {"type": "object"}},
                },
            )
    assert json.loads(completion.choices[0].message.content or "") == verdict


@pytest.mark.asyncio
async def test_callable_replier_receives_request_body() -> None:
    seen: list[dict[str, Any]] = []

    def replier(body: dict[str, Any]) -> str:
        seen.append(body)
        return f"{body['model']} got {len(body['messages'])} message(s)"

    with FakeOpenAIServer(replier) as server:
        async with client_for(server) as client:
            completion = await ask(client, model="judge-x", temperature=0.0)
    assert completion.choices[0].message.content == "judge-x got 1 message(s)"
    assert seen[0]["temperature"] == 0.0
    assert server.requests == seen


@pytest.mark.asyncio
async def test_requests_not_kept_still_answer_and_count() -> None:
    with FakeOpenAIServer(["one", "two"], keep_requests=False) as server:
        async with client_for(server) as client:
            contents = [(await ask(client)).choices[0].message.content for _ in range(3)]
    assert contents == ["one", "two", "one"]
    assert server.requests == []
    assert server.fault_counts["ok"] == 3
    assert len(server.key_digests) == 1


@pytest.mark.asyncio
async def test_replier_exception_is_a_visible_500() -> None:
    def broken(body: dict[str, Any]) -> str:
        raise KeyError("oops")

    with FakeOpenAIServer(broken) as server:
        async with client_for(server) as client:
            with pytest.raises(openai.InternalServerError, match="replier raised"):
                await ask(client)
    assert server.fault_counts == {"replier_error": 1}


@pytest.mark.asyncio
@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates_words_and_reports_length(param: str) -> None:
    with FakeOpenAIServer(["alpha beta gamma delta", "short"]) as server:
        async with client_for(server) as client:
            cut = await ask(client, **{param: 2})
            fits = await ask(client, **{param: 2})
    assert cut.choices[0].message.content == "alpha beta"
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 2
    assert fits.choices[0].message.content == "short"
    assert fits.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_models_endpoint_lists_the_model() -> None:
    with FakeOpenAIServer(model="my-model") as server:
        async with client_for(server) as client:
            models = await client.models.list()
    assert [m.id for m in models.data] == ["my-model"]


# ---------------------------------------------------------------- invalid requests


@pytest.mark.asyncio
async def test_streaming_is_rejected_with_openai_style_400(server: FakeOpenAIServer) -> None:
    status, body = await raw_post(server, {"model": "m", "messages": USER_HELLO, "stream": True})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "stream"
    assert "stream" in body["error"]["message"]
    async with client_for(server) as client:
        with pytest.raises(openai.BadRequestError):
            await ask(client, stream=True)
    assert server.fault_counts == {"bad_request": 2}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        [1, 2],
        {"model": "m"},
        {"model": "m", "messages": USER_HELLO, "max_tokens": 0},
    ],
)
async def test_invalid_bodies_get_400(server: FakeOpenAIServer, body: Any) -> None:
    status, payload = await raw_post(server, body)
    assert status == 400
    assert payload["error"]["type"] == "invalid_request_error"


# -------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_rate_limit_fault() -> None:
    with FakeOpenAIServer(fault_script=[Fault.RATE_LIMIT]) as server:
        async with client_for(server) as client:
            with pytest.raises(openai.RateLimitError) as excinfo:
                await ask(client)
    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "0"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert server.fault_counts == {"429": 1}


@pytest.mark.asyncio
async def test_unauthorized_fault_quotes_the_key_and_only_its_digest_is_kept() -> None:
    import hashlib

    with FakeOpenAIServer(fault_script=["401"]) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="sk-quoted-key", max_retries=0
        )
        async with client:
            with pytest.raises(openai.AuthenticationError) as excinfo:
                await ask(client)
    assert excinfo.value.status_code == 401 and excinfo.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-quoted-key" in str(excinfo.value)
    assert server.key_digests == {hashlib.sha256(b"sk-quoted-key").hexdigest()}
    assert "sk-quoted-key" not in repr(server.requests)


@pytest.mark.asyncio
async def test_server_error_fault() -> None:
    with FakeOpenAIServer(fault_script=["500"]) as server:
        async with client_for(server) as client:
            with pytest.raises(openai.InternalServerError) as excinfo:
                await ask(client)
    assert excinfo.value.status_code == 500
    assert excinfo.value.type == "server_error"


@pytest.mark.asyncio
async def test_hang_fault_times_out_the_client_then_stop_is_prompt() -> None:
    server = FakeOpenAIServer(fault_script=["hang"], hang_s=10.0).start()
    try:
        async with client_for(server, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await ask(client)
            assert time.monotonic() - started < 2.0
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 2.0  # the hung handler does not hold stop()
    assert server.fault_counts == {"hang": 1}


@pytest.mark.asyncio
async def test_hang_fault_answers_normally_after_hang_s() -> None:
    with FakeOpenAIServer(["late"], fault_script=["hang"], hang_s=0.2) as server:
        async with client_for(server) as client:
            started = time.monotonic()
            completion = await ask(client)
    assert time.monotonic() - started >= 0.2
    assert completion.choices[0].message.content == "late"


@pytest.mark.asyncio
async def test_malformed_fault_raises_json_decode_error_not_an_openai_error() -> None:
    # The openai client (3.x) does not wrap an unparseable 200 body: the bare
    # json.JSONDecodeError from response.json() escapes. Retry code must expect it.
    with FakeOpenAIServer(fault_script=["malformed"]) as server:
        async with client_for(server) as client:
            with pytest.raises(json.JSONDecodeError) as excinfo:
                await ask(client)
    assert not isinstance(excinfo.value, openai.OpenAIError)
    assert server.fault_counts == {"malformed": 1}


@pytest.mark.asyncio
async def test_malformed_fault_raw_response() -> None:
    with FakeOpenAIServer(fault_script=["malformed"]) as server:
        status, content_type, text = await raw_post_text(
            server, {"model": "m", "messages": USER_HELLO}
        )
    assert status == 200
    assert content_type == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.asyncio
async def test_drop_fault_is_a_connection_error_not_a_timeout() -> None:
    with FakeOpenAIServer(fault_script=["drop"]) as server:
        async with client_for(server) as client:
            with pytest.raises(openai.APIConnectionError) as excinfo:
                await ask(client)
            assert not isinstance(excinfo.value, openai.APITimeoutError)
            assert (await ask(client)).choices[0].message.content  # the server lives on
    assert server.fault_counts == {"drop": 1, "ok": 1}


@pytest.mark.asyncio
async def test_drop_fault_sends_no_http_response() -> None:
    with FakeOpenAIServer(fault_script=["drop"]) as server:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.post(
                    f"{server.base_url}/chat/completions",
                    json={"model": "m", "messages": USER_HELLO},
                )


@pytest.mark.asyncio
async def test_fault_script_is_deterministic_then_falls_back_to_ok() -> None:
    script: list[Fault | str | None] = [None, "429", "500", Fault.RATE_LIMIT, None]
    with FakeOpenAIServer(["r"], fault_script=script) as server:
        async with client_for(server) as client:
            outcomes = []
            for _ in range(7):
                try:
                    await ask(client)
                    outcomes.append("ok")
                except openai.APIStatusError as exc:
                    outcomes.append(str(exc.status_code))
    assert outcomes == ["ok", "429", "500", "429", "ok", "ok", "ok"]
    assert server.fault_counts == {"ok": 4, "429": 2, "500": 1}
    assert server.fault_counts[Fault.RATE_LIMIT] == 2  # str-enum keys work too
    assert len(server.requests) == 7


async def statuses(server: FakeOpenAIServer, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        out = []
        for _ in range(n):
            async with session.post(
                f"{server.base_url}/chat/completions", json={"model": "m", "messages": USER_HELLO}
            ) as resp:
                out.append(resp.status)
        return out


@pytest.mark.asyncio
async def test_fault_rates_are_reproducible_with_the_same_seed() -> None:
    rates = {"429": 0.3, Fault.SERVER_ERROR: 0.2}
    runs = []
    for seed in (7, 7, 8):
        with FakeOpenAIServer(fault_rates=rates, seed=seed) as server:
            runs.append(await statuses(server, 60))
            assert sum(server.fault_counts.values()) == 60
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert set(runs[0]) == {200, 429, 500}
    # Mapping order must not matter: faults are drawn in Fault declaration order.
    with FakeOpenAIServer(fault_rates={"500": 0.2, "429": 0.3}, seed=7) as server:
        assert await statuses(server, 60) == runs[0]


@pytest.mark.asyncio
async def test_fault_rates_apply_after_the_script() -> None:
    with FakeOpenAIServer(fault_script=[None, None], fault_rates={"429": 1.0}) as server:
        assert await statuses(server, 4) == [200, 200, 429, 429]


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        FakeOpenAIServer(fault_rates={"429": 0.7, "500": 0.7})
    with pytest.raises(ValueError):
        FakeOpenAIServer(fault_rates={"429": -0.1})
    with pytest.raises(ValueError, match="unknown fault"):
        FakeOpenAIServer(fault_script=["418"])
    with pytest.raises(ValueError):
        FakeOpenAIServer([])
    assert Fault.parse("rate_limit") is Fault.RATE_LIMIT
    assert Fault.parse("hang") is Fault.HANG


# --------------------------------------------------------- concurrency, lifecycle


@pytest.mark.asyncio
async def test_latency_is_non_blocking_for_concurrent_requests() -> None:
    with FakeOpenAIServer(latency_s=0.2) as server:
        async with client_for(server) as client:
            started = time.monotonic()
            completions = await asyncio.gather(*(ask(client, f"msg {i}") for i in range(64)))
            elapsed = time.monotonic() - started
    assert elapsed >= 0.2
    assert elapsed < 2.0  # serialized it would be 64 * 0.2 = 12.8 s
    assert sorted(c.choices[0].message.content for c in completions) == sorted(
        f"You said: msg {i}" for i in range(64)
    )
    assert len(server.requests) == 64
    assert server.fault_counts == {"ok": 64}


@pytest.mark.asyncio
async def test_256_concurrent_connections_without_queueing() -> None:
    with FakeOpenAIServer(latency_s=0.2) as server:
        connector = aiohttp.TCPConnector(limit=0)  # one connection per request
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.post(
                    f"{server.base_url}/chat/completions",
                    json={"model": "m", "messages": USER_HELLO},
                ) as resp:
                    await resp.read()
                    return resp.status

            started = time.monotonic()
            codes = await asyncio.gather(*(one() for _ in range(256)))
            elapsed = time.monotonic() - started
    assert codes == [200] * 256
    # An overflowing accept queue shows up as connection resets (gather raises) or ~1 s
    # SYN retries; serialized handling would take 256 * 0.2 s.
    assert elapsed < 2.0


@pytest.mark.asyncio
async def test_reset_stats_clears_observations_only() -> None:
    with FakeOpenAIServer(["a", "b"], fault_script=["429", None]) as server:
        assert await statuses(server, 1) == [429]
        server.reset_stats()
        assert server.requests == [] and not server.fault_counts
        async with client_for(server) as client:
            completion = await ask(client)
    # The script and the replies cycle carried on across the reset.
    assert completion.choices[0].message.content == "a"
    assert server.fault_counts == {"ok": 1}
    assert len(server.requests) == 1


def test_lifecycle_and_port_errors() -> None:
    server = FakeOpenAIServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    server.stop()  # stopping a server that never started is a no-op
    with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with pytest.raises(RuntimeError):
            server.start()
        with pytest.raises(OSError):  # port taken: raised by start() in the caller
            FakeOpenAIServer(port=server.port).start()
    with socket.socket() as probe:  # the listening socket is closed after stop()
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


# --------------------------------------------------------------------- command line


def test_python_m_entry_serves_and_stops_on_sigterm() -> None:
    src = Path(openai_server_module.__file__).resolve().parents[2]
    pythonpath = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "therapygym.testing.openai_server",
            "--port",
            "0",
            "--latency-ms",
            "10",
            "--fault",
            "429=0",
            "--reply",
            "from cli",
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        base_url = line.removeprefix("READY ")
        assert base_url.endswith("/v1")

        async def call() -> str | None:
            async with openai.AsyncOpenAI(
                base_url=base_url, api_key="sk-test", max_retries=0, timeout=5.0
            ) as client:
                completion = await ask(client)
                return completion.choices[0].message.content

        assert asyncio.run(call()) == "from cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_rejects_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        openai_server_module.main(["--fault", "teapot=0.1"])
    assert excinfo.value.code == 2
    assert "FAULT=RATE" in capsys.readouterr().err


# --------------------------------------------------------------------- strict mode

CLOSED_OK = {
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["rationale", "score"],
    "additionalProperties": False,
}


def strict_format(schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": strict},
    }


def with_prop(**prop: Any) -> dict[str, Any]:
    """CLOSED_OK with `rationale` replaced by `prop`."""
    return {**CLOSED_OK, "properties": {**CLOSED_OK["properties"], "rationale": prop}}


BRANCH = {
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "verdict": {"const": "yes"}},
    "required": ["rationale", "verdict"],
    "additionalProperties": False,
}
NO_BRANCH = {**BRANCH, "properties": {**BRANCH["properties"], "verdict": {"const": "no"}}}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (with_prop(type="string", maxLength=240), "'maxLength' is not permitted"),
        (with_prop(type="array", items={"type": "string"}, maxItems=3), "'maxItems'"),
        (with_prop(type="integer", minimum=0), "'minimum' is not permitted"),
        (with_prop(type="string", pattern="^a"), "'pattern'"),
        ({**CLOSED_OK, "additionalProperties": True}, "'additionalProperties' is required"),
        ({k: v for k, v in CLOSED_OK.items() if k != "additionalProperties"}, "to be false"),
        ({**CLOSED_OK, "required": ["score"]}, "Missing 'rationale'"),
        (
            with_prop(anyOf=[BRANCH, NO_BRANCH]),
            "objects provided via 'anyOf' must not share identical first keys",
        ),
        (
            {**with_prop(anyOf=[{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]),
             "$defs": {"A": BRANCH, "B": NO_BRANCH}},
            "identical first keys",
        ),
        ({"$defs": {"A": with_prop(type="string", maxLength=3)}, **CLOSED_OK}, "('$defs', 'A'"),
        ({"anyOf": [CLOSED_OK]}, "must be a JSON Schema of 'type: \"object\"'"),
    ],
)  # fmt: skip
async def test_strict_mode_refuses_what_the_hosted_api_refuses(
    schema: dict[str, Any], says: str
) -> None:
    """Each rule of the hosted strict subset, answered as the hosted API answers it."""
    with FakeOpenAIServer(strict=True) as server:
        body = {"model": "gpt-4o", "messages": USER_HELLO, "response_format": strict_format(schema)}
        status, payload = await raw_post(server, body)
        assert status == 400
        error = payload["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "response_format"
        assert error["code"] == "invalid_json_schema"
        assert error["message"].startswith("Invalid schema for response_format 'response'")
        assert says in error["message"], error["message"]
        async with client_for(server) as client:  # the official client reads it as the API's
            with pytest.raises(openai.BadRequestError, match="Invalid schema"):
                await ask(client, response_format=strict_format(schema))
        assert server.fault_counts == {"bad_request": 2} and len(server.refusals) == 2


@pytest.mark.asyncio
async def test_strict_mode_takes_the_strict_subset_and_non_strict_formats() -> None:
    branches = [BRANCH, {**NO_BRANCH, "properties": {"verdict": {"const": "no"}}}]
    ok = [CLOSED_OK, with_prop(anyOf=[*branches, {"type": "null"}])]
    with FakeOpenAIServer({"rationale": "x", "score": 1}, strict=True) as server:
        for schema in ok:
            status, _ = await raw_post(
                server,
                {"model": "m", "messages": USER_HELLO, "response_format": strict_format(schema)},
            )
            assert status == 200
        loose = strict_format(with_prop(type="string", maxLength=3), strict=False)
        status, _ = await raw_post(
            server, {"model": "m", "messages": USER_HELLO, "response_format": loose}
        )
        assert status == 200  # strict: false is not held to the subset
    with FakeOpenAIServer() as lenient:  # the default stays lenient
        bad = strict_format(with_prop(type="string", maxLength=3))
        status, _ = await raw_post(
            lenient, {"model": "m", "messages": USER_HELLO, "response_format": bad}
        )
        assert status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "o3-2025-04-16"]
)
async def test_strict_mode_refuses_max_tokens_and_temperature_for_reasoning_models(
    model: str,
) -> None:
    with FakeOpenAIServer(strict=True) as server:
        status, payload = await raw_post(
            server, {"model": model, "messages": USER_HELLO, "max_tokens": 5}
        )
        assert status == 400 and payload["error"]["param"] == "max_tokens"
        assert payload["error"]["code"] == "unsupported_parameter"
        assert "Use 'max_completion_tokens' instead" in payload["error"]["message"]
        status, payload = await raw_post(
            server, {"model": model, "messages": USER_HELLO, "temperature": 0.0}
        )
        assert status == 400 and payload["error"]["code"] == "unsupported_value"
        assert payload["error"]["param"] == "temperature"
        for fine in ({"max_completion_tokens": 5}, {"temperature": 1}):
            status, _ = await raw_post(server, {"model": model, "messages": USER_HELLO, **fine})
            assert status == 200
        # another model keeps both parameters
        status, _ = await raw_post(
            server, {"model": "gpt-4o", "messages": USER_HELLO, "max_tokens": 5, "temperature": 0}
        )
        assert status == 200


def test_the_command_line_takes_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeOpenAIServer] = []

    class Stop(Exception):
        pass

    def fake_enter(self: FakeOpenAIServer) -> FakeOpenAIServer:
        made.append(self)
        raise Stop

    monkeypatch.setattr(FakeOpenAIServer, "__enter__", fake_enter)
    with pytest.raises(Stop):
        openai_server_module.main(["--strict"])
    assert made[0].strict
