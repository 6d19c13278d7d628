"""A bench as training data for a judge: the calls our judges send, with the experts' answers.

A trained judge must be asked what it will be asked when it judges: the prompt of each call
is built by the CTRS and safety judges themselves (`build_judges` from the same plan that
`calibrate` judges the held-out dialogues with), so the messages, the JSON schema and the
output budget are exactly theirs. The target is the JSON answer that schema expects, filled
with the experts' ratings: per CTRS item the experts' mean score (rounded), per safety label
their verdict when they agree. Experts give no evidence turns, so the target cites none; their
rationale (one per rating) stands for every item, cut to the plan's rationale cap; without
one the rationale is empty rather than invented.

A call gets no target when the experts' ratings cannot fill every field it asks for: an item
or label they did not rate, a safety label whose verdict is derived from a checklist they did
not answer, or one that depends on several cue kinds (which one was heard is not in the
bench). Such a call still trains through GRPO, whose reward reads only the rated fields.

Dialogues are held out by id (`split_dialogues`): a dialogue's calls are all on one side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from therapygym.calibration.bench import Bench, BenchError, Dialogue
from therapygym.errors import ConfigError
from therapygym.judges.base import RubricJudge
from therapygym.judges.ctrs import CTRSJudge, answer_schema, output_budget
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges
from therapygym.judges.render import RenderedTranscript, render_transcript
from therapygym.judges.rubric import CTRSRubric2, SafetyLabel2, SafetyRubric2
from therapygym.judges.safety import SafetyJudge
from therapygym.judges.safety_rules import cue_kinds
from therapygym.models.hf_constrained import compact_json
from therapygym.models.types import ChatModel

TRAINABLE = ("ctrs", "safety")  # the kinds whose answers the bench's ratings can fill


@dataclass(frozen=True)
class JudgeCall:
    """One judge call about one bench dialogue, as the judge sends it, with what the
    experts said about the items or labels it asks (`ctrs`: mean score per item; `safety`:
    the agreed verdict per label) and, when their ratings fill the whole answer, `target`:
    that answer as compact JSON."""

    id: str
    dialogue_id: str
    kind: Literal["ctrs", "safety"]
    messages: list[dict[str, str]]
    schema: type[BaseModel]
    max_tokens: int
    shown: RenderedTranscript
    ctrs: dict[str, float]
    safety: dict[str, bool]
    labels: tuple[SafetyLabel2, ...] = ()
    target: str | None = None

    @property
    def rated(self) -> bool:
        """Whether the experts rated anything this call asks (else it teaches nothing)."""
        return bool(self.ctrs or self.safety)

    def prompt(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages]


def split_dialogues(bench: Bench, holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids) of the dialogues an expert rated and that have a
    transcript: the held-out share is `holdout` of them (at least one on each side), chosen
    by a hash of seed and id, so the split is the same on every run of one bench and seed."""
    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout: {holdout} is not a fraction; expected a number in (0, 1)")
    ids = sorted(d.id for d in bench.dialogues.values() if _usable(d))
    if len(ids) < 2:
        raise BenchError(
            f"{bench.name}: {len(ids)} rated dialogue(s) with a transcript; training a judge "
            "and measuring it on held-out dialogues needs at least 2"
        )
    held = min(len(ids) - 1, max(1, round(holdout * len(ids))))
    order = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\x1f{i}".encode()).hexdigest())
    held_out = set(order[:held])
    return [i for i in ids if i not in held_out], sorted(held_out)


def _usable(d: Dialogue) -> bool:
    return d.transcript is not None and bool(d.human_ratings())


def bench_part(bench: Bench, ids: list[str], part: str) -> Bench:
    """The bench's ratings of the dialogues `ids` only (every rating of each)."""
    keep = set(ids)
    ratings = tuple(r for r in bench.ratings if r.dialogue_id in keep)
    return replace(bench, name=f"{bench.name} ({part})", ratings=ratings)


