"""Counterfactual patients for the demographic robustness probe (`demographics.py`): copies
of a library profile that differ only in name, gender, age, cultural background or education.

Kept apart from the runs and the statistics: a copy depends only on the profile and the data
file `data/demographics.yaml` (the values of each attribute, the name pools, the gender
rules), so it can be made, read and tested without a model or a store.

A copy (`counterfactual`) differs only in one attribute and in what has to move with it: a
gender copy changes gender, pronouns and the given name (to one typical for that gender in the
same culture, from the name pools of `data/demographics.yaml`); a culture copy changes the
stated background and the name to one that fits it; a name copy changes only the name; age
and education change only that field. The case itself (history, situation, beliefs, risk cues,
style) is held fixed. Its id gets a suffix (`dep-02-emeka_gender_woman`; the profile schema
allows only `-` and `_` in ids), its version stays. `variants` gives a base profile (the
*reference* of a demographics run) with every copy of it that can be made.

Caveats a reader of the numbers should keep in mind:

* The case is held fixed, so some combinations read as implausible (a 19-year-old married for
  38 years, a doctorate held by someone whose occupation implies none, a culture copy whose
  history still names the places of the original). Gendered beliefs in the patient's own words
  ("A good mother anticipates every danger") stay as authored.
* Gender counterfactuals are made only from profiles whose gender is woman or man with
  she/her or he/him pronouns, whose narrative is not about gender identity and whose case does
  not rest on sex-specific biology such as menopause or pregnancy (`gender_rules` in the data
  file): for the rest a copy would differ in more than gender, and singular "they" cannot be
  told from plural "they" in a narrative. So "gender=woman" compares men's cases, "man"
  women's, "non-binary" both. Pronouns are rewritten by a heuristic (`rewrite_pronouns` in
  `pronouns.py`, documented there) that can still go wrong; gendered words other than a few
  listed self-descriptions ("single mother") stay, including in quotes ("Mama").
* A name copy keeps the stated background (an Arabic name with a Nigerian-British culture),
  by design: it isolates the name. A culture copy moves background and name together. A copy
  whose value is the profile's own (the same age, names from its own pool) is not made, so the
  comparisons of one attribute can rest on different base profiles (`SkippedVariant`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from therapygym.errors import ConfigError
from therapygym.patients.profile import PatientProfile
from therapygym.probes.pronouns import _SOURCE, CounterfactualError, rewrite_pronouns
from therapygym.records import short_fingerprint
from therapygym.yamlfile import read_yaml_model

Attribute = Literal["name", "gender", "age", "culture", "education"]
ATTRIBUTES: tuple[Attribute, ...] = ("name", "gender", "age", "culture", "education")
GenderKey = Literal["woman", "man", "unisex"]

_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


# ---------------------------------------------------------------------------- data file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamePool(_Strict):
    """Names of one background: given names by gender, family names, and how they are written."""

    match: tuple[str, ...] = Field(
        default=(), description="Regular expressions (case-insensitive) on a profile's culture."
    )
    order: Literal["given_first", "family_first"] = "given_first"
    call: Literal["first", "last"] = Field(
        "first", description="Which word of the given part a person is called by."
    )
    given: dict[GenderKey, tuple[str, ...]]
    family: tuple[str | dict[GenderKey, str], ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> NamePool:
        for key in ("woman", "man"):
            if not self.given.get(key):  # type: ignore[call-overload]
                raise ValueError(f"given names for '{key}' are missing")
        for entry in self.family:
            if isinstance(entry, dict) and not {"woman", "man"} <= entry.keys():
                raise ValueError(f"a gendered family name needs woman and man forms: {entry}")
        for pattern in self.match:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"match pattern {pattern!r}: {err}") from None
        return self

    def given_for(self, key: GenderKey) -> tuple[str, ...]:
        """Given names for a gender; for `unisex` without a list, woman and man names taken
        in turn."""
        names = self.given.get(key)
        if names:
            return names
        woman, man = self.given["woman"], self.given["man"]
        mixed = [n for pair in zip(woman, man, strict=False) for n in pair]
        return tuple(mixed + list(woman[len(man) :]) + list(man[len(woman) :]))

    def family_for(self, key: GenderKey) -> tuple[str, ...]:
        """Family names in the form for a gender (gendered forms are left out for unisex)."""
        out = []
        for entry in self.family:
            if isinstance(entry, str):
                out.append(entry)
            elif key in entry:
                out.append(entry[key])
        return tuple(out) or tuple(e["woman"] for e in self.family if isinstance(e, dict))

    def gendered_family(self, family: str, key: GenderKey) -> str:
        """`family` in its form for `key`, when the pool lists it as a gendered name."""
        for entry in self.family:
            if isinstance(entry, dict) and family in entry.values():
                return entry.get(key, family)
        return family


class NameValue(_Strict):
    pool: str


class GenderValue(_Strict):
    gender: str
    pronouns: Literal["she/her", "he/him", "they/them"]
    name: Literal["typical", "keep"] = "typical"


class CultureValue(_Strict):
    culture: str = Field(min_length=1)
    pool: str


class EducationValue(_Strict):
    education: str = Field(min_length=1)


class AttributeValues(_Strict):
    name: dict[str, NameValue] = Field(min_length=1)
    gender: dict[str, GenderValue] = Field(min_length=1)
    age: tuple[int, ...] = Field(min_length=1)
    culture: dict[str, CultureValue] = Field(min_length=1)
    education: dict[str, EducationValue] = Field(min_length=1)

    @field_validator("name", "gender", "culture", "education")
    @classmethod
    def _slugs(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not re.match(_SLUG, k)]
        if bad:
            raise ValueError(f"value keys must be slugs (a-z, 0-9, single -): {bad}")
        return value

    @field_validator("age")
    @classmethod
    def _ages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value) or any(not 12 <= a <= 100 for a in value):
            raise ValueError("ages must be distinct whole years from 12 to 100")
        return value


class GenderRules(_Strict):
    identity_terms: tuple[str, ...] = ()
    body_terms: tuple[str, ...] = ()
    self_phrases: tuple[dict[Literal["woman", "man", "non-binary"], str], ...] = ()

    @field_validator("identity_terms", "body_terms")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {pattern!r}: {err}") from None
        return value


class DemographicsData(_Strict):
    """`data/demographics.yaml`: the values of each attribute, the name pools, the rules."""

    version: str
    description: str = Field(min_length=20)
    intake: str = Field(min_length=10)
    attributes: AttributeValues
    gender_rules: GenderRules = GenderRules()
    pools: dict[str, NamePool] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> DemographicsData:
        bad = [k for k in self.pools if not re.match(_SLUG, k)]
        if bad:
            raise ValueError(f"pool names must be slugs (a-z, 0-9, single -): {bad}")
        used = [v.pool for v in self.attributes.name.values()]
        used += [v.pool for v in self.attributes.culture.values()]
        unknown = sorted(set(used) - set(self.pools))
        if unknown:
            raise ValueError(f"values name pools that do not exist: {', '.join(unknown)}")
        try:
            self.intake.format(
                name="n", age=1, gender="g", pronouns="p", culture="c", education="e"
            )
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"intake: unknown placeholder {err}; use name, age, gender, pronouns, culture, "
                "education"
            ) from None
        return self

    @property
    def fingerprint(self) -> str:
        return short_fingerprint(self.model_dump(mode="json"))

    @property
    def ref(self) -> str:
        """`demographics@version#fingerprint`: which values and names, down to the letter."""
        return f"demographics@{self.version}#{self.fingerprint}"

    def values(self, attribute: Attribute) -> list[str]:
        """The value keys of an attribute, in file order (ages as strings)."""
        if attribute == "age":
            return [str(a) for a in self.attributes.age]
        return list(getattr(self.attributes, attribute))

    def pool_for_culture(self, culture: str) -> tuple[str, NamePool] | None:
        """The first pool whose `match` fits a profile's culture string."""
        for key, pool in self.pools.items():
            if any(re.search(p, culture, re.IGNORECASE) for p in pool.match):
                return key, pool
        return None


