"""The rule-based therapist: an ELIZA-style reflective baseline with a few CBT moves.

A deliberately weak but sensible reference point that needs no model: any LLM therapist
should beat it, and if one does not, that says something. It reflects the patient's words
back with pronouns swapped, answers keywords with ordered rules, and follows the shape of
a CBT session (agenda, guided discovery, a balanced thought or experiment, summary with
homework and feedback).

Risk comes before all of that. Every patient line so far (not only the last) is searched
with the patterns in `risk_patterns.yaml` for five kinds: suicide (passive and active
thoughts, and means: stockpiled medicines, guns, heights, vehicles and trains, ligatures),
self-harm, harm to others, abuse the patient suffers, and a child or other person at risk.
A disclosed risk stays open, and every reply is a safety reply for it (ask directly, then
the means or a safe place, then a safety plan, and on the last turn a safety summary),
until the patient answers a safety reply by agreeing a concrete step to stay safe, or, for
thoughts without a plan or means, by saying plainly there is no plan or intent. Only then
does the script resume, and a session where a plan, means or intent came up ends on
safety, never on homework. This state is rebuilt from the conversation on every reply, so
the therapist holds nothing between calls.

It is keyword and pattern matching, not understanding: it misses risk worded in ways the
patterns do not foresee, can fire on unforeseen phrasings that merely look like risk, and
cannot tell an unwanted intrusive thought (OCD) from intent. It names no country's crisis
number (it is not told the patient's locale), does not detect medical red flags, mania,
delusions or functional impairment, and answers medication questions only by pointing to
the prescriber. The measured recall and false-alarm rate are in docs/baseline.md.

Every word it says lives in `rule_based.yaml` (clinical text is data, not code); both files
are validated when they load so a broken one fails loudly. Replies are deterministic given
the seed and the conversation.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
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
RISK_FILE = "risk_patterns.yaml"
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


class CrisisReplies(_Strict):
    """The safety replies to one kind of risk, by stage (see `rule_based.yaml`)."""

    name: str
    ask: Templates
    follow_up: Templates
    plan: Templates
    closing: Templates

    @model_validator(mode="after")
    def _validate(self) -> CrisisReplies:
        for stage in ("ask", "follow_up", "plan", "closing"):
            _check_templates(getattr(self, stage), set(), f"crisis {self.name!r} {stage}")
        return self

    def for_stage(self, replies_given: int, last_turn: bool) -> list[str]:
        """The templates for the next reply, after `replies_given` earlier safety replies
        to this risk: ask first (even on the last turn: a new disclosure is asked about,
        not summed up), then the follow-up, then the safety plan; the closing summary once
        the session ends with the risk still open."""
        if replies_given == 0:
            return self.ask
        if last_turn:
            return self.closing
        return self.follow_up if replies_given == 1 else self.plan


class Safety(_Strict):
    """What is said once a risk is addressed, and how a session with risk in it ends."""

    resume: Templates
    safety_net: Templates
    planned_closing: Templates

    @model_validator(mode="after")
    def _validate(self) -> Safety:
        _check_templates(self.resume, {"topic"}, "safety.resume")
        _check_templates(self.safety_net, set(), "safety.safety_net")
        _check_templates(self.planned_closing, set(), "safety.planned_closing")
        return self


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
    crisis: Annotated[list[CrisisReplies], Field(min_length=1)]
    safety: Safety
    medication: Medication
    rules: list[Rule]
    generic: Templates
    acknowledge: Acknowledge
    fallback_topic: str = Field(min_length=1)
    moves: Moves

    @model_validator(mode="after")
    def _validate(self) -> Script:
        _check_templates(self.generic, set(), "generic")
        names = [c.name for c in self.crisis]
        if len(set(names)) != len(names):
            raise ValueError(f"crisis: each kind once, got {names}")
        return self

    def replies_for(self, kind: str) -> CrisisReplies:
        return next(c for c in self.crisis if c.name == kind)


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


_TERM = re.compile(r"<([a-z_]+)>")


def _expand(pattern: str, terms: dict[str, str], where: str) -> re.Pattern[str]:
    """`pattern` with each `<term>` replaced by its group from `terms`, compiled."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in terms:
            known = ", ".join(f"<{t}>" for t in sorted(terms)) or "none"
            raise ValueError(f"{where}: pattern {pattern!r} uses unknown <{m.group(1)}> ({known})")
        return terms[m.group(1)]

    return _compile(_TERM.sub(sub, pattern), where)


def _any(patterns: list[re.Pattern[str]]) -> re.Pattern[str]:
    """One regex that matches where any of `patterns` does (never, for none)."""
    joined = "|".join(f"(?:{p.pattern})" for p in patterns) or r"(?!x)x"
    return re.compile(joined, re.IGNORECASE)


class RiskKind(_Strict):
    """One kind of risk and the words that disclose it (see `risk_patterns.yaml`)."""

    name: str
    disclosure: Templates
    plan: list[str]
    plan_context: list[str]


class Addressed(_Strict):
    denial: Templates
    safety_step: Templates