def trainable_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The kinds calibrate would judge that a judge can be trained on here; refuses a bench
    whose experts rated none of them."""
    chosen = tuple(k for k in kinds if k in TRAINABLE)
    if not chosen:
        raise BenchError(
            "the bench's experts gave no CTRS scores or safety labels, the ratings a judge is "
            "trained on here"
        )
    return chosen


def judge_calls(bench: Bench, plan: JudgePlan, model: ChatModel) -> list[JudgeCall]:
    """Every call the plan's CTRS and safety judges make on the bench's rated dialogues,
    in dialogue then call order."""
    judges = build_judges(plan, model)
    calls: list[JudgeCall] = []
    for transcript in bench.transcripts("train-judge"):
        dialogue = bench.dialogues[transcript.profile_id]
        shown = render_transcript(transcript)
        for judge in judges:
            calls += _calls_of(judge, dialogue, transcript, shown, plan.rationale_chars)
    return calls


def _calls_of(
    judge: RubricJudge,
    dialogue: Dialogue,
    transcript: Any,
    shown: RenderedTranscript,
    rationale_chars: int,
) -> list[JudgeCall]:
    rationale = expert_rationale(dialogue, rationale_chars)
    out: list[JudgeCall] = []
    if isinstance(judge, CTRSJudge):
        rubric = judge.rubric
        if not isinstance(rubric, CTRSRubric2):
            raise ConfigError(f"train-judge trains on ctrs@2.0, not {rubric.ref}")
        groups = [rubric.items] if judge.mode == "one_call" else [[i] for i in rubric.items]
        scores = expert_ctrs(dialogue)
        for n, group in enumerate(groups):
            schema = answer_schema(group, shown, rationale_chars)
            asked = {i.id: scores[i.id] for i in group if i.id in scores}
            call = JudgeCall(
                id=f"{dialogue.id}:ctrs:{n}",
                dialogue_id=dialogue.id,
                kind="ctrs",
                messages=judge.call_messages(group, shown),
                schema=schema,
                max_tokens=output_budget(group, rationale_chars),
                shown=shown,
                ctrs=asked,
                safety={},
            )
            full = len(asked) == len(group)
            out.append(replace(call, target=ctrs_target(call, rationale) if full else None))
    elif isinstance(judge, SafetyJudge):
        if not isinstance(judge.rubric, SafetyRubric2):
            raise ConfigError(f"train-judge trains on safety@2.0, not {judge.rubric.ref}")
        verdicts = expert_safety(dialogue)
        for n, sc in enumerate(judge.calls(transcript)):
            call = JudgeCall(
                id=f"{dialogue.id}:safety:{n}",
                dialogue_id=dialogue.id,
                kind="safety",
                messages=sc.messages,
                schema=sc.schema,
                max_tokens=sc.max_tokens,
                shown=shown,
                ctrs={},
                safety={lb.id: verdicts[lb.id] for lb in sc.labels if lb.id in verdicts},
                labels=tuple(sc.labels),
            )
            out.append(replace(call, target=safety_target(call, rationale)))
    return out


def expert_ctrs(dialogue: Dialogue) -> dict[str, float]:
    """Per CTRS item, the mean of the experts' scores (items nobody scored are absent)."""
    given: dict[str, list[int]] = {}
    for r in dialogue.human_ratings():
        for item, score in r.ctrs.items():
            if score is not None:
                given.setdefault(item, []).append(score)
    return {item: sum(s) / len(s) for item, s in given.items()}


def expert_safety(dialogue: Dialogue) -> dict[str, bool]:
    """Per safety label, the experts' verdict where every expert who labelled it agrees
    (a split label teaches nothing either way, so it is left out)."""
    given: dict[str, set[bool]] = {}
    for r in dialogue.human_ratings():
        for label, verdict in r.safety.items():
            if verdict is not None:
                given.setdefault(label, set()).add(verdict)
    return {label: v.pop() for label, v in given.items() if len(v) == 1}


def expert_rationale(dialogue: Dialogue, max_chars: int) -> str:
    """The first expert rationale of the dialogue, cut at a word to fit the schema's cap;
    empty when no expert wrote one."""
    text = next((r.rationale.strip() for r in dialogue.human_ratings() if r.rationale), "")
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


def _answer(call: JudgeCall, answer: dict[str, Any]) -> str | None:
    """`answer` checked against the call's own schema, as compact JSON in schema order."""
    try:
        value = call.schema.model_validate(answer)
    except ValidationError:
        return None
    return compact_json(value.model_dump(mode="json"))


def ctrs_target(call: JudgeCall, rationale: str) -> str | None:
    """The CTRS answer: each item scored at the experts' rounded mean (an item a risk pivot
    may displace is answered scored, since the experts scored it)."""
    answer: dict[str, Any] = {}
    properties = call.schema.model_fields
    for item, mean in call.ctrs.items():
        entry: dict[str, Any] = {"rationale": rationale, "evidence": []}
        if "status" in properties[item].annotation.model_fields:  # type: ignore[union-attr]
            entry["status"] = "scored"
        entry["score"] = int(mean + 0.5)
        answer[item] = entry
    return _answer(call, answer)


def safety_target(call: JudgeCall, rationale: str) -> str | None:
    """The safety answer, when every label of the call has an expert verdict it can carry:
    not a checklist label (its verdict is derived from items the experts did not answer),
    at most one cue kind (the cue heard is that one). A violation gets the label's default
    severity, the experts having given none (the rubric's rules still raise it)."""
    answer: dict[str, Any] = {}
    for label in call.labels:
        verdict = call.safety.get(label.id)
        kinds = sorted(cue_kinds(label))
        if verdict is None or label.checklist or len(kinds) > 1:
            return None
        entry: dict[str, Any] = {}
        if kinds:
            entry |= {"cues_heard": kinds, "cue_turns": []}
        entry |= {"rationale": rationale, "evidence": [], "verdict": "yes" if verdict else "no"}
        if verdict and len(label.severity.choices) > 1:
            entry["severity"] = label.severity.default
        answer[label.id] = entry
    return _answer(call, answer)


def judge_plan(
    base_spec: str,
    kinds: tuple[str, ...],
    *,
    ctrs_mode: str,
    safety_mode: str,
    examples: bool,
    rationale_chars: int,
) -> JudgePlan:
    """The plan calibrate judges with, and so the one the training calls are built from."""
    try:
        return JudgePlan(
            judges=(base_spec,),
            rubrics=kinds,
            ctrs_mode=ctrs_mode,  # type: ignore[arg-type]
            safety_mode=safety_mode,  # type: ignore[arg-type]
            examples=examples,
            rationale_chars=rationale_chars,
        )
    except ValidationError as err:
        e = err.errors()[0]
        option = "-".join(map(str, e["loc"])).replace("_", "-")
        raise ConfigError(f"--{option}: {e['msg']}") from None
