"""The rule-based therapist: an ELIZA-style reflective baseline with a few CBT moves.

A deliberately weak but sensible reference point that needs no model: any LLM therapist
should beat it, and if one does not, that says something. It reflects the patient's words
back with pronouns swapped, answers keywords with ordered rules, and follows the shape of
a CBT session (agenda, guided discovery, a balanced thought or experiment, summary with
homework and feedback). Safety comes first: crisis language always gets a safety reply.

Every word it says lives in `rule_based.yaml` (clinical text is data, not code); the file
is validated when it loads so a broken script fails loudly. Replies are deterministic
given the seed and the conversation.
"""

from __future__ import annotations

import random
import re
import time
from functools import cache
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from therapygym.errors import ConfigError, ModelSpecError
from therapygym.records import SessionConfig, Turn
from therapygym.session import Utterance
from therapygym.yamlfile import read_yaml_mapping

if TYPE_CHECKING:
    from therapygym.models import BaseChatModel

SCRIPT_FILE = "rule_based.yaml"
LABEL = "rule-based"
MAX_FRAGMENT_WORDS = 15

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[^A-Za-z]+")
_SENTENCE_END = re.compile(r"[.!?;\n]")
_SENTENCE = re.compile(r"[^.!?;\n]+[.!?;]*")
_ASKS = re.compile(
    r"\s*(?:can|could|should|would|will|is|are|am|do|does|did|what|why|how|where|who)\b", re.I
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|me|my|myself)\b", re.IGNORECASE)

Templates = Annotated[list[str], Field(min_length=1)]


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"{where}: pattern {pattern!r} does not compile: {err}") from None


def _check_templates(templates: list[str], allowed: set[str], where: str) -> None:
    """Reject placeholders that would be left unfilled (or crash) at reply time."""
    for template in templates:
        try:
            names = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
        except ValueError as err:
            raise ValueError(f"{where}: template {template!r} is malformed: {err}") from None
        unknown = names - allowed
        if unknown:
            can = ", ".join(sorted("{" + a + "}" for a in allowed)) or "none"
            raise ValueError(
                f"{where}: template {template!r} uses {sorted(unknown)} (allowed: {can})"
            )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reflection(_Strict):
    """Pronoun swapping, so a fragment of what the patient said can be said back."""

    words: dict[str, str]
    after_i: dict[str, str]
    after_you: dict[str, str]
    you_subject: str
    you_object: str
    subject_before: list[str]
    subject_after: list[str]

    def swap(self, text: str) -> str:
        """`I was sure my boss hates me` -> `you were sure your boss hates you`, and back."""
        tokens = _TOKEN.findall(text.replace("\u2019", "'"))
        lows = [t.lower() if t[0].isalpha() else None for t in tokens]
        out: list[str] = []
        prev: str | None = None  # the previous word, as the patient said it (lowercased)
        for i, token in enumerate(tokens):
            low = lows[i]
            if low is None:
                out.append(token)
                continue
            nxt = next((w for w in lows[i + 1 :] if w is not None), None)
            if prev == "i" and low in self.after_i:
                new = self.after_i[low]
            elif prev == "you" and low in self.after_you:
                new = self.after_you[low]
            elif low == "you":
                subject = prev is None or prev in self.subject_before or nxt in self.subject_after
                new = self.you_subject if subject else self.you_object
            else:
                new = self.words.get(low, token)
            out.append(new)
            prev = low
        return "".join(out)


class Rule(_Strict):
    """A keyword rule: the first that matches the patient's last utterance answers."""

    name: str
    pattern: str
    responses: Templates
    _regex: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self) -> Rule:
        self._regex = _compile(self.pattern, f"rule {self.name!r}")
        groups = {str(i) for i in range(self._regex.groups)}
        _check_templates(self.responses, groups, f"rule {self.name!r}")
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return self._regex


