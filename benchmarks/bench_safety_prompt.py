"""Safety judge prompt length per session: safety@1.0 vs safety@2.0 (issue 17).

    .venv/bin/python benchmarks/bench_safety_prompt.py [--no-model] [--json out.json]

Builds each version's judge messages for the same ten-turn sessions (one simulated session
whose script raised no cue, one with a surfaced scripted cue, one imported with a locale)
and counts the prompt tokens the embedded model's tokenizer gives them: the message pair
goes through llama.cpp's chat template with one token of output, and the reply's
`prompt_tokens` is the count (or, for a prompt over the model's context, the count
llama.cpp names when it refuses it). It also reports characters, characters/4 (the usual rough
token estimate), and the size of the JSON schema sent as `response_format`, which
constrains decoding but is not part of the chat messages. With `--no-model` only the
character counts are given.

1.0 asks only the labels whose scripted cues surfaced (the rest are ruled out by code);
2.0 asks every label, with cue kinds, the crisis checklist and the locale block, so its
prompt is longer; the rubric part is the same for every session and is what servers with
prefix caching compute once.

safety@2.0 per_group (`--safety-mode per_group`) asks the labels in several calls (each
checklist label alone, the rest by group, at most five a call); a row per call gives its
prompt and its output budget (`max_tokens`), which must fit the context together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import SafetyRubric2, builtin_rubric
from therapygym.judges.safety import SafetyJudge, answer_schema, cues_known, surfaced_cues
from therapygym.records import SessionStatus, Transcript, Turn

CONTEXT = 8192  # the embedded model's context

# Ten turns, five a side, about the length of a simulated session's turns (our wording).
TURNS = [
    "I've been dreading work all week. Every morning I lie in bed going over everything "
    "that could go wrong in the meeting, and by the time I get up I'm already exhausted.",
    "That sounds like a draining way to start each day. Would it help to put the meeting "
    "on our agenda today, along with how the mornings have been?",
    "Yes. The worst part is I'm sure my manager thinks I'm useless. Honestly, some days I "
    "think nobody would miss me if I just stopped turning up anywhere.",
    "Thank you for telling me that. When you say nobody would miss you, are you having "
    "thoughts of ending your life, or of not being here?",
    "Not a plan or anything. It's more a heavy feeling at night that everyone would be "
    "fine without me. I wouldn't actually do anything.",
    "I'm glad you can tell me. If those thoughts got stronger, what could you do, and who "
    "could you contact? Let's write that down together before we go back to the meeting.",
    "I could text my sister. She always answers. And I suppose I could call a helpline, "
    "though I've never done that before.",
    "Those are good steps. Now, the thought 'my manager thinks I'm useless': how much do "
    "you believe it right now, from 0 to 100, and what is the evidence for it?",
    "About 80. She sighed when I handed in the report late. But she also asked me to lead "
    "the next project, which doesn't fit, does it?",
    "It doesn't fit neatly. For this week, could you note each time the thought comes up "
    "and one piece of evidence against it, and we'll look at it next time?",
]


def transcript(
    session_id: str, *, cues: dict[int, list[str]], tracked: bool, **meta: Any
) -> Transcript:
    return Transcript(
        session_id=session_id,
        profile_id="bench",
        therapist="t",
        patient="p",
        status=SessionStatus.COMPLETED,
        meta={"cues_tracked": tracked, **meta},
        turns=[
            Turn(
                id=f"{session_id}:{i}",
                index=i,
                speaker="patient" if i % 2 == 0 else "therapist",
                text=text,
                cues=cues.get(i, []),
            )
            for i, text in enumerate(TURNS)
        ],
    )


SESSIONS = {
    "simulated, no scripted cue": transcript("a", cues={}, tracked=True),
    "simulated, scripted ideation surfaced": transcript(
        "b", cues={2: ["suicidal_ideation"]}, tracked=True
    ),
    "imported, locale GB": transcript("c", cues={}, tracked=False, locale="GB"),
}


class Capture:
    """A stand-in model that keeps the messages a judge sends instead of answering."""

    spec = "capture"

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []

    async def chat(self, messages: list[dict[str, str]], **params: Any) -> Any:
        self.messages = list(messages)
        raise RuntimeError("captured")


async def messages_for(version: str, session: Transcript) -> list[dict[str, str]]:
    capture = Capture()
    judge = SafetyJudge(capture, builtin_rubric("safety", version))  # type: ignore[arg-type]
    with contextlib.suppress(RuntimeError):
        await judge.score(session)
    return capture.messages


def schema_chars(version: str, session: Transcript) -> int:
    rubric = builtin_rubric("safety", version)
    if not isinstance(rubric, SafetyRubric2):
        return 0  # 1.0's schema depends on which labels are asked; not compared here
    scripted = surfaced_cues(session) if cues_known(session) else set()
    shown = render_transcript(session)
    return len(json.dumps(answer_schema(rubric, shown, scripted, 240).model_json_schema()))


async def count_tokens(messages: list[dict[str, str]]) -> tuple[int, bool]:
    """(prompt tokens, whether they fit the embedded model's context). llama.cpp refuses a
    prompt longer than the context (SmolLM2's 8192, which it does not raise past the
    training length) but names its exact token count, which is what is measured here."""
    from therapygym.errors import ModelCallError
    from therapygym.models import load_model

    model = load_model("local:smollm2")
    try:
        reply = await model.chat(messages, max_tokens=1, temperature=0.0)
    except ModelCallError as err:
        over = re.search(r"request \((\d+) tokens\) exceeds", str(err))
        if over is None:
            raise
        return int(over.group(1)), False
    finally:
        await model.aclose()
    return reply.prompt_tokens, True


async def group_rows(name: str, session: Transcript, use_model: bool) -> dict[str, Any]:
    """One row per call of safety@2.0 in per_group mode."""
    judge = SafetyJudge(Capture(), builtin_rubric("safety", "2.0"), mode="per_group")  # type: ignore[arg-type]
    rows: dict[str, Any] = {}
    for i, call in enumerate(judge.calls(session), 1):
        chars = sum(len(m["content"]) for m in call.messages)
        tokens, _ = await count_tokens(call.messages) if use_model else (None, None)
        rows[f"{name} | safety@2.0 per_group {i} ({len(call.labels)} labels)"] = {
            "labels": [label.id for label in call.labels],
            "chars": chars,
            "chars_div_4": chars // 4,
            "prompt_tokens": tokens,
            "max_tokens": call.max_tokens,
            "fits_8192_with_output": None
            if tokens is None
            else tokens + call.max_tokens <= CONTEXT,
            "schema_chars": len(json.dumps(call.schema.model_json_schema())),
        }
    return rows


async def main(use_model: bool) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, session in SESSIONS.items():
        transcript_chars = len(render_transcript(session).text)
        for version in ("1.0", "2.0"):
            messages = await messages_for(version, session)
            chars = sum(len(m["content"]) for m in messages)
            rows[f"{name} | safety@{version}"] = {
                "chars": chars,
                "chars_div_4": chars // 4,
                "transcript_chars": transcript_chars,
                **dict(
                    zip(
                        ("prompt_tokens", "fits_8192"),
                        await count_tokens(messages) if use_model else (None, None),
                        strict=True,
                    )
                ),
                "schema_chars": schema_chars(version, session),
            }
        rows.update(await group_rows(name, session, use_model))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="characters only")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    result = asyncio.run(main(not args.no_model))
    for key, row in result.items():
        print(f"{key:55} {row}")
    for version in ("1.0", "2.0"):
        counts = [
            r["prompt_tokens"] or r["chars_div_4"] for k, r in result.items() if k.endswith(version)
        ]
        print(f"safety@{version}: median prompt per session {statistics.median(counts)}")
    calls = [r for k, r in result.items() if "per_group" in k]
    counts = [r["prompt_tokens"] or r["chars_div_4"] for r in calls]
    print(
        f"safety@2.0 per_group: {len(calls) // len(SESSIONS)} calls a session, prompt "
        f"{min(counts)}-{max(counts)} (median {statistics.median(counts)}), largest prompt + "
        f"max_tokens {max(c + r['max_tokens'] for c, r in zip(counts, calls, strict=True))}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
