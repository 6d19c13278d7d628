"""The expert-rating bench: dialogues rated by clinicians, in one documented JSONL format.

One line per rating (a dialogue scored by one rater), so a double-rated dialogue is two
lines and a bench grows by appending. Dialogue-level fields (the transcript, a check
question) may sit on any one of the dialogue's lines, or on several if they are
identical; that keeps files written by hand or by a spreadsheet export simple, and the
reader still refuses two different transcripts under one id. The format is specified in
docs/calibration.md; every importer produces `BenchRating`s, so the statistics never
see where a bench came from.

Criteria are CTRS items and safety labels (ids from the package's rubrics, so a judge can
score the same thing) or a *free rubric*: criteria named as in the source ("c1" for
MindEval, not a CTRS id it does not mean), with an optional scale per criterion. A scale
belongs to the bench, not to a rating, so it is a bench-level field (`scales`) that may sit
on any line, like a transcript on any of its dialogue's lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from therapygym.artefacts import atomic_path
from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.judges.check import QUESTIONS_KEY
from therapygym.judges.rubric import builtin_rubric
from therapygym.records import SessionStatus, Transcript, session_id_for, turns_of
from therapygym.yamlfile import read_jsonl_objects

BENCH_FORMAT = "therapygym.bench/1"
CTRS_SCALE = (0, 6)
CHECK_ID = "check"  # the id of a bench dialogue's one check question

CTRSScore = Annotated[int, Field(ge=CTRS_SCALE[0], le=CTRS_SCALE[1], strict=True)]
CriterionName = Annotated[str, Field(min_length=1)]


class BenchError(TherapygymError):
    """A bench file (or an importer's input) that cannot be read as expert ratings."""


def ctrs_item_ids() -> tuple[str, ...]:
    return tuple(item.id for item in builtin_rubric("ctrs").items)  # type: ignore[attr-defined]


def safety_label_ids() -> tuple[str, ...]:
    return tuple(label.id for label in builtin_rubric("safety").labels)  # type: ignore[attr-defined]


def mi_labels() -> tuple[str, ...]:
    """What an expert may code a therapist turn with: the mi rubric's codes, then its groups
    (a coarser label, for sources that do not separate the codes in it)."""
    rubric = builtin_rubric("mi")
    return (*(c.id for c in rubric.codes), *rubric.groups)  # type: ignore[attr-defined]


def mi_global_ids() -> tuple[str, ...]:
    return tuple(g.id for g in builtin_rubric("mi").global_ratings)  # type: ignore[attr-defined]


class BenchTurn(BaseModel):
    """One utterance of a rated dialogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speaker: Literal["therapist", "patient"]
    text: str = Field(min_length=1)


class Scale(BaseModel):
    """The whole-number range a free criterion's scores take, as the source's rubric states
    it; the statistics need it (a weighted kappa spans the scale, not the scores seen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Annotated[int, Field(strict=True)]
    max: Annotated[int, Field(strict=True)]

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self

    def __str__(self) -> str:
        return f"{self.min}-{self.max}"


class _Scales(BaseModel):
    """A bench line's `scales` field, read apart from the rating it sits on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scales: dict[CriterionName, Scale]


class Check(BaseModel):
    """A yes/no question about the therapist's reply and the answer an appropriate reply
    earns (Moore et al.-style check questions); raters give their own answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field(min_length=1)
    appropriate_answer: bool | None = None


MIScore = Annotated[int, Field(ge=1, le=5, strict=True)]


class MIRating(BaseModel):
    """One rater's motivational-interviewing coding of a dialogue.

    `codes` maps a therapist turn, by its 0-based position in the dialogue's transcript, to
    a code or a group of codes of the mi rubric (`judges/rubrics/mi.yaml`), or to null for a
    turn the rater coded with a label that has no counterpart among them (it is counted,
    never compared); a turn left out was not coded. `global_ratings` maps the rubric's
    global ratings to 1-5 (null: not rated).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    codes: dict[Annotated[int, Field(ge=0)], str | None] = Field(default_factory=dict)
    global_ratings: dict[str, MIScore | None] = Field(default_factory=dict)

    @field_validator("codes")
    @classmethod
    def _known_codes(cls, value: dict[int, str | None]) -> dict[int, str | None]:
        known = mi_labels()
        unknown = sorted({v for v in value.values() if v is not None} - set(known))
        if unknown:
            raise ValueError(
                f"unknown MI code {', '.join(map(repr, unknown))}; expected one of "
                + ", ".join(known)
            )
        return value

    @field_validator("global_ratings")
    @classmethod
    def _known_globals(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        known = mi_global_ids()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown MI global rating {', '.join(map(repr, unknown))}; expected one of "
                + ", ".join(known)
            )
        return value

    def scored(self) -> bool:
        return any(v is not None for v in self.codes.values()) or any(
            v is not None for v in self.global_ratings.values()
        )


class BenchRating(BaseModel):
    """One rater's ratings of one dialogue.

    `ctrs` maps CTRS item ids to 0-6 (null: the rater did not score the item); `safety`
    maps safety-rubric label ids to true (violated), false (not violated) or null (not
    applicable / not rated); `criteria` maps a free rubric's criteria, named as in the
    source, to whole-number scores (null: not scored). `quality` is an overall expert label
    ("high"/"low", as in AnnoMI); `check_answer` is the rater's answer to the dialogue's
    check question; `mi` is the rater's MI behaviour coding and global ratings.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["therapygym.bench/1"] = BENCH_FORMAT
    dialogue_id: str = Field(min_length=1)
    rater: str = Field(min_length=1)
    rater_kind: Literal["human", "model"] = "human"
    transcript: tuple[BenchTurn, ...] | None = Field(None, min_length=1)
    check: Check | None = None
    ctrs: dict[str, CTRSScore | None] = Field(default_factory=dict)
    safety: dict[str, bool | None] = Field(default_factory=dict)
    criteria: dict[CriterionName, Annotated[int, Field(strict=True)] | None] = Field(
        default_factory=dict
    )
    quality: Literal["high", "low"] | None = None
    check_answer: bool | None = None
    mi: MIRating | None = None
    rationale: str | None = None
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("ctrs")
    @classmethod
    def _known_items(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        known = ctrs_item_ids()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown CTRS item {', '.join(map(repr, unknown))}; expected one of "
                + ", ".join(known)
            )
        return value

    @field_validator("safety")
    @classmethod
    def _known_labels(cls, value: dict[str, bool | None]) -> dict[str, bool | None]:
        known = safety_label_ids()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown safety label {', '.join(map(repr, unknown))}; expected one of "
                + ", ".join(known)
            )
        return value

    def scored(self) -> bool:
        """Whether the line carries any rating at all (a transcript-only line does not)."""
        return bool(
            any(v is not None for v in self.ctrs.values())
            or any(v is not None for v in self.safety.values())
            or any(v is not None for v in self.criteria.values())
            or self.quality is not None
            or self.check_answer is not None
            or (self.mi is not None and self.mi.scored())
        )


@dataclass(frozen=True)
class Dialogue:
    """A rated dialogue with all its ratings, in file order."""

    id: str
    transcript: tuple[BenchTurn, ...] | None
    check: Check | None
    ratings: tuple[BenchRating, ...]

    def human_ratings(self) -> tuple[BenchRating, ...]:
        return tuple(r for r in self.ratings if r.rater_kind == "human" and r.scored())

    def quality(self) -> str | None:
        """The experts' quality label when they agree; None when absent or split."""
        labels = {r.quality for r in self.human_ratings() if r.quality is not None}
        return labels.pop() if len(labels) == 1 else None


@dataclass(frozen=True)
class Bench:
    """A validated set of ratings; `name` says where it came from (file or importer);
    `scales` are the declared scales of the free criteria that have one."""

    name: str
    ratings: tuple[BenchRating, ...]
    scales: Mapping[str, Scale] = field(default_factory=dict)

    @cached_property
    def dialogues(self) -> dict[str, Dialogue]:
        grouped: dict[str, list[BenchRating]] = {}
        for r in self.ratings:
            grouped.setdefault(r.dialogue_id, []).append(r)
        out = {}
        for dialogue_id, ratings in grouped.items():
            transcript = next((r.transcript for r in ratings if r.transcript), None)
            check = next((r.check for r in ratings if r.check), None)
            out[dialogue_id] = Dialogue(dialogue_id, transcript, check, tuple(ratings))
        return out

    @cached_property
    def digest(self) -> str:
        """Identifies the content (not the file name), so a run id can follow the data."""
        h = hashlib.sha256()
        for r in self.ratings:
            # Free criteria and MI coding join the digest only when a rating has them, so a
            # bench written before they existed keeps its digest (and its calibration run id).
            unused = {"criteria"} if not r.criteria else set()
            unused |= {"mi"} if r.mi is None else set()
            h.update(r.model_dump_json(exclude=unused or None).encode())
        if self.scales:
            h.update(json.dumps({k: s.model_dump() for k, s in self.scales.items()}).encode())
        return h.hexdigest()[:12]

    def raters(self, kind: Literal["human", "model"] = "human") -> list[str]:
        return sorted({r.rater for r in self.ratings if r.rater_kind == kind and r.scored()})

    def ctrs_items(self) -> list[str]:
        """CTRS items some human scored, in rubric order. An item that is present but null
        on every line (a mapped column nobody filled in) is not scored: counting it would
        leave the CTRS total undefined for every rating."""
        used = {
            k
            for r in self.ratings
            if r.rater_kind == "human"
            for k, v in r.ctrs.items()
            if v is not None
        }
        return [i for i in ctrs_item_ids() if i in used]

    def safety_labels(self) -> list[str]:
        used = {k for r in self.ratings if r.rater_kind == "human" for k in r.safety}
        return [label for label in safety_label_ids() if label in used]

    def mi_coded(self) -> bool:
        """Whether some expert coded MI behaviour or rated MI globals."""
        return any(
            r.mi is not None and r.mi.scored() for r in self.ratings if r.rater_kind == "human"
        )

    def mi_globals(self) -> list[str]:
        """The MI global ratings some expert gave, in rubric order."""
        used = {
            k
            for r in self.ratings
            if r.rater_kind == "human" and r.mi is not None
            for k, v in r.mi.global_ratings.items()
            if v is not None
        }
        return [g for g in mi_global_ids() if g in used]

    def criteria(self) -> list[str]:
        """Free criteria some human scored: those with a declared scale in declaration
        order, then the others in the order they first appear."""
        used = {k: None for r in self.ratings if r.rater_kind == "human" for k in r.criteria}
        return [c for c in self.scales if c in used] + [c for c in used if c not in self.scales]

    def scale(self, criterion: str) -> tuple[int, int] | None:
        """A free criterion's declared scale, else the range of the scores given (any rater);
        None when nobody scored it."""
        if criterion in self.scales:
            return self.scales[criterion].min, self.scales[criterion].max
        scores = [v for r in self.ratings if (v := r.criteria.get(criterion)) is not None]
        return (min(scores), max(scores)) if scores else None

    def summary(self) -> dict[str, int]:
        multi = sum(len({r.rater for r in d.human_ratings()}) >= 2 for d in self.dialogues.values())
        return {
            "dialogues": len(self.dialogues),
            "ratings": sum(r.scored() for r in self.ratings),
            "human_raters": len(self.raters("human")),
            "model_raters": len(self.raters("model")),
            "multiply_rated_dialogues": multi,
            "with_transcript": sum(d.transcript is not None for d in self.dialogues.values()),
        }

    def subset(self, n: int, seed: int = 0) -> Bench:
        """A seeded sample of `n` dialogues with all their ratings, for a judge too slow for
        the whole bench. With expert quality labels it takes high and low alike (as many of
        each as exist, up to n/2), since a separation AUC is only as good as its smaller
        class; otherwise a plain random sample. Only dialogues an expert rated are drawn:
        the others give a judge nothing to be compared with."""
        rated = [d for d in self.dialogues.values() if d.human_ratings()]
        if n >= len(rated):
            return self
        rng = np.random.default_rng(seed)
        groups: dict[str | None, list[str]] = {}
        for d in rated:
            groups.setdefault(d.quality(), []).append(d.id)
        if set(groups) == {None}:
            chosen = set(rng.choice(sorted(groups[None]), size=n, replace=False).tolist())
        else:
            chosen = set()
            order = sorted(groups, key=lambda q: len(groups[q]))  # smallest class first
            for position, quality in enumerate(order):
                want = (n - len(chosen)) // (len(order) - position)
                ids = sorted(groups[quality])
                take = min(want, len(ids))
                chosen |= set(rng.choice(ids, size=take, replace=False).tolist())
        kept = tuple(r for r in self.ratings if r.dialogue_id in chosen)
        return replace(
            self, name=f"{self.name}[{n} of {len(self.dialogues)}, seed {seed}]", ratings=kept
        )

    def transcripts(self, run_id: str, *, max_turns: int | None = None) -> list[Transcript]:
        """The bench's dialogues as transcripts a judge can score.

        `max_turns` keeps the first turns only, for judges with a short context; the
        experts rated the whole dialogue, so say so wherever such scores are reported.
        Dialogues no expert rated are left out: a judge's score on them has nothing to be
        compared with.
        """
        out = []
        for d in self.dialogues.values():
            if d.transcript is None or not d.human_ratings():
                continue
            session_id = session_id_for(run_id, d.id, f"bench:{self.name}", 0)
            kept = d.transcript[:max_turns] if max_turns else d.transcript
            out.append(
                Transcript(
                    session_id=session_id,
                    run_id=run_id,
                    profile_id=d.id,
                    therapist=f"bench:{self.name}",
                    patient="bench",
                    status=SessionStatus.COMPLETED,
                    turns=turns_of(session_id, ((t.speaker, t.text) for t in kept)),
                    meta={
                        "bench_dialogue_id": d.id,
                        "turns_in_bench": len(d.transcript),
                        "truncated": len(kept) < len(d.transcript),
                        **({QUESTIONS_KEY: {CHECK_ID: d.check.question}} if d.check else {}),
                    },
                )
            )
        return out


def build_bench(
    name: str,
    ratings: Iterable[BenchRating],
    scales: Mapping[str, Scale] | None = None,
    *,
    places: Sequence[str] | None = None,
) -> Bench:
    """Check what single lines cannot: one transcript per dialogue, one line per rater,
    free-criterion scores on their declared scales. `places` says where each rating came
    from ("file, line 3") for the errors; without it they count records."""
    ratings = tuple(ratings)
    scales = dict(scales or {})
    if not ratings:
        raise BenchError(f"{name}: no ratings")
    seen: dict[tuple[str, str], int] = {}
    transcripts: dict[str, tuple[BenchTurn, ...]] = {}
    checks: dict[str, Check] = {}
    for number, r in enumerate(ratings, start=1):
        key = (r.dialogue_id, r.rater)
        if key in seen and r.scored():
            raise BenchError(
                f"{name}: record {number}: rater '{r.rater}' rated dialogue '{r.dialogue_id}' "
                f"twice (first at record {seen[key]}); one record per rater and dialogue"
            )
        if r.scored():
            seen[key] = number
        if r.transcript is not None:
            first = transcripts.setdefault(r.dialogue_id, r.transcript)
            if first != r.transcript:
                raise BenchError(
                    f"{name}: record {number}: dialogue '{r.dialogue_id}' has a different "
                    "transcript than an earlier record; give it once, or identically"
                )
        if r.check is not None and checks.setdefault(r.dialogue_id, r.check) != r.check:
            raise BenchError(
                f"{name}: record {number}: dialogue '{r.dialogue_id}' has a different check "
                "question than an earlier record"
            )
        for criterion, score in r.criteria.items():
            scale = scales.get(criterion)
            if score is not None and scale is not None and not scale.min <= score <= scale.max:
                where = places[number - 1] if places else f"{name}: record {number}"
                raise BenchError(
                    f"{where}: field 'criteria.{criterion}': score {score} is off the scale; "
                    f"expected a whole number from {scale.min} to {scale.max} (its 'scales' entry)"
                )
    if not any(r.scored() for r in ratings):
        raise BenchError(
            f"{name}: no record carries a rating (ctrs, safety, criteria, quality, check or mi)"
        )
    for number, r in enumerate(ratings, start=1):
        if r.mi is not None and r.mi.codes:
            _check_coded_turns(r, transcripts.get(r.dialogue_id), places, name, number)
    return Bench(name=name, ratings=ratings, scales=scales)


def _check_coded_turns(
    r: BenchRating,
    transcript: tuple[BenchTurn, ...] | None,
    places: Sequence[str] | None,
    name: str,
    number: int,
) -> None:
    """MI codes name therapist turns of the dialogue's transcript by position."""
    where = places[number - 1] if places else f"{name}: record {number}"
    if transcript is None:
        raise BenchError(
            f"{where}: field 'mi.codes': dialogue '{r.dialogue_id}' has no transcript, so its "
            "turns cannot be coded"
        )
    for turn in sorted(r.mi.codes):  # type: ignore[union-attr]
        if turn >= len(transcript):
            raise BenchError(
                f"{where}: field 'mi.codes.{turn}': the transcript has {len(transcript)} turns "
                f"(0 to {len(transcript) - 1})"
            )
        if transcript[turn].speaker != "therapist":
            raise BenchError(
                f"{where}: field 'mi.codes.{turn}': turn {turn} is the patient's; only "
                "therapist turns are coded"
            )


def read_bench_jsonl(path: Path) -> Bench:
    """Read a bench JSONL file; errors name the file, the line and the field."""
    ratings, places = [], []
    scales: dict[str, tuple[Scale, int]] = {}  # criterion -> (scale, the line declaring it)
    for number, data in read_jsonl_objects(path, BenchError):
        where = f"{path}, line {number}"
        if "scales" in data:
            _declare_scales(data.pop("scales"), scales, where, number)
        try:
            ratings.append(BenchRating.model_validate(data))
        except ValidationError as err:
            raise BenchError(describe_validation_error(err, where)) from None
        places.append(where)
    declared = {criterion: scale for criterion, (scale, _) in scales.items()}
    return build_bench(str(path), ratings, declared, places=places)


def _declare_scales(
    raw: Any, scales: dict[str, tuple[Scale, int]], where: str, number: int
) -> None:
    """Merge one line's `scales` into those read so far; a criterion given two different
    scales is an error naming both lines."""
    try:
        given = _Scales.model_validate({"scales": raw}).scales
    except ValidationError as err:
        raise BenchError(describe_validation_error(err, where)) from None
    for criterion, scale in given.items():
        first, line = scales.setdefault(criterion, (scale, number))
        if first != scale:
            raise BenchError(
                f"{where}: field 'scales.{criterion}': {scale} here but {first} at line "
                f"{line}; one scale per criterion"
            )


def write_bench_jsonl(bench: Bench, path: Path) -> None:
    """Write a bench as JSONL (transcript once per dialogue); atomic via rename."""
    dialogues = bench.dialogues
    written: set[str] = set()
    scales = {k: s.model_dump() for k, s in bench.scales.items()}
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for number, r in enumerate(bench.ratings):
            d = dialogues[r.dialogue_id]
            first = r.dialogue_id not in written
            written.add(r.dialogue_id)
            line = r.model_copy(
                update={
                    "transcript": d.transcript if first else None,
                    "check": d.check if first else None,
                }
            ).model_dump(mode="json", exclude_defaults=True)
            if number == 0 and scales:  # bench-level: once, on the first line
                line["scales"] = scales
            fh.write(json.dumps({"format": BENCH_FORMAT, **line}, ensure_ascii=False) + "\n")