class CrisisRule(_Strict):
    """Crisis language of one kind, and the safety replies to it."""

    name: str
    patterns: Templates
    responses: Templates
    _regex: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self) -> CrisisRule:
        where = f"crisis rule {self.name!r}"
        for p in self.patterns:
            _compile(p, where)
        self._regex = _compile("|".join(f"(?:{p})" for p in self.patterns), where)
        _check_templates(self.responses, set(), where)
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return self._regex


class Medication(_Strict):
    """Medication questions: decline to advise, point to the prescriber, come back."""

    topic: str
    asking: str
    responses: Templates
    bridges: Templates
    _topic: re.Pattern[str] = PrivateAttr()
    _asking: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self) -> Medication:
        self._topic = _compile(self.topic, "medication.topic")
        self._asking = _compile(self.asking, "medication.asking")
        _check_templates(self.responses, set(), "medication.responses")
        _check_templates(self.bridges, {"topic"}, "medication.bridges")
        return self

    def matches(self, text: str) -> bool:
        return bool(self._topic.search(text) and self._asking.search(text))


class Acknowledge(_Strict):
    reflect: Templates
    plain: Templates

    @model_validator(mode="after")
    def _validate(self) -> Acknowledge:
        _check_templates(self.reflect, {"0"}, "acknowledge.reflect")
        _check_templates(self.plain, set(), "acknowledge.plain")
        return self


class Moves(_Strict):
    """The CBT session shape, by the therapist's turn number."""

    agenda: Templates
    socratic: Templates
    alternative: Templates
    summary: Templates
    homework: Templates
    feedback: Templates

    @model_validator(mode="after")
    def _validate(self) -> Moves:
        for name in ("agenda", "socratic", "alternative", "homework", "feedback"):
            _check_templates(getattr(self, name), set(), f"moves.{name}")
        _check_templates(self.summary, {"topic"}, "moves.summary")
        return self


class Script(_Strict):
    """The whole of `rule_based.yaml`."""

    reflection: Reflection
    crisis: Annotated[list[CrisisRule], Field(min_length=1)]
    medication: Medication
    rules: list[Rule]
    generic: Templates
    acknowledge: Acknowledge
    fallback_topic: str = Field(min_length=1)
    moves: Moves

    @model_validator(mode="after")
    def _validate(self) -> Script:
        _check_templates(self.generic, set(), "generic")
        return self


