"""The MI judge: motivational-interviewing behaviour codes per therapist turn and global
ratings per session, in the spirit of MI fidelity coding (the rubric is our own wording,
`rubrics/mi.yaml`).

One call per session. The answer's schema has one property per therapist turn label
(T2, T4, ...) whose value is one of the rubric's codes, so constrained decoding gives every
therapist turn exactly one code and nothing else; then a rationale, up to three evidence
turns and a 1-5 score per global rating. The codes and the turn labels are each one enum
in the schema's `$defs`, referenced from every property that uses them, so a long session
does not repeat a 9-value enum hundreds of times. The schema has no anyOf, no defaults and
closed objects: OpenAI's strict mode accepts it.

The summary indices clinicians read from behaviour counts (reflections per question, the
share of reflections that are complex) and the technical and relational means of the
global ratings are computed here from the codes, never asked of the judge
(`summary_indices`). A source that labels some turns at a coarser level than the codes
(a group such as "question") is counted the same way, which is how the calibration reads
expert codes.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from therapygym.judges.base import RubricJudge, rationale_field, strict_model
from therapygym.judges.render import RenderedTranscript, render_transcript
from therapygym.judges.rubric import MIRubric
from therapygym.records import ScoreRecord, Transcript

OPEN, CLOSED = "open_question", "closed_question"
SIMPLE, COMPLEX = "simple_reflection", "complex_reflection"
QUESTIONS = frozenset({OPEN, CLOSED})
REFLECTIONS = frozenset({SIMPLE, COMPLEX})
# the two pairs of global ratings clinicians average (their ids in rubrics/mi.yaml)
TECHNICAL = ("cultivating_change_talk", "softening_sustain_talk")
RELATIONAL = ("partnership", "empathy")
# output budget: about 10 tokens per coded turn, a rationale and evidence per global rating
TOKENS_PER_CODE = 12
TOKENS_PER_GLOBAL = 160


class MIIndices(BaseModel):
    """Summary indices of one coded session (or one coder's codes of it).

    `counts` is per label given (codes, or groups where a source coded coarsely);
    `questions` and `reflections` count every label that is a question or a reflection;
    `reflection_to_question` is reflections / questions (None without questions);
    `percent_complex_reflections` is 100 x complex / (simple + complex), over the
    reflections whose kind is known (None without any); `technical` is the mean of
    cultivating change talk and softening sustain talk, `relational` of partnership and
    empathy (None unless both of the pair are rated).
    """

    coded_turns: int
    counts: dict[str, int]
    questions: int
    reflections: int
    reflection_to_question: float | None
    percent_complex_reflections: float | None
    technical: float | None = None
    relational: float | None = None


def _pair_mean(scores: Mapping[str, float], pair: tuple[str, str]) -> float | None:
    if all(scores.get(g) is not None for g in pair):
        return statistics.fmean(float(scores[g]) for g in pair)
    return None


def summary_indices(
    labels: Iterable[str],
    rubric: MIRubric,
    global_scores: Mapping[str, float] | None = None,
) -> MIIndices:
    """The indices of a session from its turns' labels (codes, or groups of codes) and,
    when given, its global ratings. A group counts as a question (or a reflection) when
    every code in it is one; a group cannot tell simple from complex, so it counts among
    the reflections but not in the complex share."""
    counts = Counter(labels)
    questions = sum(n for label, n in counts.items() if rubric.members(label) <= QUESTIONS)
    reflections = sum(n for label, n in counts.items() if rubric.members(label) <= REFLECTIONS)
    kinded = counts[SIMPLE] + counts[COMPLEX]
    scores = dict(global_scores or {})
    return MIIndices(
        coded_turns=sum(counts.values()),
        counts={label: counts[label] for label in sorted(counts, key=_order(rubric))},
        questions=questions,
        reflections=reflections,
        reflection_to_question=reflections / questions if questions else None,
        percent_complex_reflections=100 * counts[COMPLEX] / kinded if kinded else None,
        technical=_pair_mean(scores, TECHNICAL),
        relational=_pair_mean(scores, RELATIONAL),
    )


def _order(rubric: MIRubric) -> Any:
    """Sort key: codes in rubric order, then groups in rubric order, then anything else."""
    known = [c.id for c in rubric.codes] + list(rubric.groups)
    return lambda label: (known.index(label) if label in known else len(known), label)


def _enum(name: str, values: Sequence[str]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


def answer_schema(
    rubric: MIRubric, shown: RenderedTranscript, rationale_chars: int
) -> type[BaseModel]:
    """The answer's model: `codes` (one code per therapist turn label) and
    `global_ratings` (rationale, evidence, score per global). Strict-mode compatible."""
    code = _enum("MICode", [c.id for c in rubric.codes])
    labels = tuple(shown.labels)
    evidence: Any = (
        (list[_enum("TurnLabel", labels)], Field(max_length=3))  # type: ignore[misc]
        if labels
        else (list[str], Field(max_length=0))
    )
    codes = strict_model("MICodes", **{label: (code, ...) for label in shown.therapist_labels})
    rating = strict_model(
        "MIGlobalRating",
        rationale=rationale_field(rationale_chars),
        evidence=evidence,
        score=(int, Field(ge=rubric.scale_min, le=rubric.scale_max)),
    )
    ratings = strict_model(
        "MIGlobalRatings", **{g.id: (rating, ...) for g in rubric.global_ratings}
    )
    return strict_model("MICoding", codes=(codes, ...), global_ratings=(ratings, ...))


class MIJudge(RubricJudge):
    """Codes every therapist turn of a session and rates the session's MI globals."""

    template = "mi"
    rubric: MIRubric

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        shown = render_transcript(transcript)
        schema, json_schema = self.answer_model(
            (tuple(shown.labels), shown.therapist_labels),
            lambda: answer_schema(self.rubric, shown, self.settings.rationale_chars),
        )
        outcome = await self.ask(
            self.messages(transcript=shown.text, therapist_labels=list(shown.therapist_labels)),
            schema,
            json_schema=json_schema,
            max_tokens=TOKENS_PER_CODE * len(shown.therapist_labels)
            + TOKENS_PER_GLOBAL * len(self.rubric.global_ratings)
            + 64,
            seed=sample,
        )
        result = None
        if outcome.value is not None:
            result = self.result_of(outcome.value, shown)
        return [
            self.record(
                transcript,
                sample,
                structured=outcome,
                result=result,
                error=outcome.error,
            )
        ]

    def result_of(self, value: Any, shown: RenderedTranscript) -> dict[str, Any]:
        """What is stored: codes by turn id, the global ratings, and the indices."""
        codes = {
            shown.labels[label]: getattr(value.codes, label).value
            for label in shown.therapist_labels
        }
        ratings = {
            g.id: {
                "score": getattr(value.global_ratings, g.id).score,
                "rationale": getattr(value.global_ratings, g.id).rationale,
                "evidence": shown.turn_ids(
                    [e.value for e in getattr(value.global_ratings, g.id).evidence]
                ),
            }
            for g in self.rubric.global_ratings
        }
        scores = {k: float(v["score"]) for k, v in ratings.items()}
        indices = summary_indices(codes.values(), self.rubric, scores)
        return {"codes": codes, "global_ratings": ratings, "indices": indices.model_dump()}


@dataclass(frozen=True)
class MICombined:
    """A session's MI scores from one or more raters (judges x samples): per turn id the
    most frequent code, per global the mean score, and the indices of those."""

    codes: dict[str, str]
    global_ratings: dict[str, float]
    indices: MIIndices
    raters: int


def combine_mi(records: Sequence[ScoreRecord], rubric: MIRubric) -> MICombined | None:
    """Combine a session's MI records (those with a result). A turn's code is the one most
    raters gave; a tie goes to the code listed first in the rubric, so the result does not
    depend on the order of the records. None when no record has a result."""
    results = [r.result for r in records if r.result is not None and r.error is None]
    if not results:
        return None
    rank = {c.id: i for i, c in enumerate(rubric.codes)}
    by_turn: dict[str, Counter[str]] = {}
    for result in results:
        for turn, code in result.get("codes", {}).items():
            by_turn.setdefault(turn, Counter())[code] += 1
    codes = {
        turn: min(counter, key=lambda c: (-counter[c], rank.get(c, len(rank)), c))
        for turn, counter in by_turn.items()
    }
    by_global: dict[str, list[float]] = {}
    for result in results:
        for g, rating in result.get("global_ratings", {}).items():
            by_global.setdefault(g, []).append(float(rating["score"]))
    ratings = {g: statistics.fmean(v) for g, v in by_global.items()}
    return MICombined(
        codes=codes,
        global_ratings=ratings,
        indices=summary_indices(codes.values(), rubric, ratings),
        raters=len(results),
    )
