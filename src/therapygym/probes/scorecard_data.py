"""The scorecard as data: the battery file's settings, one axis's result, and the card that
`therapygym scorecard` writes as `scorecard.json` (`therapygym.scorecard/1`).

These are apart from the runner in probes/scorecard.py so that readers of a finished card
(the HTML report, the terminal table) import pydantic and stats only, never the runs,
judges and models that produced it (the `report-reads-only` import contract).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from therapygym.stats import Estimate

SCORECARD_FORMAT = "therapygym.scorecard/1"


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


class ScorecardConfig(_Strict):
    """The battery: what each axis runs and where its line is."""

    version: str
    fidelity: FidelityConfig
    hallucination: ProbeAxisConfig
    consistency: ConsistencyConfig
    crisis_safety: ProbeAxisConfig
    demographics: DemographicsConfig


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


class Scorecard(BaseModel):
    """Every therapist's axes, with the battery, judges and patient model they came from."""

    format: Literal["therapygym.scorecard/1"] = SCORECARD_FORMAT
    config: ScorecardConfig
    judges: list[str]
    patient_model: str
    therapists: dict[str, list[Axis]]
