"""Preference pairs from a judged run, for DPO or KTO training (`runs export --format
preference`).

A pair is two therapist answers to the same patient context, the better-scored one
`chosen`. Two levels:

- `session`: two sessions of the same profile that open the same way (the same system
  prompt and patient turns before the therapist's first turn: the `prompt`); each
  completion is the rest of its session up to the therapist's last turn (the patient's
  turns in it are `user` messages, so a trainer that does not mask them learns from them
  too). Scored by the CTRS normalised mean (`ctrs`), one CTRS item (`ctrs:<item>`), or the
  response judge (`response`, `response:<dimension>`).
- `turn`: two therapist turns of sessions of the same profile whose conversations up to
  that turn are identical (the `prompt`); each completion is that one assistant message.
  Scored by the response judge, which scores turns (CTRS scores sessions).

Every score is on 0-1 (CTRS item/6, response (value-1)/4), so one `--margin` fits all: a
pair needs the chosen score to exceed the rejected by at least the margin; ties never pair,
nor do two answers with the same words.

The safety rule, as a clinician would set it: only a session the safety judge passed (it
gave verdicts and violated no label) is ever chosen. A session that missed a crisis, gave
medication advice or any other violation, whatever its CTRS, and one the safety judge did
not judge (its answer failed, or it never ran), is never a chosen example: a chosen
example is what training makes more likely. At session level a passed session is
preferred to a violating one whatever their scores (reason `safety`, margin not needed);
at turn level the violation belongs to the session, not to a known turn, so its turns may
only be rejected, and pairs still need the margin (reason `score`).

`dpo` lines are TRL's conversational preference format (`prompt`, `chosen`, `rejected`
as message lists) with both scores, the profile, both sessions and the reason; `kto`
lines are the same pairs unpaired as TRL's `unpair_preference_dataset` does (`prompt`,
`completion`, `label`), two lines per pair.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from therapygym.artefacts import atomic_path
from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.judges.aggregate import SessionScores
from therapygym.judges.panel import combine_response
from therapygym.judges.rubric import builtin_rubric
from therapygym.records import FINISHED, ScoreRecord, Transcript, canonical_json

if TYPE_CHECKING:
    from therapygym.judges.panel import Aggregation
    from therapygym.report.exports import ExportContent
    from therapygym.store import RunStore

Level = Literal["turn", "session"]
Style = Literal["dpo", "kto"]
Message = dict[str, str]
Reason = Literal["score", "safety"]


class PreferenceOptions(BaseModel):
    """The format's options (`runs export --level/--margin/--score/--preference-style`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: Level = "session"
    margin: float = Field(0.1, ge=0.0, le=1.0, description="On the 0-1 score scale.")
    score: str | None = Field(
        None, description="ctrs, ctrs:<item>, response or response:<dimension>; default: "
        "ctrs for sessions, response for turns."
    )  # fmt: skip
    preference_style: Style = "dpo"

    @property
    def scorer(self) -> str:
        return self.score or ("ctrs" if self.level == "session" else "response")


@dataclass(frozen=True)
class Candidate:
    """One therapist answer (a turn, or a session's answers) to a patient context."""

    session_id: str
    profile_id: str
    therapist: str
    prompt: list[Message]
    completion: list[Message]
    score: float  # 0-1
    safety_judged: bool
    flags: tuple[str, ...] = ()  # the safety labels its session violated
    turn_index: int | None = None

    @property
    def may_be_chosen(self) -> bool:
        """Only a session the safety judge passed is ever a chosen example."""
        return self.safety_judged and not self.flags


@dataclass(frozen=True)
class Pair:
    chosen: Candidate
    rejected: Candidate
    reason: Reason


def pair_candidates(
    candidates: Iterable[Candidate], margin: float, *, safety_pairs: bool
) -> list[Pair]:
    """Every pair of candidates with the same profile and prompt that the rule allows
    (module docstring): the two answers differ, the chosen one may be chosen, and either
    it scores at least `margin` (and strictly) above the other, or, with `safety_pairs`,
    the other's session violated a safety label. Deterministic: groups and candidates
    in session-id order."""
    groups: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        groups[(c.profile_id, canonical_json(c.prompt))].append(c)
    pairs = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda c: (c.session_id, c.turn_index or 0))
        for a, b in combinations(group, 2):
            if a.completion == b.completion:  # the same words: nothing to prefer
                continue
            for chosen, rejected in ((a, b), (b, a)):
                if not chosen.may_be_chosen:
                    continue
                if safety_pairs and rejected.safety_judged and rejected.flags:
                    pairs.append(Pair(chosen, rejected, "safety"))
                elif (gap := round(chosen.score - rejected.score, 9)) > 0 and gap >= margin:
                    # rounded: 0.7 - 0.5 is 0.19999999999999996, and a 0.2 margin must admit it
                    pairs.append(Pair(chosen, rejected, "score"))
    return pairs


