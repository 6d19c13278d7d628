"""Schema-constrained decoding for the hf: backend, with llguidance.

Judges always send the JSON schema of their answer (DESIGN.md §3a); a small model left
free almost never writes parseable JSON. llguidance (the grammar engine behind
llama.cpp's, vLLM's and SGLang's structured output) compiles the schema against the
tokenizer and says, before each token, which tokens keep the output inside the schema;
`SchemaLogitsProcessor` masks the others out of transformers' `generate`. Whitespace is not
free (compact JSON, as `json.dumps(..., separators=(",", ":"))` writes it), so the tokens
go to content and the trained judge's targets read exactly like its constrained output.

The tokenizer's llguidance twin costs about a second to build, so it is kept per tokenizer.
"""

from __future__ import annotations

import json
import threading
import weakref
from typing import Any

import numpy as np

from therapygym.errors import ModelNotInstalledError

NEEDS_LLGUIDANCE = (
    "schema-constrained output on the hf backend needs llguidance: pip install 'therapygym[train]'"
)
# compact JSON, no whitespace between tokens: what `compact_json` writes
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}

_LL_TOKENIZERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_LL_LOCK = threading.Lock()


def compact_json(value: Any) -> str:
    """`value` as the constrained decoder writes JSON (no whitespace, keys in order)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _ll_tokenizer(tokenizer: Any) -> Any:
    try:
        from llguidance.hf import from_tokenizer
    except ImportError:
        raise ModelNotInstalledError(NEEDS_LLGUIDANCE) from None
    with _LL_LOCK:
        if tokenizer not in _LL_TOKENIZERS:
            _LL_TOKENIZERS[tokenizer] = from_tokenizer(tokenizer)
        return _LL_TOKENIZERS[tokenizer]


class SchemaLogitsProcessor:
    """A transformers logits processor that keeps one generation inside a JSON schema.

    Built for one `generate` call of one sequence: it starts after `prompt_tokens` and
    feeds every new token to its matcher before masking the next step. When the schema is
    complete only the end-of-sequence token is allowed, so generation stops there.
    """

    def __init__(self, tokenizer: Any, schema: dict[str, Any], prompt_tokens: int) -> None:
        from llguidance import LLMatcher

        ll_tokenizer = _ll_tokenizer(tokenizer)
        grammar = LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)  # type: ignore[arg-type]
        self._matcher = LLMatcher(ll_tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise ValueError(f"the JSON schema cannot be enforced: {self._matcher.get_error()}")
        self._seen = prompt_tokens
        self._mask = np.full((1, (ll_tokenizer.vocab_size + 31) // 32), -1, dtype=np.int32)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch
        from llguidance.numpy import fill_next_token_bitmask

        if input_ids.shape[0] != 1:
            raise ValueError("schema-constrained generation runs one sequence at a time")
        new = input_ids[0, self._seen :].tolist()
        self._seen = input_ids.shape[1]
        if new and not self._matcher.consume_tokens(new):
            raise ValueError(f"constrained decoding failed: {self._matcher.get_error()}")
        fill_next_token_bitmask(self._matcher, self._mask)
        # bit i of 32-bit word j allows token 32*j + i (little-endian words, bits LSB first)
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little")
        allowed = np.zeros(scores.shape[-1], dtype=bool)
        width = min(len(allowed), len(bits))
        allowed[:width] = bits[:width].astype(bool)
        keep = torch.from_numpy(allowed).to(scores.device)
        return scores.masked_fill(~keep, float("-inf"))


def schema_generation_kwargs(
    tokenizer: Any, schema: dict[str, Any] | None, prompt_tokens: int
) -> dict[str, Any]:
    """What `generate` needs to keep its output inside `schema`: nothing without one."""
    if schema is None:
        return {}
    from transformers import LogitsProcessorList

    return {
        "logits_processor": LogitsProcessorList(
            [SchemaLogitsProcessor(tokenizer, schema, prompt_tokens)]
        )
    }
