"""`patients generate`: grow a library of patient profiles with a model, from the
authored ones.

The way TherapyGym grew Patient-Psi (13,093 profiles from 106): a plan of samples over the
variation axes (`axes.py`: condition, severity, risk cues, core-belief category, style,
resistance, ambivalence, age band, gender, locale, covered evenly), and for each sample
the model writes a profile from the sampled attributes and one authored seed profile of the
same condition (round robin over the library's profiles of it) shown as the example.

Each reply is constrained to the profile's JSON schema without the fields we fill (id,
version, the axis values, `generated`), in the strict dialect (every object closed, every
property required, no defaults), with the sampled core-belief category, cue kinds, gender
and age band written into it, so a constrained model cannot stray from its sample. The
reply is then validated against `PatientProfile` and the sample: a reply that fails is
re-asked with its errors (`retries` times), then dropped and counted.

Near-duplicates are removed by word 3-gram (shingle) Jaccard similarity over the text
the model wrote, against every profile accepted so far and every seed profile: a copy of
its seed is a duplicate. Why shingles and not TF-IDF or embeddings: a shingle set depends
on the profile alone, so a decision never shifts as the library grows or when a resumed
run meets the profiles in another order (an IDF weighting would), and it needs no
embedding model. Measured on the 44 authored profiles, the most similar pair shares a
Jaccard of 0.013; a profile with one word in eight changed scores 0.45 against its
original, and one whose first half is copied 0.24. The default threshold, 0.2, sits well
above independent writing and below both kinds of copy.

A seeded, condition-stratified fraction of the plan is held out (`heldout/` in the output
folder), for evaluating on patients a policy never trained on. Every accepted profile is
written at once (atomically) and every finished sample is appended to `generation.jsonl`,
whose first line is the plan: a killed generation resumes where it stopped, and a resume
with a different plan is refused. Dropped and failed samples are tried again on a resume
(with a new seed); near-duplicates stay removed.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sklearn.feature_extraction.text import HashingVectorizer

from therapygym.artefacts import write_problem, write_text
from therapygym.errors import ModelCallError, TherapygymError, describe_validation_error
from therapygym.models import AccountedModel, ChatModel, UsageLedger, load_model
from therapygym.models.spec import is_embedded
from therapygym.patients.axes import Attributes, coverage, sample_attributes
from therapygym.patients.library import ProfileError, load_profile
from therapygym.patients.profile import SCHEMA_VERSION, Generated, PatientProfile
from therapygym.templates import render_prompt

JOURNAL = "generation.jsonl"
HELDOUT = "heldout"
DEFAULT_THRESHOLD = 0.2
SHINGLE = 3
# Hashed shingle space: a profile has about 300 shingles, so two profiles share a false
# (colliding) one about 300 x 300 / 2**18 = 0.3 times, a Jaccard error under 0.001.
FEATURES = 2**18
MAX_CUE_TURN = 5  # the patient's turns in the default 10-turn session

# What we fill ourselves: identity, provenance and the sampled axis values.
FILLED = (
    "id",
    "version",
    "schema_version",
    "generated",
    "conditions",
    "severity",
    "locale",
    "style",
    "resistance",
    "ambivalence",
)
# Caps on the wire only (an authored profile may be longer): they keep a constrained
# model's reply inside its output budget, and the embedded model's inside its context.
_LONG, _ITEM, _SHORT, _ITEMS = 480, 160, 90, 4
_MAX_LENGTH = {
    "presenting_problem": _LONG,
    "history": _LONG,
    "situation": _LONG,
    "disclosure": 320,
    "opening_line": 240,
    "belief": _ITEM,
}
_ABBREV = {
    "depression": "dep",
    "generalised_anxiety": "gad",
    "panic": "pan",
    "social_anxiety": "soc",
    "ocd": "ocd",
    "trauma": "trm",
    "grief": "grf",
    "insomnia": "ins",
    "anger": "ang",
    "relationship": "rel",
    "work_stress": "wrk",
    "perfectionism": "per",
    "low_self_esteem": "lse",
    "substance_use": "sub",
    "psychosis_spectrum": "psy",
    "mania": "man",
    "eating": "eat",
    "health_anxiety": "hea",
    "perinatal": "pnt",
    "chronic_pain": "pain",
    "emotion_dysregulation": "emo",
    "neurodevelopmental": "ndv",
}
REASK = (
    "Your previous reply could not be used: {error}. Reply again with the whole profile as "
    "one JSON object that matches the schema and the attributes asked for."
)


class GenerationError(TherapygymError):
    """A generation that cannot start: a bad output folder, a plan that differs from the
    folder's, no seed profiles."""