# -- candidates from a run --------------------------------------------------------------


def _messages(t: Transcript, upto: int | None = None) -> list[Message]:
    """The conversation as the therapist saw it: its system prompt (an imported log's),
    then patient turns as `user` and therapist turns as `assistant`."""
    system = t.meta.get("system_prompt")
    head = [{"role": "system", "content": system}] if isinstance(system, str) else []
    turns = t.turns if upto is None else t.turns[:upto]
    role = {"therapist": "assistant", "patient": "user"}
    return head + [{"role": role[x.speaker], "content": x.text} for x in turns]


def _normalised(value: float, low: int, high: int) -> float:
    return (value - low) / (high - low)


@dataclass
class _Scorer:
    """Reads the chosen score (0-1) of a session or of one therapist turn."""

    name: str
    how: Aggregation
    response: dict[str, list[ScoreRecord]] = field(default_factory=dict)  # by turn id

    def __post_init__(self) -> None:
        kind, _, key = self.name.partition(":")
        if kind not in ("ctrs", "response") or (
            kind == "ctrs" and key and key not in _ctrs_items()
        ):
            items = ", ".join(f"ctrs:{i}" for i in _ctrs_items())
            raise TherapygymError(
                f"--score {self.name}: expected ctrs, {items}, response or response:<dimension>"
            )
        self.kind, self.key = kind, key

    def _response(self, dims: Mapping[str, Any]) -> float | None:
        low, high = _response_scale()
        if self.key:
            got = dims.get(self.key)
            return None if got is None else _normalised(got.value, low, high)
        if not dims:
            return None
        return sum(_normalised(c.value, low, high) for c in dims.values()) / len(dims)

    def session(self, s: SessionScores) -> float | None:
        if self.kind == "response":
            return self._response(s.response)
        if self.key:
            item = s.ctrs_items.get(self.key)
            return None if item is None else item.value / 6
        return s.ctrs_normalised

    def check_level(self, level: Level) -> None:
        if level == "turn" and self.kind == "ctrs":
            raise TherapygymError(
                f"--score {self.name} at --level turn: the CTRS scores whole sessions; "
                "turn-level pairs are scored by the response judge (--score response or "
                "response:<dimension>)"
            )

    def turn(self, turn_id: str) -> float | None:
        return self._response(combine_response(self.response.get(turn_id, []), self.how))


def _ctrs_items() -> list[str]:
    return [i.id for i in builtin_rubric("ctrs").items]  # type: ignore[attr-defined]


def _response_scale() -> tuple[int, int]:
    rubric = builtin_rubric("response")
    return rubric.scale_min, rubric.scale_max  # type: ignore[attr-defined]


def _flags(s: SessionScores) -> tuple[str, ...]:
    return tuple(sorted(label for label, v in s.safety.items() if v.verdict == "yes"))


def candidates_of(
    transcripts: Iterable[Transcript],
    scores: Iterable[SessionScores],
    scorer: _Scorer,
    level: Level,
    skipped: Counter[str],
) -> list[Candidate]:
    """The run's candidates at `level`; what is left out is counted in `skipped` by why."""
    by_id = {s.session_id: s for s in scores}
    out: list[Candidate] = []
    for t in transcripts:
        s = by_id.get(t.session_id)
        if t.status.value not in FINISHED or s is None:
            skipped["not finished"] += 1
            continue
        common = {
            "session_id": t.session_id, "profile_id": t.profile_id, "therapist": t.therapist,
            "safety_judged": bool(s.safety), "flags": _flags(s),
        }  # fmt: skip
        therapist_turns = [k for k, x in enumerate(t.turns) if x.speaker == "therapist"]
        if level == "session":
            first = therapist_turns[0] if therapist_turns else None
            score = scorer.session(s)
            if score is None:
                skipped[f"no {scorer.name} score"] += 1
            elif first is None or first == 0:  # the therapist opens: no prompt to pair on
                skipped["no patient turn before the therapist's first"] += 1
            else:
                prompt = _messages(t, first)
                # the rest of the session up to the therapist's last turn
                rest = _messages(t, therapist_turns[-1] + 1)[len(prompt) :]
                out.append(Candidate(**common, prompt=prompt, completion=rest, score=score))
            continue
        for k in therapist_turns:
            score = scorer.turn(t.turns[k].id)
            if score is None:
                skipped[f"turns with no {scorer.name} score"] += 1
            elif k == 0:
                skipped["turns with no patient turn before them"] += 1
            else:
                out.append(
                    Candidate(
                        **common, prompt=_messages(t, k), turn_index=k, score=score,
                        completion=[{"role": "assistant", "content": t.turns[k].text}],
                    )
                )  # fmt: skip
    return out


# -- lines -------------------------------------------------------------------------------


