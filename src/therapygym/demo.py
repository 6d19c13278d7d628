"""The offline demo: a short real conversation with the embedded model.

Until simulated patients and judges exist, `make demo` shows the model layer end to end:
a scripted client (three lines written by us) talks to a CBT-prompted therapist on the
embedded model, and the usage is accounted per role. The embedded 135M model is a
stand-in for plumbing; nothing it says carries clinical meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from therapygym.models import AccountedModel, ResponseCache, UsageLedger, load_model
from therapygym.models.types import Message

DEMO_SYSTEM_PROMPT = (
    "You are a therapist trained in cognitive behavioural therapy. Reply in two to four "
    "sentences: reflect what the client said, then ask one guiding question."
)

DEMO_CLIENT_LINES = (
    "I keep lying awake before work, sure that my manager thinks I'm useless.",
    "Last week she asked me to redo a report, and I haven't stopped thinking about it.",
    "I suppose I could ask her what she actually meant, but that feels terrifying.",
)


class DemoTurn(BaseModel):
    client: str
    therapist: str
    latency_s: float
    cached: bool


@dataclass
class DemoResult:
    model: str
    turns: list[DemoTurn]
    usage: UsageLedger


async def run_demo(
    spec: str = "local:smollm2", *, cache: ResponseCache | None, max_tokens: int = 96
) -> DemoResult:
    """Run the scripted client against `spec` and return the turns and usage."""
    ledger = UsageLedger()
    base = load_model(spec, cache=cache)
    therapist = AccountedModel(base, "therapist", ledger)
    messages: list[Message] = [{"role": "system", "content": DEMO_SYSTEM_PROMPT}]
    turns: list[DemoTurn] = []
    try:
        for line in DEMO_CLIENT_LINES:
            messages.append({"role": "user", "content": line})
            reply = await therapist.chat(messages, temperature=0.0, max_tokens=max_tokens, seed=0)
            messages.append({"role": "assistant", "content": reply.text})
            turns.append(
                DemoTurn(
                    client=line,
                    therapist=reply.text,
                    latency_s=reply.latency_s,
                    cached=reply.cached,
                )
            )
    finally:
        await base.aclose()
    return DemoResult(model=base.spec, turns=turns, usage=ledger)