def load_demographics(path: Path | str | None = None) -> DemographicsData:
    """The demographics file (the shipped one when None); errors name the file and field."""
    if path is None:
        return _builtin()
    return _load(Path(path))


@cache
def _builtin() -> DemographicsData:
    return _load(Path(str(resources.files("therapygym.probes") / "data" / "demographics.yaml")))


def _load(p: Path) -> DemographicsData:
    return read_yaml_model(p, "demographics file", DemographicsData, ConfigError)


# ---------------------------------------------------------------------------- names


@dataclass(frozen=True)
class PersonName:
    """A name split the way a pool writes it: the given part may hold several words
    ("Harpreet Kaur", "Thi Lan"); `call` is the word a person is called by."""

    given: str
    family: str
    order: Literal["given_first", "family_first"] = "given_first"
    call_word: Literal["first", "last"] = "first"

    @property
    def full(self) -> str:
        parts = [self.given, self.family] if self.order == "given_first" else [
            self.family, self.given
        ]  # fmt: skip
        return " ".join(p for p in parts if p)

    @property
    def call(self) -> str:
        words = self.given.split()
        return words[0] if self.call_word == "first" else words[-1]


def parse_name(full: str, pool: NamePool | None = None) -> PersonName:
    """Split a full name by the pool's order (default: given names first, family name last)."""
    order = pool.order if pool else "given_first"
    call = pool.call if pool else "first"
    words = full.split()
    if len(words) == 1:
        return PersonName(given=full, family="", order=order, call_word=call)
    if order == "family_first":
        return PersonName(" ".join(words[1:]), words[0], order, call)
    return PersonName(" ".join(words[:-1]), words[-1], order, call)


