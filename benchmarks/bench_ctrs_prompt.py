"""CTRS judge prompt length per session: ctrs@1.0, ctrs@2.0, and 2.0 without its skill
examples (issue 18).

    .venv/bin/python benchmarks/bench_ctrs_prompt.py [--no-model] [--json out.json]

Builds each variant's judge messages (system + user, one call for all 11 items) for the
same sessions and counts the prompt tokens the embedded model's tokenizer gives them. By
default the tokenizer is read from the embedded GGUF file through transformers (the train
extra) and applies the file's chat template: no model weights are loaded, and on the six
prompts of `bench_safety_prompt.py` it gives exactly the counts llama.cpp reported
(docs/benchmarks.md). `--counter llamacpp` asks llama.cpp itself instead, as that benchmark
does (the message pair with one token of output; slow on a small CPU, since the whole
prompt is processed). It also reports characters, characters/4 (the usual rough token
estimate) and the call's output budget (`max_tokens`) at the default rationale
cap (240 characters) and at the demo's (60), which must fit the 8,192-token context
together with the prompt on the embedded model. With `--no-model` only the character
counts are given.

Everything before the transcript (rubric, first-session frame, risk rule, examples) is the
same for every session, so servers with prefix caching compute it once; the transcript is
what varies. The sessions: the ten-turn session of `bench_safety_prompt.py`; the longest a
demo session can be (8 turns of about 80 tokens, the demo's cap); and a four-turn session
(`configs/train-smoke.yaml`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
from pathlib import Path
from typing import Any

from bench_safety_prompt import CONTEXT, TURNS, count_tokens

from therapygym.judges.ctrs import CTRSJudge
from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import builtin_rubric
from therapygym.records import SessionStatus, Transcript, Turn

# about 80 tokens each (the demo's max_tokens per utterance), our wording
LONG_TURN = (
    "I keep going over the same things at night, the meeting, my sister, the money, and "
    "every time I think I've settled one of them another comes back and I start again, "
    "until it's light outside and I've hardly slept at all, which makes the next day worse."
)
SESSIONS = {
    "ten turns (bench_safety_prompt)": TURNS,
    "demo's longest (8 turns x ~80 tokens)": [LONG_TURN] * 8,
    "four turns (train-smoke)": TURNS[:4],
}
VARIANTS = {
    "ctrs@1.0": ("1.0", True),
    "ctrs@2.0": ("2.0", True),
    "ctrs@2.0 --no-examples": ("2.0", False),
}


def transcript(texts: list[str]) -> Transcript:
    return Transcript(
        session_id="b",
        profile_id="bench",
        therapist="t",
        patient="p",
        status=SessionStatus.COMPLETED,
        turns=[
            Turn(
                id=f"b:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=text,
            )
            for i, text in enumerate(texts)
        ],
    )


class Capture:
    """A stand-in model that keeps the messages and budget a judge sends, not answering."""

    spec = "capture"

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.max_tokens = 0

    async def chat(self, messages: list[dict[str, str]], **params: Any) -> Any:
        self.messages, self.max_tokens = list(messages), params["max_tokens"]
        raise RuntimeError("captured")


async def call_for(
    version: str, examples: bool, session: Transcript, rationale_chars: int
) -> Capture:
    """The one-call CTRS request of this variant (1.0's budget is fixed; 2.0's follows the
    rationale cap, see `ctrs.output_budget`)."""
    from therapygym.judges.base import JudgeSettings

    capture = Capture()
    judge = CTRSJudge(
        capture,  # type: ignore[arg-type]
        builtin_rubric("ctrs", version),  # type: ignore[arg-type]
        JudgeSettings(rationale_chars=rationale_chars, max_attempts=1),
        examples=examples,
    )
    with contextlib.suppress(RuntimeError):
        await judge.score(session)
    return capture


def gguf_counter() -> Any:
    """Prompt tokens of a message list by the embedded GGUF's own tokenizer and chat
    template, read through transformers (the file's weights are not loaded)."""
    from transformers import AutoTokenizer

    from therapygym.models.llamacpp import embedded_model_path

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

    async def count(messages: list[dict[str, str]]) -> tuple[int, bool]:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
        return tokens, tokens <= CONTEXT

    return count


async def main(counter: str | None) -> dict[str, Any]:
    """The rows; `counter` is how tokens are counted (tokenizer, llamacpp) or None."""
    count = (
        {"tokenizer": gguf_counter, "llamacpp": lambda: count_tokens}[counter]()
        if counter
        else None
    )
    rows: dict[str, Any] = {}
    for name, texts in SESSIONS.items():
        session = transcript(texts)
        for variant, (version, examples) in VARIANTS.items():
            call = await call_for(version, examples, session, 240)
            demo = await call_for(version, examples, session, 60)
            chars = sum(len(m["content"]) for m in call.messages)
            tokens, fits = await count(call.messages) if count else (None, None)
            rows[f"{name} | {variant}"] = {
                "chars": chars,
                "chars_div_4": chars // 4,
                "transcript_chars": len(render_transcript(session).text),
                "prompt_tokens": tokens,
                "fits_8192": fits,
                "max_tokens_240": call.max_tokens,
                "max_tokens_60": demo.max_tokens,
                "fits_8192_with_output_240": None
                if tokens is None
                else tokens + call.max_tokens <= CONTEXT,
                "fits_8192_with_output_60": None
                if tokens is None
                else tokens + demo.max_tokens <= CONTEXT,
            }
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="characters only")
    parser.add_argument(
        "--counter", choices=("tokenizer", "llamacpp"), default="tokenizer", help="how to count"
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    result = asyncio.run(main(None if args.no_model else args.counter))
    for key, row in result.items():
        print(f"{key:65} {row}")
    for variant in VARIANTS:
        counts = [
            r["prompt_tokens"] or r["chars_div_4"]
            for k, r in result.items()
            if k.endswith(f"| {variant}")
        ]
        what = "tokens" if not args.no_model else "chars/4"
        print(f"{variant}: median prompt per session {statistics.median(counts)} ({what})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
