"""The stigma design as data, and its expansion into vignette x question prompts.

A design file (`probes/data/stigma.yaml`, written by us) holds a vignette template, one
symptom description per condition (one of them a no-disorder control), the person's
attributes (names tied to gender and ethnicity, education levels) and fixed multiple-choice
questions on named ordinal scales. `expand_design` crosses every condition with every
person (every name x education level) and every question, so two vignettes of one person
differ only in the condition, and two vignettes of one condition differ only in who the
person is. The result is a `StigmaBattery`, the same shape the Moore et al. loader
(`stigma_moore.py`) produces, so both run through the same runner and metrics.
"""

from __future__ import annotations

import itertools
import random
import string
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from therapygym.errors import ConfigError
from therapygym.probes.spec import data_dir, versioned_file
from therapygym.records import short_fingerprint
from therapygym.yamlfile import read_yaml_model

Group = Literal["social_distance", "dangerousness", "causes", "recognition", "other"]
GROUPS: tuple[Group, ...] = ("social_distance", "dangerousness", "causes", "recognition", "other")
LETTERS = string.ascii_uppercase
_ID = r"^[a-z][a-z0-9_]*$"
_PRONOUNS = ("he", "him", "his", "himself")
VIGNETTE_FIELDS = frozenset({"name", "a_ethnicity", "gender", "education", "condition"})
CONDITION_FIELDS = frozenset({"name", *_PRONOUNS, *(p.capitalize() for p in _PRONOUNS)})
PROMPT_FIELDS = frozenset({"vignette", "question", "options"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_fields(template: str, allowed: frozenset[str], what: str) -> None:
    try:
        unknown = _fields(template) - allowed
    except ValueError as err:
        raise ValueError(f"{what}: malformed placeholder ({err})") from None
    if unknown:
        raise ValueError(
            f"{what} uses unknown placeholders {sorted(unknown)}; allowed: {sorted(allowed)}"
        )


class AnswerOption(_Strict):
    """One lettered option: its text and its position toward the scale's scored end."""

    text: str = Field(min_length=1)
    weight: float | None = Field(
        ge=0.0, le=1.0, description="0-1 toward the scored end; null for don't know."
    )

    @property
    def dont_know(self) -> bool:
        return self.weight is None


def _check_scale(options: tuple[AnswerOption, ...] | list[AnswerOption]) -> None:
    if not 3 <= len(options) <= 10:
        raise ValueError("a scale needs 3 to 10 options")
    if [o.dont_know for o in options].count(True) != 1 or not options[-1].dont_know:
        raise ValueError("a scale needs exactly one don't-know option (weight null), last")
    texts = [" ".join(o.text.casefold().split()) for o in options]
    if len(set(texts)) != len(texts):
        raise ValueError("option texts must differ")
    weights = [float(o.weight or 0.0) for o in options[:-1]]  # no None left but the last
    ordered = sorted(weights)
    if weights not in (ordered, ordered[::-1]):
        raise ValueError(f"option weights must run in one direction (ordinal), got {weights}")
    if min(weights) != 0.0 or max(weights) != 1.0:
        raise ValueError("option weights must run from 0 to 1")


class StigmaQuestion(_Strict):
    """A fixed multiple-choice question as put to the therapist (scale resolved)."""

    id: str = Field(pattern=_ID)
    group: Group
    text: str = Field(min_length=10)
    stigmatising: bool = Field(
        True, description="Its scored end expresses stigma (enters the index)."
    )
    options: tuple[AnswerOption, ...]
    note: str | None = None

    @model_validator(mode="after")
    def _scale(self) -> StigmaQuestion:
        _check_scale(self.options)
        return self

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def stigmatising_letters(self) -> str:
        """The options that are stigmatising answers (weight > 0 on a stigmatising question)."""
        if not self.stigmatising:
            return ""
        return "".join(L for L, o in zip(self.letters, self.options, strict=True) if o.weight)


# -- the design file --------------------------------------------------------------------


class Condition(_Strict):
    id: str = Field(pattern=_ID)
    label: str = Field(min_length=2)
    text: str = Field(min_length=40, description="Symptoms over recent weeks, with placeholders.")


class Gender(_Strict):
    id: str = Field(pattern=_ID)
    noun: str
    he: str
    him: str
    his: str
    himself: str


class Attribute(_Strict):
    id: str = Field(pattern=_ID)
    text: str = Field(min_length=2)


class Name(_Strict):
    name: str = Field(pattern=r"^[A-Z][A-Za-z'-]+$")
    ethnicity: str
    gender: str


class QuestionSpec(_Strict):
    id: str = Field(pattern=_ID)
    group: Group
    scale: str
    text: str = Field(min_length=10)
    stigmatising: bool = True
    note: str | None = None


class StigmaDesign(_Strict):
    """A versioned stigma design file."""

    version: str
    title: str
    description: str = Field(min_length=20)
    control: str
    prompt: str
    instruction: str | None = Field(None, description="Appended after each prompt.")
    vignette: str
    conditions: list[Condition] = Field(min_length=2)
    genders: list[Gender] = Field(min_length=1)
    ethnicities: list[Attribute] = Field(min_length=1)
    education: list[Attribute] = Field(min_length=1)
    names: list[Name] = Field(min_length=1)
    scales: dict[str, list[AnswerOption]]
    questions: list[QuestionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> StigmaDesign:
        _check_fields(self.prompt, PROMPT_FIELDS, "prompt")
        _check_fields(self.vignette, VIGNETTE_FIELDS, "vignette")
        for c in self.conditions:
            _check_fields(c.text, CONDITION_FIELDS, f"condition '{c.id}'")
        for what, ids in (
            ("condition", [c.id for c in self.conditions]),
            ("gender", [g.id for g in self.genders]),
            ("ethnicity", [e.id for e in self.ethnicities]),
            ("education", [e.id for e in self.education]),
            ("name", [n.name for n in self.names]),
            ("question", [q.id for q in self.questions]),
        ):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                raise ValueError(f"{what} ids appear twice: {', '.join(twice)}")
        if self.control not in {c.id for c in self.conditions}:
            raise ValueError(f"control '{self.control}' is not one of the conditions")
        genders, ethnicities = {g.id for g in self.genders}, {e.id for e in self.ethnicities}
        for n in self.names:
            if n.gender not in genders or n.ethnicity not in ethnicities:
                raise ValueError(f"name {n.name}: unknown gender or ethnicity")
        named = {(n.ethnicity, n.gender) for n in self.names}
        unnamed = sorted(f"{e}/{g}" for e in ethnicities for g in genders if (e, g) not in named)
        if unnamed:
            raise ValueError(f"no name for ethnicity/gender {', '.join(unnamed)}")
        for name, options in self.scales.items():
            try:
                _check_scale(options)
            except ValueError as err:
                raise ValueError(f"scale '{name}': {err}") from None
        for q in self.questions:
            if q.scale not in self.scales:
                raise ValueError(f"question '{q.id}': unknown scale '{q.scale}'")
        if not any(q.stigmatising for q in self.questions):
            raise ValueError("no question is stigmatising: the index would be empty")
        return self

    def question(self, spec: QuestionSpec) -> StigmaQuestion:
        return StigmaQuestion(
            id=spec.id,
            group=spec.group,
            text=" ".join(spec.text.split()),
            stigmatising=spec.stigmatising,
            options=tuple(self.scales[spec.scale]),
            note=spec.note,
        )


def load_stigma_design(path: Path | str) -> StigmaDesign:
    """A stigma design file; errors name the file and the field."""
    p = Path(path)
    return read_yaml_model(p, "stigma design", StigmaDesign, ConfigError)


@cache
def builtin_stigma_design(version: str | None = None) -> StigmaDesign:
    """The design shipped with therapygym (`probes/data/stigma.yaml`), or an earlier
    `version` kept as `stigma-<version>.yaml` (its index counts the questions it counted)."""
    current = load_stigma_design(data_dir() / "stigma.yaml")
    path = versioned_file("stigma", version, current.version)
    if path is None:
        return current
    kept = load_stigma_design(path)
    if kept.version != version:
        raise ConfigError(f"stigma design {path}: field 'version' must be {version!r}")
    return kept


# -- the battery: what is put to the therapist ---------------------------------------------


class StigmaPrompt(_Strict):
    """One vignette x question: the unit of a stigma run (one single-exchange session)."""

    id: str
    vignette: str
    person: str = Field(description="Who the vignette is about; the same across conditions.")
    condition: str
    attributes: dict[str, str]
    question: str
    text: str


class StigmaBattery(_Strict):
    """Prompts and the questions they ask, from our design or from a published one."""

    source: str
    version: str
    control: str
    conditions: tuple[str, ...]
    questions: tuple[StigmaQuestion, ...]
    prompts: tuple[StigmaPrompt, ...]
    instruction: str | None = None
    selection: str = "all"

    @model_validator(mode="after")
    def _consistent(self) -> StigmaBattery:
        if self.control not in self.conditions:
            raise ValueError(f"control '{self.control}' is not one of the conditions")
        questions = {q.id for q in self.questions}
        ids = [p.id for p in self.prompts]
        if len(ids) != len(set(ids)):
            raise ValueError("prompt ids must be unique")
        for p in self.prompts:
            if p.question not in questions or p.condition not in self.conditions:
                raise ValueError(f"prompt {p.id}: unknown question or condition")
        return self

    @cached_property
    def fingerprint(self) -> str:
        body = self.model_dump(mode="json", exclude={"source", "version", "selection"})
        return short_fingerprint(body)

    @cached_property
    def ref(self) -> str:
        """`source@version[persons]#fingerprint`: which prompts, down to their wording."""
        selected = "" if self.selection == "all" else f"[{self.selection}]"
        return f"{self.source}@{self.version}{selected}#{self.fingerprint}"

    def question(self, question_id: str) -> StigmaQuestion:
        return self.by_question_id[question_id]

    @cached_property
    def by_question_id(self) -> dict[str, StigmaQuestion]:
        return {q.id: q for q in self.questions}

    @cached_property
    def persons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.person for p in self.prompts))

    def message(self, prompt: StigmaPrompt) -> str:
        """The patient's turn: the prompt, then the answer instruction."""
        return f"{prompt.text}\n\n{self.instruction}" if self.instruction else prompt.text

    def sample_persons(self, n: int, seed: int = 0) -> StigmaBattery:
        """A seeded sample of `n` persons, each still crossed with every condition and
        question (so the comparison with the control stays within person)."""
        selection = f"persons={n},seed={seed}"
        if self.selection == selection:
            return self
        if self.selection != "all":
            raise ValueError(f"battery is already a sample ({self.selection})")
        persons = list(self.persons)
        if not 1 <= n <= len(persons):
            raise ValueError(f"persons must be between 1 and {len(persons)}, got {n}")
        keep = set(random.Random(seed).sample(persons, n))
        prompts = tuple(p for p in self.prompts if p.person in keep)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return StigmaBattery(**{**fields, "prompts": prompts, "selection": selection})


def render_options(question: StigmaQuestion) -> str:
    return "\n".join(
        f"{L}) {o.text}" for L, o in zip(question.letters, question.options, strict=True)
    )


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def expand_design(design: StigmaDesign) -> StigmaBattery:
    """The full crossing: conditions x persons (names x education) x questions."""
    genders = {g.id: g for g in design.genders}
    ethnicities = {e.id: e for e in design.ethnicities}
    order = {e.id: i for i, e in enumerate(design.ethnicities)}
    names = sorted(design.names, key=lambda n: (order[n.ethnicity], n.gender))
    questions = [design.question(q) for q in design.questions]
    prompts = []
    for condition, name, education in itertools.product(design.conditions, names, design.education):
        g = genders[name.gender]
        pronouns = {p: getattr(g, p) for p in _PRONOUNS}
        pronouns |= {p.capitalize(): v.capitalize() for p, v in pronouns.items()}
        symptoms = " ".join(condition.text.format(name=name.name, **pronouns).split())
        vignette = design.vignette.format(
            name=name.name,
            a_ethnicity=_a(ethnicities[name.ethnicity].text),
            gender=g.noun,
            education=education.text,
            condition=symptoms,
        )
        person = f"{name.ethnicity}-{name.gender}-{name.name.lower()}-{education.id}"
        attributes = {
            "name": name.name,
            "gender": name.gender,
            "ethnicity": name.ethnicity,
            "education": education.id,
        }
        for q in questions:
            text = design.prompt.format(
                vignette=vignette, question=q.text, options=render_options(q)
            )
            prompts.append(
                StigmaPrompt(
                    id=f"{condition.id}:{person}:{q.id}",
                    vignette=f"{condition.id}:{person}",
                    person=person,
                    condition=condition.id,
                    attributes=attributes,
                    question=q.id,
                    text=text,
                )
            )
    return StigmaBattery(
        source="therapygym-stigma",
        version=design.version,
        control=design.control,
        conditions=tuple(c.id for c in design.conditions),
        questions=tuple(questions),
        prompts=tuple(prompts),
        instruction=design.instruction,
    )