def gender_key(gender: str) -> GenderKey:
    """Which given names fit a Demographics.gender string: woman, man, or unisex."""
    low = gender.lower()
    if re.search(r"\b(woman|female|girl)\b", low):
        return "woman"
    if re.search(r"\b(man|male|boy)\b", low):
        return "man"
    return "unisex"


def _pick(options: Sequence[str], key: str, avoid: set[str]) -> str | None:
    """A stable, key-dependent choice that avoids words already in the profile."""
    if not options:
        return None
    start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(options)
    for k in range(len(options)):
        option = options[(start + k) % len(options)]
        if not any(w in avoid for w in re.split(r"[\s\-]+", option)) and option not in avoid:
            return option
    return None


# ---------------------------------------------------------------------------- counterfactuals

_THIRD_FIELDS = ("presenting_problem", "history", "situation")
_THIRD_LISTS = ("coping_strategies", "emotions", "behaviours")
_FIRST_FIELDS = ("opening_line",)
_FIRST_LISTS = ("intermediate_beliefs", "automatic_thoughts")
_DEMOGRAPHIC_TEXT = ("culture", "occupation", "education", "relationship_status")
# Text fields by voice, for the tests and for anyone extending the schema: third-person
# fields describe the patient (pronouns refer to them); first-person ones are their words.
THIRD_PERSON_FIELDS = (
    *_THIRD_FIELDS,
    *_THIRD_LISTS,
    "risk_cues.disclosure",
    *(f"demographics.{f}" for f in _DEMOGRAPHIC_TEXT),
)
FIRST_PERSON_FIELDS = (*_FIRST_FIELDS, *_FIRST_LISTS, "core_beliefs.belief")


def _edit(raw: dict[str, Any], third: Callable[[str], str], first: Callable[[str], str]) -> None:
    for f in _THIRD_FIELDS:
        raw[f] = third(raw[f])
    for f in _THIRD_LISTS:
        raw[f] = [third(x) for x in raw[f]]
    for cue in raw["risk_cues"]:
        cue["disclosure"] = third(cue["disclosure"])
    for f in _DEMOGRAPHIC_TEXT:
        raw["demographics"][f] = third(raw["demographics"][f])
    for f in _FIRST_FIELDS:
        raw[f] = first(raw[f])
    for f in _FIRST_LISTS:
        raw[f] = [first(x) for x in raw[f]]
    for belief in raw["core_beliefs"]:
        belief["belief"] = first(belief["belief"])


def _texts(profile: PatientProfile) -> list[str]:
    """Every text of a profile that `counterfactual` may edit, and the name."""
    out: list[str] = []

    def collect(text: str) -> str:
        out.append(text)
        return text

    _edit(profile.model_dump(mode="json"), collect, collect)
    return [*out, profile.demographics.name]


def _words(profile: PatientProfile) -> set[str]:
    return {w for text in _texts(profile) for w in re.findall(r"[^\W\d_]+", text)}


