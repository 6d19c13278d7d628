"""What a judging pass is: which judge models, rubrics, samples and settings.

A plan is part of how every score can be traced: the judges it builds put their settings
into each record's prompt fingerprint. It lives in judges/ (not in config.py) because the
judges build themselves from it, and judges sit below the configuration layer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from therapygym.judges.base import RubricKind
from therapygym.judges.ctrs import CTRSMode


class JudgePlan(BaseModel):
    """Which judges, rubrics and samples; part of how a score can be traced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judges: tuple[str, ...] = Field(min_length=1)
    rubrics: tuple[RubricKind, ...] = ("ctrs", "safety", "response")
    rubric_files: dict[str, str] = Field(
        default_factory=dict, description="Replace a built-in rubric by a file, by kind."
    )
    samples: int = Field(1, ge=1, le=100)
    ctrs_mode: CTRSMode = "one_call"
    temperature: float | None = Field(
        None, ge=0, le=2, description="Default: 0 for one sample, 0.7 when sampling k > 1."
    )
    max_attempts: int = Field(3, ge=1, le=10)
    rationale_chars: int = Field(
        240, ge=20, le=2000, description="Cap on each rationale (part of the JSON schema)."
    )

    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.7
