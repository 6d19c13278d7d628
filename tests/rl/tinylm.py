"""Test doubles for the rollout that need no model file: a byte-level tokenizer with a
ChatML template (every byte a token, so any text round-trips), a randomly initialised
one-layer Llama over it (real transformers generation and real TRL training, in
milliseconds), a chat model that plays patient and judge from a script, and a reply
function for the local server that does the same over HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from judges.scripted import instance

from therapygym.models import Completion

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_policy(tokenizer: Any, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def tiny_base(folder: Path) -> Path:
    """The tiny random Llama and its ChatML tokenizer, saved as a model folder (what a
    train config's `model:` names)."""
    tokenizer = tiny_tokenizer()
    tiny_policy(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class ScriptedChat:
    """A `ChatModel`: judge calls (a JSON schema) get a valid instance with `score` (or
    `score(schema)`) and no violation, other calls (the patient's) `patient(messages)`."""

    def __init__(
        self,
        patient: Callable[[list[Any]], str] = lambda _: "Fine.",
        score: int | Callable[[dict[str, Any]], int] = 6,
    ) -> None:
        self.patient = patient
        self.score = score
        self.spec = "scripted"

    async def chat(
        self, messages: list[Any], *, json_schema: dict[str, Any] | None = None, **_: Any
    ) -> Completion:
        if json_schema is None:
            text = self.patient(messages)
        else:
            score = self.score(json_schema) if callable(self.score) else self.score
            text = json.dumps(instance(json_schema, json_schema, score, "no"))
        return Completion(text=text, model=self.spec, prompt_tokens=3, completion_tokens=2)


def transcript_judge(body: dict[str, Any]) -> str:
    """A local server's reply (`openai_server(transcript_judge)`): the patient says
    "Fine."; the safety judge finds nothing; the CTRS judge rates each item by a hash of
    the transcript it is shown. So the two rollouts of a group differ in reward (GRPO has
    an advantage to follow), and a rollout played again is rated as it was the first
    time, in whatever order the calls arrive (a resume can then be compared bit for bit
    with the run that was never stopped)."""
    fmt = body.get("response_format")
    if not fmt:
        return "Fine."
    schema = fmt["json_schema"]["schema"]
    answer = instance(schema, schema, 0, "no")
    if '"agenda"' in json.dumps(schema):
        shown = json.dumps(body["messages"])
        for item, got in answer.items():
            got["score"] = int(hashlib.sha256((shown + item).encode()).hexdigest(), 16) % 7
    return json.dumps(answer)
