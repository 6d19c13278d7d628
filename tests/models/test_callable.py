"""`python:module:function` models: sync, async, return shapes, errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from therapygym.errors import ModelCallError, ModelSpecError
from therapygym.models import Completion, load_model

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "mybot.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            from therapygym.models import Completion

            def echo(messages):
                return "echo: " + messages[-1]["content"]

            def params(messages, temperature, seed):
                return f"t={temperature} s={seed}"

            def everything(messages, **kw):
                return {"text": ",".join(sorted(kw)), "prompt_tokens": 4, "completion_tokens": 2}

            async def coro(messages, max_tokens):
                await asyncio.sleep(0)
                return Completion(text=f"async {max_tokens}", model="mine", completion_tokens=2)

            def broken(messages):
                raise RuntimeError("my bot fell over")

            calls = {"n": 0}
            def flaky(messages):
                calls["n"] += 1
                if calls["n"] == 1:
                    raise ConnectionError("blip")
                return "steady"

            def wrong_type(messages):
                return 42

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mybot"
    sys.modules.pop("mybot", None)


async def test_sync_function(user_module: str) -> None:
    reply = await load_model(f"python:{user_module}:echo").chat(HELLO)
    assert reply.text == "echo: hello"


async def test_only_named_parameters_are_passed(user_module: str) -> None:
    reply = await load_model(f"python:{user_module}:params").chat(HELLO, temperature=0.5, seed=3)
    assert reply.text == "t=0.5 s=3"
    reply = await load_model(f"python:{user_module}:everything").chat(HELLO)
    assert reply.text == "json_schema,max_tokens,seed,temperature"
    assert (reply.prompt_tokens, reply.completion_tokens) == (4, 2)


async def test_async_function_returning_completion(user_module: str) -> None:
    reply = await load_model(f"python:{user_module}:coro").chat(HELLO, max_tokens=5)
    assert isinstance(reply, Completion)
    assert reply.text == "async 5" and reply.model == "mine" and reply.completion_tokens == 2


async def test_user_exception_is_a_recorded_error(user_module: str) -> None:
    with pytest.raises(ModelCallError, match="RuntimeError: my bot fell over") as err:
        await load_model(f"python:{user_module}:broken").chat(HELLO)
    assert not err.value.transient


async def test_connection_errors_are_retried(user_module: str) -> None:
    model = load_model(f"python:{user_module}:flaky?backoff_initial_s=0.01")
    reply = await model.chat(HELLO)
    assert reply.text == "steady" and reply.attempts == 2


async def test_wrong_return_type(user_module: str) -> None:
    with pytest.raises(ModelCallError, match="returned int"):
        await load_model(f"python:{user_module}:wrong_type").chat(HELLO)


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("mybot:missing", "has no 'missing'"),
        ("mybot:NOT_CALLABLE", "is not callable"),
    ],
)
def test_import_errors(user_module: str, target: str, fragment: str) -> None:
    with pytest.raises(ModelSpecError, match=fragment):
        load_model(f"python:{target}")
