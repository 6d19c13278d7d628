"""How an evaluation is configured: the run plan (and, with issue 15, the whole `EvalConfig`).

Plans are plain pydantic models: the CLI builds them from options, a Python caller builds
them directly, and both get the same validation before any work starts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from therapygym.records import SessionConfig


class RunPlan(BaseModel):
    """What a run is: recorded with the run, and checked again on resume."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    therapists: tuple[str, ...] = Field(min_length=1)
    therapist_prompt: str | None = None
    patient_model: str = "local:smollm2"
    profiles: tuple[str, ...] = Field(min_length=1, description="Profile id@version.")
    samples: int = Field(1, ge=1, le=1000)
    session: SessionConfig = SessionConfig()
    check_questions: dict[str, str] = Field(
        default_factory=dict,
        description="Questions for the check-question judge about every session of the run.",
    )

    def record(self) -> dict[str, Any]:
        """The run's identity as stored (concurrency and cache are not part of it; empty
        check questions are left out, so runs stored before they existed still resume)."""
        skip = {"run_id"} | (set() if self.check_questions else {"check_questions"})
        return self.model_dump(mode="json", exclude=skip)
