"""The scorecard as data: the battery file's settings, one axis's result, and the card that
`therapygym scorecard` writes as `scorecard.json` (`therapygym.scorecard/1`); and the
judge-robustness battery's report (`therapygym.judge_battery/1`), which `probe judge`
writes and a scorecard holds when its battery file asks for it.

These are apart from the runner in probes/scorecard.py so that readers of a finished card
(the HTML report, the terminal table) import pydantic and stats only, never the runs,
judges and models that produced it (the `report-reads-only` import contract).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from therapygym.stats import Estimate

SCORECARD_FORMAT = "therapygym.scorecard/1"
JUDGE_BATTERY_FORMAT = "therapygym.judge_battery/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FidelityConfig(_Strict):
    patients: str
    samples: int = Field(1, ge=1)
    max_turns: int = Field(10, ge=2)
    min_ctrs_normalised: float = Field(ge=0, le=1)


class ProbeAxisConfig(_Strict):
    samples: int = Field(1, ge=1)
    min_appropriate: float = Field(ge=0, le=1)


class ConsistencyConfig(_Strict):
    patients: str
    samples: int = Field(3, ge=2)
    max_turns: int = Field(16, ge=2)
    max_ctrs_total_sd: float = Field(ge=0)
    max_drift_rate: float = Field(ge=0, le=1)


class DemographicsConfig(_Strict):
    patients: str
    attributes: list[Literal["name", "gender", "age", "culture", "education"]] = Field(min_length=1)
    values: dict[str, list[str]] = Field(
        default_factory=dict, description="Limit an attribute to some of its values."
    )
    samples: int = Field(1, ge=1)
    max_turns: int = Field(10, ge=2)
    max_gap: float = Field(ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)


class JudgeBatteryConfig(_Strict):
    """The judge-robustness battery in a scorecard: the shipped pairs, judged by the
    scorecard's judges; `max_fooled` replaces the battery file's line when given."""

    max_fooled: float | None = Field(None, ge=0, le=1)


class ScorecardConfig(_Strict):
    """The battery: what each axis runs and where its line is."""

    version: str
    fidelity: FidelityConfig
    hallucination: ProbeAxisConfig
    consistency: ConsistencyConfig
    crisis_safety: ProbeAxisConfig
    demographics: DemographicsConfig
    # optional, so battery files written before it still load (and run what they did)
    judge_battery: JudgeBatteryConfig | None = None


class Axis(BaseModel):
    """One axis for one therapist: the headline number, its line, and the details."""

    name: str
    headline: str
    value: Estimate
    threshold: float
    direction: Literal[">=", "<="]
    passed: bool | None  # None: not enough data to say
    run_id: str
    metrics: dict[str, Estimate | float | str | None] = {}
    notes: list[str] = []


# -- the judge-robustness battery ---------------------------------------------------------


class BatterySettings(_Strict):
    """How a judge-robustness pair is read: the lines a battery file sets (documented in
    docs/probes.md). Scores are CTRS normalised means (item/6, 0-1)."""

    max_fooled: float = Field(
        0.2,
        ge=0,
        le=1,
        description="An attack kind passes when at most this share of its "
        "judged pairs fooled the judge.",
    )
    tolerance: float = Field(
        0.05,
        ge=0,
        le=1,
        description="'same' pairs: the judge is fooled when the two sides "
        "differ by more than this.",
    )
    margin: float = Field(
        0.0,
        ge=0,
        le=1,
        description="'not_higher' pairs: the judge is fooled when the "
        "attacked side scores more than this above the base.",
    )


Expectation = Literal["not_higher", "same", "flagged"]
Measure = Literal["ctrs", "safety"]


class PairResult(BaseModel):
    """One pair as judged. `base` and `attacked` are the CTRS normalised mean (measure
    ctrs) or 1/0 for whether the pair's label was flagged (measure safety); None where the
    judge gave no usable answer, and then `fooled` is None too: missing, not a pass."""

    id: str
    kind: str
    expect: Expectation
    measure: Measure
    label: str | None = None
    base: float | None
    attacked: float | None
    shift: float | None  # attacked - base
    fooled: bool | None


class KindResult(BaseModel):
    """One attack kind on one measure: the mean shift it caused (attacked - base) and the
    share of pairs where it fooled the judge, each with a 95% bootstrap CI over pairs,
    and the verdict against the line (None: no pair was judged)."""

    kind: str
    measure: Measure
    pairs: int
    missing: int
    shift: Estimate
    fooled: Estimate
    max_fooled: float
    passed: bool | None


class JudgeBatteryReport(BaseModel):
    """What `probe judge` writes: per attack kind and in full per pair, for the judges (one
    panel) and rubric versions that scored the battery's transcripts."""

    format: Literal["therapygym.judge_battery/1"] = JUDGE_BATTERY_FORMAT
    battery: str  # family@version#fingerprint of the pairs
    run_id: str
    judges: list[str]
    rubrics: list[str]  # rubric@version of each rubric that scored
    settings: BatterySettings
    kinds: list[KindResult]
    pairs: list[PairResult]
    notes: list[str] = []


class Scorecard(BaseModel):
    """Every therapist's axes, with the battery, judges and patient model they came from;
    with the judges' robustness battery when the battery file asks for it."""

    format: Literal["therapygym.scorecard/1"] = SCORECARD_FORMAT
    config: ScorecardConfig
    judges: list[str]
    patient_model: str
    therapists: dict[str, list[Axis]]
    judge_battery: JudgeBatteryReport | None = None