def _bounded(word: str) -> str:
    return r"(?<![\w\-])" + re.escape(word) + r"(?![\w\-])"


def _replace_all(pairs: Iterable[tuple[str, str]]) -> Callable[[str], str]:
    """One pass replacing whole words or phrases (longest first; no cascades)."""
    table = {old: new for old, new in pairs if old and old != new}
    if not table:
        return lambda s: s
    pattern = re.compile("|".join(_bounded(old) for old in sorted(table, key=len, reverse=True)))
    return lambda s: pattern.sub(lambda m: table[m.group(0)], s)


def variant_id(base_id: str, attribute: Attribute, value: str) -> str:
    """`dep-02-emeka_gender_woman`: the base id, the attribute and the value key."""
    return f"{base_id}_{attribute}_{value}"


def _term_hit(profile: PatientProfile, patterns: Sequence[str]) -> str | None:
    texts = [t for t in _texts(profile) if t != profile.demographics.name]
    for pattern in patterns:
        for text in texts:
            found = re.search(pattern, text, re.IGNORECASE)
            if found:  # the whole word it is part of, for the message
                for word in re.finditer(r"[\w\-]+", text):
                    if word.start() <= found.start() < word.end():
                        return word.group(0)
                return found.group(0)
    return None


def not_applicable(
    profile: PatientProfile,
    attribute: Attribute,
    value: str | int,
    data: DemographicsData | None = None,
) -> str | None:
    """Why this counterfactual cannot be made from this profile, or None when it can.

    Raises `ValueError` for an attribute or value the data file does not have."""
    data = data or load_demographics()
    value = str(value)
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute '{attribute}'; expected one of {ATTRIBUTES}")
    if value not in data.values(attribute):
        raise ValueError(
            f"unknown {attribute} value '{value}'; the demographics file has: "
            + ", ".join(data.values(attribute))
        )
    d = profile.demographics
    if attribute == "age":
        return f"the profile is already {value}" if d.age == int(value) else None
    if attribute == "education":
        text = data.attributes.education[value].education
        return "the profile already has this education" if d.education == text else None
    own = data.pool_for_culture(d.culture)
    if attribute == "culture":
        choice = data.attributes.culture[value]
        if d.culture == choice.culture or (own and own[0] == choice.pool):
            return f"the profile's own background already fits the {choice.pool} names"
        return None
    if attribute == "name":
        pool = data.attributes.name[value].pool
        return (
            f"the profile's name is already from the {pool} pool"
            if own and own[0] == pool
            else None
        )
    target = data.attributes.gender[value]
    if d.gender == target.gender:
        return f"the profile is already {target.gender}"
    if d.gender not in ("woman", "man") or d.pronouns not in _SOURCE:
        return (
            f"gender '{d.gender}' ({d.pronouns}): only woman (she/her) and man (he/him) "
            "profiles get gender counterfactuals"
        )
    hit = _term_hit(profile, data.gender_rules.identity_terms)
    if hit:
        return (
            f"the narrative is about gender identity ('{hit}'): a copy would differ in more "
            "than gender"
        )
    hit = _term_hit(profile, data.gender_rules.body_terms)
    if hit:
        return f"the case rests on sex-specific biology ('{hit}'): a copy would change the case"
    if target.name == "typical" and own is None:
        return (
            f"no name pool matches the culture '{d.culture}' (add a `match` pattern to a "
            "pool in the demographics file)"
        )
    return None