# -- the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationPlan:
    """Everything that decides what is generated; a resume must name the same plan."""

    n: int
    model: str
    seeds: tuple[str, ...]  # the seed library, as id@version
    seed: int = 0
    heldout: float = 0.15
    retries: int = 1
    temperature: float = 0.9
    max_tokens: int = 1500
    threshold: float = DEFAULT_THRESHOLD
    locales: tuple[str, ...] = ()  # empty: the crisis-line countries

    def __post_init__(self) -> None:
        if self.n < 1:
            raise GenerationError(f"--n {self.n}: generate at least one profile")
        if not 0 <= self.heldout < 1:
            raise GenerationError(f"--heldout {self.heldout}: a fraction in [0, 1)")
        if not 0 < self.threshold <= 1:
            raise GenerationError(f"--dedup-threshold {self.threshold}: a Jaccard in (0, 1]")

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds), "locales": list(self.locales)}


def heldout_samples(plan: GenerationPlan, samples: list[Attributes]) -> set[int]:
    """The samples held out: a systematic draw over the plan sorted by condition (random
    order within one), so about `heldout * n` samples are held out and every condition
    with enough samples has its share, even where one condition has only two or three."""
    rng = random.Random(f"heldout:{plan.seed}")
    order = sorted(range(len(samples)), key=lambda i: (samples[i].condition.value, rng.random()))
    start = rng.random()
    f = plan.heldout
    return {
        i
        for j, i in enumerate(order)
        if math.floor((j + 1) * f + start) > math.floor(j * f + start)
    }


def seed_for(samples: list[Attributes], library: list[PatientProfile]) -> list[PatientProfile]:
    """Each sample's seed: the library's profiles of its condition in turn (round robin),
    or, for a condition the library lacks, the whole library in turn."""
    turn: Counter[str] = Counter()
    chosen = []
    for sample in samples:
        pool = [p for p in library if sample.condition in p.conditions] or library
        key = sample.condition.value if pool is not library else ""
        chosen.append(pool[turn[key] % len(pool)])
        turn[key] += 1
    return chosen


# -- the request ------------------------------------------------------------------------