def _side(c: Candidate) -> dict[str, Any]:
    return {
        "score": c.score, "session_id": c.session_id, "therapist": c.therapist,
        "safety_flags": list(c.flags),
    }  # fmt: skip


def dpo_line(pair: Pair, score: str, level: Level) -> dict[str, Any]:
    """TRL's conversational preference row, with where each side came from."""
    c, r = pair.chosen, pair.rejected
    return {
        "prompt": c.prompt,
        "chosen": c.completion,
        "rejected": r.completion,
        **{f"chosen_{k}": v for k, v in _side(c).items()},
        **{f"rejected_{k}": v for k, v in _side(r).items()},
        "score_name": score,
        "reason": pair.reason,
        "level": level,
        "profile_id": c.profile_id,
        "turn_index": c.turn_index,
    }


def kto_lines(pair: Pair, score: str, level: Level) -> list[dict[str, Any]]:
    """The pair unpaired, as TRL's `unpair_preference_dataset` does: the chosen answer
    labelled desirable, the rejected one undesirable."""
    return [
        {
            "prompt": side.prompt,
            "completion": side.completion,
            "label": label,
            **_side(side),
            "score_name": score,
            "reason": pair.reason,
            "level": level,
            "profile_id": side.profile_id,
            "turn_index": side.turn_index,
        }
        for side, label in ((pair.chosen, True), (pair.rejected, False))
    ]


# -- the export format -------------------------------------------------------------------


def preference_pairs(
    store: RunStore,
    run_id: str,
    options: PreferenceOptions,
    how: Aggregation = "mean",
    judges: Collection[str] | None = None,
) -> list[Pair]:
    """The run's pairs under `options`; no pair at all is an error saying why, since an
    empty training file is never what was asked for."""
    from therapygym.summary import judged_by, summary_of

    scorer = _Scorer(options.scorer, how)
    scorer.check_level(options.level)  # before the run is read
    transcripts = list(store.sessions(run_id))
    records = judged_by(run_id, store.scores(run_id), judges)
    summary = summary_of(run_id, transcripts, records, how)
    if not any(s.safety for s in summary.sessions):
        raise TherapygymError(
            f"run '{run_id}' has no safety verdicts: a preference export chooses only "
            "sessions the safety judge passed; judge it with the safety rubric first "
            "(therapygym judge RUN --judge SPEC --rubric safety)"
        )
    for r in records:
        if r.rubric_id == "response" and r.error is None:
            scorer.response.setdefault(r.target, []).append(r)
    skipped: Counter[str] = Counter()
    candidates = candidates_of(transcripts, summary.sessions, scorer, options.level, skipped)
    pairs = pair_candidates(candidates, options.margin, safety_pairs=options.level == "session")
    if not pairs:
        left = "; ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none left out"
        eligible = sum(c.may_be_chosen for c in candidates)
        raise TherapygymError(
            f"run '{run_id}': no {options.level}-level pairs at --margin {options.margin} "
            f"({len(candidates)} candidates, {eligible} of them passed by the safety judge; "
            f"{left}); pairs need two answers to the same patient context, and a lower "
            "--margin admits closer scores"
        )
    return pairs


@dataclass(frozen=True)
class PreferenceFormat:
    """`runs export --format preference`: pairs, one JSON object per line."""

    options: PreferenceOptions = field(default_factory=PreferenceOptions)
    name: str = "preference"
    description: str = "DPO/KTO pairs of better and worse therapist answers (JSONL)"
    folder: ClassVar[bool] = False
    counts: ClassVar[str] = "pairs"
    option_names: ClassVar[tuple[str, ...]] = tuple(PreferenceOptions.model_fields)

    def with_options(self, options: Mapping[str, Any]) -> PreferenceFormat:
        try:
            return PreferenceFormat(PreferenceOptions.model_validate(dict(options)))
        except ValidationError as err:
            text = describe_validation_error(err, "--format preference")
            for name in PreferenceOptions.model_fields:
                text = text.replace(f"field '{name}'", f"option --{name.replace('_', '-')}")
            raise TherapygymError(text) from None

    def export(
        self,
        store: RunStore,
        run_id: str,
        output: Path,
        content: ExportContent,
        how: Aggregation,
        judges: Collection[str] | None = None,
    ) -> int:
        if content != "transcripts":
            raise TherapygymError(
                f"--content {content}: --format preference writes pairs of therapist "
                "answers, not a content of the run; leave --content out"
            )
        pairs = preference_pairs(store, run_id, self.options, how, judges)
        score, level = self.options.scorer, self.options.level
        with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for pair in pairs:
                if self.options.preference_style == "dpo":
                    rows = [dpo_line(pair, score, level)]
                else:
                    rows = kto_lines(pair, score, level)
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return len(pairs)


PREFERENCE_FORMAT = PreferenceFormat()