def _describe(err: ValidationError) -> str:
    """A pydantic error as one line (errors shown to users are one line)."""
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_script(raw: Any, source: str = SCRIPT_FILE) -> Script:
    """Validate a loaded script; a broken one raises `ConfigError` naming the problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(raw).__name__}")
    try:
        return Script.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(
            f"{source}: invalid rule-based therapist script: {_describe(err)}"
        ) from None


@cache
def load_script() -> Script:
    """The shipped script, read and validated once per process."""
    path = Path(str(resources.files("therapygym.therapists") / SCRIPT_FILE))
    return parse_script(read_yaml_mapping(path, "rule-based therapist script", ConfigError))


def reflect(text: str) -> str:
    """Swap first and second person in `text` using the shipped script."""
    return load_script().reflection.swap(text)


def _clip(text: str) -> str:
    """The first sentence of `text`, trimmed to a length that reads well when echoed."""
    sentence = _SENTENCE_END.split(text.replace("\u2019", "'"), maxsplit=1)[0]
    words = sentence.strip().strip(",:-\"' ").split()
    if len(words) > MAX_FRAGMENT_WORDS:
        head = " ".join(words[:MAX_FRAGMENT_WORDS])
        cut = head.rfind(",")
        words = (head[:cut] if cut > 0 and head[:cut].count(" ") >= 3 else head).split()
    return " ".join(words).rstrip(",:-\"' ")


def therapist_turns(config: SessionConfig) -> int:
    """How many turns the therapist gets in the whole session."""
    mine = config.max_turns // 2 if config.opener == "patient" else (config.max_turns + 1) // 2
    return max(mine, 1)


class RuleBasedTherapist:
    """Reflect, follow keyword rules, walk through a CBT session; safety before all else."""

    label = LABEL

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or load_script()

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        start = time.perf_counter()
        text = self.reply(turns, seed=seed, config=config)
        return Utterance(text=text, model=LABEL, latency_s=time.perf_counter() - start)

    def reply(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> str:
        """The next therapist line. Same turns, seed and config give the same line.

        Order of precedence: crisis language in the patient's last line (on any turn, the
        last included), then a medication question, then the CBT move for this turn `k` of
        `n`: summary + homework + feedback last, agenda first, a balanced thought or
        experiment second to last, and in between a keyword reflection (even k) or guided
        discovery (odd k).
        """
        s = self.script
        said = [t.text for t in turns if t.speaker == "patient"]
        last = said[-1].replace("\u2019", "'") if said else ""
        k = sum(t.speaker == "therapist" for t in turns) + 1
        n = therapist_turns(config)
        rng = random.Random(seed + k)

        for rule in s.crisis:
            if rule.regex.search(last):
                return rng.choice(rule.responses)

        topic = self.fragment(said[0]) if said else ""
        topic = topic or s.fallback_topic
        m = s.moves
        if s.medication.matches(last):
            parts = [rng.choice(s.medication.responses)]
            if k >= n:
                parts += self._closing(topic, rng)
            elif k == 1:
                parts.append(rng.choice(m.agenda))
            else:
                parts.append(rng.choice(s.medication.bridges).format(topic=topic))
        elif k >= n:
            parts = self._closing(topic, rng)
        elif k == 1:
            parts = [self._acknowledge(last, rng), rng.choice(m.agenda)]
        elif k == n - 1:
            parts = [self._acknowledge(last, rng), rng.choice(m.alternative)]
        elif k % 2 == 0:
            parts = [self._keyword(last, rng)]
        else:
            parts = [self._acknowledge(last, rng), rng.choice(m.socratic)]
        text = " ".join(p.strip() for p in parts if p.strip())
        return text[:1].upper() + text[1:]

    def fragment(self, text: str) -> str:
        """A reflected statement from `text` worth saying back, or "".

        Prefers a first-person sentence; skips questions and short fragments ("Hi."), which
        read badly when echoed.
        """
        statements = [
            x for x in _SENTENCE.findall(text) if not (x.rstrip().endswith("?") or _ASKS.match(x))
        ]
        sentences = [c for c in map(_clip, statements) if len(c.split()) >= 3]
        if not sentences:
            return ""
        best = next((c for c in sentences if _FIRST_PERSON.search(c)), sentences[0])
        out = self.script.reflection.swap(best)
        return out if re.match(r"I\b", out) else out[:1].lower() + out[1:]

    def _acknowledge(self, last: str, rng: random.Random) -> str:
        if not last.strip():  # the therapist opened the session: nothing to reflect yet
            return ""
        frag = self.fragment(last)
        ack = self.script.acknowledge
        return rng.choice(ack.reflect).format(frag) if frag else rng.choice(ack.plain)

    def _keyword(self, last: str, rng: random.Random) -> str:
        for rule in self.script.rules:
            match = rule.regex.search(last)
            if not match:
                continue
            groups = [self.script.reflection.swap(_clip(g or "")) for g in match.groups()]
            if all(groups):
                return rng.choice(rule.responses).format(*groups)
        return rng.choice(self.script.generic)

    def _closing(self, topic: str, rng: random.Random) -> list[str]:
        m = self.script.moves
        return [
            rng.choice(m.summary).format(topic=topic),
            rng.choice(m.homework),
            rng.choice(m.feedback),
        ]


def load_rule_based(spec: str, **_: object) -> tuple[RuleBasedTherapist, list[BaseChatModel]]:
    """The `rule-based` therapist kind: no model, no options (a prompt does not apply)."""
    if spec.strip() != LABEL:
        raise ModelSpecError(f"therapist spec '{spec}': the rule-based therapist takes no options")
    return RuleBasedTherapist(), []
