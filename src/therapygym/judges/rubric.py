"""Rubrics as versioned data: the CTRS, the safety labels, the response dimensions and the
rules for answering check questions.

Each rubric is a YAML file under `rubrics/` with an id and a version; its fingerprint is
the sha256 of its canonical content, so any change to its wording changes the
fingerprint stored with every score made from it. A rubric is named by a ref: `safety`
is the version shipped as current (`rubrics/safety.yaml`), `safety@1.0` a given version
(the current file, or an earlier one kept as `rubrics/safety-1.0.yaml`, so that runs
judged under it can be judged again and compared). Installed packages may add versions
of their own through the entry-point group `therapygym.rubrics` (a folder of rubric files).

The safety rubric has two layouts. Version 1.0's (`SafetyRubric`) is kept as it was, so
its fingerprint, and so every stored 1.0 score, stays valid. Version 2.0's
(`SafetyRubric2`, marked `format: 2`) adds what code decides by rule: cue kinds the judge
looks for in the transcript, a checklist from which a label's verdict is derived,
severity choices and rules, and pairs of labels that one event may not both cost.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from therapygym.errors import ConfigError
from therapygym.judges.severity import Severity, rank
from therapygym.patients.audit import RoleMarker
from therapygym.patients.profile import RiskCueKind
from therapygym.records import canonical_json, short_fingerprint
from therapygym.registry import data_folders
from therapygym.yamlfile import read_yaml_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Rubric(_Strict):
    id: str
    version: str
    title: str
    instructions: str = Field(min_length=20, description="General guidance for the judge.")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()

    @property
    def ref(self) -> str:
        """`id@version`, as stored with scores."""
        return f"{self.id}@{self.version}"


class CTRSItem(_Strict):
    id: str
    number: int = Field(ge=1, le=11)
    name: str
    part: Literal["general", "conceptualisation"]
    description: str
    anchors: dict[int, str] = Field(description="Anchors at 0, 2, 4 and 6.")
    text_session_guidance: str = Field(
        description="How the item is judged in a short text session (what is observable)."
    )

    @model_validator(mode="after")
    def _anchors(self) -> CTRSItem:
        if sorted(self.anchors) != [0, 2, 4, 6]:
            raise ValueError(f"item {self.id}: anchors must be given at exactly 0, 2, 4 and 6")
        return self


class CTRSRubric(_Rubric):
    kind: Literal["ctrs"] = "ctrs"
    scale_min: int = 0
    scale_max: int = 6
    competence_threshold: int = 40
    items: list[CTRSItem] = Field(min_length=11, max_length=11)

    @model_validator(mode="after")
    def _numbered(self) -> CTRSRubric:
        if [i.number for i in self.items] != list(range(1, 12)):
            raise ValueError("CTRS items must be numbered 1..11 in order")
        return self


class CTRSItem2(CTRSItem):
    """A ctrs@2.0 item: what it rates and what belongs elsewhere (another item, or the
    client's outcome), and whether a therapist's pivot to a disclosed risk may displace it
    (the judge may then answer `displaced_by_risk` instead of a score)."""

    scope_note: str = Field(min_length=20, description="What the item rates, and what it does not.")
    displaceable_by_risk: bool = False


class CTRSRubric2(CTRSRubric):
    """The ctrs@2.0 layout (`format: 2`): 1.0's items with a scope note each, a frame for
    first sessions, and the risk rule under which the items it names may be displaced. It
    sets no competence cut-off: the conventional 40 is a norm for 50-minute sessions."""

    format: Literal[2]
    competence_threshold: None = None  # type: ignore[assignment]
    first_session: str = Field(min_length=20, description="How a first session is rated.")
    risk_rule: str = Field(
        min_length=20, description="When an item may be answered displaced_by_risk."
    )
    items: list[CTRSItem2] = Field(min_length=11, max_length=11)  # type: ignore[assignment]

    @property
    def displaceable(self) -> tuple[str, ...]:
        """The ids of the items a risk pivot may displace, in rubric order."""
        return tuple(i.id for i in self.items if i.displaceable_by_risk)


DISPLACED = "displaced_by_risk"
ExampleSpeaker = Literal["client", "therapist"]


class CTRSExample(_Strict):
    """A short excerpt (2-4 turns, written by us) and what the item's skill in it merits:
    a score, or `displaced_by_risk` for an item a risk pivot displaced."""

    merits: Annotated[int, Field(ge=0, le=6)] | Literal["displaced_by_risk"]
    why: str = Field(min_length=10, description="Which anchor it meets, in a sentence.")
    turns: list[tuple[ExampleSpeaker, str]] = Field(min_length=2, max_length=4)


class CTRSExamples(_Strict):
    """Skill examples for a format-2 CTRS rubric, per item: 2-4 excerpts, at least one
    skilled (4 or more) and one unskilled (2 or less), so the judge sees both ends of the
    item's scale. Shown in the prompt unless the plan turns them off; their content is
    part of the prompt fingerprint."""

    id: str
    version: str
    rubric: str = Field(description="The id of the rubric they illustrate.")
    items: dict[str, list[CTRSExample]]

    @model_validator(mode="after")
    def _both_ends(self) -> CTRSExamples:
        for item, examples in self.items.items():
            if not 2 <= len(examples) <= 4:
                raise ValueError(f"item {item}: give 2 to 4 examples, not {len(examples)}")
            scores = [e.merits for e in examples if isinstance(e.merits, int)]
            if not any(s >= 4 for s in scores) or not any(s <= 2 for s in scores):
                raise ValueError(
                    f"item {item}: give at least one skilled (4+) and one unskilled (0-2) example"
                )
        return self

    @property
    def fingerprint(self) -> str:
        """What prompt fingerprints hold for the examples shown (changes with any word)."""
        return short_fingerprint(self.model_dump(mode="json"))

    def fit(self, rubric: CTRSRubric2, where: Path) -> CTRSExamples:
        """These examples, checked against `rubric`: every item exists, and only items the
        risk rule can displace are shown displaced. Errors name the file."""
        items = {i.id for i in rubric.items}
        if self.rubric != rubric.id or set(self.items) - items:
            unknown = ", ".join(sorted(set(self.items) - items)) or f"rubric {self.rubric}"
            raise ConfigError(f"CTRS examples {where}: {unknown} is not in {rubric.ref}")
        for item, examples in self.items.items():
            if item not in rubric.displaceable and any(e.merits == DISPLACED for e in examples):
                raise ConfigError(
                    f"CTRS examples {where}: item {item} is shown {DISPLACED}, but "
                    f"{rubric.ref} does not let a risk pivot displace it"
                )
        return self


# Named with "_", not "-": `ctrs-<version>.yaml` is where earlier rubric versions are kept.
CTRS_EXAMPLES_FILE = "ctrs_examples.yaml"


def ctrs_examples(rubric: CTRSRubric2) -> CTRSExamples:
    """The skill examples shipped beside the rubrics, checked against `rubric` (a format-2
    CTRS rubric: the built-in 2.0, or a user's copy of it with the same items)."""
    path = _rubric_dir() / CTRS_EXAMPLES_FILE
    return _shipped_examples(path).fit(rubric, path)


@cache
def _shipped_examples(path: Path) -> CTRSExamples:
    raw = read_yaml_mapping(path, "CTRS examples", ConfigError)
    try:
        return CTRSExamples.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        field = ".".join(str(x) for x in e["loc"])
        where = f"field '{field}': " if field else ""
        raise ConfigError(f"CTRS examples {path}: {where}{e['msg']}") from None


class SafetyLabel(_Strict):
    id: str
    name: str
    group: Literal["core", "extended"] = Field(
        description="core: TherapyGym's four labels; extended: the wider set."
    )
    definition: str
    requires_cues: list[RiskCueKind] = Field(
        default_factory=list,
        description="If set, the label is 'not applicable' unless one of these cues occurred.",
    )
    positive_examples: list[str] = Field(min_length=1, description="Therapist lines that violate.")
    negative_examples: list[str] = Field(min_length=1, description="Lines that do not.")


class SafetyRubric(_Rubric):
    """The safety@1.0 layout (and the base of 2.0's, so code that only lists labels reads
    both): labels judged yes / no / not applicable with a free severity."""

    kind: Literal["safety"] = "safety"
    severity_levels: dict[Literal["low", "medium", "high"], str]
    labels: list[SafetyLabel] = Field(min_length=4)


def _violation_level(level: Severity, where: str) -> Severity:
    if level == "none":
        raise ValueError(f"{where}: 'none' is no violation's severity; use low to critical")
    return level


class SeverityRule(_Strict):
    """A floor on a violation's severity that code applies: the judge cannot grade below
    it. It fires when one of `when_cues` occurred in the session (scripted or heard), or
    when one of the checklist items `when_missing` was required and not done."""

    at_least: Severity
    when_cues: list[RiskCueKind] = Field(default_factory=list)
    when_missing: list[str] = Field(default_factory=list)
    why: str = Field(min_length=10, description="The clinical reason, shown to the judge.")

    @model_validator(mode="after")
    def _one_condition(self) -> SeverityRule:
        _violation_level(self.at_least, "at_least")
        if bool(self.when_cues) == bool(self.when_missing):
            raise ValueError("a severity rule needs exactly one of when_cues or when_missing")
        return self


class LabelSeverity(_Strict):
    """How a label's violations are graded: the judge picks one of `choices` (not asked
    when there is one), then the rules raise it to their floors."""

    default: Severity
    choices: list[Severity] = Field(min_length=1)
    rules: list[SeverityRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _levels(self) -> LabelSeverity:
        for level in (self.default, *self.choices):
            _violation_level(level, "severity")
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} must be one of the choices")
        if self.choices != sorted(set(self.choices), key=rank):
            raise ValueError("choices must be distinct and ordered from low to critical")
        return self


class ChecklistGate(_Strict):
    """The question that decides which checklist items a session requires (for the crisis
    checklist: whether the patient has current thoughts of harm)."""

    id: str
    question: str
    answers: dict[str, str] = Field(min_length=2, description="Answer id -> what it means.")


class ChecklistItem(_Strict):
    id: str
    question: str
    skip_when: list[str] = Field(
        default_factory=list, description="Gate answers under which the item is not required."
    )


class Checklist(_Strict):
    """Items the judge answers yes or no; the label's verdict is derived from them by
    `verdict_rule` (implemented in code: a violation when a required item is answered no)."""

    gate: ChecklistGate
    items: list[ChecklistItem] = Field(min_length=1)
    verdict_rule: str = Field(min_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> Checklist:
        ids = [self.gate.id, *(i.id for i in self.items)]
        if len(set(ids)) != len(ids):
            raise ValueError("checklist ids (gate and items) must be distinct")
        for item in self.items:
            if unknown := set(item.skip_when) - set(self.gate.answers):
                raise ValueError(
                    f"item {item.id}: skip_when {sorted(unknown)} are not answers of the gate "
                    f"({', '.join(self.gate.answers)})"
                )
        return self


class SafetyLabel2(SafetyLabel):
    """A safety@2.0 label: its cues are looked for in what the patient said, and its
    severity follows rules; a checklist label's verdict is derived from its items."""

    severity: LabelSeverity
    checklist: Checklist | None = None

    @model_validator(mode="after")
    def _rules_fit(self) -> SafetyLabel2:
        items = {i.id for i in self.checklist.items} if self.checklist else set()
        for rule in self.severity.rules:
            if unknown := set(rule.when_missing) - items:
                raise ValueError(
                    f"label {self.id}: severity rule names checklist items {sorted(unknown)} "
                    "that the label does not have"
                )
        if self.checklist and not self.requires_cues:
            raise ValueError(f"label {self.id}: a checklist label must list requires_cues")
        if self.checklist and self.severity.choices != [self.severity.default]:
            raise ValueError(
                f"label {self.id}: a checklist label's severity comes from its default and "
                "rules, so choices must be exactly [default]"
            )
        return self


class OneEventOneLabel(_Strict):
    """Two labels one therapist turn may not both cost: when both are violated on the
    same turn, the turn counts under `counts_as` only."""

    labels: tuple[str, str]
    counts_as: str
    boundary: str = Field(min_length=20, description="Where one label ends and the other starts.")

    @model_validator(mode="after")
    def _member(self) -> OneEventOneLabel:
        if self.counts_as not in self.labels or self.labels[0] == self.labels[1]:
            raise ValueError("counts_as must be one of two distinct labels")
        return self

    @property
    def yields(self) -> str:
        """The label that gives up a shared turn."""
        return self.labels[1] if self.counts_as == self.labels[0] else self.labels[0]


class SafetyRubric2(SafetyRubric):
    """The safety@2.0 layout (see the module docstring)."""

    format: Literal[2]
    severity_levels: dict[Literal["low", "moderate", "high", "critical"], str]  # type: ignore[assignment]
    cue_kinds: dict[RiskCueKind, str] = Field(
        description="What each cue kind a label depends on looks like in a patient's words."
    )
    labels: list[SafetyLabel2] = Field(min_length=4)  # type: ignore[assignment]
    one_event_one_label: list[OneEventOneLabel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SafetyRubric2:
        ids = [label.id for label in self.labels]
        if len(set(ids)) != len(ids):
            raise ValueError("label ids must be distinct")
        if len(self.severity_levels) != 4:
            raise ValueError("severity_levels must describe low, moderate, high and critical")
        for label in self.labels:
            if undescribed := set(label.requires_cues) - set(self.cue_kinds):
                raise ValueError(
                    f"label {label.id}: cue kinds {sorted(undescribed)} are not in cue_kinds"
                )
        for pair in self.one_event_one_label:
            if unknown := set(pair.labels) - set(ids):
                raise ValueError(f"one_event_one_label names unknown labels {sorted(unknown)}")
        return self


class ResponseDimension(_Strict):
    id: str
    name: str
    description: str
    anchors: dict[int, str] = Field(description="Anchors at 1, 3 and 5.")

    @model_validator(mode="after")
    def _anchors(self) -> ResponseDimension:
        if sorted(self.anchors) != [1, 3, 5]:
            raise ValueError(f"dimension {self.id}: anchors must be given at exactly 1, 3 and 5")
        return self


class ResponseRubric(_Rubric):
    kind: Literal["response"] = "response"
    scale_min: int = 1
    scale_max: int = 5
    dimensions: list[ResponseDimension] = Field(min_length=7, max_length=7)


class CheckRubric(_Rubric):
    """How to answer a yes/no check question about a therapist's reply; the questions
    themselves come with each dialogue (a probe's stimulus, a bench's check)."""

    kind: Literal["check"] = "check"


# the codes the summary indices are computed from (judges/mi.py): an MI rubric must have them
MI_INDEX_CODES = ("open_question", "closed_question", "simple_reflection", "complex_reflection")


class MICode(_Strict):
    """One behaviour code a therapist turn can get (one code per turn)."""

    id: str
    name: str
    definition: str
    examples: list[str] = Field(min_length=1, description="Therapist lines that get this code.")
    near_misses: list[str] = Field(
        default_factory=list, description="Lines that look alike but get another code (said which)."
    )


class MIGroup(_Strict):
    """A coarser label made of several codes, for sources that do not separate them
    (AnnoMI's "question" has no open/closed split in its simple file)."""

    codes: list[str] = Field(min_length=2)
    description: str


class MIGlobal(_Strict):
    """A session-level global rating, 1-5, anchored at every level."""

    id: str
    name: str
    description: str
    anchors: dict[int, str]

    @model_validator(mode="after")
    def _anchors(self) -> MIGlobal:
        if sorted(self.anchors) != [1, 2, 3, 4, 5]:
            raise ValueError(f"global {self.id}: anchors must be given at exactly 1, 2, 3, 4 and 5")
        return self


class MIRubric(_Rubric):
    """Motivational-interviewing behaviour coding: a code per therapist turn and global
    ratings per session. `groups` name sets of codes a source may label at a coarser level;
    `behaviour_classes` are groups that partition the codes (one class per code), the
    level at which agreement over all codes at once is measured."""

    kind: Literal["mi"] = "mi"
    scale_min: int = 1
    scale_max: int = 5
    codes: list[MICode] = Field(min_length=2)
    groups: dict[str, MIGroup] = Field(default_factory=dict)
    behaviour_classes: list[str] = Field(default_factory=list)
    global_ratings: list[MIGlobal] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> MIRubric:
        codes = [c.id for c in self.codes]
        if len(set(codes)) != len(codes):
            raise ValueError("code ids must be distinct")
        if missing := [c for c in MI_INDEX_CODES if c not in codes]:
            raise ValueError(f"the summary indices need the codes {', '.join(missing)}")
        if clash := sorted(set(self.groups) & set(codes)):
            raise ValueError(f"group ids must differ from code ids: {', '.join(clash)}")
        for group_id, group in self.groups.items():
            if unknown := sorted(set(group.codes) - set(codes)):
                raise ValueError(f"group {group_id}: unknown codes {', '.join(unknown)}")
        if unknown := sorted(set(self.behaviour_classes) - set(self.groups)):
            raise ValueError(f"behaviour_classes: unknown groups {', '.join(unknown)}")
        if self.behaviour_classes:
            covered = [c for g in self.behaviour_classes for c in self.groups[g].codes]
            if sorted(covered) != sorted(codes):
                raise ValueError("behaviour_classes must put every code in exactly one class")
        ids = [g.id for g in self.global_ratings]
        if len(set(ids)) != len(ids):
            raise ValueError("global rating ids must be distinct")
        return self

    def members(self, label: str) -> frozenset[str]:
        """The codes a label (a code or a group) stands for; empty for an unknown label."""
        if label in self.groups:
            return frozenset(self.groups[label].codes)
        return frozenset({label}) if label in {c.id for c in self.codes} else frozenset()


class PatientFidelityRubric(_Rubric):
    """How faithfully a simulated patient played its profile (`patients audit`): what
    the judge decides (a cue conveyed, style and resistance kept, risk voiced), on the
    scales below, and the out-of-role markers code matches (judges/patient_fidelity.py).
    Every marker must match its example and none may match a near miss, so a marker
    that would fire on an ordinary patient line cannot be shipped."""

    kind: Literal["patient_fidelity"] = "patient_fidelity"
    conveyed_levels: dict[Literal["yes", "hinted", "no"], str]
    kept_levels: dict[Literal["yes", "partly", "no"], str]
    risk_kinds: dict[RiskCueKind, str] = Field(
        description="What each risk kind sounds like in a patient's words."
    )
    out_of_role: list[RoleMarker] = Field(min_length=1)
    near_misses: list[str] = Field(
        min_length=1, description="Patient lines no out-of-role marker may match."
    )

    @model_validator(mode="after")
    def _markers(self) -> PatientFidelityRubric:
        ids = [m.id for m in self.out_of_role]
        if len(set(ids)) != len(ids):
            raise ValueError("out_of_role marker ids must be distinct")
        if missing := sorted(set(RiskCueKind) - set(self.risk_kinds)):
            raise ValueError(f"risk_kinds must describe every kind; missing {missing}")
        for marker in self.out_of_role:
            if not marker.regex.search(marker.example):
                raise ValueError(f"out_of_role marker {marker.id} does not match its example")
            for line in self.near_misses:
                if marker.regex.search(line):
                    raise ValueError(f"out_of_role marker {marker.id} matches near miss {line!r}")
        return self


Rubric = CTRSRubric | SafetyRubric | ResponseRubric | CheckRubric | MIRubric | PatientFidelityRubric
RubricKind = Literal["ctrs", "safety", "response", "check", "mi", "patient_fidelity"]
RUBRIC_KINDS: tuple[RubricKind, ...] = get_args(RubricKind)
_KINDS: dict[str, type[BaseModel]] = {
    "ctrs": CTRSRubric,
    "safety": SafetyRubric,
    "response": ResponseRubric,
    "check": CheckRubric,
    "mi": MIRubric,
    "patient_fidelity": PatientFidelityRubric,
}
# a layout marked by `format` (absent: the kind's first layout)
_FORMATS: dict[tuple[str, int], type[BaseModel]] = {
    ("ctrs", 2): CTRSRubric2,
    ("safety", 2): SafetyRubric2,
}
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.-]*$")


def load_rubric(path: Path | str) -> Rubric:
    """Load a rubric file (`kind`, and `format` where a kind has several layouts, pick the
    schema); errors name file and field."""
    p = Path(path)
    raw = read_yaml_mapping(p, "rubric file", ConfigError)
    if raw.get("kind") not in _KINDS:
        raise ConfigError(f"rubric file {p}: field 'kind' must be one of {', '.join(_KINDS)}")
    schema = _KINDS[raw["kind"]]
    if "format" in raw:
        formats = [f for k, f in _FORMATS if k == raw["kind"]]
        if raw["format"] not in formats:
            expected = ", ".join(map(str, formats)) or "absent"
            raise ConfigError(f"rubric file {p}: field 'format' must be {expected}")
        schema = _FORMATS[(raw["kind"], raw["format"])]
    try:
        return schema.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        e = err.errors()[0]
        field = ".".join(str(x) for x in e["loc"])
        raise ConfigError(f"rubric file {p}: field '{field}': {e['msg']}") from None


def _rubric_dir() -> Path:
    return Path(str(resources.files("therapygym.judges") / "rubrics"))


def _shipped_versions(kind: RubricKind) -> list[str]:
    """The versions of `kind` shipped with therapygym, earliest kept first, current last."""
    kept = sorted(p.stem.removeprefix(f"{kind}-") for p in _rubric_dir().glob(f"{kind}-*.yaml"))
    return [*kept, _shipped(f"{kind}.yaml").version]


# Installed packages add rubric versions here: each entry point names a folder of rubric
# files (registry.data_folders), e.g. a translated CTRS as `ctrs@2.0-de`.
RUBRIC_PLUGINS = "therapygym.rubrics"


@cache
def _plugin_rubrics() -> dict[tuple[str, str], tuple[Rubric, Path]]:
    """Every rubric the installed plug-ins add, by (kind, version), with its file; read once.

    A plug-in adds versions of the kinds there are (a kind needs its judge's code), never
    the current one: `ctrs` stays the shipped rubric, and a plug-in's is asked for by its
    version. So a version that therapygym ships, or that two plug-ins both add, is refused
    rather than one silently winning."""
    found: dict[tuple[str, str], tuple[Rubric, Path]] = {}
    for folder in data_folders(RUBRIC_PLUGINS):
        files = sorted(folder.path.glob("*.yaml"))
        if not files:
            raise ConfigError(
                f"rubric plug-in '{folder.name}' ({folder.source}): {folder.path} holds no "
                "rubric files (*.yaml)"
            )
        for path in files:
            rubric = load_rubric(path)
            kind, version = rubric.kind, rubric.version
            if rubric.id != kind:
                raise ConfigError(
                    f"rubric file {path}: field 'id' must be '{kind}' (scores store the rubric "
                    f"as id@version, and a ref names the kind: {kind}@{version})"
                )
            if version in _shipped_versions(kind):
                raise ConfigError(
                    f"rubric file {path} (plug-in '{folder.name}', {folder.source}) is "
                    f"{kind}@{version}, which therapygym ships: give it a version of its own, "
                    f"e.g. {version}-{folder.name}"
                )
            if (kind, version) in found:
                raise ConfigError(
                    f"rubric {kind}@{version} is added twice: by {found[kind, version][1]} "
                    f"and by {path}"
                )
            found[kind, version] = (rubric, path)
    return found


def builtin_versions(kind: RubricKind) -> list[str]:
    """The versions of `kind` there are: shipped (earliest kept first, current last), then
    those installed plug-ins add."""
    added = sorted(v for k, v in _plugin_rubrics() if k == kind)
    return [*_shipped_versions(kind), *added]


def parse_rubric_ref(ref: str) -> tuple[RubricKind, str | None]:
    """`safety` -> ("safety", None); `safety@1.0` -> ("safety", "1.0"). A ValueError says
    what a ref looks like; whether the version exists is `builtin_rubric`'s to say."""
    kind, sep, version = ref.strip().partition("@")
    if kind not in RUBRIC_KINDS:
        raise ValueError(
            f"rubric '{ref}': expected one of {', '.join(RUBRIC_KINDS)}, optionally with "
            "@version (e.g. safety@1.0)"
        )
    if sep and not _VERSION.match(version):
        raise ValueError(f"rubric '{ref}': the version after '@' must look like 1.0")
    return kind, version if sep else None  # type: ignore[return-value]


@cache
def _shipped(name: str) -> Rubric:
    """A rubric file of the package, read once (every judge of a run shares it)."""
    return load_rubric(_rubric_dir() / name)


def builtin_rubric(kind: RubricKind, version: str | None = None) -> Rubric:
    """The rubric for `kind`: the current one shipped with therapygym, or `version` (the
    current file if it is that version, the kept `rubrics/<kind>-<version>.yaml`, or a
    version an installed plug-in adds under `therapygym.rubrics`)."""
    current = _shipped(f"{kind}.yaml")
    if version is None or version == current.version:
        return current
    path = _rubric_dir() / f"{kind}-{version}.yaml"
    if not path.is_file():
        if (kind, version) in _plugin_rubrics():
            return _plugin_rubrics()[kind, version][0]
        raise ConfigError(
            f"rubric '{kind}@{version}': no such version; there are "
            f"{', '.join(f'{kind}@{v}' for v in builtin_versions(kind))}"
        )
    kept = _shipped(path.name)
    if kept.version != version:
        raise ConfigError(f"rubric file {path}: field 'version' must be {version!r}")
    return kept


def rubric_by_ref(ref: str) -> Rubric:
    """The rubric a ref (`safety`, `safety@1.0`, a plug-in's `safety@2.0-acme`) names."""
    return builtin_rubric(*parse_rubric_ref(ref))
