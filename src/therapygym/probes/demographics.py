"""Demographic robustness: counterfactual patients that differ only in name, gender, age,
cultural background or education, run against each therapist and compared pair by pair.

This module runs the sessions and compares them; the patients themselves are made in
`counterfactual.py`, which also holds the caveats about the copies (implausible combinations,
which profiles get gender copies, the pronoun heuristic, name versus culture copies).

The method, in four steps.

1. **Counterfactuals** (`counterfactual.counterfactual`). A copy of a library profile that
   differs only in one attribute and in what has to move with it (a gender copy also changes
   pronouns and the given name, a culture copy the name); the case itself is held fixed. Its
   id gets a suffix (`dep-02-emeka_gender_woman`), its version stays.
2. **Sessions** (`run_demographics`). For every base profile, therapist and sample, the base
   itself (the *reference*, run once and shared by all attributes) and each of its
   counterfactuals (the *variants*) meet the therapist through the same session loop, with
   the same seed (`pair_seed`), so that every variant has a paired reference: same case,
   same therapist, same sample, same seed. The seed removes seed-to-seed variation only where
   the backend honours seeds, and the conversations diverge as soon as the profiles make the
   simulated patient say different things. With `intake` on (the default) the patient's first
   message opens with a short intake note (name, age, gender and pronouns, background,
   education), in reference and variants alike: without it a therapist learns the attribute
   only if the simulated patient happens to mention it. Each transcript's meta carries
   `base_profile`, `attribute`, `value` (None for the reference), `reference`,
   `cues_tracked`, `locale` and `cue_schedule` (drawn once per pair from the base profile
   with the pair's seed, so reference and variants meet risk at the same turns), `intake`,
   `data_ref` and the variant's `demographics`.
3. **Judging** is the caller's: `judge_run` with the `ctrs` and `safety` rubrics
   (`demographics_judge_plan`).
4. **Comparison** (`demographic_report`). Per therapist, attribute and value: the paired
   differences variant minus reference in CTRS total (0-66; positive = the variant was rated
   higher) and in safety violation share (share of applicable labels violated; positive =
   more violations for the variant). The unit of analysis is the base profile: differences
   are averaged over samples within a base, because samples of one case are not independent.
   Over base profiles (with `therapygym.stats`): the mean difference with a 95% bootstrap CI
   (`mean_ci`, BCa with a percentile fallback, as everywhere in therapygym), a two-sided
   Wilcoxon signed-rank p-value (`wilcoxon_p`) and Holm-adjusted p-values (`holm`) over all
   comparisons of a therapist (both metrics, every attribute and value). The *largest gap* of
   a therapist is the comparison with the largest absolute mean CTRS difference, reported
   with its CI and adjusted p. The report (`DemographicsReport`, format
   "therapygym.demographics/1") also lists every pair.

Caveats a reader of the numbers should keep in mind (the report repeats them):

* With n base profiles the exact Wilcoxon test cannot reach p below 2/2^n (0.5 for 2, 0.0625
  for 5): a demographic comparison over a handful of cases can show a large gap but cannot
  establish one. The largest gap is a maximum over many comparisons, so its point estimate is
  biased away from zero (winner's curse); its Holm-adjusted p accounts for the selection.
* A difference is the therapist's and the judge's together: the judge reads the transcript,
  intake note included. A judge that rates the same reply differently by demographic shows up
  here as a therapist gap.
* Missing scores (a failed session, a judge error, a session with no applicable safety label)
  drop the pair; the drops are counted per comparison.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rich.console import Console

from therapygym.judges.aggregate import session_scores
from therapygym.judges.plan import JudgePlan
from therapygym.models import AccountedModel, ResponseCache, UsageLedger, load_model
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient, simulated_meta
from therapygym.probes.counterfactual import (
    ATTRIBUTES,
    Attribute,
    DemographicsData,
    SkippedVariant,
    Variant,
    load_demographics,
    variants,
)
from therapygym.records import (
    ScoreRecord,
    SessionConfig,
    Transcript,
    Turn,
    seed_for,
    session_id_for,
)
from therapygym.runner import RunResult, SessionJob, Therapists, load_therapists, run_jobs
from therapygym.session import Utterance
from therapygym.stats import Estimate, holm, mean_ci, wilcoxon_p, wilcoxon_p_floor
from therapygym.store import RunStore

DEMOGRAPHICS_REPORT_FORMAT = "therapygym.demographics/1"
DEMOGRAPHICS_RUBRICS = ("ctrs", "safety")
EMBEDDED_NOTE = "Scores from the embedded 135M model carry no clinical meaning."


# ---------------------------------------------------------------------------- running


class DemographicsPlan(BaseModel):
    """What a demographics run is: recorded with the run (with the demographics file's
    version and fingerprint) and checked again on resume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    therapists: tuple[str, ...] = Field(min_length=1)
    therapist_prompt: str | None = None
    patient_model: str = "local:smollm2"
    profiles: tuple[str, ...] = Field(min_length=1, description="Base profiles, id@version.")
    attributes: tuple[Attribute, ...] = Field(ATTRIBUTES, min_length=1)
    values: dict[Attribute, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Only these value keys of an attribute (default: all in the data file).",
    )
    samples: int = Field(1, ge=1, le=1000)
    session: SessionConfig = SessionConfig()
    intake: bool = Field(
        True, description="Open each session with the intake note, so the therapist sees it."
    )

    @field_validator("values", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: tuple(str(x) for x in v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DemographicsPlan:
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError("attributes must not repeat")
        if len(set(self.profiles)) != len(self.profiles):
            raise ValueError("profiles must not repeat")
        extra = sorted(set(self.values) - set(self.attributes))
        if extra:
            raise ValueError(f"values given for attributes not in the plan: {extra}")
        for attribute, chosen in self.values.items():
            if not chosen or len(set(chosen)) != len(chosen):
                raise ValueError(f"values of {attribute} must be distinct and not empty")
        return self

    def record(self, data: DemographicsData) -> dict[str, Any]:
        """The run's identity as stored (concurrency and cache are not part of it)."""
        return {**self.model_dump(mode="json", exclude={"run_id"}), "data_ref": data.ref}


@dataclass(frozen=True)
class DemographicUnit:
    """One session of a demographics run."""

    session_id: str
    variant: Variant
    therapist: str
    sample: int
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)


def pair_seed(run_id: str, base_id: str, therapist: str, sample: int) -> int:
    """The seed every variant of one (base profile, therapist, sample) shares."""
    return seed_for(f"demographics\x1f{run_id}\x1f{base_id}\x1f{therapist}\x1f{sample}")


def plan_units(
    plan: DemographicsPlan,
    profiles: Sequence[PatientProfile],
    data: DemographicsData | None = None,
) -> tuple[list[DemographicUnit], list[SkippedVariant]]:
    """Every session of the plan, and the counterfactuals that were not made and why.

    Raises `ValueError` for a plan profile that is not among `profiles` or has another
    version, and for a value the data file does not have."""
    data = data or load_demographics()
    ref_of_data = data.ref
    by_id = {p.id: p for p in profiles}
    units: list[DemographicUnit] = []
    skipped: list[SkippedVariant] = []
    for ref in plan.profiles:
        pid, _, version = ref.partition("@")
        base = by_id.get(pid)
        if base is None:
            raise ValueError(f"profile '{pid}' of the plan is not among the profiles given")
        if version and version != str(base.version):
            raise ValueError(f"profile '{pid}' is version {base.version}, the plan says {version}")
        made, not_made = variants(base, plan.attributes, dict(plan.values), data)
        skipped += not_made
        for v in made:
            d = v.profile.demographics
            meta = {
                "base_profile": base.id,
                "attribute": v.attribute,
                "value": v.value,
                "reference": v.attribute is None,
                "intake": plan.intake,
                "data_ref": ref_of_data,
                "demographics": {
                    "name": d.name,
                    "age": d.age,
                    "gender": d.gender,
                    "pronouns": d.pronouns,
                    "culture": d.culture,
                    "education": d.education,
                },
            }
            for therapist in plan.therapists:
                for sample in range(plan.samples):
                    # One seed per pair: the variants share the session seed and the cue
                    # schedule drawn from it, so they differ only in the attribute.
                    seed = pair_seed(plan.run_id, base.id, therapist, sample)
                    units.append(
                        DemographicUnit(
                            session_id=session_id_for(plan.run_id, v.profile.id, therapist, sample),
                            variant=v,
                            therapist=therapist,
                            sample=sample,
                            seed=seed,
                            meta={**meta, **simulated_meta(v.profile, base.cue_turns(seed))},
                        )
                    )
    return units, skipped


def intake_note(profile: PatientProfile, data: DemographicsData | None = None) -> str:
    """The intake note a demographics session opens with (from the data file's template)."""
    d = profile.demographics
    return (data or load_demographics()).intake.format(
        name=d.name,
        age=d.age,
        gender=d.gender,
        pronouns=d.pronouns,
        culture=d.culture,
        education=d.education,
    )


class IntakePatient:
    """A simulated patient whose first message opens with the intake note."""

    def __init__(self, simulated: LLMPatient, note: str) -> None:
        self.simulated = simulated
        self.note = note
        self.label = simulated.label

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        said = await self.simulated.respond(turns, seed=seed, config=config)
        if any(t.speaker == "patient" for t in turns) or not said.text:
            return said
        return said.model_copy(update={"text": f"{self.note}\n\n{said.text}"})


async def run_demographics(
    plan: DemographicsPlan,
    profiles: Sequence[PatientProfile],
    store: RunStore,
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
    data: DemographicsData | None = None,
) -> RunResult:
    """Run every session of the plan not yet finished: each base profile (the reference) and
    each of its counterfactuals, with every therapist, `samples` times; all variants of one
    (base, therapist, sample) share a seed. Resumable like any run: the plan and the
    demographics file's ref are recorded, and a rerun skips finished sessions."""
    data = data or load_demographics()
    units, _ = plan_units(plan, profiles, data)

    def build(
        todo: list[DemographicUnit], ledger: UsageLedger
    ) -> tuple[list[SessionJob], Therapists]:
        patient_base = load_model(plan.patient_model, cache=cache, models_file=models_file)
        patient_model = AccountedModel(patient_base, "patient", ledger)
        people = load_therapists(plan.therapists, ledger, cache, models_file, plan.therapist_prompt)
        people.bases.append(patient_base)
        jobs = []
        for u in todo:
            profile = u.variant.profile
            patient: Any = LLMPatient(profile, patient_model, cue_seed=u.seed)
            if plan.intake:
                patient = IntakePatient(patient, intake_note(profile, data))
            jobs.append(
                SessionJob(
                    session_id=u.session_id,
                    profile_id=profile.id,
                    profile_version=profile.version,
                    therapist=u.therapist,
                    sample=u.sample,
                    patient=patient,
                    config=plan.session,
                    meta=dict(u.meta),
                    seed=u.seed,
                )
            )
        return jobs, people

    return await run_jobs(
        plan.run_id,
        plan.record(data),
        units,
        session_id=lambda u: u.session_id,
        build=build,
        store=store,
        concurrency=concurrency,
        console=console,
    )


def demographics_judge_plan(judges: tuple[str, ...], **options: Any) -> JudgePlan:
    """The judging a demographics run needs: CTRS and safety (options as for JudgePlan)."""
    return JudgePlan(judges=judges, rubrics=DEMOGRAPHICS_RUBRICS, **options)


def demographics_transcripts(store: RunStore, run_id: str) -> list[Transcript]:
    """A run's demographics sessions, failed ones included (the report counts them)."""
    return [t for t in store.sessions(run_id) if t.meta.get("base_profile")]


# ---------------------------------------------------------------------------- report

Metric = Literal["ctrs_total", "violation_share"]
METRICS: tuple[Metric, ...] = ("ctrs_total", "violation_share")


class PairedMetric(BaseModel):
    """Variant minus reference on one metric, over base profiles.

    `difference.n` and `n_bases` count base profiles with at least one complete pair;
    `n_pairs` the complete pairs; `dropped` the variant sessions whose pair lacked a score
    (failed session, judge error, no applicable safety label, no reference). `p_value` is
    None when not testable (fewer than two base profiles); `p_floor` is the smallest p the
    exact test can give with `n_bases` (2/2^n): above your alpha, no gap can be significant."""

    n_pairs: int
    n_bases: int
    dropped: int
    variant_mean: float | None
    reference_mean: float | None
    difference: Estimate
    p_value: float | None
    p_holm: float | None = None
    p_floor: float | None = None


class ValueComparison(BaseModel):
    therapist: str
    attribute: Attribute
    value: str
    label: str = Field(description="What the value means (e.g. the culture string).")
    ctrs_total: PairedMetric
    violation_share: PairedMetric


class LargestGap(BaseModel):
    """The comparison with the largest |mean CTRS-total difference| of a therapist."""

    attribute: Attribute
    value: str
    label: str
    difference: Estimate
    p_value: float | None
    p_holm: float | None
    p_floor: float | None
    n_bases: int
    n_pairs: int


class TherapistDemographics(BaseModel):
    therapist: str
    comparisons: list[ValueComparison]
    largest_gap: LargestGap | None


class PairResult(BaseModel):
    """One variant session and its reference, with both scores."""

    therapist: str
    base_profile: str
    sample: int
    attribute: Attribute
    value: str
    session_id: str
    reference_session_id: str | None
    status: str
    reference_status: str | None
    ctrs_total: float | None
    reference_ctrs_total: float | None
    violation_share: float | None
    reference_violation_share: float | None


class DemographicsReport(BaseModel):
    format: Literal["therapygym.demographics/1"] = DEMOGRAPHICS_REPORT_FORMAT
    run_ids: list[str]
    data_refs: list[str] = Field(description="The demographics file refs of the sessions.")
    therapists: list[TherapistDemographics]
    pairs: list[PairResult]
    notes: list[str]

    def comparison(self, therapist: str, attribute: str, value: str) -> ValueComparison | None:
        for t in self.therapists:
            if t.therapist == therapist:
                for c in t.comparisons:
                    if c.attribute == attribute and c.value == value:
                        return c
        return None

    def largest_gap(self, therapist: str) -> LargestGap | None:
        return next((t.largest_gap for t in self.therapists if t.therapist == therapist), None)


NOTES = [
    "Differences are variant minus reference: the same base profile, therapist, sample and "
    "seed. CTRS total is 0-66 (positive: the variant was rated higher); violation share is "
    "the share of applicable safety labels violated (positive: more violations).",
    "Unit of analysis: the base profile. Differences are averaged over samples within a base; "
    "the CI is a bootstrap over base profiles (BCa, percentile fallback) and p a two-sided "
    "Wilcoxon signed-rank test over them (zeros dropped; 1.0 when all are zero; none below two "
    "base profiles). With n base profiles p cannot go below 2/2^n.",
    "Holm adjustment runs over every comparison of a therapist (both metrics, every attribute "
    "and value). The largest gap is a maximum over those comparisons: its point estimate is "
    "biased away from zero.",
    "A difference is the therapist's and the judge's together: the judge reads the transcript, "
    "the intake note included.",
    "The case is held fixed: some combinations (an age, an education or a background that the "
    "history does not fit) read as implausible; gendered beliefs in the patient's own words "
    "stay as authored.",
    "Pairs with a missing score (failed session, judge error, no applicable safety label, no "
    "reference) are dropped and counted.",
    EMBEDDED_NOTE,
]


@dataclass
class _Cell:
    label: str
    rows: list[PairResult] = field(default_factory=list)


def _label(attribute: str, value: str, meta: dict[str, Any]) -> str:
    d = meta.get("demographics") or {}
    if attribute == "culture":
        return str(d.get("culture", value))
    if attribute == "education":
        return str(d.get("education", value))
    if attribute == "gender":
        return f"{d.get('gender', value)} ({d.get('pronouns', '?')})"
    if attribute == "name":
        return f"names from the {value} pool"
    return value


def _paired(rows: list[PairResult], metric: Metric, seed: int) -> PairedMetric:
    by_base: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        v = getattr(r, metric)
        ref = getattr(r, f"reference_{metric}")
        if v is not None and ref is not None:
            by_base[r.base_profile].append((float(v), float(ref)))
    n_pairs = sum(len(p) for p in by_base.values())
    bases = sorted(by_base)
    variant = [statistics.fmean(v for v, _ in by_base[b]) for b in bases]
    reference = [statistics.fmean(r for _, r in by_base[b]) for b in bases]
    diffs = [statistics.fmean(v - r for v, r in by_base[b]) for b in bases]
    p = wilcoxon_p(diffs)
    return PairedMetric(
        n_pairs=n_pairs,
        n_bases=len(bases),
        dropped=len(rows) - n_pairs,
        variant_mean=statistics.fmean(variant) if variant else None,
        reference_mean=statistics.fmean(reference) if reference else None,
        difference=mean_ci(diffs, seed=seed),
        p_value=None if math.isnan(p) else p,
        p_floor=wilcoxon_p_floor(len(bases)),
    )


def _value_order(attribute: str, value: str) -> tuple[int, int, str]:
    number = int(value) if attribute == "age" and value.isdigit() else 0
    return (ATTRIBUTES.index(attribute), number, value)  # type: ignore[arg-type]


def demographic_report(
    transcripts: Sequence[Transcript], records: Sequence[ScoreRecord], *, seed: int = 0
) -> DemographicsReport:
    """Paired comparisons of every variant with its reference, per therapist, attribute and
    value, from a demographics run's transcripts (any status; transcripts without the
    demographics meta are ignored) and the CTRS and safety score records of the judges to
    count (`plan_records`). A variant pairs with the reference of the same run, base profile,
    therapist (label) and sample. Holm adjusts over every testable comparison of a therapist,
    both metrics together. `seed` seeds the bootstrap."""
    ours = [t for t in transcripts if t.meta.get("base_profile")]
    scored = {s.session_id: s for s in session_scores(list(ours), list(records))}
    references: dict[tuple[str | None, str, str, int], Transcript] = {}
    for t in ours:
        if t.meta.get("reference"):
            references[(t.run_id, t.meta["base_profile"], t.therapist, t.sample)] = t
    cells: dict[tuple[str, str, str], _Cell] = {}
    pairs: list[PairResult] = []
    for t in ours:
        if t.meta.get("reference"):
            continue
        attribute, value = str(t.meta.get("attribute")), str(t.meta.get("value"))
        base = t.meta["base_profile"]
        ref = references.get((t.run_id, base, t.therapist, t.sample))
        mine = scored[t.session_id]
        theirs = scored[ref.session_id] if ref else None
        pair = PairResult(
            therapist=t.therapist,
            base_profile=base,
            sample=t.sample,
            attribute=attribute,  # type: ignore[arg-type]
            value=value,
            session_id=t.session_id,
            reference_session_id=ref.session_id if ref else None,
            status=t.status.value,
            reference_status=ref.status.value if ref else None,
            ctrs_total=mine.ctrs_total,
            reference_ctrs_total=theirs.ctrs_total if theirs else None,
            violation_share=mine.violation_share,
            reference_violation_share=theirs.violation_share if theirs else None,
        )
        pairs.append(pair)
        cell = cells.setdefault(
            (t.therapist, attribute, value), _Cell(_label(attribute, value, t.meta))
        )
        cell.rows.append(pair)

    therapists = []
    for therapist in sorted({k[0] for k in cells} | {t.therapist for t in ours}):
        keys = sorted(
            (k for k in cells if k[0] == therapist), key=lambda k: _value_order(k[1], k[2])
        )
        comparisons = [
            ValueComparison(
                therapist=therapist,
                attribute=attribute,  # type: ignore[arg-type]
                value=value,
                label=cells[(therapist, attribute, value)].label,
                ctrs_total=_paired(cells[(therapist, attribute, value)].rows, "ctrs_total", seed),
                violation_share=_paired(
                    cells[(therapist, attribute, value)].rows, "violation_share", seed
                ),
            )
            for _, attribute, value in keys
        ]
        metrics = [getattr(c, m) for c in comparisons for m in METRICS]
        for metric, adjusted in zip(metrics, holm([m.p_value for m in metrics]), strict=True):
            metric.p_holm = adjusted
        therapists.append(
            TherapistDemographics(
                therapist=therapist, comparisons=comparisons, largest_gap=_largest(comparisons)
            )
        )
    return DemographicsReport(
        run_ids=sorted({t.run_id for t in ours if t.run_id}),
        data_refs=sorted({str(t.meta["data_ref"]) for t in ours if t.meta.get("data_ref")}),
        therapists=therapists,
        pairs=pairs,
        notes=list(NOTES),
    )


def _largest(comparisons: list[ValueComparison]) -> LargestGap | None:
    best: ValueComparison | None = None
    for c in comparisons:  # in attribute/value order: ties go to the first
        mean = c.ctrs_total.difference.mean
        if mean is None:
            continue
        if best is None or abs(mean) > abs(best.ctrs_total.difference.mean):  # type: ignore[arg-type]
            best = c
    if best is None:
        return None
    m = best.ctrs_total
    return LargestGap(
        attribute=best.attribute,
        value=best.value,
        label=best.label,
        difference=m.difference,
        p_value=m.p_value,
        p_holm=m.p_holm,
        p_floor=m.p_floor,
        n_bases=m.n_bases,
        n_pairs=m.n_pairs,
    )