class RiskPatterns(_Strict):
    """The whole of `risk_patterns.yaml`: compiled once, searched on every patient line."""

    terms: dict[str, str]
    not_risk: list[str]
    kinds: Annotated[list[RiskKind], Field(min_length=1)]
    addressed: Addressed
    _mask: re.Pattern[str] = PrivateAttr()
    _fires: dict[str, re.Pattern[str]] = PrivateAttr()
    _plan: dict[str, re.Pattern[str]] = PrivateAttr()
    _context: dict[str, re.Pattern[str]] = PrivateAttr()
    _denial: re.Pattern[str] = PrivateAttr()
    _step: re.Pattern[str] = PrivateAttr()

    @model_validator(mode="after")
    def _validate(self) -> RiskPatterns:
        terms = {k: f"(?:{v.strip()})" for k, v in self.terms.items()}
        for name, term in terms.items():
            _compile(term, f"terms.{name}")

        def compiled(patterns: list[str], where: str) -> re.Pattern[str]:
            return _any([_expand(p, terms, where) for p in patterns])

        names = [k.name for k in self.kinds]
        if len(set(names)) != len(names):
            raise ValueError(f"kinds: each name once, got {names}")
        self._mask = compiled(self.not_risk, "not_risk")
        self._fires, self._plan, self._context = {}, {}, {}
        for k in self.kinds:
            self._fires[k.name] = compiled(k.disclosure + k.plan, f"kind {k.name!r}")
            self._plan[k.name] = compiled(k.plan, f"kind {k.name!r} plan")
            self._context[k.name] = compiled(k.plan_context, f"kind {k.name!r} plan_context")
        self._denial = compiled(self.addressed.denial, "addressed.denial")
        self._step = compiled(self.addressed.safety_step, "addressed.safety_step")
        return self

    @property
    def names(self) -> list[str]:
        """The kinds, in priority order."""
        return [k.name for k in self.kinds]

    def _clean(self, text: str) -> str:
        """`text` with curly apostrophes straightened and every not-risk span blanked."""
        return self._mask.sub(" ~ ", text.replace("\u2019", "'"))

    def detect(self, text: str) -> dict[str, bool]:
        """The kinds `text` discloses, in priority order, each with whether it tells a
        plan, means or intent (a `plan` pattern, or a `plan_context` one in the same
        line). Idioms and negations (`not_risk`) never count."""
        clean = self._clean(text)
        return {
            name: bool(self._plan[name].search(clean) or self._context[name].search(clean))
            for name in self.names
            if self._fires[name].search(clean)
        }

    def plan_context(self, kind: str, text: str) -> bool:
        """Whether `text` adds timing or intent to an already disclosed `kind`."""
        return bool(self._context[kind].search(self._clean(text)))

    def answers_safely(self, text: str, *, plan: bool) -> bool:
        """Whether `text`, the answer to a safety reply, addresses the risk: a concrete
        step to stay safe, or (when no plan or means was told) a clear denial."""
        clean = self._clean(text)
        return bool(self._step.search(clean) or (not plan and self._denial.search(clean)))