def _strict(node: Any, defs: dict[str, Any]) -> Any:
    """The schema in the strict dialect: references inlined, every object closed with
    every property required, no defaults or titles, and fixed-length arrays (a tuple's
    `prefixItems`, which strict modes refuse) as one item schema with a length."""
    if isinstance(node, list):
        return [_strict(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _strict(defs[node["$ref"].split("/")[-1]], defs)
    out = {k: _strict(v, defs) for k, v in node.items() if k not in ("default", "title", "$defs")}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")[0]
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out["properties"])
    return out


def _capped(node: Any, name: str = "") -> Any:
    """`_MAX_LENGTH`-style caps on every string and list (in place)."""
    if isinstance(node, dict):
        if "enum" in node:
            node.pop("description", None)  # the values say it; tokens saved on every call
        elif node.get("type") == "string":
            node["maxLength"] = _MAX_LENGTH.get(name, _SHORT if name else _ITEM)
        if node.get("type") == "array":
            node.setdefault("maxItems", _ITEMS)
        for key, value in node.items():
            if key == "properties":
                for prop, schema in value.items():
                    _capped(schema, prop)
            elif key in ("items", "anyOf"):
                _capped(value, "" if key == "items" else name)
    elif isinstance(node, list):
        for value in node:
            _capped(value, name)
    return node


def _base_schema() -> dict[str, Any]:
    schema = PatientProfile.model_json_schema()
    strict = _strict(schema, schema["$defs"])
    for name in FILLED:
        del strict["properties"][name]
    strict["required"] = list(strict["properties"])
    return _capped(strict)


_BASE = _base_schema()


def wire_schema(sample: Attributes) -> dict[str, Any]:
    """The JSON schema one sample's replies are constrained to: the profile's, less what
    we fill, with the sample's attributes written in."""
    schema = copy.deepcopy(_BASE)
    props = schema["properties"]
    person = props["demographics"]["properties"]
    person["age"].update(zip(("minimum", "maximum"), sample.ages, strict=True))
    person["gender"] = {"type": "string", "enum": [sample.gender]}
    props["core_beliefs"]["items"]["properties"]["category"]["enum"] = [sample.core_belief.value]
    cues = props["risk_cues"]
    cues.update(minItems=len(sample.cues), maxItems=len(sample.cues))
    cue = cues["items"]["properties"]
    if sample.cues:
        cue["kind"]["enum"] = [c.value for c in sample.cues]
    for option in cue["turn"]["anyOf"]:
        (option["items"] if option["type"] == "array" else option)["maximum"] = MAX_CUE_TURN
    return schema


def _example(seed: PatientProfile) -> str:
    """The seed as the example reply: the fields the model writes, compact JSON."""
    data = seed.model_dump(mode="json", exclude=set(FILLED))
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def messages_for(sample: Attributes, seed: PatientProfile) -> list[dict[str, str]]:
    user = render_prompt(
        "therapygym.patients:prompts/generate.j2",
        condition=sample.condition.value.replace("_", " "),
        severity=sample.severity.value,
        core_belief=sample.core_belief.value,
        age_min=sample.ages[0],
        age_max=sample.ages[1],
        gender=sample.gender,
        locale=sample.locale,
        style=sample.style.value,
        resistance=sample.resistance,
        ambivalence=sample.ambivalence,
        cues=[c.value for c in sample.cues],
        max_turn=MAX_CUE_TURN,
        example=_example(seed),
    )
    system = render_prompt("therapygym.patients:prompts/generate_system.j2")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def profile_id(sample: Attributes, index: int) -> str:
    return f"gen-{_ABBREV[sample.condition.value]}-{index:05d}"


def build_profile(
    text: str, sample: Attributes, index: int, provenance: Generated
) -> PatientProfile:
    """A reply as a profile with the sampled values filled in; raises ValueError saying
    what is wrong, in words fit to send back to the model."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"it is not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    ours = {
        "id": profile_id(sample, index),
        "schema_version": SCHEMA_VERSION,
        "conditions": [sample.condition.value],
        "severity": sample.severity.value,
        "locale": sample.locale,
        "style": sample.style.value,
        "resistance": sample.resistance,
        "ambivalence": sample.ambivalence,
        "generated": provenance.model_dump(),
    }
    given = sorted(set(data) & set(ours) - {"id"})
    if given:
        raise ValueError(f"it gives fields that are filled from the attributes: {given}")
    try:
        profile = PatientProfile.model_validate({**data, **ours})
    except ValidationError as err:
        raise ValueError(describe_validation_error(err, "the profile")) from None
    problems = []
    low, high = sample.ages
    if not low <= profile.demographics.age <= high:
        problems.append(f"age {profile.demographics.age} is outside {low}-{high}")
    if profile.demographics.gender != sample.gender:
        problems.append(f"gender must be '{sample.gender}'")
    if {b.category for b in profile.core_beliefs} != {sample.core_belief}:
        problems.append(f"every core belief must be of category '{sample.core_belief.value}'")
    if sorted(c.kind for c in profile.risk_cues) != sorted(sample.cues):
        wanted = ", ".join(c.value for c in sample.cues) or "none"
        problems.append(f"risk cue kinds must be exactly: {wanted}")
    if problems:
        raise ValueError("; ".join(problems))
    return profile


# -- near-duplicates --------------------------------------------------------------------


def written_text(profile: PatientProfile) -> str:
    """What the model wrote, as one text (the axis values we filled are left out: two
    profiles sharing a condition and a style are not alike for that)."""
    d = profile.demographics
    parts = [
        profile.presenting_problem,
        profile.history,
        profile.situation,
        profile.opening_line,
        d.name,
        d.culture,
        d.occupation,
        *(b.belief for b in profile.core_beliefs),
        *profile.intermediate_beliefs,
        *profile.coping_strategies,
        *profile.automatic_thoughts,
        *profile.emotions,
        *profile.behaviours,
        *(c.disclosure for c in profile.risk_cues),
    ]
    return " ".join(parts)


class NearDuplicates:
    """Word 3-gram shingle sets (hashed by scikit-learn's HashingVectorizer, so the words
    are split as scikit-learn splits them) and Jaccard similarity against every profile
    added so far, through an inverted index (shingle -> profiles): a new profile costs its
    own shingles plus the few it shares, however large the library has grown."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._vectorizer = HashingVectorizer(
            analyzer="word",
            ngram_range=(SHINGLE, SHINGLE),
            binary=True,
            norm=None,
            alternate_sign=False,
            n_features=FEATURES,
        )
        self._ids: list[str] = []
        self._sizes: list[int] = []
        self._postings: dict[int, list[int]] = {}

    def _shingles(self, text: str) -> np.ndarray:
        return self._vectorizer.transform([text]).indices

    def nearest(self, text: str) -> tuple[str, float] | None:
        """The most similar profile added so far, and its Jaccard similarity."""
        if not self._ids:
            return None
        mine = self._shingles(text)
        shared = Counter(j for h in mine.tolist() for j in self._postings.get(h, ()))
        if not shared:
            return self._ids[0], 0.0
        best, score = max(
            ((j, n / (self._sizes[j] + len(mine) - n)) for j, n in shared.items()),
            key=lambda found: found[1],
        )
        return self._ids[best], score

    def add(self, profile_id: str, text: str) -> None:
        mine = self._shingles(text)
        for h in mine.tolist():
            self._postings.setdefault(h, []).append(len(self._ids))
        self._ids.append(profile_id)
        self._sizes.append(len(mine))

    def duplicate_of(self, text: str) -> tuple[str, float] | None:
        """The profile `text` nearly duplicates (Jaccard >= threshold), if any."""
        found = self.nearest(text)
        return found if found is not None and found[1] >= self.threshold else None


