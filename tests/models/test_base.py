"""The shared retry policy in `BaseChatModel`, with a backend that fails on a script."""

from __future__ import annotations

import time

import pytest

from therapygym.errors import ModelCallError, ModelUnreachableError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest

HELLO = [{"role": "user", "content": "hello"}]


class ScriptedModel(BaseChatModel):
    """Raises the scripted errors in order, then answers."""

    def __init__(self, script: list[Exception], **config: object) -> None:
        fields = {"backend": "python", "model": "scripted", "backoff_initial_s": 0.01}
        super().__init__(ModelConfig(**{**fields, **config}))
        self.script = list(script)
        self.calls = 0

    @property
    def identity(self) -> str:
        return "scripted"

    async def _complete(self, request: ChatRequest) -> RawReply:
        self.calls += 1
        if self.script:
            raise self.script.pop(0)
        return RawReply(text="fine", model="scripted")


async def test_a_first_success_is_one_attempt() -> None:
    reply = await ScriptedModel([]).chat(HELLO)
    assert (reply.text, reply.attempts) == ("fine", 1) and reply.latency_s > 0


async def test_the_first_failures_retry_after_is_honoured() -> None:
    model = ScriptedModel([TransientError("429", retry_after_s=0.3)], backoff_max_s=5)
    started = time.perf_counter()
    reply = await model.chat(HELLO)
    assert reply.attempts == 2 and model.calls == 2
    assert time.perf_counter() - started >= 0.3


async def test_attempts_are_counted_across_the_first_and_the_retries() -> None:
    model = ScriptedModel([TransientError("a"), TransientError("b")], max_retries=4)
    assert (await model.chat(HELLO)).attempts == 3
    model = ScriptedModel([TransientError("a"), PermanentError("bad")], max_retries=4)
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert (err.value.attempts, err.value.transient, err.value.cause) == (2, False, "bad")


@pytest.mark.parametrize("max_retries", [0, 2])
async def test_unreachable_after_the_last_attempt(max_retries: int) -> None:
    script = [TransientError("down", unreachable=True) for _ in range(5)]
    model = ScriptedModel(script, max_retries=max_retries)
    with pytest.raises(ModelUnreachableError) as err:
        await model.chat(HELLO)
    assert err.value.attempts == max_retries + 1 == model.calls and err.value.transient


async def test_a_permanent_first_failure_is_not_retried() -> None:
    model = ScriptedModel([PermanentError("no")], max_retries=4)
    with pytest.raises(ModelCallError) as err:
        await model.chat(HELLO)
    assert (err.value.attempts, err.value.transient, model.calls) == (1, False, 1)
