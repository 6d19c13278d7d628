"""Therapists under test, behind the session's `Participant` interface.

rule-based                       the reflective rule-based baseline (no LLM)
<model spec>                     a chat model in the therapist's seat: openai:..., local:smollm2,
                                 gguf:..., python:module:function, http:bot.yaml, or a named model
theraagent[opts]:<model spec>    that model, with TheraAgent's rate-critique-coach-revise loop
                                 (therapists/theraagent.py, docs/theraagent.md)

Kinds other than a model are found by prefix in `THERAPIST_KINDS` (therapists/registry.py).
"""

from __future__ import annotations

from pathlib import Path

from therapygym.models import BaseChatModel, ResponseCache, UsageLedger
from therapygym.session import Participant
from therapygym.therapists.prompted import NO_PROMPT, load_prompted
from therapygym.therapists.registry import THERAPIST_KINDS, therapist_kind

__all__ = ["NO_PROMPT", "THERAPIST_KINDS", "load_therapist"]


def load_therapist(
    spec: str,
    *,
    cache: ResponseCache | None = None,
    models_file: Path | str | None = None,
    prompt: str | None = None,
    ledger: UsageLedger | None = None,
) -> tuple[Participant, list[BaseChatModel]]:
    """Build the therapist a spec names, and the models behind it (to close when done:
    none for the rule-based therapist, one for a model, one per distinct spec for
    TheraAgent).

    `prompt`: a system-prompt file, `none` for no system prompt, or None for the default
    (our CBT prompt for raw LLMs; nothing for a user's HTTP chatbot or callable).
    """
    kind = therapist_kind(spec)
    loader = THERAPIST_KINDS.get(kind) if kind is not None else load_prompted
    return loader(spec, cache=cache, models_file=models_file, prompt=prompt, ledger=ledger)