# -- the journal ------------------------------------------------------------------------

ACCEPTED, DUPLICATE, DROPPED, FAILED = "accepted", "duplicate", "dropped", "failed"
RETRIED = (DROPPED, FAILED)  # outcomes a resume tries again


@dataclass
class Outcome:
    """One sample's result, as `generation.jsonl` records it."""

    sample: int
    outcome: str
    round: int = 0  # how many earlier runs tried this sample (its seed changes with it)
    asks: int = 0
    id: str | None = None
    heldout: bool = False
    similar_to: str | None = None
    jaccard: float | None = None
    error: str | None = None


def _read_journal(path: Path) -> tuple[dict[str, Any] | None, dict[int, Outcome]]:
    """The plan and each sample's latest outcome; a last line cut by a kill is ignored."""
    if not path.exists():
        return None, {}
    plan: dict[str, Any] | None = None
    found: dict[int, Outcome] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise GenerationError(f"{path}: line {number} is not JSON") from None
        if number == 1:
            plan = entry.get("plan")
            if plan is None:
                raise GenerationError(f"{path}: the first line is not a generation plan")
            continue
        try:
            outcome = Outcome(**entry)
        except TypeError:
            raise GenerationError(f"{path}: line {number} is not a sample's outcome") from None
        found[outcome.sample] = outcome
    return plan, found


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new[k]]
    shown = ", ".join(
        f"{k} {old.get(k)!r} -> {new[k]!r}" if k != "seeds" else "the seed profiles" for k in keys
    )
    return shown or "its format"


# -- the run ----------------------------------------------------------------------------


@dataclass
class GenerationResult:
    """What a generation left in its folder (totals over every run of the plan) and what
    this run did (`made`, `seconds`, `usage`)."""

    out: Path
    planned: int
    skipped: int = 0
    accepted: int = 0
    reasked: int = 0
    dropped: int = 0
    duplicates: int = 0
    failed: int = 0
    heldout: int = 0
    made: int = 0
    errors: list[str] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    embedded: bool = False
    model: str = ""
    seconds: float = 0.0
    usage: UsageLedger = field(default_factory=UsageLedger)

    @property
    def per_minute(self) -> float | None:
        """Profiles accepted per minute by this run, when it accepted any."""
        return self.made * 60 / self.seconds if self.seconds > 0 and self.made else None