def counterfactual(
    profile: PatientProfile,
    attribute: Attribute,
    value: str | int,
    *,
    data: DemographicsData | None = None,
) -> PatientProfile:
    """A copy of `profile` that differs only in `attribute` (see the module docstring).

    `value` is a key of the attribute in the demographics file: an age ("71"), a gender
    ("woman", "man", "non-binary"), a culture ("nigerian-yoruba"), an education
    ("doctorate") or, for `name`, a name pool ("arabic"). Names are replaced everywhere
    (full name, given part, the name the person is called by, and the family name when it
    changes), as whole words, case-sensitively; a capitalised ordinary word equal to a
    replaced name ("Price", "Ward") is replaced too. New names avoid every word already in the
    profile (a partner's name stays unambiguous) and are chosen by a hash of the base id, so
    different bases get different names and reruns the same ones. Raises
    `CounterfactualError` when the copy cannot be made (`not_applicable` says why) and
    `ValueError` for an unknown attribute or value.
    """
    data = data or load_demographics()
    value = str(value)
    reason = not_applicable(profile, attribute, value, data)
    if reason:
        raise CounterfactualError(f"{profile.id}: no {attribute}={value} counterfactual: {reason}")
    raw = profile.model_dump(mode="json")
    d = raw["demographics"]
    key = f"{profile.id}|{attribute}|{value}"
    own = data.pool_for_culture(profile.demographics.culture)
    old = parse_name(profile.demographics.name, own[1] if own else None)
    avoid = _words(profile)
    new: PersonName | None = None

    def fresh(pool: NamePool, gk: GenderKey) -> PersonName:
        given = _pick(pool.given_for(gk), key + "|given", avoid)
        family = _pick(pool.family_for(gk), key + "|family", avoid)
        if given is None or family is None:
            raise CounterfactualError(
                f"{profile.id}: every name of the pool is already a word of the profile"
            )
        return PersonName(given, family, pool.order, pool.call)

    if attribute == "age":
        d["age"] = int(value)
    elif attribute == "education":
        d["education"] = data.attributes.education[value].education
    elif attribute == "name":
        pool = data.pools[data.attributes.name[value].pool]
        new = fresh(pool, gender_key(profile.demographics.gender))
    elif attribute == "culture":
        choice = data.attributes.culture[value]
        d["culture"] = choice.culture
        new = fresh(data.pools[choice.pool], gender_key(profile.demographics.gender))
    else:
        target = data.attributes.gender[value]
        source = profile.demographics.pronouns
        d["gender"], d["pronouns"] = target.gender, target.pronouns
        to: GenderKey = gender_key(target.gender)
        if target.name == "typical" and own is not None:  # not_applicable checked there is one
            pool = own[1]
            given = _pick(pool.given_for(to), key + "|given", avoid)
            if given is None:
                raise CounterfactualError(f"{profile.id}: no free {to} given name in the pool")
            new = PersonName(given, pool.gendered_family(old.family, to), old.order, pool.call)
        source_key = gender_key(profile.demographics.gender)
        phrases = [
            (p[source_key], p[target.gender])  # type: ignore[index]
            for p in data.gender_rules.self_phrases
            if source_key in p and target.gender in p
        ]
        swap = _replace_all(phrases)
        third = lambda s: rewrite_pronouns(swap(s), source, target.pronouns)  # noqa: E731
        _edit(raw, third, lambda s: s)
    if new is not None:
        d["name"] = new.full
        rename = _replace_all(
            [
                (old.full, new.full),
                (old.given, new.given),
                (old.call, new.call),
                (old.family, new.family),
            ]
        )
        _edit(raw, rename, rename)
    raw["id"] = variant_id(profile.id, attribute, value)
    return PatientProfile.model_validate(raw)


@dataclass(frozen=True)
class Variant:
    """One patient of a demographics run: a base profile itself (attribute None) or one of
    its counterfactuals."""

    base: PatientProfile
    attribute: Attribute | None
    value: str | None
    profile: PatientProfile


class SkippedVariant(BaseModel):
    base_profile: str
    attribute: Attribute
    value: str
    reason: str


def variants(
    profile: PatientProfile,
    attributes: Sequence[Attribute] = ATTRIBUTES,
    values: dict[Attribute, Sequence[str]] | None = None,
    data: DemographicsData | None = None,
) -> tuple[list[Variant], list[SkippedVariant]]:
    """The profile itself (the reference) and every counterfactual of it that can be made,
    with the ones that cannot and why."""
    data = data or load_demographics()
    made = [Variant(profile, None, None, profile)]
    skipped = []
    for attribute in attributes:
        for value in (values or {}).get(attribute) or data.values(attribute):
            reason = not_applicable(profile, attribute, value, data)
            if reason:
                skipped.append(SkippedVariant(
                    base_profile=profile.id, attribute=attribute, value=value, reason=reason
                ))  # fmt: skip
                continue
            copy = counterfactual(profile, attribute, value, data=data)
            made.append(Variant(profile, attribute, value, copy))
    return made, skipped
