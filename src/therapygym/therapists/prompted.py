"""A therapist that is a chat model with a system prompt (ours by default, or the user's).

Turn information. The rule-based baseline paces a session by knowing it is on reply k of n;
an LLM therapist is told the same when its prompt asks for it. Our prompt does, so by
default every client message the therapist sees ends with a short session note ("this is
your reply 3 of 5", `prompts/turn_note.j2`), and the system prompt says what the note is.
The note is appended to each message and never rewritten, so what the therapist sees only
grows from turn to turn: the same text reaches a prompted therapist, TheraAgent's draft
and rewrite, `rl/env.py`'s policy, TRL's token sequence (one sequence per episode, whose
system prompt cannot change between turns) and verifiers' harness, and a server's prefix
cache keeps the conversation. The notes are the therapist's view only: transcripts, the
patient and the judges never see them.

`--therapist-prompt no-turn-info` sends our prompt as it was before turn notes, and no
notes. A prompt file is a template when it uses `{{ therapist_turns }}` (the therapist's
replies in the session) or `{{ max_turns }}` (the session's turn limit, both sides): it is
rendered once per session (it is a system prompt, sent once) and its therapist gets the
notes too. A file that uses neither is sent as written, without notes, as before.
"""

from __future__ import annotations

import hashlib
from functools import cache, lru_cache
from pathlib import Path

from jinja2 import Template, TemplateError, TemplateSyntaxError, meta

from therapygym.errors import ConfigError
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.models.backends import BACKENDS
from therapygym.models.types import ChatModel
from therapygym.records import SessionConfig, Turn, as_messages
from therapygym.session import Utterance
from therapygym.templates import package_text, prompt_env, render_prompt
from therapygym.therapists.rule_based import therapist_turns
from therapygym.yamlfile import MAX_CONFIG_BYTES, read_text

NO_PROMPT = "none"  # `--therapist-prompt none`: send no system prompt at all
NO_TURN_INFO = "no-turn-info"  # `--therapist-prompt no-turn-info`: ours, without turn notes
PROMPT_VARIABLES = ("therapist_turns", "max_turns")  # what a prompt file may use
_DEFAULT = "therapygym.therapists:prompts/cbt_default.md"
_NOTE = "therapygym.therapists:prompts/turn_note.j2"
_PER_TURN = ("turn", "turns_left")  # named in the note, not in a system prompt


@cache
def _our_prompt(turn_info: bool) -> str:
    return render_prompt(_DEFAULT, turn_info=turn_info)


def default_prompt() -> str:
    """Our CBT therapist prompt (`prompts/cbt_default.md`), as sent with turn notes."""
    return _our_prompt(True)


@cache
def _compiled(text: str) -> Template:
    return prompt_env().from_string(text)


@lru_cache(maxsize=1024)
def _turn_note(turn: int, total: int) -> str | None:
    """The note for the therapist's reply `turn` of `total`, or None past the last one.
    Rendered once per (turn, total) in a process, not per request: a request carries the
    notes of every reply so far, and rendering them (with the system prompt) each time made
    building a therapist request cost 46 µs of CPU, against 3.5 now (docs/benchmarks.md,
    issue 22 item 6)."""
    if turn > total:
        return None
    return render_prompt(_NOTE, turn=turn, therapist_turns=total, turns_left=total - turn)


@lru_cache(maxsize=256)
def _session_system(text: str, total: int, max_turns: int) -> str:
    """A turn-aware prompt rendered for a session's limits; every session of a run (and
    every request of a session) sends the same text, so it is rendered once."""
    return _compiled(text).render(therapist_turns=total, max_turns=max_turns).strip()


class TherapistPrompt:
    """A therapist's system prompt, and whether its therapist is told the turn.

    `turn_aware`: the text is rendered for the session (`PROMPT_VARIABLES`) and each
    client message ends with the note of the reply that answers it. Otherwise the text is
    sent as it is and the conversation as it was said.
    """

    def __init__(self, text: str, *, turn_aware: bool = False) -> None:
        self.text = text
        self.turn_aware = turn_aware

    def system(self, config: SessionConfig) -> str:
        """The system message for a session run under `config`."""
        if not self.turn_aware:
            return self.text
        return _session_system(self.text, therapist_turns(config), config.max_turns)

    def conversation(self, turns: list[Turn], config: SessionConfig) -> list[dict[str, str]]:
        """The conversation from the therapist's side, asking for its next reply: with
        turn notes, each therapist reply's note ends the client message before it (or
        stands alone where the therapist spoke first), the next reply's included."""
        said = as_messages(turns, "therapist")
        if not self.turn_aware:
            return said
        total = therapist_turns(config)
        replies = 0  # the therapist's replies before this message
        out: list[dict[str, str]] = []
        for message in [*said, None]:
            asks = message is None or message["role"] == "assistant"
            note = _turn_note(replies + 1, total) if asks else None
            if message is not None and message["role"] == "assistant":
                replies += 1
            if note is not None and out and out[-1]["role"] == "user":
                out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{note}"}
            elif note is not None:
                out.append({"role": "user", "content": note})
            if message is not None:
                out.append(message)
        return out

    def messages(self, turns: list[Turn], config: SessionConfig) -> list[dict[str, str]]:
        """The whole request: the system message, then `conversation`."""
        system = {"role": "system", "content": self.system(config)}
        return [system, *self.conversation(turns, config)]

    def fingerprint(self) -> str:
        """Changes with the text and, for a turn-aware prompt, with the note template."""
        note = package_text(_NOTE) if self.turn_aware else ""
        return hashlib.sha256(f"{self.text}\x1f{note}".encode()).hexdigest()[:16]