def check_out(out: Path) -> None:
    """Refuse, before any work, an output folder that cannot be written or that holds
    something other than a generation."""
    if problem := write_problem(out, folder=True):
        raise GenerationError(f"--out {out}: {problem}")
    if out.is_dir() and any(out.iterdir()) and not (out / JOURNAL).exists():
        raise GenerationError(
            f"--out {out}: the folder holds files but no {JOURNAL}; give a new or empty "
            "folder (or the folder of the generation to resume)"
        )


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accepted {task.fields[accepted]}"),
        TextColumn("dropped {task.fields[dropped]}"),
        TextColumn("near-dup {task.fields[duplicates]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )


async def generate(
    plan: GenerationPlan,
    library: list[PatientProfile],
    out: Path,
    *,
    model: ChatModel | None = None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
) -> GenerationResult:
    """Generate (or resume generating) `plan` into `out` from the seed `library`.

    `model` replaces building `plan.model` (a caller's own `ChatModel`); otherwise the
    spec is loaded here, before anything is written (so a bad spec leaves no folder that a
    fixed retry would meet as another plan), and closed at the end. Raises
    `GenerationError` before any model call for a folder that cannot be used or that holds
    another plan.
    """
    check_out(out)
    if tuple(f"{p.id}@{p.version}" for p in library) != plan.seeds or not library:
        raise GenerationError("the plan's seeds must be the (non-empty) library given")
    journal = out / JOURNAL
    old_plan, done = _read_journal(journal)
    if old_plan is not None and old_plan != plan.record():
        raise GenerationError(
            f"--out {out} holds a generation of another plan ({_changed(old_plan, plan.record())}"
            "); resume it with the same options, or give a new folder"
        )
    samples = sample_attributes(plan.n, plan.seed, plan.locales or None)
    seeds = seed_for(samples, library)
    held = heldout_samples(plan, samples)
    result = GenerationResult(
        out=out,
        planned=plan.n,
        coverage=coverage(samples),
        embedded=model is None and is_embedded(plan.model, models_file),
        model=plan.model,
    )
    index = NearDuplicates(plan.threshold)
    for p in library:
        index.add(p.id, written_text(p))
    counts: Counter[str] = Counter()
    pending = []
    for i in range(plan.n):
        previous = done.get(i)
        if previous is None or previous.outcome in RETRIED:
            pending.append(i)
            continue
        if previous.outcome == ACCEPTED:
            place = out / HELDOUT if previous.heldout else out
            try:
                kept = load_profile(place / f"{previous.id}.yaml")
            except ProfileError:
                pending.append(i)  # its file went missing or was spoilt: make it again
                continue
            index.add(kept.id, written_text(kept))
        _tally(counts, previous)
    result.skipped = plan.n - len(pending)
    if pending:
        owned = model is None
        chat_model: Any = model or AccountedModel(
            load_model(plan.model, cache=None, models_file=models_file), "generator", result.usage
        )
        batch = _Batch(plan, out, index, counts, result, chat_model)
        jobs = [(i, samples[i], seeds[i], i in held, done.get(i)) for i in pending]
        try:
            await batch.run(jobs, concurrency, console)
        finally:
            if owned:
                await chat_model.model.aclose()
    result.accepted = counts[ACCEPTED]
    result.reasked = counts["reasked"]
    result.dropped = counts[DROPPED]
    result.duplicates = counts[DUPLICATE]
    result.failed = counts[FAILED]
    result.heldout = counts["heldout"]
    return result


def _tally(counts: Counter[str], outcome: Outcome) -> None:
    counts[outcome.outcome] += 1
    counts["reasked"] += outcome.asks > 1
    counts["heldout"] += outcome.outcome == ACCEPTED and outcome.heldout


@dataclass
class _Batch:
    """The samples one run makes: asked concurrently, settled one at a time."""

    plan: GenerationPlan
    out: Path
    index: NearDuplicates
    counts: Counter[str]
    result: GenerationResult
    model: ChatModel

    async def run(
        self,
        jobs: list[tuple[int, Attributes, PatientProfile, bool, Outcome | None]],
        concurrency: int,
        console: Console | None,
    ) -> None:
        journal = self.out / JOURNAL
        (self.out / HELDOUT).mkdir(parents=True, exist_ok=True)
        if _read_journal(journal)[0] is None:  # new, or killed while its plan was written
            journal.write_text(json.dumps({"plan": self.plan.record()}) + "\n", encoding="utf-8")
        _trim_cut_line(journal)
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def one(job: tuple[int, Attributes, PatientProfile, bool, Outcome | None]) -> None:
            i, sample, seed, heldout, previous = job
            attempt = previous.round + 1 if previous is not None else 0
            async with gate:
                outcome, profile = await _sample(
                    self.model, self.plan, sample, seed, i, attempt, heldout
                )
            self.settle(outcome, profile, log, progress, task)

        try:
            with _progress(console) as progress, journal.open("a", encoding="utf-8") as log:
                task = progress.add_task(
                    "generate", total=len(jobs), accepted=0, dropped=0, duplicates=0
                )
                # a TaskGroup: a failure or Ctrl-C cancels the samples still running and
                # waits for them, so none writes after the caller has moved on
                async with asyncio.TaskGroup() as group:
                    for job in jobs:
                        group.create_task(one(job))
        except BaseExceptionGroup as group:  # a write that failed: its one-line error
            raise group.exceptions[0] from None
        finally:
            self.result.seconds = loop.time() - started

    def settle(
        self,
        outcome: Outcome,
        profile: PatientProfile | None,
        log: Any,
        progress: Progress,
        task: Any,
    ) -> None:
        """Dedup, write and journal one finished sample. Synchronous, so no other sample's
        check falls between this one's check and its addition to the index."""
        if profile is not None:
            text = written_text(profile)
            similar = self.index.duplicate_of(text)
            if similar is not None:
                outcome.outcome, outcome.id = DUPLICATE, None
                outcome.similar_to, outcome.jaccard = similar[0], round(similar[1], 3)
            else:
                place = self.out / HELDOUT if outcome.heldout else self.out
                write_text(place / f"{profile.id}.yaml", _yaml(profile))
                self.index.add(profile.id, text)
                self.result.made += 1
        log.write(json.dumps(asdict(outcome)) + "\n")
        log.flush()
        _tally(self.counts, outcome)
        if outcome.error and outcome.outcome in RETRIED:
            self.result.errors.append(f"sample {outcome.sample}: {outcome.error}")
        progress.update(
            task,
            advance=1,
            accepted=self.counts[ACCEPTED],
            dropped=self.counts[DROPPED] + self.counts[FAILED],
            duplicates=self.counts[DUPLICATE],
        )


def _trim_cut_line(path: Path) -> None:
    """Drop a last line a kill cut short, so the next line appended starts a line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _seed(plan: GenerationPlan, sample: int, attempt: int) -> int:
    digest = hashlib.sha256(f"{plan.seed}:{sample}:{attempt}".encode()).hexdigest()
    return int(digest[:8], 16)


async def _sample(
    model: ChatModel,
    plan: GenerationPlan,
    sample: Attributes,
    seed: PatientProfile,
    index: int,
    attempt: int,
    heldout: bool,
) -> tuple[Outcome, PatientProfile | None]:
    """Ask for one profile, re-asking with the problems up to `plan.retries` times."""
    provenance = Generated(
        seed_profile=f"{seed.id}@{seed.version}",
        axes=sample.axes(),
        model=plan.model,
        sample=index,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    conversation = messages_for(sample, seed)
    schema = wire_schema(sample)
    outcome = Outcome(sample=index, outcome=DROPPED, round=attempt, heldout=heldout)
    for ask in range(1, plan.retries + 2):
        outcome.asks = ask
        try:
            reply = await model.chat(
                conversation,
                temperature=plan.temperature,
                max_tokens=plan.max_tokens,
                seed=_seed(plan, index, attempt),
                json_schema=schema,
            )
        except ModelCallError as err:
            outcome.outcome, outcome.error = FAILED, f"model call failed: {err}"
            return outcome, None
        try:
            profile = build_profile(reply.text, sample, index, provenance)
        except ValueError as err:
            outcome.error = f"invalid after {ask} ask(s): {err}"
            conversation = [
                *conversation,
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": REASK.format(error=err)},
            ]
            continue
        outcome.outcome, outcome.id, outcome.error = ACCEPTED, profile.id, None
        return outcome, profile
    return outcome, None


def _yaml(profile: PatientProfile) -> str:
    data = profile.model_dump(mode="json")
    # libyaml's emitter when PyYAML has it: the pure-Python one was half of a sample's CPU
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=88)
