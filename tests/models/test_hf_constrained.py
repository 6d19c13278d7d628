"""Schema-constrained decoding for hf: (llguidance): only schema-valid JSON comes out."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

pytest.importorskip("transformers", reason="the [train] extra is not installed")
pytest.importorskip("llguidance", reason="the [train] extra is not installed")

import torch

from therapygym.models.hf_constrained import SchemaLogitsProcessor, compact_json


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rationale: str = Field(max_length=12)
    evidence: list[Literal["T2", "T4"]] = Field(max_length=2)
    score: int = Field(ge=0, le=6)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agenda: Item
    verdict: Literal["yes", "no"]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from therapygym.models.transformers_local import model_source

    folder, gguf = model_source("smollm2")
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)


@pytest.mark.parametrize("preferred", ["first", "last", "random"])
def test_any_choice_among_the_allowed_tokens_is_schema_valid_json(
    tokenizer, preferred: str
) -> None:  # type: ignore[no-untyped-def]
    """Stand in for a model with fixed preferences (the lowest id, the highest, a seeded
    random score per token): whatever it prefers, the mask leaves it only tokens that keep
    the output inside the schema, up to the end-of-sequence token."""
    vocab = len(tokenizer)
    processor = SchemaLogitsProcessor(tokenizer, Answer.model_json_schema(), prompt_tokens=3)
    ids = torch.tensor([[1, 2, 3]])
    gen = torch.Generator().manual_seed(7)
    for _ in range(200):
        scores = {
            "first": -torch.arange(vocab, dtype=torch.float32),
            "last": torch.arange(vocab, dtype=torch.float32),
            "random": torch.rand(vocab, generator=gen),
        }[preferred].unsqueeze(0)
        token = int(processor(ids, scores).argmax())
        if token == tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    else:
        pytest.fail("the constrained output never ended")
    text = tokenizer.decode(ids[0, 3:])
    value = Answer.model_validate_json(text)
    assert text == compact_json(value.model_dump(mode="json"))  # compact, in schema order


def test_a_schema_llguidance_cannot_enforce_is_refused(tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="cannot be enforced"):
        SchemaLogitsProcessor(tokenizer, {"type": "object", "$ref": "#/nowhere"}, 0)


@pytest.mark.slow
def test_the_hf_backend_answers_a_judge_call_with_schema_valid_json() -> None:
    """The embedded model through hf: (about 20 s on 2 idle cores, most of it loading)."""
    from therapygym.models import load_model

    model = load_model("hf:smollm2?max_retries=0")
    reply = asyncio.run(
        model.chat(
            [{"role": "user", "content": "Rate the agenda of this session from 0 to 6."}],
            json_schema=Answer.model_json_schema(),
            max_tokens=80,
        )
    )
    assert Answer.model_validate(json.loads(reply.text))
    assert reply.finish_reason == "stop"
