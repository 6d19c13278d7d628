"""TheraAgent: a therapist that drafts, is rated, critiqued and coached, and revises.

    theraagent:<base spec>
    theraagent[rounds=3,threshold=4,judge=<spec>,critic=<spec>,coach=<spec>]:<base spec>

For every therapist turn:

0. the base therapist drafts a reply (the very call the base therapist makes on its own);
   the response judge (`judges/response.py`: seven dimensions, 1 to 5) rates the draft;
1. then, up to `rounds` times, while some dimension of the best version so far is below
   `threshold`: the critic names the weakest of those dimensions with evidence, the coach
   turns the critique into revision instructions, the base therapist rewrites the best
   version by them, and the judge rates the rewrite;
2. the best-rated version is said (highest mean over the dimensions, then highest lowest
   dimension; a tie keeps the earlier version).

Critic and coach answer schema-constrained JSON through `judges/parsing.structured_call`
(validated, re-asked on invalid output). Every round (text, scores, critique,
instructions, errors) and which version was kept go into the turn's
`meta["theraagent"]`, stored with the transcript; judges never see it. A failure of the
judge, critic, coach or rewrite ends the loop and keeps the best version so far, with the
error recorded; only a failed draft fails the turn, as it would for the base therapist.
Grammar, storage and cost: docs/theraagent.md.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from therapygym.errors import ModelCallError, ModelSpecError, describe_validation_error
from therapygym.judges.base import JudgeSettings, strict_model
from therapygym.judges.parsing import Structured, structured_call
from therapygym.judges.render import render_turns
from therapygym.judges.response import ResponseJudge
from therapygym.judges.rubric import ResponseDimension, ResponseRubric, builtin_rubric
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.models.types import ChatModel
from therapygym.records import SessionConfig, Turn
from therapygym.session import Utterance
from therapygym.templates import package_text, render_prompt
from therapygym.therapists import load_therapist
from therapygym.therapists.prompted import PromptedTherapist
from therapygym.therapists.registry import therapist_kind

PREFIX = "theraagent"
META_KEY = "theraagent"
TRACE_FORMAT = "therapygym.theraagent/1"
GRAMMAR = "theraagent:<base spec> or theraagent[option=value,...]:<base spec>"
TEMPLATES = ("critic_system", "critic", "coach_system", "coach", "revise")
MAX_WEAKNESSES = 3  # dimensions the critic may name in one round
MAX_INSTRUCTIONS = 4  # instructions the coach may give in one round
TEXT_CHARS = 300  # cap on each evidence, problem and instruction (part of the schema)

# Usage-ledger roles of the wrapper's own calls (the draft stays on "therapist").
ROLES = {
    "judge": "theraagent-judge",
    "critic": "theraagent-critic",
    "coach": "theraagent-coach",
    "revise": "theraagent-revise",
}

Stop = Literal[
    "threshold", "rounds", "judge_failed", "critic_failed", "coach_failed", "revision_failed"
]


class TheraAgentOptions(BaseModel):
    """The options in `theraagent[...]`. The judge defaults to the base model, the critic
    to the judge, the coach to the critic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(2, ge=0, le=10, description="Most critique-and-revise rounds per turn.")
    threshold: int = Field(4, ge=1, le=5, description="Stop once every dimension reaches it.")
    judge: str | None = Field(None, min_length=1)
    critic: str | None = Field(None, min_length=1)
    coach: str | None = Field(None, min_length=1)

    def models(self, base: str) -> dict[str, str]:
        """The model spec of each helper role, defaults filled in."""
        judge = self.judge or base
        critic = self.critic or judge
        return {"judge": judge, "critic": critic, "coach": self.coach or critic}


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets (a base_url may hold `[::1]`)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_theraagent_spec(spec: str) -> tuple[TheraAgentOptions, str]:
    """`theraagent[...]:<base>` -> (options, base spec); every error is one line."""
    where = f"therapist spec '{spec}'"
    text = spec.strip()
    if therapist_kind(text) != PREFIX:
        raise ModelSpecError(f"{where}: expected {GRAMMAR}")
    rest = text[len(PREFIX) :]
    raw: dict[str, str] = {}
    if rest.startswith("["):
        depth, end = 0, -1
        for i, ch in enumerate(rest):
            depth += {"[": 1, "]": -1}.get(ch, 0)
            if depth == 0:
                end = i
                break
        if end < 0:
            raise ModelSpecError(f"{where}: '[' is never closed; expected {GRAMMAR}")
        body, rest = rest[1:end], rest[end + 1 :]
        for item in _split_top_level(body, ","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                raise ModelSpecError(
                    f"{where}: option '{item.strip()}' is not option=value "
                    f"(options: {', '.join(TheraAgentOptions.model_fields)})"
                )
            if key in raw:
                raise ModelSpecError(f"{where}: option '{key}' is given twice")
            raw[key] = value
    if not rest.startswith(":") or not rest[1:].strip():
        raise ModelSpecError(f"{where}: no base therapist; expected {GRAMMAR}")
    base = rest[1:].strip()
    unknown = sorted(set(raw) - set(TheraAgentOptions.model_fields))
    if unknown:
        raise ModelSpecError(
            f"{where}: unknown option(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(TheraAgentOptions.model_fields)})"
        )
    try:
        options = TheraAgentOptions.model_validate(raw)
    except ValidationError as err:
        raise ModelSpecError(describe_validation_error(err, where)) from None
    if therapist_kind(base) == PREFIX:
        raise ModelSpecError(f"{where}: the base therapist cannot itself be a theraagent")
    if therapist_kind(base) == "rule-based":
        raise ModelSpecError(
            f"{where}: the rule-based therapist cannot revise a draft; "
            "give a model spec as the base (e.g. theraagent:openai:<model>)"
        )
    return options, base


# -- what is stored -----------------------------------------------------------------------


class AgentRound(BaseModel):
    """One version of the reply. Round 0 is the draft; round k > 0 is the critique,
    coaching and rewrite of version `revised_from`. A step that failed leaves the fields
    after it empty, with `error` and the failed call's `raw_outputs`."""

    model_config = ConfigDict(extra="forbid")

    round: int = Field(ge=0)
    revised_from: int | None = None
    weak: list[str] = Field(
        default_factory=list, description="Dimensions of the revised version below threshold."
    )
    critique: list[dict[str, str]] | None = None
    instructions: list[str] | None = None
    text: str | None = None
    scores: dict[str, int] | None = None
    mean: float | None = None
    rationale: str | None = None
    error: str | None = None
    raw_outputs: list[str] = Field(default_factory=list)

    def key(self) -> tuple[float, int]:
        """What "best" means: the mean over dimensions, then the lowest dimension."""
        assert self.scores is not None and self.mean is not None
        return (self.mean, min(self.scores.values()))


class TheraAgentTrace(BaseModel):
    """Everything TheraAgent did for one turn (`Turn.meta["theraagent"]`)."""

    model_config = ConfigDict(extra="forbid")

    format: str = TRACE_FORMAT
    settings: dict[str, Any]
    rounds: list[AgentRound]
    kept: int = Field(ge=0, description="The round whose text was said.")
    stopped: Stop
    calls: int = Field(0, description="Model calls made for this turn, re-asks included.")

    @property
    def kept_round(self) -> AgentRound:
        return next(r for r in self.rounds if r.round == self.kept)


def trace_of(turn: Turn) -> TheraAgentTrace | None:
    """The TheraAgent rounds stored on a turn, if it has any."""
    data = turn.meta.get(META_KEY)
    return None if data is None else TheraAgentTrace.model_validate(data)


# -- prompts --------------------------------------------------------------------------------


def _template(name: str) -> str:
    return f"therapygym.therapists:prompts/theraagent/{name}.j2"


def _render(name: str, **context: Any) -> str:
    return render_prompt(_template(name), **context)


def prompt_fingerprint(rubric: ResponseRubric, **settings: Any) -> str:
    """Changes when a TheraAgent template, the rubric or a setting changes."""
    parts = [rubric.fingerprint, *(package_text(_template(n)) for n in TEMPLATES)]
    parts += [f"{k}={v}" for k, v in sorted(settings.items())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _critique_schema(weak: list[str]) -> type[BaseModel]:
    weakness = strict_model(
        "Weakness",
        dimension=(Literal[tuple(weak)], ...),  # type: ignore[valid-type]
        evidence=(str, Field(min_length=1, max_length=TEXT_CHARS)),
        problem=(str, Field(min_length=1, max_length=TEXT_CHARS)),
    )
    return strict_model(
        "Critique",
        weaknesses=(
            list[weakness],  # type: ignore[valid-type]
            Field(min_length=1, max_length=min(MAX_WEAKNESSES, len(weak))),
        ),
    )


def _no_repeats(value: Any) -> str | None:
    named = [w.dimension for w in value.weaknesses]
    if len(set(named)) < len(named):
        return "each dimension may be named only once"
    return None


COACHING = strict_model(
    "Coaching",
    instructions=(
        list[Annotated[str, Field(min_length=1, max_length=TEXT_CHARS)]],
        Field(min_length=1, max_length=MAX_INSTRUCTIONS),
    ),
)


# -- the therapist --------------------------------------------------------------------------


class _Tally:
    """Calls and tokens of one turn."""

    def __init__(self) -> None:
        self.calls = self.prompt_tokens = self.completion_tokens = 0

    def add_structured(self, outcome: Structured[Any]) -> None:
        self.calls += outcome.attempts
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


class TheraAgent:
    """A `Participant` around a prompted therapist: draft, rate, critique, coach, revise.

    `reviser` is the base therapist's model for rewrites (the same model; a separate
    object only so its calls can be booked to their own role); it defaults to the
    therapist's own model.
    """

    def __init__(
        self,
        therapist: PromptedTherapist,
        *,
        judge: ChatModel,
        critic: ChatModel,
        coach: ChatModel,
        reviser: ChatModel | None = None,
        rounds: int = 2,
        threshold: int = 4,
        rubric: ResponseRubric | None = None,
        judge_settings: JudgeSettings | None = None,
        label: str | None = None,
    ) -> None:
        self.therapist = therapist
        self.rubric = rubric or builtin_rubric("response")  # type: ignore[assignment]
        if not self.rubric.scale_min <= threshold <= self.rubric.scale_max:
            raise ValueError(
                f"threshold {threshold} is outside the rubric's scale "
                f"{self.rubric.scale_min}-{self.rubric.scale_max}"
            )
        self.judge = ResponseJudge(judge, self.rubric, judge_settings)
        self.critic = critic
        self.coach = coach
        self.reviser = reviser or therapist.model
        self.rounds = rounds
        self.threshold = threshold
        self.settings = self.judge.settings
        self.label = label or f"{PREFIX}:{therapist.label}"
        self.fingerprint = prompt_fingerprint(
            self.rubric, rounds=rounds, threshold=threshold, judge=self.judge.fingerprint
        )
        self._record_settings = {
            "rounds": rounds,
            "threshold": threshold,
            "judge": judge.spec,
            "critic": critic.spec,
            "coach": coach.spec,
            "rubric": self.rubric.ref,
            "prompt_fingerprint": self.fingerprint,
        }

    # -- the steps ----------------------------------------------------------------------

    @staticmethod
    def _as_turn(turns: list[Turn], text: str) -> list[Turn]:
        """The conversation with a version of the reply as its last (therapist) turn."""
        draft = Turn(id=f"draft:{len(turns)}", index=len(turns), speaker="therapist", text=text)
        return [*turns, draft]

    async def _rate(self, turns: list[Turn], entry: AgentRound, tally: _Tally) -> bool:
        assert entry.text is not None
        outcome = await self.judge.rate(self._as_turn(turns, entry.text))
        tally.add_structured(outcome)
        result = ResponseJudge.result_of(outcome)
        if result is None:
            entry.error = f"judge: {outcome.error}"
            entry.raw_outputs = outcome.raw_outputs
            return False
        entry.scores = result["dimensions"]
        entry.mean = sum(entry.scores.values()) / len(entry.scores)
        entry.rationale = result["rationale"]
        return True

    def _weak(self, scores: dict[str, int]) -> list[ResponseDimension]:
        """Dimensions below threshold, weakest first (rubric order breaks ties)."""
        order = {d.id: i for i, d in enumerate(self.rubric.dimensions)}
        weak = [d for d in self.rubric.dimensions if scores[d.id] < self.threshold]
        return sorted(weak, key=lambda d: (scores[d.id], order[d.id]))

    async def _structured(
        self,
        model: ChatModel,
        system: str,
        user: str,
        schema: type[BaseModel],
        *,
        seed: int,
        max_tokens: int,
        check: Callable[[Any], str | None] | None = None,
    ) -> Structured[Any]:
        return await structured_call(
            model,
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            schema,
            check=check,
            max_attempts=self.settings.max_attempts,
            max_tokens=max_tokens,
            temperature=self.settings.temperature,
            seed=seed,
        )

    async def _critique(
        self, turns: list[Turn], best: AgentRound, weak: list[ResponseDimension], seed: int
    ) -> Structured[Any]:
        assert best.text is not None
        shown = self._as_turn(turns, best.text)
        limit = min(MAX_WEAKNESSES, len(weak))
        user = _render(
            "critic",
            target=f"T{len(shown)}",
            rubric=self.rubric,
            scores=best.scores,
            rationale=best.rationale or "",
            threshold=self.threshold,
            weak=weak,
            limit=limit,
            transcript=render_turns(shown).text,
        )
        schema = _critique_schema([d.id for d in weak])
        return await self._structured(
            self.critic,
            _render("critic_system"),
            user,
            schema,
            seed=seed,
            max_tokens=150 + 200 * limit,
            check=_no_repeats,
        )

    async def _coach(
        self, turns: list[Turn], best: AgentRound, critique: list[dict[str, str]], seed: int
    ) -> Structured[Any]:
        assert best.text is not None
        shown = self._as_turn(turns, best.text)
        user = _render(
            "coach",
            target=f"T{len(shown)}",
            weaknesses=critique,
            limit=MAX_INSTRUCTIONS,
            transcript=render_turns(shown).text,
        )
        return await self._structured(
            self.coach, _render("coach_system"), user, COACHING, seed=seed, max_tokens=500
        )

    async def _revise(
        self,
        turns: list[Turn],
        best: AgentRound,
        instructions: list[str],
        *,
        seed: int,
        config: SessionConfig,
    ) -> tuple[str, Any]:
        assert best.text is not None
        # the request the draft answered (system prompt, turn notes), the best version so far
        # as its reply, then the instructions
        messages = self.therapist.messages(turns, config)
        messages += [
            {"role": "assistant", "content": best.text},
            {"role": "user", "content": _render("revise", instructions=instructions)},
        ]
        completion = await self.reviser.chat(
            messages, temperature=config.temperature, max_tokens=config.max_tokens, seed=seed
        )
        return completion.text.strip(), completion

    # -- the loop -------------------------------------------------------------------------

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        start = time.perf_counter()
        tally = _Tally()
        draft = await self.therapist.respond(turns, seed=seed, config=config)
        tally.add(draft.prompt_tokens, draft.completion_tokens)
        said = {0: draft}  # how each version was produced (for cached/model)
        rounds = [AgentRound(round=0, text=draft.text)]
        best: AgentRound | None = rounds[0] if await self._rate(turns, rounds[0], tally) else None
        stopped: Stop = "judge_failed"
        while best is not None:
            assert best.scores is not None
            weak = self._weak(best.scores)
            if not weak:
                stopped = "threshold"
                break
            if len(rounds) > self.rounds:
                stopped = "rounds"
                break
            k = len(rounds)
            entry = AgentRound(round=k, revised_from=best.round, weak=[d.id for d in weak])
            rounds.append(entry)
            critique = await self._critique(turns, best, weak, seed=k)
            tally.add_structured(critique)
            if critique.value is None:
                entry.error, entry.raw_outputs = f"critic: {critique.error}", critique.raw_outputs
                stopped = "critic_failed"
                break
            entry.critique = [w.model_dump() for w in critique.value.weaknesses]
            coaching = await self._coach(turns, best, entry.critique, seed=k)
            tally.add_structured(coaching)
            if coaching.value is None:
                entry.error, entry.raw_outputs = f"coach: {coaching.error}", coaching.raw_outputs
                stopped = "coach_failed"
                break
            entry.instructions = list(coaching.value.instructions)
            try:
                text, completion = await self._revise(
                    turns, best, entry.instructions, seed=seed + k, config=config
                )
            except ModelCallError as err:
                tally.calls += 1
                entry.error = f"revision: {err}"
                stopped = "revision_failed"
                break
            tally.add(completion.prompt_tokens, completion.completion_tokens)
            if not text:
                entry.error = "revision: the therapist model returned an empty reply"
                stopped = "revision_failed"
                break
            entry.text = text
            said[k] = Utterance(text=text, cached=completion.cached, model=completion.model)
            if not await self._rate(turns, entry, tally):
                stopped = "judge_failed"
                break
            if entry.key() > best.key():
                best = entry
        kept = best.round if best is not None else 0
        trace = TheraAgentTrace(
            settings=self._record_settings,
            rounds=rounds,
            kept=kept,
            stopped=stopped,
            calls=tally.calls,
        )
        return Utterance(
            text=said[kept].text,
            latency_s=time.perf_counter() - start,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            cached=said[kept].cached,
            model=said[kept].model,
            meta={META_KEY: trace.model_dump(mode="json")},
        )


# -- building one from a spec -----------------------------------------------------------------


def load_theraagent(
    spec: str,
    *,
    cache: ResponseCache | None = None,
    models_file: Path | str | None = None,
    prompt: str | None = None,
    ledger: UsageLedger | None = None,
) -> tuple[TheraAgent, list[BaseChatModel]]:
    """Build TheraAgent from its spec, and every model it made (to close when done)."""
    options, base_spec = parse_theraagent_spec(spec)
    base, owned = load_therapist(
        base_spec, cache=cache, models_file=models_file, prompt=prompt, ledger=ledger
    )
    if not isinstance(base, PromptedTherapist) or len(owned) != 1:
        raise ModelSpecError(
            f"therapist spec '{spec}': the base must be a model spec (it is '{base_spec}')"
        )
    built: dict[str, BaseChatModel] = {base_spec: owned[0]}
    helpers: dict[str, ChatModel] = {}
    for role, model_spec in options.models(base_spec).items():
        if model_spec not in built:
            built[model_spec] = load_model(model_spec, cache=cache, models_file=models_file)
        model = built[model_spec]
        helpers[role] = model if ledger is None else AccountedModel(model, ROLES[role], ledger)
    reviser = None if ledger is None else AccountedModel(owned[0], ROLES["revise"], ledger)
    shown = {"rounds": options.rounds, "threshold": options.threshold}
    shown = {k: v for k, v in shown.items() if v != TheraAgentOptions.model_fields[k].default}
    for role in ("judge", "critic", "coach"):
        if getattr(options, role) is not None:
            shown[role] = helpers[role].spec
    suffix = "[" + ",".join(f"{k}={v}" for k, v in shown.items()) + "]" if shown else ""
    agent = TheraAgent(
        base,
        judge=helpers["judge"],
        critic=helpers["critic"],
        coach=helpers["coach"],
        reviser=reviser,
        rounds=options.rounds,
        threshold=options.threshold,
        label=f"{PREFIX}{suffix}:{base.label}",
    )
    return agent, list(dict.fromkeys(built.values()))
