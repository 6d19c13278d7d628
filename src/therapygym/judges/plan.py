"""What a judging pass is: which judge models, rubrics, samples and settings.

A plan is part of how every score can be traced: the judges it builds put their settings
into each record's prompt fingerprint. It lives in judges/ (not in config.py) because the
judges build themselves from it, and judges sit below the configuration layer.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from therapygym.errors import ConfigError
from therapygym.judges.ctrs import CTRSMode
from therapygym.judges.rubric import RubricKind, parse_rubric_ref, rubric_by_ref
from therapygym.judges.safety import SafetyMode


def _known_ref(ref: str) -> str:
    """A rubric ref the package can load (`safety`, `safety@1.0`), checked when the plan is
    made so a wrong version fails before any session runs."""
    try:
        rubric_by_ref(ref)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return ref.strip()


RubricRef = Annotated[str, AfterValidator(_known_ref)]


class JudgePlan(BaseModel):
    """Which judges, rubrics and samples; part of how a score can be traced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    judges: tuple[str, ...] = Field(min_length=1)
    rubrics: tuple[RubricRef, ...] = Field(
        ("ctrs", "safety", "response"),
        description="Rubric refs: a kind (its current version) or kind@version (safety@1.0).",
    )
    rubric_files: dict[str, str] = Field(
        default_factory=dict, description="Replace a built-in rubric by a file, by kind."
    )
    samples: int = Field(1, ge=1, le=100)
    ctrs_mode: CTRSMode = "one_call"
    examples: bool = Field(
        True,
        description="ctrs@2.0: show the skill examples in the prompt (part of its "
        "fingerprint); false ablates them. ctrs@1.0 has none.",
    )
    safety_mode: SafetyMode = Field(
        "one_call",
        description="safety@2.0: every label in one call, or per_group (several shorter "
        "calls, for 8k-context judges); safety@1.0 is always one call.",
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Default: 0 for one sample, 0.7 when sampling k > 1."
    )
    max_attempts: int = Field(3, ge=1, le=10)
    rationale_chars: int = Field(
        240, ge=20, le=2000, description="Cap on each rationale (part of the JSON schema)."
    )

    @model_validator(mode="after")
    def _one_version_per_kind(self) -> JudgePlan:
        """A session's scores are combined per rubric id, so two versions of one kind in
        one plan would be read as two raters; compare versions by judging twice."""
        kinds = [k for k, _ in self.refs]
        if twice := sorted({k for k in kinds if kinds.count(k) > 1}):
            raise ValueError(
                f"rubric {twice[0]} is listed more than once; a plan judges one version of "
                "each rubric (to compare versions, judge again with the other one)"
            )
        if pinned := sorted(k for k, v in self.refs if v is not None and k in self.rubric_files):
            raise ValueError(f"rubric {pinned[0]}: give a version or a rubric file, not both")
        return self

    @property
    def refs(self) -> list[tuple[RubricKind, str | None]]:
        """(kind, version or None for the current one) of each rubric, in plan order."""
        return [parse_rubric_ref(ref) for ref in self.rubrics]

    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.samples == 1 else 0.7
