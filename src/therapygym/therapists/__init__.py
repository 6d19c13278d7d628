"""Therapists under test, behind the session's `Participant` interface.

rule-based                       the reflective rule-based baseline (no LLM)
<model spec>                     a chat model in the therapist's seat: openai:..., local:smollm2,
                                 gguf:..., python:module:function, http:bot.yaml, or a named model
theraagent[opts]:<model spec>    that model, with TheraAgent's rate-critique-coach-revise loop
                                 (therapists/theraagent.py, docs/theraagent.md)
"""

from __future__ import annotations

from pathlib import Path

from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.session import Participant
from therapygym.therapists.prompted import (
    CHATBOT_BACKENDS,
    PromptedTherapist,
    default_prompt,
    prompt_fingerprint,
    read_prompt,
)

RULE_BASED = "rule-based"
NO_PROMPT = "none"


def is_theraagent_spec(spec: str) -> bool:
    """`theraagent:...` or `theraagent[...]:...` (parsed in therapists/theraagent.py)."""
    text = spec.strip()
    return text == "theraagent" or text.startswith(("theraagent:", "theraagent["))


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
    if spec == RULE_BASED:
        from therapygym.therapists.rule_based import RuleBasedTherapist

        return RuleBasedTherapist(), []
    if is_theraagent_spec(spec):
        from therapygym.therapists.theraagent import load_theraagent

        return load_theraagent(
            spec, cache=cache, models_file=models_file, prompt=prompt, ledger=ledger
        )
    base = load_model(spec, cache=cache, models_file=models_file)
    model = AccountedModel(base, "therapist", ledger) if ledger is not None else base
    if prompt == NO_PROMPT:
        system = None
    elif prompt is not None:
        system = read_prompt(prompt)
    else:
        system = None if base.config.backend in CHATBOT_BACKENDS else default_prompt()
    label = base.spec if prompt is None else f"{base.spec}#prompt-{prompt_fingerprint(system)}"
    return PromptedTherapist(model, system, label=label), [base]