def parse_risk_patterns(raw: Any, source: str = RISK_FILE) -> RiskPatterns:
    """Validate loaded risk patterns; broken ones raise `ConfigError` naming the problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping, got {type(raw).__name__}")
    try:
        return RiskPatterns.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid risk patterns: {_describe(err)}") from None


@cache
def load_risk_patterns() -> RiskPatterns:
    """The shipped risk patterns, read and validated once per process."""
    path = Path(str(resources.files("therapygym.therapists") / RISK_FILE))
    return parse_risk_patterns(read_yaml_mapping(path, "risk patterns", ConfigError))


def detect_risk(text: str) -> dict[str, bool]:
    """The risk kinds `text` discloses with the shipped patterns (see `RiskPatterns.detect`)."""
    return load_risk_patterns().detect(text)


@dataclass
class Episode:
    """One disclosed risk, from its disclosure until it is addressed."""

    kind: str
    plan: bool
    replies: int = 0  # safety replies given to it so far
    addressed: bool = False


@dataclass
class SafetyState:
    """What the session has shown of risk, rebuilt from the conversation on every reply.

    A risk opens when a patient line discloses it and stays open, whatever else is said,
    until the therapist has given at least one safety reply to it and the patient's answer
    addresses it (`RiskPatterns.answers_safely`): a concrete step to stay safe, or, for
    thoughts without a plan or means, a clear denial. Told again after that, it opens anew.
    """

    patterns: RiskPatterns
    episodes: list[Episode] = field(default_factory=list)  # every one, in order
    focus: Episode | None = None  # what the therapist's last turn answered
    fresh: list[Episode] = field(default_factory=list)  # told in the last line, not yet asked
    just_addressed: bool = False  # the last patient line addressed the focus
    calm: list[str] = field(default_factory=list)  # lines said with no risk open or told

    def open(self) -> list[Episode]:
        """Open risks, in the patterns' priority order."""
        rank = {name: i for i, name in enumerate(self.patterns.names)}
        return sorted((e for e in self.episodes if not e.addressed), key=lambda e: rank[e.kind])

    @property
    def disclosed(self) -> bool:
        return bool(self.episodes)

    @property
    def plan_told(self) -> bool:
        """A plan, means or intent came up at some point: the session ends on safety."""
        return any(e.plan for e in self.episodes)

    def target(self) -> Episode | None:
        """What the next therapist turn answers: a newly told risk first (it has not been
        asked about yet), else the open risk that comes first by priority."""
        if self.fresh:
            return self.fresh[0]
        still = self.open()
        return still[0] if still else None

    def patient(self, text: str) -> None:
        found = self.patterns.detect(text)
        if not found and not self.open():
            self.calm.append(text)
        focus = self.focus
        self.just_addressed = False
        if (
            focus is not None
            and not focus.addressed
            and focus.kind not in found
            and self.patterns.answers_safely(text, plan=focus.plan)
        ):
            focus.addressed = self.just_addressed = True
        self.fresh = []
        for kind, plan in found.items():
            episode = next((e for e in self.open() if e.kind == kind), None)
            if episode is None:
                episode = Episode(kind, plan)
                self.episodes.append(episode)
            episode.plan |= plan
            if episode.replies == 0:
                self.fresh.append(episode)
        for episode in self.open():
            episode.plan |= self.patterns.plan_context(episode.kind, text)

    def therapist(self) -> None:
        self.focus = self.target()
        if self.focus is not None:
            self.focus.replies += 1
        self.fresh = []
        self.just_addressed = False

    @classmethod
    def replay(cls, turns: list[Turn], patterns: RiskPatterns) -> SafetyState:
        """The state after `turns`, assuming each therapist turn was this therapist's."""
        state = cls(patterns)
        for turn in turns:
            if turn.speaker == "patient":
                state.patient(turn.text)
            else:
                state.therapist()
        return state


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

    def __init__(self, script: Script | None = None, risk: RiskPatterns | None = None) -> None:
        self.script = script or load_script()
        self.risk = risk or load_risk_patterns()
        replies = sorted(c.name for c in self.script.crisis)
        if replies != sorted(self.risk.names):
            raise ConfigError(
                f"{SCRIPT_FILE} crisis replies are for {replies}, but {RISK_FILE} detects "
                f"{sorted(self.risk.names)}: each kind needs exactly one set of replies"
            )

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        start = time.perf_counter()
        text = self.reply(turns, seed=seed, config=config)
        return Utterance(text=text, model=LABEL, latency_s=time.perf_counter() - start)

    def reply(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> str:
        """The next therapist line. Same turns, seed and config give the same line.

        Order of precedence: an open risk (`SafetyState`, from every patient line so far)
        gets its next safety reply; then a medication question; then the CBT move for this
        turn `k` of `n`: the closing last, agenda first, a balanced thought or experiment
        second to last, and in between a keyword reflection (even k) or guided discovery
        (odd k). Right after a risk is addressed, the move is a short acknowledgement and
        an offer to return to the topic. The closing is summary + homework + feedback, with
        a safety net before the feedback if risk came up; after a plan, means or intent it
        is a safety summary + feedback instead, never homework.
        """
        s = self.script
        said = [t.text for t in turns if t.speaker == "patient"]
        last = said[-1].replace("\u2019", "'") if said else ""
        k = sum(t.speaker == "therapist" for t in turns) + 1
        n = therapist_turns(config)
        rng = random.Random(seed + k)
        state = SafetyState.replay(turns, self.risk)

        episode = state.target()
        if episode is not None:
            stage = s.replies_for(episode.kind).for_stage(episode.replies, last_turn=k >= n)
            return rng.choice(stage)

        # the topic said back is never a disclosure or an answer to a safety question
        topic = (self.fragment(state.calm[0]) if state.calm else "") or s.fallback_topic
        m = s.moves
        if s.medication.matches(last) and not state.just_addressed:
            parts = [rng.choice(s.medication.responses)]
            if k >= n:
                parts += self._closing(topic, state, rng)
            elif k == 1:
                parts.append(rng.choice(m.agenda))
            else:
                parts.append(rng.choice(s.medication.bridges).format(topic=topic))
        elif k >= n:
            parts = self._closing(topic, state, rng)
        elif state.just_addressed:
            parts = [rng.choice(s.safety.resume).format(topic=topic)]
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

    def _closing(self, topic: str, state: SafetyState, rng: random.Random) -> list[str]:
        m = self.script.moves
        if state.plan_told:
            return [rng.choice(self.script.safety.planned_closing), rng.choice(m.feedback)]
        parts = [rng.choice(m.summary).format(topic=topic), rng.choice(m.homework)]
        if state.disclosed:
            parts.append(rng.choice(self.script.safety.safety_net))
        return [*parts, rng.choice(m.feedback)]


def load_rule_based(spec: str, **_: object) -> tuple[RuleBasedTherapist, list[BaseChatModel]]:
    """The `rule-based` therapist kind: no model, no options (a prompt does not apply)."""
    if spec.strip() != LABEL:
        raise ModelSpecError(f"therapist spec '{spec}': the rule-based therapist takes no options")
    return RuleBasedTherapist(), []