def _template_file(text: str, where: str) -> bool:
    """Whether a prompt file's text is a template (it uses a variable), checked now so a
    mistake is one line before any session starts. Text that does not parse is taken as
    written unless it names a variable (then it was meant as a template)."""
    try:
        names = meta.find_undeclared_variables(prompt_env().parse(text))
    except TemplateSyntaxError as err:
        if any(name in text for name in (*PROMPT_VARIABLES, *_PER_TURN)):
            raise ConfigError(f"{where}: line {err.lineno}: {err.message}") from None
        return False
    if unknown := sorted(names - set(PROMPT_VARIABLES)):
        per_turn = (
            "; the turn changes every reply and reaches the therapist in a note on each "
            "client message, since the system prompt is sent once per session"
            if set(unknown) & set(_PER_TURN)
            else ""
        )
        raise ConfigError(
            f"{where}: unknown variable(s) {', '.join(unknown)} "
            f"(a prompt may use {', '.join(PROMPT_VARIABLES)}){per_turn}"
        )
    if not names:
        return False
    try:
        TherapistPrompt(text, turn_aware=True).system(SessionConfig())
    except TemplateError as err:
        raise ConfigError(f"{where}: {err}") from None
    return True


def read_prompt(path: Path | str) -> TherapistPrompt:
    """A system prompt from a file (or `no-turn-info`: ours without turn notes), with a
    clear error when it is missing, empty or a broken template."""
    if str(path) == NO_TURN_INFO:
        return TherapistPrompt(_our_prompt(False))
    p = Path(path)
    text = read_text(p, "therapist prompt file", ConfigError, max_bytes=MAX_CONFIG_BYTES).strip()
    if not text:
        raise ConfigError(f"therapist prompt file {p}: the file is empty")
    return TherapistPrompt(text, turn_aware=_template_file(text, f"therapist prompt file {p}"))


def resolve_prompt(prompt: str | None) -> TherapistPrompt | None:
    """What a `--therapist-prompt` value sends: None is our prompt with turn notes,
    `none` is no system prompt, anything else `read_prompt`."""
    if prompt is None:
        return TherapistPrompt(default_prompt(), turn_aware=True)
    return None if prompt == NO_PROMPT else read_prompt(prompt)


def prompt_fingerprint(prompt: str | None) -> str:
    return hashlib.sha256((prompt or "").encode()).hexdigest()[:8]


class PromptedTherapist:
    """A chat model in the therapist's seat. `system_prompt=None` sends no system message
    (and so no turn notes); a plain string is sent as it is."""

    def __init__(
        self,
        model: ChatModel,
        system_prompt: TherapistPrompt | str | None,
        *,
        label: str | None = None,
    ):
        self.model = model
        self.system_prompt = (
            TherapistPrompt(system_prompt) if isinstance(system_prompt, str) else system_prompt
        )
        self.label = label or model.spec

    def messages(self, turns: list[Turn], config: SessionConfig) -> list[dict[str, str]]:
        """What the model is sent for its next reply (TheraAgent's rewrite starts from it)."""
        if self.system_prompt is None:
            return as_messages(turns, "therapist")
        return self.system_prompt.messages(turns, config)

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        completion = await self.model.chat(
            self.messages(turns, config),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=seed,
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
    CBT prompt (with turn notes) and a backend that is a whole chatbot already (a user's
    HTTP bot or callable) gets none; `prompt` is a prompt file, `NO_TURN_INFO` or
    `NO_PROMPT`."""
    base = load_model(spec, cache=cache, models_file=models_file)
    model = AccountedModel(base, "therapist", ledger) if ledger is not None else base
    chatbot = prompt is None and BACKENDS.get(base.config.backend).chatbot
    system = None if chatbot else resolve_prompt(prompt)
    shown = system.text if system is not None else None
    label = base.spec if prompt is None else f"{base.spec}#prompt-{prompt_fingerprint(shown)}"
    return PromptedTherapist(model, system, label=label), [base]
