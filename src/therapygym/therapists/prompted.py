"""A therapist that is a chat model with a system prompt (ours by default, or the user's)."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

from therapygym.errors import ConfigError
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.models.backends import BACKENDS
from therapygym.models.types import ChatModel
from therapygym.records import SessionConfig, Turn, as_messages
from therapygym.session import Utterance
from therapygym.yamlfile import MAX_CONFIG_BYTES, read_text

NO_PROMPT = "none"  # `--therapist-prompt none`: send no system prompt at all


@cache
def default_prompt() -> str:
    """The default CBT therapist prompt (`prompts/cbt_default.md`)."""
    path = resources.files("therapygym.therapists") / "prompts" / "cbt_default.md"
    return path.read_text(encoding="utf-8").strip()


def read_prompt(path: Path | str) -> str:
    """A system prompt from a file, with a clear error when it is missing or empty."""
    p = Path(path)
    text = read_text(p, "therapist prompt file", ConfigError, max_bytes=MAX_CONFIG_BYTES).strip()
    if not text:
        raise ConfigError(f"therapist prompt file {p}: the file is empty")
    return text


def prompt_fingerprint(prompt: str | None) -> str:
    return hashlib.sha256((prompt or "").encode()).hexdigest()[:8]


class PromptedTherapist:
    """A chat model in the therapist's seat. `system_prompt=None` sends no system message."""

    def __init__(self, model: ChatModel, system_prompt: str | None, *, label: str | None = None):
        self.model = model
        self.system_prompt = system_prompt
        self.label = label or model.spec

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        messages = as_messages(turns, "therapist")
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        completion = await self.model.chat(
            messages, temperature=config.temperature, max_tokens=config.max_tokens, seed=seed
        )
        return Utterance(
            text=completion.text.strip(),
            latency_s=completion.latency_s,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cached=completion.cached,
            model=completion.model,
        )


def load_prompted(
    spec: str,
    *,
    cache: ResponseCache | None = None,
    models_file: Path | str | None = None,
    prompt: str | None = None,
    ledger: UsageLedger | None = None,
) -> tuple[PromptedTherapist, list[BaseChatModel]]:
    """The model a spec names in the therapist's seat. Without `prompt`, a raw LLM gets our
    CBT prompt and a backend that is a whole chatbot already (a user's HTTP bot or
    callable) gets none; `prompt` is a prompt file, or `NO_PROMPT`."""
    base = load_model(spec, cache=cache, models_file=models_file)
    model = AccountedModel(base, "therapist", ledger) if ledger is not None else base
    if prompt == NO_PROMPT:
        system = None
    elif prompt is not None:
        system = read_prompt(prompt)
    else:
        system = None if BACKENDS.get(base.config.backend).chatbot else default_prompt()
    label = base.spec if prompt is None else f"{base.spec}#prompt-{prompt_fingerprint(system)}"
    return PromptedTherapist(model, system, label=label), [base]
